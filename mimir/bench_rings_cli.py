"""``mimir bench rings [--quick] [--json]``: the shared-memory ring against its peers (typer command function).

Wire it with ``bench_app.command("rings")(bench_rings)``. The benchmark body is
``bench/rings.py`` in the repository (``bench/`` is not an installed package, so
it is imported from the checkout this module lives in).

Progress always goes to stderr. Without ``--json`` stdout gets a table and the
goal verdicts; with ``--json`` stdout holds exactly one JSON document
``{"bench": "rings", "machine": {...}, "results": [...], "goals": [...]}``.
The exit status is 1 when a transport failed to deliver every item it sent
(a correctness failure); goals missed on a busy machine do not change it.
"""

from __future__ import annotations

import importlib
import json
import math
import sys

import typer

__all__ = ["bench_rings", "load_bench"]

def load_bench():
    """Return the ``(bench.rings, bench.common)`` modules (imported lazily: the bench pulls in its peers)."""
    return importlib.import_module("bench.rings"), importlib.import_module("bench.common")


def _finite(value):
    """JSON has no NaN or infinity: map them to null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def bench_rings(
    quick: bool = typer.Option(False, "--quick", help="Fewer items and latency samples; under a minute."),
    json_out: bool = typer.Option(False, "--json", help="Print only one JSON document on stdout."),
) -> None:
    """Throughput, 1 kHz latency and reader CPU of the ring vs multiprocessing Queue/Pipe, faster-fifo, iceoryx2."""
    rings, common = load_bench()
    records = rings.run(quick, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    doc = _finite(rings.document(records, common.machine_info()))
    if json_out:
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        print(rings.format_table(doc))
    if any(r.get("complete") is False for r in doc["results"]):
        raise typer.Exit(1)
