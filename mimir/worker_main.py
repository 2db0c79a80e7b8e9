"""Entry point the supervisor starts workers through: ``python -m mimir.worker_main <worker> ...``.

Identical to ``mimir-worker`` except that the worker asks the kernel to send
it SIGTERM when its parent (the supervisor) dies, so a SIGKILLed supervisor
never leaves capture workers running (Linux ``PR_SET_PDEATHSIG``; elsewhere
the next supervisor start reclaims what they hold).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent or os.getppid() == 1:  # the parent died before prctl took effect
        sys.exit(1)


if __name__ == "__main__":
    die_with_parent()
    from mimir.cli import worker_app

    worker_app(prog_name="mimir-worker")
