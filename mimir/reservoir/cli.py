"""``mimir bench reservoir [--quick] [--json]`` (typer command function; wire it as ``bench_app.command("reservoir")``).

The benchmark body is ``bench/reservoir.py`` in the repository (``bench/`` is
not an installed package, so it is imported from the checkout this module
lives in). Progress goes to stderr. Without ``--json`` stdout gets a table;
with ``--json`` stdout holds exactly one JSON document
``{"bench": "reservoir", "machine": {...}, "results": [...]}``.
"""

from __future__ import annotations

import importlib
import json
import sys

import typer

__all__ = ["bench_reservoir", "load_bench"]


def load_bench():
    """Return the ``(bench.reservoir, bench.common)`` modules (imported lazily: the bench pulls in more)."""
    return importlib.import_module("bench.reservoir"), importlib.import_module("bench.common")


def bench_reservoir(
    json_out: bool = typer.Option(False, "--json", help="Print only one JSON document on stdout."),
    quick: bool = typer.Option(False, "--quick", help="Fewer pushes and queries (a few seconds instead of about ten)."),
) -> None:
    """Push rates (single, typed, batched) and O(1) query latency at 1k/10k/100k samples vs a filtered scan."""
    bench, common = load_bench()
    records = bench.run(quick, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    if json_out:
        doc = {"bench": "reservoir", "machine": common.machine_info(), "results": records}
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        print(bench.format_table(records))
