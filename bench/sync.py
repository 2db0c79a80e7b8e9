"""Run the sync benchmark without the top-level CLI: ``python bench/sync.py [--json] [--quick] [--only NAME]``.

The body lives in :mod:`mimir.sync.benchmark` so the installed ``mimir bench sync``
command can import it; this script only forwards to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

if __package__ in (None, ""):  # run as a script: make ``bench`` (the shared machine_info) importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimir.sync.cli import bench_sync  # noqa: E402

if __name__ == "__main__":
    typer.run(bench_sync)
