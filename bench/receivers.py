"""Run the receivers benchmark without the top-level CLI: ``python bench/receivers.py [--json] [--quick]``.

The body lives in :mod:`mimir.net.benchmark` so the installed ``mimir bench receivers``
command can import it; this script only forwards to it.
"""

from __future__ import annotations

import typer

from mimir.net.cli import bench_receivers

if __name__ == "__main__":
    typer.run(bench_receivers)
