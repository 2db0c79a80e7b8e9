"""``mimir bench take [--seconds N] [--dir DIR] [--quick] [--json]``.

A typer command function; wire it as ``bench_app.command("take")(bench_take)``.

The benchmark body is ``bench/take.py`` in the repository (imported from
the checkout, like the other benches). Progress goes to stderr; stdout gets
a table, or exactly one JSON document ``{"bench": "take", "machine": {...},
"config": {...}, "results": [...]}`` with ``--json``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys

import typer

__all__ = ["bench_take", "load_bench"]


def load_bench():
    """Return the ``(bench.take, bench.common)`` modules."""
    return importlib.import_module("bench.take"), importlib.import_module("bench.common")


def bench_take(
    seconds: float = typer.Option(5.0, "--seconds", help="Seconds of media per encoding (six VGA cameras at 60 fps)."),
    directory: str = typer.Option(None, "--dir", help="Folder on the disk to measure (default: the temp folder)."),
    quick: bool = typer.Option(False, "--quick", help="Two small cameras for half a second (a smoke run)."),
    json_out: bool = typer.Option(False, "--json", help="Print only one JSON document on stdout."),
) -> None:
    """Take writer per video encoding (raw, ffv1, h264) against a plain write of the same bytes: keeps up or not."""
    bench, common = load_bench()
    if not seconds > 0:
        typer.echo(f"--seconds must be > 0, got {seconds}", err=True)
        raise typer.Exit(2)
    if directory is not None and not os.path.isdir(directory):
        typer.echo(f"--dir {directory}: no such folder", err=True)
        raise typer.Exit(2)
    base = bench.QUICK if quick else dataclasses.replace(bench.Config(), seconds=seconds)
    cfg = dataclasses.replace(base, directory=directory)
    records = bench.run(cfg, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    if json_out:
        doc = {"bench": "take", "machine": common.machine_info(), "config": dataclasses.asdict(cfg), "results": records}
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        print(bench.format_table(records))
