"""`mimir record` of live rigs (real supervisor and workers), read back with PyAV, soundfile and pyxdf.

Two rigs, each two 160x120 YUYV cameras at 30 fps and 2-channel audio:

* ``whole_life``: recorded from its first frame (``--from-start``, as a
  supervisor-started recorder does) until the rig stops, with
  ``--split-seconds 0.25`` (about 40 boundaries) and its camera worker
  SIGKILLed and restarted in the middle. The supervisor's own final status
  (``--final-status``) says what each source published; a walker in this
  process copies what the reservoir indexed (canonical times, audio
  payloads) while it runs. Every published item must be in the files,
  bit-exact and at its canonical time, or counted with its cause: the two
  add up to what was published, exactly.
* ``live_rig``: a running rig for SIGTERM, kill -9 and repair, a full disk,
  and bad input.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
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
from mimir.record.cli import record
from mimir.record.ledger import CAUSE_TEXT, Cause
from mimir.record.status import read_recorders, recorder_lines
from mimir.supervisor.status import read_status
from mimir.topology import source_hash
from mimir.take import open_take, read_manifest
from ringbuf.segment import list_segments
from workers.camera.family import CameraMode
from workers.camera.synthetic import verify_frame

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
MODE = CameraMode(160, 120, 30.0, PixelFormat.YUYV)
CAMERA = int(SampleKind.CAMERA_FRAME)
AUDIO = int(SampleKind.AUDIO_BLOCK)
CAMERAS = ("cam.synthetic.0", "cam.synthetic.1")
SOURCES = (*CAMERAS, "audio")
SPLIT_S = 0.25


def rig_config(path: Path, rig: str, window_s: float) -> Path:
    path.write_text(f'''
rig = "{rig}"
[reservoir]
window_s = {window_s}
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
    return path


def start_rig(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "mimir-supervisor"), "start", "--config", str(config), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_rig(sup: subprocess.Popen, rig: str | None) -> None:
    """Stop the supervisor; then (``rig`` given) nothing of the rig may be left in shared memory."""
    if sup.poll() is None:
        sup.send_signal(signal.SIGTERM)
    try:
        sup.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        sup.kill()
        sup.communicate()
    if rig is not None:
        assert not list_segments(rig), f"the rig left shared memory behind: {list_segments(rig)}"


def wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process exited ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.05)


def record_process(*args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "mimir"), "record", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


class Walker(threading.Thread):
    """Copies what the reservoir indexes, every 0.3 s (the window is longer): canonical times, audio payloads."""

    def __init__(self, rig: str) -> None:
        super().__init__(daemon=True)
        self.rig = rig
        self.frames: dict[tuple[int, int, int], int] = {}   # (source hash, sequence, host time) -> canonical
        self.blocks: dict[int, tuple[int, np.ndarray]] = {}  # start sample -> (canonical, samples)
        self.stop = threading.Event()

    def run(self) -> None:
        with RigConsumer.attach(self.rig) as consumer:
            while True:
                done = self.stop.is_set() or not consumer.view.writer_alive()
                rows, descs = consumer.view.typed_snapshot(CAMERA)
                for r, d in zip(rows.tolist(), descs.tolist(), strict=True):
                    self.frames[(r[2], d[1], d[3])] = r[3]
                rows, descs = consumer.view.typed_snapshot(AUDIO)
                for r, d in zip(rows, descs, strict=True):
                    start = int(d["start_sample"])
                    if start in self.blocks:
                        continue
                    handle = int(d["data_handle"])
                    try:
                        payload = consumer.resolver.payload(handle)[: int(d["frame_count"])].copy()
                    except LookupError:
                        continue
                    if consumer.resolver.valid(handle):
                        self.blocks[start] = (int(r["timestamp_ns"]), payload)
                if done:
                    return
                time.sleep(0.3)


@pytest.fixture(scope="module")
def whole_life(tmp_path_factory):
    root = tmp_path_factory.mktemp("record-life")
    rig = f"t{os.getpid()}nw"  # carries the session tag: the session leak check covers it
    window_s = 10.0  # the recorder (a new process: its imports take 2 - 8 s at load 4) starts within it
    final = root / "final.json"
    sup = start_rig(rig_config(root / "rig.toml", rig, window_s), "--final-status", str(final))
    out = root / "take"
    rec = walker = None
    try:
        wait_for(lambda: (root / "rig.toml").exists() and _plan_published(rig), 60, "the rig's plan", sup)
        rec = record_process("--rig", rig, "--out", str(out), "--from-start", "--split-seconds", str(SPLIT_S),
                             "--json")
        recording_since = time.monotonic()
        walker = Walker(rig)
        wait_for(lambda: _reservoir_has(rig, 10), 60, "frames flowing", sup)
        walker.start()
        wait_for(lambda: any(r.sources and r.sources[0]["written"] > 30 for r in read_recorders(rig)), 60,
                 "the recorder's status board", rec)
        during = read_recorders(rig)
        status = read_status(rig)
        camera_worker = next(w for w in status.workers if w["name"].startswith("camera"))
        os.kill(camera_worker["pid"], signal.SIGKILL)  # the supervisor restarts it: a new ring, numbered from 0
        wait_for(lambda: any(w["name"].startswith("camera") and w["restarts"] >= 1 and w["state"] == 1
                             for w in read_status(rig).workers), 60, "the camera worker's restart", sup)
        # the clock locks while the take records (the first choice of a found reference may wait for slow channels)
        wait_for(lambda: read_status(rig).header["clock_state"] == 1, 60, "canonical time locked", sup)
        # at least 40 split boundaries in the take, however fast the restart came
        time.sleep(max(3.0, 40 * SPLIT_S - (time.monotonic() - recording_since)))
    finally:  # a failure above shows as itself: nothing here assumes the recorder or the walker started
        stop_rig(sup, None)
        if rec is not None:
            done_out, err = rec.communicate(timeout=120)  # the recorder ends by itself once the rig has stopped
        if walker is not None and walker.ident is not None:
            walker.stop.set()
            walker.join(30)
    assert rec is not None and rec.returncode == 0, err
    assert not list_segments(rig), f"the rig or its recorder left shared memory behind: {list_segments(rig)}"
    return {"rig": rig, "take": out, "doc": json.loads(done_out), "final": json.loads(final.read_text()),
            "walker": walker, "during": during, "window_s": window_s}


def _plan_published(rig: str) -> bool:
    from mimir.contract import RigNotRunning, read_plan

    try:
        read_plan(rig)
        return True
    except RigNotRunning:
        return False


def _reservoir_has(rig: str, frames: int) -> bool:
    try:
        with RigConsumer.attach(rig) as consumer:
            return consumer.view.view_count(CAMERA) > frames and consumer.view.view_count(AUDIO) > 10
    except (FileNotFoundError, LookupError):
        return False


# ---- the whole life of a rig -----------------------------------------------------------------------------------------
def test_every_published_item_is_written_or_counted_and_the_two_add_up_to_what_the_rig_published(whole_life):
    doc, final = whole_life["doc"], whole_life["final"]
    published = {s["name"]: s["published"] for s in final["sources"] if s["name"] in SOURCES}
    assert doc["ended_by"] == "rig stopped"
    assert doc["published"] == published, (doc["published"], published)
    m = read_manifest(whole_life["take"])
    for name in SOURCES:
        record = m.source(name)
        skipped = sum(s.count for s in record.skipped)
        assert record.written == doc["written"][name] and skipped == doc["skipped"][name]
        assert record.written + skipped == published[name], name
        # What is missing is what the rig itself lost (never indexed), or, on a loaded machine, the rig's very
        # first items if the recorder process took longer to start than the window holds: the recorder lost
        # nothing once it ran.
        assert set(doc["skipped_by_cause"][name]) <= {"not_indexed", "evicted"}, doc["skipped_by_cause"][name]
        for skip in record.skipped:
            assert skip.cause in (CAUSE_TEXT[Cause.NOT_INDEXED], CAUSE_TEXT[Cause.EVICTED])
            if skip.cause == CAUSE_TEXT[Cause.EVICTED]:
                assert skip.last_ns < record.span.first_ns
        lost = [s for s in final["sources"] if s["name"] == name][0]["lost_overrun"]
        assert doc["skipped_by_cause"][name].get("not_indexed", 0) >= lost
    assert m.rig["record"]["sources"][CAMERAS[0]]["ring_incarnations"] == 2  # followed into the restarted ring
    assert all(m.rig["record"]["sources"][n]["first_ring_sequence"] == 0 for n in SOURCES)  # from the first frame
    assert sum(doc["written"].values()) > 0.95 * sum(published.values())


def test_frames_are_bit_exact_at_the_canonical_time_the_reservoir_indexed(whole_life):
    take = open_take(whole_life["take"])
    walker = whole_life["walker"]
    with_time = 0
    for name in CAMERAS:
        frames = take.frames(name)   # decoded with PyAV
        n = len(frames.sequence)
        assert n == take.manifest.source(name).written > 100
        for i in range(n):  # every byte checked against the stamp the camera wrote into it
            assert verify_frame(frames.pixels[i], MODE)[1] == frames.device_time_ns[i]
        stamps = [verify_frame(frames.pixels[i], MODE)[0] for i in range(n)]
        restart = int(np.flatnonzero(np.diff(stamps) < 0)[0]) + 1  # the worker's restart: device counter from 0
        sequences = frames.sequence.astype(np.int64)
        for lo, hi in ((0, restart), (restart, n)):  # each incarnation of the camera worker
            # every frame it published, once and in order (its ring sequences are consecutive) ...
            assert np.array_equal(np.diff(sequences[lo:hi]), np.ones(hi - lo - 1)), "a published frame missing"
            # ... and each holds a distinct capture, in order (a frame the device dropped before publishing,
            # counted as dropped by device, makes the camera's own stamp skip; none may repeat or go back)
            assert (np.diff(stamps[lo:hi]) >= 1).all(), "a frame doubled or out of order"
        for i in range(n):
            key = (source_hash(name), int(frames.sequence[i]), int(frames.host_time_ns[i]))
            if key in walker.frames:
                assert walker.frames[key] == frames.canonical_ns[i]
                with_time += 1
    # the walker (a thread on a loaded machine) samples most frames; where it saw one, the times agree
    assert with_time >= 0.5 * sum(len(take.frames(c).sequence) for c in CAMERAS)


def test_audio_is_bit_exact_at_its_time(whole_life):
    take = open_take(whole_life["take"])
    walker = whole_life["walker"]
    runs = take.audio("audio")
    checked = 0
    for run in runs:
        wav, rate = soundfile.read(run.path, dtype="float32", always_2d=True)   # soundfile itself
        assert rate == 48_000 and np.array_equal(wav, run.samples)
        b = run.blocks
        assert (np.diff(b["start_sample"]) == b["frames"][:-1]).all()   # each file contiguous
        for k in range(len(b["block"])):
            seen = walker.blocks.get(int(b["start_sample"][k]))
            if seen is None:
                continue
            first = int(b["first_sample"][k])
            assert seen[0] == b["canonical_ns"][k]
            assert np.array_equal(wav[first:first + len(seen[1])], seen[1])
            checked += 1
    assert checked >= 0.9 * take.manifest.source("audio").written
    starts = np.concatenate([r.blocks["start_sample"] for r in runs])
    frames = np.concatenate([r.blocks["frames"] for r in runs])
    assert np.array_equal(starts[1:], starts[:-1] + frames[:-1])  # no sample lost or doubled across files


def test_files_roll_over_on_every_boundary_with_nothing_lost_or_doubled(whole_life):
    m = read_manifest(whole_life["take"])
    origin, split = m.origin_ns, round(SPLIT_S * 1e9)
    assert m.split_seconds == SPLIT_S
    take = open_take(whole_life["take"])
    parts = set()
    for name in SOURCES:
        media = "video" if name in CAMERAS else "audio"
        files = m.files_of(name, media)
        for f in files:
            parts.add(f.part)
            lo, hi = origin + f.part * split, origin + (f.part + 1) * split
            assert lo <= f.first_ns and f.last_ns < hi, (name, f.path, f.part)
    assert len(parts) >= 30
    for name in CAMERAS:
        frames = take.frames(name)
        part_of = (frames.canonical_ns - origin) // split
        assert (np.diff(part_of) >= 0).all()
        assert len(np.unique(np.stack([frames.sequence, frames.host_time_ns]), axis=1)[0]) == len(frames.sequence)
    xdf_parts = m.files_of(None, "xdf")
    assert len(xdf_parts) == len(parts)
    total = {name: 0 for name in SOURCES}
    for f in xdf_parts:
        streams, _ = pyxdf.load_xdf(str(whole_life["take"] / f.path), dejitter_timestamps=False)
        for s in streams:
            name = s["info"]["name"][0]
            total[name] += len(s["time_stamps"])
            assert (s["time_stamps"] >= (origin + f.part * split) / 1e9 - 1e-6).all()
    assert total == {n: (m.source(n).written if n in CAMERAS else m.source(n).written_samples) for n in SOURCES}


def test_xdf_timestamps_are_the_reservoir_s_within_1_us(whole_life):
    take = open_take(whole_life["take"])
    streams = take.xdf()
    for name in CAMERAS:
        frames = take.frames(name)
        mine = sorted((s for s in streams if s["info"]["name"][0] == name), key=lambda s: s["time_stamps"][0])
        stamps = np.concatenate([s["time_stamps"] for s in mine])
        assert np.abs(stamps - frames.canonical_ns / 1e9).max() < 1e-6


def test_the_clock_lock_is_a_new_segment_with_its_fit(whole_life):
    m = read_manifest(whole_life["take"])
    for name in SOURCES:
        segments = m.source(name).clock_segments
        assert segments[0].state == "provisional" and segments[0].step_ns is None
        locked = [s for s in segments if s.state == "locked"]
        assert locked, segments  # the rig locked while it was recorded
        assert locked[0].rate_hz and 47_000 < locked[0].rate_hz < 49_000 and locked[0].witness
        assert locked[0].step_ns is not None


def test_mimir_status_shows_the_recorder_while_it_runs(whole_life):
    (recorder,) = whole_life["during"]
    assert recorder.alive and recorder.object_id == "rec0"
    assert {s["name"] for s in recorder.sources} == set(SOURCES)
    lines = recorder_lines(whole_life["during"])
    assert lines[0].startswith("recorder rec0 pid ") and "recording" in lines[0] and "raw" in lines[0]
    assert any(line.strip().startswith(CAMERAS[0]) for line in lines)


# ---- a running rig ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live_rig(tmp_path_factory):
    root = tmp_path_factory.mktemp("record-live")
    rig = f"t{os.getpid()}nv"
    sup = start_rig(rig_config(root / "rig.toml", rig, 2.0))
    try:
        wait_for(lambda: _reservoir_has(rig, 20), 60, "the rig", sup)
        yield rig
    finally:
        stop_rig(sup, rig)


def test_sigterm_ends_the_recording_cleanly(live_rig, tmp_path):
    out = tmp_path / "take"
    rec = record_process("--rig", live_rig, "--out", str(out), "--json")
    wait_for(lambda: (out / "manifest.json").exists() and _written(out) > 20, 60, "the recording", rec)
    rec.send_signal(signal.SIGTERM)
    stdout, stderr = rec.communicate(timeout=60)
    assert rec.returncode == 0, stderr
    doc = json.loads(stdout)
    assert doc["ended_by"] == "stop" and doc["error"] is None
    m = read_manifest(out)
    assert m.closed_unix_ns is not None
    for name in SOURCES:
        assert doc["written"][name] + doc["skipped"][name] == doc["published"][name] > 0
        assert doc["skipped"][name] == 0
        assert m.source(name).written == doc["written"][name]
    take = open_take(out)
    assert all(len(take.frames(c).sequence) == doc["written"][c] for c in CAMERAS)


def _written(take_dir: Path) -> int:
    try:
        return min(r.written for r in read_manifest(take_dir).sources)
    except (OSError, ValueError):
        return 0


def test_after_kill_9_every_file_is_readable_up_to_the_last_flush_and_the_next_run_repairs_it(live_rig, tmp_path):
    out = tmp_path / "killed"
    rec = record_process("--rig", live_rig, "--out", str(out))
    wait_for(lambda: (out / "manifest.json").exists() and _written(out) > 60, 60, "the recording", rec)
    time.sleep(1.0)
    assert read_recorders(live_rig)[0].alive
    rec.kill()
    killed_ns = time.monotonic_ns()
    rec.communicate()
    assert not read_recorders(live_rig)[0].alive   # `mimir status` says it is gone
    # Every file as it is, by the ordinary readers (before any repair).
    for mkv in out.glob("cam.*/*.mkv"):
        with av.open(str(mkv)) as container:
            assert sum(1 for _ in container.decode(video=0)) > 0
    for wav in out.glob("audio/*.wav"):
        assert soundfile.read(str(wav), dtype="float32")[0].size > 0
    # The next run in the same folder repairs what the killed one left before it records.
    nxt = subprocess.run([str(BIN / "mimir"), "record", "--rig", live_rig, "--out", str(tmp_path / "next"),
                          "--duration", "0.5"], capture_output=True, text=True, timeout=120)
    assert nxt.returncode == 0, nxt.stderr
    assert f"repaired {out}" in nxt.stderr
    m = read_manifest(out)
    assert m.repaired and not m.complete
    take = open_take(out)
    for name in CAMERAS:
        frames = take.frames(name)
        assert len(frames.sequence) == m.source(name).written > 60
        for i in range(len(frames.sequence)):
            assert verify_frame(frames.pixels[i], MODE)[1] == frames.device_time_ns[i]
        assert (np.diff(frames.sequence) == 1).all()
        # Up to the last flush: at most a second (plus the writer's lag) before the kill.
        assert killed_ns - int(frames.host_time_ns.max()) < 2_000_000_000
    runs = take.audio("audio")
    assert killed_ns - int(max(r.blocks["host_time_ns"].max() for r in runs)) < 2_000_000_000
    assert take.xdf()  # pyxdf reads every part
    done = CliRunner().invoke(_app(), ["--repair", str(out)])
    assert done.exit_code == 0, done.output
    assert "cam.synthetic.0" in done.output


def _app():
    app = typer.Typer()
    app.command()(record)
    return app


def cli(*args: str):
    return CliRunner().invoke(_app(), list(args))


def one_line_exit_2(done, *needles: str) -> None:
    assert done.exit_code == 2, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.output, done.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_input_is_one_line_and_exit_2(live_rig, tmp_path):
    one_line_exit_2(cli("--rig", "nosuchrig", "--out", str(tmp_path / "a")), "rig 'nosuchrig' is not running")
    one_line_exit_2(cli("--rig", "bad name", "--out", str(tmp_path / "a")), "rig name")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    one_line_exit_2(cli("--rig", live_rig, "--out", str(full)), "exists and is not an empty folder")
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    one_line_exit_2(cli("--rig", live_rig, "--out", str(tmp_path / "a"), "--split-seconds", "0"), "--split-seconds 0")
    one_line_exit_2(cli("--rig", live_rig, "--out", str(tmp_path / "a"), "--split-seconds", "nan"), "--split-seconds")
    one_line_exit_2(cli("--rig", live_rig, "--out", str(tmp_path / "a"), "--video", "mpeg2"),
                    "--video 'mpeg2'", "ffv1, raw, h264")
    one_line_exit_2(cli("--rig", live_rig, "--out", str(tmp_path / "a"), "--pre-roll", "3"), "keeps 2 s")
    one_line_exit_2(cli("--rig", live_rig, "--out", str(tmp_path / "a"), "--duration", "-1"), "--duration -1")
    one_line_exit_2(cli("--repair", str(tmp_path / "nothing")), "holds no take")
    (tmp_path / "file").write_text("not a folder")
    one_line_exit_2(cli("--rig", live_rig, "--out", str(tmp_path / "file" / "take")), "cannot make the take folder")
    assert not (tmp_path / "a").exists()  # nothing was created for a refused request


@pytest.fixture
def small_disk(tmpfs):
    return tmpfs("16m")


def test_a_full_disk_stops_the_recording_cleanly_and_the_rig_runs_on(live_rig, small_disk):
    before = {s["name"]: s for s in read_status(live_rig).sources}
    out = small_disk / "take"
    done = subprocess.run([str(BIN / "mimir"), "record", "--rig", live_rig, "--out", str(out), "--pre-roll", "2",
                           "--duration", "60"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "disk full writing" in lines[0] and "the rig was not affected" in lines[0], lines
    manifest = read_manifest(out)
    assert manifest.complete is False and any("disk full" in x.cause for x in manifest.missing)
    take = open_take(out)
    for name in CAMERAS:
        frames = take.frames(name)  # readable up to the last whole frame, and the manifest says how many
        assert manifest.source(name).written == len(frames.sequence) > 0
        for i in range(len(frames.sequence)):
            assert verify_frame(frames.pixels[i], MODE)[1] == frames.device_time_ns[i]
    # The WAV may hold samples past its last block-table row (the table's last lines never reached the full
    # disk): they have no timestamp; the manifest counts the timed ones and lists the rest as missing.
    in_wav = sum(r.samples.shape[0] for r in take.audio("audio"))
    untimed = sum(int(x.what.split()[0]) for x in manifest.missing
                  if x.source == "audio" and "samples at the end" in x.what)
    assert in_wav == manifest.source("audio").written_samples + untimed
    time.sleep(0.5)
    status = read_status(live_rig)
    assert status.supervisor_alive and all(w["state"] == 1 for w in status.workers)
    for s in status.sources:
        if s["name"] in SOURCES:
            assert s["lost_overrun"] == before[s["name"]]["lost_overrun"]
            assert s["indexed"] > before[s["name"]]["indexed"]
    assert not read_recorders(live_rig)  # the recorder removed its status board on the way out
