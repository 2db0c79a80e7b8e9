"""`mimir bench pipeline`: command wrapper around :mod:`bench.pipeline`."""

from __future__ import annotations

import json
import sys

import typer


def bench_pipeline(
    seconds: float = typer.Option(60.0, "--seconds", min=1.0, help="Measured seconds (after a 5 s warm-up)."),
    json_out: bool = typer.Option(False, "--json", help="Print only one JSON document on stdout."),
) -> None:
    """Six VGA@60 cameras + 192 kHz 8-channel audio under the supervisor: loss, supervisor CPU, index latency."""
    from bench import pipeline
    from bench.common import machine_info

    records = pipeline.run(seconds)
    if json_out:
        sys.stdout.write(json.dumps({"bench": "pipeline", "machine": machine_info(), "results": records}) + "\n")
        return
    summary, *sources = records
    for key, value in summary.items():
        print(f"{key:32s} {value}")
    print()
    print(f"{'source':20s} {'configured/s':>13s} {'delivered/s':>12s} {'ratio':>7s} {'overrun':>8s} {'gap':>5s}")
    for r in sources:
        print(f"{r['source']:20s} {r['configured_hz']:>13.1f} {r['delivered_hz']:>12.2f} {r['delivered_ratio']:>7.4f} "
              f"{r['lost_overrun']:>8d} {r['lost_restart_gap']:>5d}")
