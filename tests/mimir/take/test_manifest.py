"""manifest.json: one msgspec schema, round trip, and what a finished take records."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

from mimir.take import (
    AudioSource,
    CameraSource,
    ClockSegment,
    FileEntry,
    Gap,
    Manifest,
    Missing,
    Skip,
    SourceRecord,
    Span,
    TakeWriter,
    read_manifest,
)
from mimir.take.manifest import decode_manifest, encode_manifest


def _full_manifest() -> Manifest:
    cam = CameraSource("cam0", 640, 480, "YUYV", 60.0, encoding="h264")
    mic = AudioSource("mic", 8, 48_000, "int32", channel_labels=[f"in{i}" for i in range(8)])
    return Manifest(
        created_unix_ns=1_800_000_000_000_000_000, rig={"name": "lab", "cameras": [{"id": 0, "mode": "vga"}], "n": 1.5},
        sources=[
            SourceRecord(cam, written=10, span=Span(5, 9), skipped=[Skip(1, 2, 3, "lapped by the ring")],
                         gaps=[Gap(1, 9, 2, "frames")],
                         clock_segments=[ClockSegment(0, first_ns=5),
                                         ClockSegment(1, "locked", 12.5, 48000.2, 0.9, "cb/emitter", -300, 7)]),
            SourceRecord(mic, written=4, written_samples=1024, span=Span(5, 8)),
        ],
        files=[FileEntry("cam0/00000.mkv", "video", "cam0", 0, 0, 0, 10, 5, 9, 1234, True),
               FileEntry("take_00000.xdf", "xdf", None, 0, 0, None, 7, None, None, 99, False)],
        complete=False, missing=[Missing("cam0", "frames after 9", "camera stopped")], split_seconds=60.0,
        origin_ns=5, closed_unix_ns=1_800_000_000_000_000_001, repaired=True)


def test_round_trip_is_exact():
    m = _full_manifest()
    assert decode_manifest(encode_manifest(m)) == m
    doc = json.loads(encode_manifest(m))
    assert doc["format"] == "mimir-take" and doc["version"] == 1
    assert [s["source"]["kind"] for s in doc["sources"]] == ["camera", "audio"]  # tagged union


def test_a_finished_take_records_sources_spans_counts_files_and_rig(take_dir, synth):
    cam = CameraSource("cam0", 16, 8, "GREY", 60.0)
    mic = AudioSource("mic", 1, 48_000, "int16")
    rig = {"name": "lab", "window_s": 5, "cameras": ["cam0"]}
    with TakeWriter(take_dir, [cam, mic], rig=rig) as take:
        for n in range(5):
            # every other frame: four one-frame gaps
            take.write_frame("cam0", synth.noise(cam.shape, n), synth.T0_NS + n * 1000, sequence=2 * n)
            take.write_audio("mic", np.zeros((10, 1), np.int16), synth.T0_NS + n * 500, start_sample=10 * n)
        take.skip("cam0", synth.T0_NS + 500, synth.T0_NS + 3500, 4, "lapped by the ring")
    on_disk = read_manifest(take_dir)
    assert on_disk == take.manifest
    assert on_disk.complete and on_disk.missing == [] and on_disk.closed_unix_ns is not None and not on_disk.repaired
    assert on_disk.rig == rig
    c, a = on_disk.source("cam0"), on_disk.source("mic")
    assert (c.written, c.written_samples, c.span) == (5, 0, Span(synth.T0_NS, synth.T0_NS + 4000))
    assert (a.written, a.written_samples, a.span) == (5, 50, Span(synth.T0_NS, synth.T0_NS + 2000))
    assert c.skipped == [Skip(synth.T0_NS + 500, synth.T0_NS + 3500, 4, "lapped by the ring")]
    assert c.gaps == [Gap(synth.T0_NS + (n - 1) * 1000, synth.T0_NS + n * 1000, 1, "frames") for n in range(1, 5)]
    assert [(f.path, f.role, f.count, f.closed) for f in on_disk.files] == [
        ("cam0/00000.mkv", "video", 5, True), ("cam0/00000.frames.csv", "frames", 5, True),
        ("take_00000.xdf", "xdf", on_disk.files[2].count, True),
        ("mic/00000.wav", "audio", 50, True), ("mic/00000.blocks.csv", "blocks", 5, True)]
    for f in on_disk.files:
        assert f.bytes == (take_dir / f.path).stat().st_size
    assert not (take_dir / ".manifest-reserve").exists()
    with pytest.raises(KeyError, match="sources: cam0, mic"):
        on_disk.source("nope")


def test_the_manifest_on_disk_says_incomplete_while_the_take_is_open(take_dir, synth):
    cam = CameraSource("cam0", 16, 8, "GREY", 60.0)
    take = TakeWriter(take_dir, [cam], flush_interval_s=0.01)
    assert read_manifest(take_dir).complete is False  # written at creation
    take.write_frame("cam0", synth.noise(cam.shape, 0), synth.T0_NS, sequence=0)
    take.flush()
    during = read_manifest(take_dir)
    assert not during.complete and during.closed_unix_ns is None and during.source("cam0").written == 1
    assert (take_dir / ".manifest-reserve").stat().st_size >= 2 * (take_dir / "manifest.json").stat().st_size
    take.close(missing=[Missing("cam1", "every frame", "camera unplugged")])
    after = read_manifest(take_dir)
    assert not after.complete and after.missing == [Missing("cam1", "every frame", "camera unplugged")]


def test_msgspec_schema_rejects_bad_documents():
    with pytest.raises(msgspec.ValidationError):
        decode_manifest(b'{"created_unix_ns": 1, "rig": {}, "sources": [{"source": {"kind": "lidar", "name": "x"}}]}')
