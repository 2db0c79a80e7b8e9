"""kill -9 of a real writing process: every file is readable up to one second before the kill, and repair() works.

The writer runs in a subprocess (``_crash_writer.py``) at wall-clock pace and
logs what it had written after every call. The test kills it with SIGKILL
after about 2.5 s, then reads the files as they are, each with the library a
user would use (PyAV, soundfile, pyxdf): everything the writer had been given
up to one second before the kill must be there, bit-exact, at its time.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pyxdf
import soundfile

from mimir.take import open_take, read_manifest, repair
from mimir.take.read import iter_video
from mimir.take.table import read_table

HELPER = Path(__file__).with_name("_crash_writer.py")
_spec = importlib.util.spec_from_file_location("_crash_writer", HELPER)
writer_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(writer_mod)


def _log(path: Path) -> np.ndarray:
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.count(" ") == 3]
    return np.array(lines, dtype=np.int64).reshape(-1, 4)


@pytest.mark.slow
def test_kill_minus_nine_leaves_readable_files_and_repair_rebuilds_the_manifest(take_dir, tmp_path, synth):
    log_path = tmp_path / "written.log"
    proc = subprocess.Popen([sys.executable, str(HELPER), str(take_dir), str(log_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if log_path.exists() and len(_log(log_path)) and _log(log_path)[-1, 3] >= 250:  # 2.5 s of audio
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        kill_ns = time.monotonic_ns()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = _log(log_path)
    before = log[log[:, 0] <= kill_ns - 1_000_000_000]
    assert len(before), "the writer logged nothing older than one second before the kill"
    must = dict(zip(("cam0", "cam1", "mic"), before[-1, 1:].tolist(), strict=True))
    assert must["cam0"] >= 60 and must["mic"] >= 100

    # --- the files as the kill left them, read by the libraries users have -------------------------------
    pats = {name: synth.pattern(fmt, 32, 24, fps) for name, (fps, fmt, _) in writer_mod.CAMS.items()}
    for cam, pat in pats.items():
        videos = sorted((take_dir / cam).glob("*.mkv"))
        decoded = [payload for path in videos for payload, _ in iter_video(path, pat.mode.pixel_format.name)]
        assert len(decoded) >= must[cam], f"{cam}: {len(decoded)} readable, {must[cam]} written 1 s before the kill"
        fps = writer_mod.CAMS[cam][0]
        for n, payload in enumerate(decoded):  # bit-exact, in order, at its time
            assert pat.verify(payload) == (n, writer_mod.T0_NS + round(n * 1e9 / fps))
        rows = sum(len(read_table(p)["frame"]) for p in (take_dir / cam).glob("*.frames.csv"))
        assert rows >= must[cam]
    wavs = sorted((take_dir / "mic").glob("*.wav"))
    samples = np.concatenate([soundfile.read(p, dtype="float32", always_2d=True)[0] for p in wavs])
    assert len(samples) >= must["mic"] * writer_mod.BLOCK
    whole = len(samples) // writer_mod.BLOCK
    sent = np.concatenate([writer_mod.audio_block(b) for b in range(whole)])
    assert np.array_equal(samples[: len(sent)].view(np.uint32), sent.view(np.uint32))
    streams, _ = pyxdf.load_xdf(str(take_dir / "take_00000.xdf"), dejitter_timestamps=False)
    by_name = {s["info"]["name"][0]: s for s in streams}
    for cam in pats:
        s = by_name[cam]
        assert len(s["time_stamps"]) >= must[cam]
        fps = writer_mod.CAMS[cam][0]
        want = np.array([writer_mod.T0_NS + round(n * 1e9 / fps) for n in range(len(s["time_stamps"]))])
        assert np.abs(np.round(s["time_stamps"] * 1e9).astype(np.int64) - want).max() < 1000
    assert len(by_name["mic"]["time_stamps"]) >= must["mic"] * writer_mod.BLOCK

    # --- the manifest of the last flush says incomplete; repair() rebuilds it from the files -------------
    assert read_manifest(take_dir).complete is False
    manifest = repair(take_dir)
    assert manifest.repaired and not manifest.complete
    assert any("did not close" in m.cause for m in manifest.missing)
    take = open_take(take_dir)
    for cam, pat in pats.items():
        frames = take.frames(cam)
        record = manifest.source(cam)
        assert record.written == len(frames.sequence) >= must[cam]
        assert frames.sequence.tolist() == list(range(record.written))
        assert record.gaps == []
        for n in range(record.written):
            assert pat.verify(frames.pixels[n])[0] == n
    runs = take.audio("mic")
    record = manifest.source("mic")
    assert record.written_samples == sum(len(r.samples) for r in runs) == record.written * writer_mod.BLOCK
    assert record.written >= must["mic"]
    got = np.concatenate([r.samples for r in runs])
    sent = np.concatenate([writer_mod.audio_block(b) for b in range(record.written)])
    assert np.array_equal(got.view(np.uint32), sent.view(np.uint32))
    for r in runs:  # repaired WAVs have true header sizes: the header alone gives the sample count
        with open(r.path, "rb") as f:
            head = f.read(12)
        assert int.from_bytes(head[4:8], "little") == r.path.stat().st_size - 8
    assert not (take_dir / ".manifest-reserve").exists()
    assert repair(take_dir).files == manifest.files  # repairing again finds the same files
