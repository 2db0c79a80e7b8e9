"""`mimir bench take`: the harness in its quick configuration (two small cameras, half a second).

Checks the records' shape and that every frame reached the take (the bench
asserts the writer's count itself). No speed is asserted: the bench judges
its figures as ratios measured in one run.
"""

from __future__ import annotations

import dataclasses
import json

import typer
from typer.testing import CliRunner

from bench.cli import bench_take, load

take_bench = load("take")

KEYS = {"encoding", "lossless", "frames", "raw_mb", "file_mb", "size_ratio", "take_wall_s", "plain_wall_s",
        "wall_ratio_vs_plain", "per_frame_us", "plain_per_frame_us", "take_fps", "needed_fps", "realtime_factor",
        "keeps_up", "cpu_s", "cpu_per_frame_us", "cpu_cores_used", "small_frame_us", "small_frame_plain_us"}


def test_quick_run_reports_every_encoding(tmp_path):
    records = take_bench.run(dataclasses.replace(take_bench.QUICK, directory=str(tmp_path)))
    assert [r["encoding"] for r in records] == ["raw", "ffv1", "h264"]
    for r in records:
        assert KEYS <= set(r)
        assert r["frames"] == 2 * 30 and r["lossless"] == (r["encoding"] != "h264")
        assert r["take_wall_s"] > 0 and r["plain_wall_s"] > 0
    assert list(tmp_path.iterdir()) == []  # the bench cleans up after itself
    assert "keeps up" in take_bench.format_table(records)


def test_cli_json_document_and_bad_input(tmp_path):
    app = typer.Typer()
    app.command()(bench_take)
    out = CliRunner().invoke(app, ["--quick", "--json", "--dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["bench"] == "take" and len(doc["results"]) == 3 and doc["config"]["cameras"] == 2
    bad = CliRunner().invoke(app, ["--seconds", "0"])
    assert bad.exit_code == 2 and "--seconds must be > 0" in bad.output
    bad = CliRunner().invoke(app, ["--dir", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "no such folder" in bad.output
