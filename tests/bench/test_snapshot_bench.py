"""`mimir bench snapshot --shape small`: the harness end to end on a small live rig; bad input exits 2.

No speed is asserted (the bench reports its figures as ratios measured in
one run); what is checked is that the snapshot it measures is complete and
that the capture counters are read.
"""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from bench.cli import bench_snapshot

pytestmark = pytest.mark.slow


def app() -> typer.Typer:
    a = typer.Typer()
    a.command()(bench_snapshot)
    return a


def test_small_run_prints_one_document(tmp_path):
    out = CliRunner().invoke(app(), ["--shape", "small", "--seconds", "1", "--dir", str(tmp_path), "--json"])
    assert out.exit_code == 0, out.output
    (record,) = json.loads(out.stdout.strip().splitlines()[-1])["results"]
    assert record["complete"] and record["lost_by_snapshot"] == 0, record["missing"]
    # 1 s: 30 frames a camera, 750 blocks of 64 frames at 48 kHz (the span's end is waited for, never short)
    assert record["written"]["cam.synthetic.0"] >= 29 and record["written"]["audio"] >= 749, record["written"]
    assert record["plain_write_s"] > 0 and record["snapshot_wall_s"] > 0 and record["wall_ratio_vs_plain"] > 0
    for key in ("lost_overrun", "camera_dropped", "audio_deadline_misses", "audio_xruns"):
        assert key in record["during"] and key in record["quiet"]
    assert list(tmp_path.iterdir()) == []  # the bench cleans up after itself


@pytest.mark.parametrize("args", [["--seconds", "6"], ["--video", "mpeg2"], ["--shape", "huge"],
                                  ["--dir", "/nonexistent/folder"]])
def test_bad_input_exits_2(args):
    out = CliRunner().invoke(app(), args)
    assert out.exit_code == 2 and "mimir bench snapshot:" in out.output
