"""Bad input exits non-zero with a clear message, from a real worker process; the bench's JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from bench.cli import load
from workers.camera import cli


def _run(*args: str, rig: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers.camera", *args, "--rig", rig],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "expected"), [
    (["--family", "gopro"], ["unknown camera family 'gopro'", "families: file, ks, ps3eye, synthetic"]),
    (["--family", "ks", "--device", "/dev/video9"], ["no device '/dev/video9'", "devices found: none", "V4L2"]),
    (["--family", "file", "--file", "/nonexistent/clip.mp4"], ["no device '/nonexistent/clip.mp4'", "devices found"]),
    (["--family", "synthetic", "--format", "MJPG"], ["format MJPG not supported", "supported modes"]),
    (["--family", "synthetic", "--width", "8", "--height", "8"], ["too small for the 192-bit stamp"]),
    (["--family", "synthetic", "--count", "2", "--device", "0", "--device", "north"],
     ["no device 'north'", "[0] 0 (synthetic pattern 0)"]),
    (["--family", "synthetic", "--count", "2", "--device", "0"], ["2 cameras but 1 --device/--file given"]),
], ids=["unknown-family", "ks-missing-device", "file-missing", "unsupported-format", "unsupported-size",
        "synthetic-missing-device", "one-device-per-camera"])
def test_bad_input_exits_2_with_a_clear_message(rig, args, expected):
    done = _run(*args, rig=rig)
    assert done.returncode == 2, done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_file_in_an_unsupported_mode_lists_the_files_mode(rig, cam_video):
    path, _, _ = cam_video
    done = _run("--family", "file", "--file", str(path), "--width", "320", "--height", "240", rig=rig)
    assert done.returncode == 2
    assert "supported modes: 160x120 BGR3 @ 50 fps" in done.stderr


def test_ps3eye_without_a_camera_plugged_in_fails_clearly(rig):
    # This machine has no USB bus: discovery through the real libusb backend finds nothing.
    done = _run("--family", "ps3eye", rig=rig)
    assert done.returncode == 2
    assert "ps3eye: no devices found" in done.stderr


def test_bad_format_name_is_a_usage_error():
    app = typer.Typer()
    app.command()(cli.camera_worker)
    result = CliRunner().invoke(app, ["--family", "synthetic", "--format", "NV12"])
    assert result.exit_code == 2
    assert "NV12" in result.output


def test_bench_json_stdout_holds_only_the_document(monkeypatch, capsys):
    cameras = load("cameras")

    def fake_run(*, duration_s, progress):
        print("progress chatter", flush=True)  # must not reach stdout
        return [{"name": "synthetic_worker", "delivered_fps_mean": 60.0}]

    monkeypatch.setattr(cameras, "run", fake_run)
    assert cameras.main(json_out=True, duration_s=1.0) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert set(doc) == {"bench", "machine", "results"} and doc["bench"] == "cameras"
    assert doc["results"] == [{"name": "synthetic_worker", "delivered_fps_mean": 60.0}]
    assert "cpu_model" in doc["machine"]
    assert "progress chatter" in err


def test_bench_synthetic_part_measures_a_small_worker():
    cameras = load("cameras")
    records = cameras.run_synthetic(cameras=1, width=64, height=48, fps=100.0, duration_s=1.0, warmup_s=0.5)
    summary = records[0]
    assert summary["name"] == "synthetic_worker" and summary["cameras"] == 1
    assert 80 < summary["delivered_fps_mean"] < 120
    for key in ("worker_cpu_us_per_frame", "copy_us_per_frame_in_worker", "memcpy_us_per_frame_paced",
                "memcpy_us_per_frame_back_to_back"):
        assert summary[key] is not None and summary[key] > 0, key
    assert all(not isinstance(v, (dict, list)) for r in records for v in r.values())  # flat records
