"""Disk full for real: a 2 MiB tmpfs mounted by the test fills up in the middle of a take.

The writer must raise :class:`DiskFull` (one line, errno ENOSPC), leave every
file closed and readable by PyAV, soundfile and pyxdf, and leave a manifest
that says ``complete = false`` with the cause and counts what the files hold.
"""

from __future__ import annotations

import errno
import shutil

import numpy as np
import pytest
import pyxdf
import soundfile

from mimir.take import (
    AudioSource,
    CameraSource,
    DiskFull,
    TakeClosed,
    TakeWriter,
    open_take,
    read_manifest,
)

RATE = 48_000


@pytest.fixture
def small_disk(tmpfs):
    return tmpfs("2m")


def test_disk_full_closes_everything_readable_and_marks_the_take_incomplete(small_disk, synth):
    pat = synth.pattern("YUYV", 64, 48)
    cam = CameraSource("cam", 64, 48, "YUYV", 60.0, encoding="raw")  # 6 KiB a frame: fills 2 MiB quickly
    mic = AudioSource("mic", 2, RATE, "float32")
    take_dir = small_disk / "take"
    take = TakeWriter(take_dir, [cam, mic], rig={"disk": "2 MiB"}, flush_interval_s=0.05)
    written = 0
    with pytest.raises(DiskFull) as raised:
        for n in range(100_000):
            t = synth.T0_NS + n * 16_666_667
            take.write_frame("cam", pat.render(n, t), t, sequence=n)
            written += 1
            take.write_audio("mic", np.full((800, 2), n, np.float32), t, start_sample=n * 800)
    err = raised.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert "\n" not in str(err) and "disk full writing" in str(err) and str(take_dir) in str(err)
    assert take.closed
    with pytest.raises(TakeClosed, match="disk full"):
        take.write_frame("cam", pat.render(0, 0), 0, sequence=0)
    assert take.close() is take.manifest  # closing again is harmless

    manifest = read_manifest(take_dir)
    assert manifest.complete is False and manifest.closed_unix_ns is not None
    assert any("disk full writing" in m.cause for m in manifest.missing)
    assert not (take_dir / ".manifest-reserve").exists()

    # Every file is closed and readable by the usual libraries, and the manifest counts what they hold.
    frames = open_take(take_dir).frames("cam")
    assert 10 < len(frames.sequence) <= written
    assert manifest.source("cam").written == len(frames.sequence)
    for n in range(len(frames.sequence)):
        assert pat.verify(frames.pixels[n]) == (n, synth.T0_NS + n * 16_666_667)
    runs = open_take(take_dir).audio("mic")
    samples = np.concatenate([r.samples for r in runs])
    assert len(samples) >= manifest.source("mic").written_samples > 0
    for r in runs:
        assert soundfile.info(str(r.path)).frames == len(r.samples)
    n_blocks = manifest.source("mic").written
    assert np.array_equal(samples[: 800 * n_blocks, 0], np.repeat(np.arange(n_blocks, dtype=np.float32), 800))
    for f in manifest.files_of(None, "xdf"):
        streams, _ = pyxdf.load_xdf(str(take_dir / f.path), dejitter_timestamps=False)
        assert {s["info"]["name"][0] for s in streams} <= {"cam", "mic"}


STRESS = [  # (encoding, pixel format, width, audio channels, audio dtype, flush interval s, split s)
    ("raw", "YUYV", 320, 1, "int16", 1.0, None),      # fills during a video write
    ("raw", "GREY", 320, 1, "int16", 0.3, 0.02),      # ... while a new WAV's header is written
    ("raw", "YUYV", 96, 2, "float32", 0.001, None),   # ... during WAV data
    ("h264", "BGR3", 32, 1, "float32", 0.01, 0.05),   # ... while the manifest is rewritten
    ("raw", "BGR3", 64, 8, "float32", 0.3, 0.5),      # ... during an XDF flush
    ("ffv1", "YUYV", 320, 1, "int16", 1.0, None),
    ("raw", "GREY", 16, 1, "int16", 0.01, 0.05),
    ("ffv1", "GREY", 64, 8, "int16", 1.0, None),
]


def test_disk_full_anywhere_leaves_a_take_whose_manifest_counts_what_the_files_hold(small_disk, synth):
    """The disk fills at a different kind of write each time (video, WAV header or data, table, XDF, manifest)."""
    for i, (encoding, fmt, width, channels, dtype, flush_s, split_s) in enumerate(STRESS):
        cam = CameraSource("cam", width, 24, fmt, 60.0, encoding=encoding)
        mic = AudioSource("mic", channels, RATE, dtype)
        take_dir = small_disk / f"take{i}"
        take = TakeWriter(take_dir, [cam, mic], flush_interval_s=flush_s, split_seconds=split_s)
        with pytest.raises(DiskFull):
            for n in range(100_000):
                t = synth.T0_NS + n * 16_666_667
                take.write_frame("cam", synth.noise(cam.shape, n), t, sequence=n)
                for k in range(2):
                    take.write_audio("mic", np.full((480, channels), n, dtype), t + k * 10_000_000,
                                     start_sample=(2 * n + k) * 480)
        manifest = read_manifest(take_dir)
        assert not manifest.complete and any("disk full" in m.cause for m in manifest.missing)
        reader = open_take(take_dir)
        frames = reader.frames("cam")
        assert manifest.source("cam").written == len(frames.sequence), (i, encoding, fmt)
        assert frames.sequence.tolist() == list(range(len(frames.sequence)))
        if encoding != "h264":
            for n in range(len(frames.sequence)):
                assert np.array_equal(frames.pixels[n], synth.noise(cam.shape, n))
        runs = reader.audio("mic")
        assert manifest.source("mic").written_samples <= sum(len(r.samples) for r in runs)
        reader.xdf()  # pyxdf reads every XDF part
        shutil.rmtree(take_dir)
