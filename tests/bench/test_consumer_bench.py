"""`mimir bench consumer --quick --json`: one JSON document, both parts, the searches agree with the scan.

No speed is asserted: the bench reports ratios measured in one run.
"""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from bench.cli import bench_consumer, load
from ringbuf.segment import list_segments


def test_quick_json_run_reports_reads_and_the_first_lap():
    app = typer.Typer()
    app.command()(bench_consumer)
    out = CliRunner().invoke(app, ["--quick", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["bench"] == "consumer" and "cpu_model" in doc["machine"]
    laps = [r for r in doc["results"] if r["part"] == "first_lap"]
    assert [r["prefault"] for r in laps] == [False, True]
    assert all(r["first_lap_us_median"] > 0 and r["first_lap_over_steady"] > 0 for r in laps)
    reads = {(r["metric"], r.get("window_samples")) for r in doc["results"] if "us_per_read" in r}
    for metric in ("frame_at", "frames_100ms", "audio_20ms", "moment", "frame_at_by_scan"):
        assert {(metric, 1_000), (metric, 100_000)} <= reads
    ratios = [r for r in doc["results"] if r.get("summary") == "ratio_100k_over_1k"]
    assert len(ratios) == 5 and all(r["ratio_100k_over_1k"] > 0 for r in ratios)
    bench = load("consumer")
    for rig in (bench.RIG, *(f"{bench.RIG}w{n // 1000}" for n in bench.SIZES)):
        assert list_segments(rig) == []
