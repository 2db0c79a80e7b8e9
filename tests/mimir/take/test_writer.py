"""The writer's contract at its edges: bad input gets one clear line, a failure leaves an honest manifest."""

from __future__ import annotations

import numpy as np
import pytest

from mimir.take import (
    AudioSource,
    CameraSource,
    NotATake,
    TakeClosed,
    TakeExists,
    TakeWriter,
    open_take,
    read_manifest,
    repair,
)

CAM = CameraSource("cam", 16, 8, "GREY", 60.0)
MIC = AudioSource("mic", 1, 48_000, "float32")


def test_an_existing_non_empty_folder_is_refused(take_dir):
    take_dir.mkdir()
    (take_dir / "something").write_text("x")
    with pytest.raises(TakeExists, match="exists and is not an empty folder"):
        TakeWriter(take_dir, [CAM])
    assert sorted(p.name for p in take_dir.iterdir()) == ["something"]


def test_an_empty_existing_folder_is_used(take_dir, synth):
    take_dir.mkdir()
    with TakeWriter(take_dir, [CAM]) as take:
        take.write_frame("cam", synth.noise(CAM.shape, 0), synth.T0_NS, sequence=0)
    assert take.manifest.complete


@pytest.mark.parametrize("sources, message", [
    ([], "at least one source"),
    ([CameraSource("a/b", 16, 8, "GREY", 60.0)], "not a plain file name"),
    ([CameraSource(".hidden", 16, 8, "GREY", 60.0)], "not a plain file name"),
    ([CAM, AudioSource("cam", 1, 48_000, "int16")], "must be unique"),
    ([CameraSource("odd", 15, 8, "YUYV", 60.0)], "bad frame size"),
    ([AudioSource("mic", 0, 48_000, "int16")], "channels > 0"),
])
def test_bad_sources_are_refused_before_anything_is_created(take_dir, sources, message):
    with pytest.raises(ValueError, match=message):
        TakeWriter(take_dir, sources)
    assert not take_dir.exists()


def test_bad_calls_are_refused_without_harming_the_take(take_dir, synth):
    with TakeWriter(take_dir, [CAM, MIC]) as take:
        with pytest.raises(KeyError, match="unknown source 'nope'; this take has cam, mic"):
            take.write_frame("nope", synth.noise(CAM.shape, 0), 0, sequence=0)
        with pytest.raises(TypeError, match="'mic' is an audio source"):
            take.write_frame("mic", synth.noise(CAM.shape, 0), 0, sequence=0)
        with pytest.raises(ValueError, match=r"expected uint8 \(8, 16\)"):
            take.write_frame("cam", np.zeros((8, 16, 2), np.uint8), 0, sequence=0)
        with pytest.raises(ValueError, match="count > 0"):
            take.skip("cam", 5, 4, 1, "x")
        take.write_frame("cam", synth.noise(CAM.shape, 0), synth.T0_NS, sequence=0)
    assert take.manifest.complete and take.manifest.source("cam").written == 1
    with pytest.raises(TakeClosed, match="is closed"):
        take.write_frame("cam", synth.noise(CAM.shape, 1), synth.T0_NS + 1, sequence=1)
    with pytest.raises(ValueError, match="split_seconds"):
        TakeWriter(take_dir.parent / "other", [CAM], split_seconds=0)


def test_leaving_the_block_by_an_exception_closes_the_files_and_says_why(take_dir, synth):
    with pytest.raises(RuntimeError, match="boom"):
        with TakeWriter(take_dir, [CAM, MIC]) as take:
            for n in range(3):
                take.write_frame("cam", synth.noise(CAM.shape, n), synth.T0_NS + n, sequence=n)
            raise RuntimeError("boom")
    m = read_manifest(take_dir)
    assert not m.complete and m.closed_unix_ns is not None
    assert [x.cause for x in m.missing] == ["the writer was left by RuntimeError: boom"]
    assert m.source("cam").written == 3
    assert open_take(take_dir).frames("cam").sequence.tolist() == [0, 1, 2]
    assert repair(take_dir) == m  # closed by its writer: repair leaves it alone


def test_repair_and_read_refuse_a_folder_without_a_take(tmp_path):
    with pytest.raises(NotATake, match="manifest.json is missing"):
        repair(tmp_path)
    with pytest.raises(NotATake, match="manifest.json is missing"):
        open_take(tmp_path)
