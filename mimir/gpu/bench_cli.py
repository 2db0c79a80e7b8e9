"""``mimir bench gpu [--quick] [--json]``: ring frames into GPU memory (typer command function).

Wire it with ``bench_app.command("gpu")(bench_gpu)``. The benchmark body is
``bench/gpu.py`` (imported lazily). Where CuPy or a CUDA device is missing,
or /dev/shm cannot hold the bench's rings, it prints one line to stderr and
exits 2. Progress goes to stderr; without
``--json`` stdout gets a report and the goal verdicts, with ``--json`` exactly
one JSON document ``{"bench": "gpu", "machine": {...}, "results": [...],
"goals": [...]}``. Exit 1 when a torn frame was handed out or a copy or
conversion differed from its reference (correctness); missed speed goals do
not change the exit status.
"""

from __future__ import annotations

import importlib
import json
import sys

import typer

from .device import cuda_unavailable_reason

__all__ = ["bench_gpu"]


def bench_gpu(
    quick: bool = typer.Option(False, "--quick", help="Fewer frames and shorter live phases (about a minute)."),
    json_out: bool = typer.Option(False, "--json", help="Print only one JSON document on stdout."),
) -> None:
    """H2D GB/s and latency from a registered ring arena vs pageable vs cudaMallocHost, GPU RGB conversion, torn frames."""
    reason = cuda_unavailable_reason()
    if reason is not None:
        print(f"mimir bench gpu: no CUDA device: {reason}", file=sys.stderr)
        raise typer.Exit(2)
    gpu = importlib.import_module("bench.gpu")
    common = importlib.import_module("bench.common")
    try:
        records, info = gpu.run(quick, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    except gpu.BenchUnavailable as exc:
        print(f"mimir bench gpu: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    doc = gpu.document(records, {**common.machine_info(), **info})  # every figure is finite or None
    if json_out:
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        print(gpu.format_table(doc))
    if gpu.correctness_failed(doc):
        raise typer.Exit(1)
