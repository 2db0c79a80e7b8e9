"""``mimir bench gpu``: one line and exit 2 without a device; goal verdicts and the report; the run on a device."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ringbuf.segment import list_segments

_RUN_COMMAND = "import typer; from bench.cli import bench_gpu; app = typer.Typer(); app.command()(bench_gpu); app()"


@pytest.mark.parametrize("args", [[], ["--json"]])
def test_without_a_cuda_device_it_says_so_in_one_line_and_exits_2(args):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # hides every device where there is one
    result = subprocess.run([sys.executable, "-c", _RUN_COMMAND, *args], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mimir bench gpu: no CUDA device: "), result.stderr


def _records(torn_handed_out: int = 0, ring_gbps: float = 45.0) -> list[dict]:
    """Inputs shaped as bench.gpu's records (the figures are issue 18's, used only as inputs)."""
    recs = []
    for frame, pinned, pageable in (("vga_yuyv", 45.0, 12.4), ("1080p_rgb", 54.0, 13.0)):
        for source, gbps in (("ring_registered", ring_gbps), ("pageable", pageable), ("malloc_host", pinned)):
            recs.append({"metric": "h2d", "frame": frame, "source": source, "frame_bytes": 614_400, "frames": 300,
                         "gbps": gbps, "p50_us": 25.0, "p99_us": 40.0, "bytes_equal": True, "torn_dropped": 0})
    recs.append({"metric": "six_cameras", "frame": "vga_yuyv", "source": "ring_registered", "batch_bytes": 3_686_400,
                 "batches": 100, "gbps": 50.0, "p50_us": 80.0, "p99_us": 120.0, "torn_dropped": 0})
    recs.append({"metric": "convert", "format": "YUYV", "frame": "640x480", "iterations": 50, "gpu_us_per_frame": 6.3,
                 "opencv_cpu_us_per_frame_p50": 300.0, "cpu_over_gpu": 47.6, "equal_to_opencv": True,
                 "opencv_threads": 16})
    recs.append({"metric": "torn", "frame": "vga_yuyv", "duration_s": 2.0, "writer_frames": 9000, "attempts": 5000,
                 "handed_out": 4400, "verified_intact": 4400 - torn_handed_out, "torn_dropped": 600,
                 "stale_before_copy": 0, "stale_views": 3, "torn_handed_out": torn_handed_out, "registered": True,
                 "fallback_reason": None})
    recs.append({"metric": "publish_to_rgb", "frame": "vga_yuyv", "cameras": 6, "fps": 60.0, "duration_s": 2.0,
                 "frames": 720, "writer_frames": 720, "reader_lost": 0, "torn_dropped": 0, "p50_us": 90.0,
                 "p99_us": 400.0, "max_us": 900.0})
    return recs


def test_goals_are_ratios_against_peers_of_the_same_run():
    from bench.gpu import correctness_failed, document, format_table

    doc = document(_records(), {"gpu": "test input", "cpu_model": "x"})
    verdicts = {g["goal"]: g["pass"] for g in doc["goals"]}
    assert verdicts == {
        "registered_vs_malloc_host_vga_yuyv": True, "registered_vs_pageable_vga_yuyv": True,
        "registered_vs_malloc_host_1080p_rgb": False,  # 45 / 54 = 0.83 < 0.9
        "registered_vs_pageable_1080p_rgb": True, "publish_to_rgb_p99": True,
        "zero_torn_handed_out": True, "bytes_equal": True,
    }
    ratio = {g["goal"]: g["ratio"] for g in doc["goals"]}
    assert ratio["registered_vs_pageable_vga_yuyv"] == pytest.approx(45.0 / 12.4)
    assert not correctness_failed(doc)
    json.dumps(doc, allow_nan=False)
    report = format_table(doc)
    assert "h2d vga_yuyv ring_registered" in report and "[MISS] registered_vs_malloc_host_1080p_rgb" in report
    assert "torn handed out: 0" in report and "p99 400.0 us" in report


def test_a_torn_frame_handed_out_is_a_correctness_failure():
    from bench.gpu import correctness_failed, document

    doc = document(_records(torn_handed_out=1), {})
    assert correctness_failed(doc)
    assert {g["goal"]: g["pass"] for g in doc["goals"]}["zero_torn_handed_out"] is False


@pytest.mark.slow
def test_quick_run_on_a_device(cupy_device):
    from bench.gpu import RIG, correctness_failed, document, run

    records, info = run(True)
    doc = document(records, info)
    assert not correctness_failed(doc), [g for g in doc["goals"] if g["pass"] is False]
    torn = next(r for r in records if r["metric"] == "torn")
    assert torn["handed_out"] > 0 and torn["torn_handed_out"] == 0
    assert list_segments(RIG) == []
