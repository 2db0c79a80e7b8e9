"""Run the sync benchmark without the top-level CLI: ``python bench/sync.py [--json] [--quick] [--only NAME]``.

The body lives in :mod:`mimir.sync.benchmark` so the installed ``mimir bench sync``
command can import it; this script only forwards to it.
"""

from __future__ import annotations


import typer

from mimir.sync.cli import bench_sync

if __name__ == "__main__":
    typer.run(bench_sync)
