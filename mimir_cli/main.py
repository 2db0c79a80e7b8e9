"""The ``mimir`` console script: ``mimir receiver`` and ``mimir keys`` without loading the rig.

A receiver machine (a Windows co-stream PC, a laptop) runs ``mimir receiver``
and ``mimir keys``; those two run :mod:`mimir.net`'s own small app, which
imports nothing of the rings, the reservoir, the cameras or posix_ipc (and
so runs on every OS, with the ``receiver`` extra alone). Every other command
goes to the full CLI (:mod:`mimir_cli.app`).
"""

from __future__ import annotations

import sys

__all__ = ["main", "RECEIVER_COMMANDS"]

RECEIVER_COMMANDS = ("receiver", "keys")


def main() -> None:
    if sys.argv[1:2] and sys.argv[1] in RECEIVER_COMMANDS:
        from mimir.net.__main__ import app as net_app

        net_app(prog_name="mimir")
        return
    from mimir_cli.app import app

    app(prog_name="mimir")


if __name__ == "__main__":  # pragma: no cover
    main()
