"""`mimir snapshot` of a live rig (real supervisor and workers), read back with PyAV, soundfile and pyxdf."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import numpy as np
import pytest
import pyxdf
import soundfile
import typer
from typer.testing import CliRunner

from mimir.consumer import RigConsumer
from mimir.descriptors import PixelFormat, SampleKind
from mimir.snapshot import take_snapshot
from mimir.snapshot.cli import snapshot
from mimir.supervisor.clock import SegmentReason
from mimir.supervisor.clock_board import read_clock
from mimir.supervisor.status import read_status
from mimir.take import CameraSource, open_take, read_manifest
from ringbuf import remove_stale
from ringbuf.segment import list_segments
from workers.camera.family import CameraMode
from workers.camera.synthetic import verify_frame

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
MODE = CameraMode(160, 120, 30.0, PixelFormat.YUYV)
WINDOW_S = 2.0
CAMERA = int(SampleKind.CAMERA_FRAME)
AUDIO = int(SampleKind.AUDIO_BLOCK)
CAMERAS = ("cam.synthetic.0", "cam.synthetic.1")


def locked(rig: str) -> bool:
    return any(row["name"] == "audio" and row["clock_locked"] for row in read_status(rig).sources)


@pytest.fixture(scope="module")
def live_rig(tmp_path_factory):
    """Two 160x120 YUYV cameras at 30 fps and 2-channel audio, a 2 s window; yields once frames flow (unlocked)."""
    rig = f"t{os.getpid()}ns"  # carries the session tag: the session leak check covers it
    config = tmp_path_factory.mktemp("snapshot") / "rig.toml"
    config.write_text(f'''
rig = "{rig}"
[reservoir]
window_s = {WINDOW_S}
[audio]
backend = "synthetic"
channels = 2
[[cameras]]
family = "synthetic"
count = 2
width = {MODE.width}
height = {MODE.height}
fps = {MODE.fps}
''')
    sup = subprocess.Popen([str(BIN / "mimir-supervisor"), "start", "--config", str(config)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    ready = False
    while not ready and time.monotonic() < deadline and sup.poll() is None:
        try:
            with RigConsumer.attach(rig) as consumer:
                ready = consumer.view.view_count(CAMERA) > 10 and consumer.view.view_count(AUDIO) > 100
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    if not ready:
        sup.send_signal(signal.SIGTERM)
        _, err = sup.communicate(timeout=60)
        pytest.fail(f"the rig did not come up (supervisor exit {sup.returncode}):\n{err[-3000:]}")
    yield rig
    sup.send_signal(signal.SIGTERM)
    sup.communicate(timeout=60)
    assert not list_segments(rig), f"the rig left shared memory behind: {list_segments(rig)}"


@pytest.fixture(scope="module")
def settled_rig(live_rig):
    """The same rig once its clock has locked and the lock's step has left the window."""
    deadline = time.monotonic() + 60
    while not locked(live_rig):
        assert time.monotonic() < deadline, "the rig's clock did not lock to the witness within 60 s"
        time.sleep(0.1)
    time.sleep(WINDOW_S + 0.5)
    return live_rig


def reservoir_pairs(rig: str) -> tuple[dict, dict]:
    """What the reservoir indexed now: {(camera hash, ring sequence): canonical}, {start_sample: canonical}."""
    with RigConsumer.attach(rig) as consumer:
        rows, descs = consumer.view.typed_snapshot(CAMERA)
        frames = {(int(r["sensor_id_hash"]), int(d["sequence"])): int(r["timestamp_ns"]) for r, d in
                  zip(rows, descs, strict=True)}
        rows, descs = consumer.view.typed_snapshot(AUDIO)
        blocks = {int(d["start_sample"]): int(r["timestamp_ns"]) for r, d in zip(rows, descs, strict=True)}
    return frames, blocks


# ---- the clock lock: runs first, while the rig is young --------------------------------------------------------------
def test_a_clock_step_inside_the_span_is_written_as_a_new_segment(live_rig, tmp_path):
    """Snapshot right after the first lock: the rig's segments (read_clock) are the take's, step included."""
    deadline = time.monotonic() + 60
    while not locked(live_rig):
        assert time.monotonic() < deadline, "the rig's clock did not lock to the witness within 60 s"
        time.sleep(0.05)
    time.sleep(0.3)  # a few post-lock items indexed: the lock is inside the span
    result = take_snapshot(live_rig, None, tmp_path / "take")
    clock = read_clock(live_rig)
    rig_segments = {s.index: s for s in clock.segments}
    lock = next(s for s in clock.segments if s.reason == SegmentReason.LOCK)
    m = result.manifest
    take = open_take(result.path)
    streams = take.xdf()
    for record in m.sources:
        name = record.source.name
        segments = record.clock_segments
        assert [s.index for s in segments] == [lock.index - 1, lock.index], (name, segments)
        assert [s.state for s in segments] == ["provisional", "locked"]
        assert segments[0].step_ns is None and segments[1].step_ns == rig_segments[lock.index].step_ns
        assert segments[1].witness and "mimir-default" in segments[1].witness
        if clock.segment == lock.index:  # still the segment in effect: it carries the rig's fit
            assert segments[1].rate_hz > 0 and segments[1].confidence is not None
        # A new file and a new XDF stream per segment; the step is kept, never smoothed.
        mine = sorted((s for s in streams if s["info"]["name"][0] == name), key=lambda s: s["time_stamps"][0])
        assert len(mine) == 2
        assert [s["info"]["desc"][0]["clock"][0]["state"][0] for s in mine] == ["provisional", "locked"]
        if isinstance(record.source, CameraSource):
            frames = take.frames(name)
            assert len(set(frames.file.tolist())) == 2
            both = np.concatenate([s["time_stamps"] for s in mine])
            assert np.abs(both - frames.canonical_ns / 1e9).max() < 1e-6
            if abs(lock.step_ns) > 10_000_000:  # the step shows in the frames' times against their own clock
                b = int(np.flatnonzero(np.diff(frames.file))[0]) + 1
                jump = int(frames.canonical_ns[b] - frames.canonical_ns[b - 1])
                device = int(frames.device_time_ns[b] - frames.device_time_ns[b - 1])
                assert abs(jump - device - lock.step_ns) < 5_000_000


# ---- a settled rig ---------------------------------------------------------------------------------------------------
def test_a_snapshot_reads_back_exactly_with_pyav_soundfile_and_pyxdf(settled_rig, tmp_path):
    before = reservoir_pairs(settled_rig)
    notes: list[str] = []
    result = take_snapshot(settled_rig, 1.5, tmp_path / "take", progress=notes.append)
    after = reservoir_pairs(settled_rig)
    assert notes[-1].startswith("snapshot: all ") and notes[-1].endswith(" handled, 0 lost"), notes  # never short
    indexed = ({**before[0], **after[0]}, {**before[1], **after[1]})
    m = result.manifest
    assert m.complete and m.missing == [] and result.lost == {name: 0 for name in (*CAMERAS, "audio")}, \
        (m.missing, result.lost)
    t0, t1 = result.span_ns
    assert t1 - t0 == 1_500_000_000
    take = open_take(result.path)
    with RigConsumer.attach(settled_rig) as consumer:
        hashes = {name: consumer.plan.source(name).source_hash for name in CAMERAS}
        (xdf,) = m.files_of(None, "xdf")
        streams, _ = pyxdf.load_xdf(str(result.path / xdf.path), dejitter_timestamps=False)
        for name in CAMERAS:
            frames = take.frames(name)  # decoded with PyAV
            n = len(frames.sequence)
            assert 1.5 * MODE.fps - 2 <= n <= 1.5 * MODE.fps + 2 and m.source(name).written == n
            assert (np.diff(frames.sequence) == 1).all()  # every frame of the span, none twice
            for i in range(n):  # pixels bit-exact: every byte checked against the stamp the camera wrote
                assert verify_frame(frames.pixels[i], MODE)[1] == frames.device_time_ns[i]
                assert indexed[0][(hashes[name], int(frames.sequence[i]))] == frames.canonical_ns[i]
            assert t0 <= frames.canonical_ns[0] and frames.canonical_ns[-1] <= t1
            (stream,) = [s for s in streams if s["info"]["name"][0] == name]
            assert np.array_equal(stream["time_series"][:, 2], frames.sequence)
            assert np.abs(stream["time_stamps"] - frames.canonical_ns / 1e9).max() < 1e-6
            reservoir_s = np.array([indexed[0][(hashes[name], int(q))] for q in stream["time_series"][:, 2]]) / 1e9
            assert np.abs(stream["time_stamps"] - reservoir_s).max() < 1e-6  # pyxdf vs the reservoir: within 1 us
            with av.open(str(result.path / m.files_of(name, "video")[0].path)) as container:  # any FFmpeg tool
                assert sum(1 for _ in container.decode(video=0)) == n
        (run,) = take.audio("audio")
        wav, rate = soundfile.read(run.path, dtype="float32", always_2d=True)
        assert rate == 48_000 and np.array_equal(wav, run.samples)
        blocks = run.blocks
        assert (np.diff(blocks["start_sample"]) == blocks["frames"][:-1]).all()  # contiguous
        assert len(blocks["block"]) >= 1.5 * 750 - 2
        for k in range(len(blocks["block"])):
            assert indexed[1][int(blocks["start_sample"][k])] == blocks["canonical_ns"][k]
        # Samples equal to the ring's: the blocks still in the ring now, checked one by one.
        rows, descs = consumer.view.typed_snapshot(AUDIO)
        by_start = {int(d["start_sample"]): d for d in descs}
        checked = 0
        for k in range(len(blocks["block"])):
            d = by_start.get(int(blocks["start_sample"][k]))
            if d is None:
                continue
            payload = consumer.resolver.payload(int(d["data_handle"]))[: int(d["frame_count"])].copy()
            if consumer.resolver.valid(int(d["data_handle"])):
                first = int(blocks["first_sample"][k])
                assert np.array_equal(wav[first:first + len(payload)], payload)
                checked += 1
        assert checked >= 200
        (stream,) = [s for s in streams if s["info"]["name"][0] == "audio"]
        assert np.array_equal(stream["time_series"], wav)
        firsts = blocks["first_sample"]
        reservoir_s = np.array([indexed[1][int(q)] for q in blocks["start_sample"]]) / 1e9
        assert np.abs(stream["time_stamps"][firsts] - reservoir_s).max() < 1e-6


def test_the_command_prints_json_and_ffv1_is_lossless(settled_rig, tmp_path):
    out = tmp_path / "take"
    done = subprocess.run(
        [sys.executable, "-c", "import typer; from mimir.snapshot.cli import snapshot; typer.run(snapshot)",
         "--rig", settled_rig, "--seconds", "0.5", "--out", str(out), "--video", "ffv1", "--json"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["complete"] and doc["path"] == str(out) and doc["lost"] == {n: 0 for n in (*CAMERAS, "audio")}, doc
    for name in CAMERAS:
        frames = open_take(out).frames(name)
        assert doc["written"][name] == len(frames.sequence) >= 13
        for i in range(len(frames.sequence)):
            assert verify_frame(frames.pixels[i], MODE)[1] == frames.device_time_ns[i]


def cli(*args: str):
    app = typer.Typer()
    app.command()(snapshot)
    return CliRunner().invoke(app, list(args))


def one_line_exit_2(done, *needles: str) -> None:
    assert done.exit_code == 2, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.output, done.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_input_is_one_line_and_exit_2(settled_rig, tmp_path):
    one_line_exit_2(cli("--rig", settled_rig, "--seconds", "2.5", "--out", str(tmp_path / "a")),
                    "--seconds 2.5", "keeps 2 s", "reservoir.window_s")
    one_line_exit_2(cli("--rig", settled_rig, "--seconds", "0", "--out", str(tmp_path / "a")), "0 < N <= 2")
    one_line_exit_2(cli("--rig", "nosuchrig", "--out", str(tmp_path / "a")), "rig 'nosuchrig' is not running")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    one_line_exit_2(cli("--rig", settled_rig, "--out", str(full)), "exists and is not an empty folder")
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    one_line_exit_2(cli("--rig", settled_rig, "--out", str(tmp_path / "a"), "--video", "mpeg2"),
                    "--video 'mpeg2'", "ffv1, raw, h264")
    assert not (tmp_path / "a").exists()  # nothing was created for a refused request


def test_a_stopped_rig_is_refused(rig, tmp_path):
    """Shared memory left by a SIGKILLed supervisor: the plan and the reservoir are there, their writer is not."""
    script = textwrap.dedent(f"""
        import time
        from mimir.config import RigConfig
        from mimir.contract import publish_plan
        from mimir.reservoir import Reservoir
        from mimir.topology import RESERVOIR, plan_rig
        plan = plan_rig(RigConfig(rig="{rig}"))
        publish_plan(plan)
        Reservoir.create("{rig}", name=RESERVOIR, capacity=1024)
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.kill()
        proc.wait()
        one_line_exit_2(cli("--rig", rig, "--out", str(tmp_path / "a")), f"rig '{rig}' is not running",
                        f"(pid {proc.pid}) is gone", "mimir doctor --clean")
    finally:
        proc.kill()
        remove_stale(rig)


@pytest.fixture
def small_disk(tmpfs):
    return tmpfs("2m")


def test_a_full_disk_leaves_a_readable_incomplete_take_and_the_rig_running(settled_rig, small_disk):
    before = {s["name"]: s for s in read_status(settled_rig).sources}
    out = small_disk / "take"
    done = cli("--rig", settled_rig, "--out", str(out))  # 2 s of two cameras is 4.6 MB: more than the 2 MiB disk
    assert done.exit_code == 1, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and "disk full writing" in lines[0] and "marked incomplete" in lines[0]
    assert "the rig was not affected" in lines[0]
    manifest = read_manifest(out)
    assert manifest.complete is False and any("disk full" in x.cause for x in manifest.missing)
    take = open_take(out)
    for name in CAMERAS:
        frames = take.frames(name)  # readable up to the last whole frame
        assert manifest.source(name).written == len(frames.sequence)
        for i in range(len(frames.sequence)):
            assert verify_frame(frames.pixels[i], MODE)[1] == frames.device_time_ns[i]
    time.sleep(0.5)
    status = read_status(settled_rig)
    assert status.supervisor_alive and all(w["state"] == 1 for w in status.workers)  # all still running
    for s in status.sources:
        if s["name"] in (*CAMERAS, "audio"):
            assert s["lost_overrun"] == before[s["name"]]["lost_overrun"]
            assert s["indexed"] > before[s["name"]]["indexed"]  # capture went on
