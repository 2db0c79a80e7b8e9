"""`mimir bench record --workload small`: the harness end to end on a small live rig; bad input exits 2.

No speed is asserted (the bench reports its figures as ratios measured in
one run); what is checked is the accounting it reports (written + skipped =
published, per source), that the capture counters are read, and that it
cleans up.
"""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from bench.cli import bench_record

pytestmark = pytest.mark.slow


def app() -> typer.Typer:
    a = typer.Typer()
    a.command()(bench_record)
    return a


def test_small_run_prints_one_document(tmp_path):
    out = CliRunner().invoke(app(), ["--workload", "small", "--seconds", "1.5", "--video", "raw", "--dir",
                                     str(tmp_path), "--json"])
    assert out.exit_code == 0, out.output
    (record,) = json.loads(out.stdout.strip().splitlines()[-1])["results"]
    assert record["workload"] == "small" and record["video"] == "raw"
    for name, published in record["published"].items():
        assert record["written"][name] + record["skipped"][name] == published > 0
    assert record["written"]["cam.synthetic.0"] >= 30 and record["written"]["audio"] >= 700
    assert record["plain_write_s"] > 0 and record["take_mb_per_s"] > 0 and record["take_vs_plain"] > 0
    assert 0 < record["recorder_cpu_pct"] and record["load_avg_1min"] >= 0
    for key in ("lost_overrun", "camera_dropped", "audio_deadline_misses", "audio_xruns"):
        assert key in record["during"] and key in record["quiet"]
    assert set(record["goals"]) >= {"capture_lost_nothing", "zero_skipped_audio"}
    assert list(tmp_path.iterdir()) == []  # the bench cleans up after itself


@pytest.mark.parametrize("args", [["--seconds", "0"], ["--video", "mpeg2"], ["--workload", "huge"],
                                  ["--dir", "/nonexistent/folder"]])
def test_bad_input_exits_2(args):
    out = CliRunner().invoke(app(), args)
    assert out.exit_code == 2 and "mimir bench record:" in out.output
