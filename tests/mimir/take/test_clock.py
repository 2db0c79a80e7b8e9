"""A clock step inside a take is written as a step: new files, a new XDF stream, nothing rewritten or smoothed."""

from __future__ import annotations

import numpy as np
import pytest
import pyxdf

from mimir.take import AudioSource, CameraSource, ClockSegment, TakeWriter, open_take

RATE = 48_000
PERIOD_NS = 16_666_667
STEP_NS = -5_000_000  # the relock moves canonical time back by 5 ms: later frames get earlier times than before


@pytest.mark.parametrize("step_ns", [STEP_NS, 250_000_000])
def test_clock_step_starts_new_files_and_streams_and_keeps_every_timestamp(take_dir, synth, step_ns):
    cam = CameraSource("cam", 16, 8, "GREY", 60.0)
    mic = AudioSource("mic", 1, RATE, "int16")
    t0 = synth.T0_NS
    frame_ns, block_ns = [], []
    locked = ClockSegment(1, "locked", local_sample_at_epoch=-1.5e12, rate_hz=48000.003, confidence=0.99,
                          witness="codebook 3 / emitter lab-left", step_ns=step_ns)
    with TakeWriter(take_dir, [cam, mic], rig={"name": "bench"}) as take:
        for n in range(20):
            if n == 10:
                take.begin_clock_segment("cam", locked)
                take.begin_clock_segment("mic", locked)
            shift = step_ns if n >= 10 else 0
            t = t0 + n * PERIOD_NS + shift
            frame_ns.append(t)
            take.write_frame("cam", synth.noise(cam.shape, n), t, sequence=n)
            b = t0 + n * 800 * 1_000_000_000 // RATE + shift
            block_ns.append(b)
            # The device sample counter runs on: a clock step is not a gap.
            take.write_audio("mic", np.full((800, 1), n, np.int16), b, start_sample=n * 800)
    m = take.manifest
    for name in ("cam", "mic"):
        record = m.source(name)
        assert [s.index for s in record.clock_segments] == [0, 1]
        assert record.clock_segments[0].state == "provisional" and record.clock_segments[0].first_ns == t0
        assert record.clock_segments[1] == ClockSegment(1, "locked", -1.5e12, 48000.003, 0.99,
                                                        "codebook 3 / emitter lab-left", step_ns,
                                                        first_ns=(frame_ns if name == "cam" else block_ns)[10])
        assert record.gaps == []
    assert [(f.path, f.clock_segment, f.count) for f in m.files_of("cam", "video")] == [
        ("cam/00000.mkv", 0, 10), ("cam/00001.mkv", 1, 10)]
    assert [(f.path, f.clock_segment, f.count) for f in m.files_of("mic", "audio")] == [
        ("mic/00000.wav", 0, 8000), ("mic/00001.wav", 1, 8000)]

    take_r = open_take(take_dir)
    frames = take_r.frames("cam")
    assert frames.canonical_ns.tolist() == frame_ns  # exactly as given, the step included
    assert frames.file.tolist() == [0] * 10 + [1] * 10
    second = take_r.frames("cam", file=1)
    assert second.canonical_ns.tolist() == frame_ns[10:] and second.frame.tolist() == list(range(10))
    runs = take_r.audio("mic")
    assert [r.first_ns for r in runs] == [block_ns[0], block_ns[10]]
    assert [r.clock_segment for r in runs] == [0, 1]

    # pyxdf with its defaults (clock synchronisation on), only dejitter off: two streams per source.
    streams, _ = pyxdf.load_xdf(str(take_dir / "take_00000.xdf"), dejitter_timestamps=False)
    for name, times, per in (("cam", frame_ns, 1), ("mic", block_ns, 800)):
        segs = sorted((s for s in streams if s["info"]["name"] == [name]),
                      key=lambda s: int(s["info"]["desc"][0]["mimir"][0]["clock_segment"][0]))
        assert len(segs) == 2
        first_stamps = [np.round(s["time_stamps"][::per] * 1e9).astype(np.int64) for s in segs]
        assert np.abs(first_stamps[0] - times[:10]).max() < 1000
        assert np.abs(first_stamps[1] - times[10:]).max() < 1000
        jump = segs[1]["time_stamps"][0] - segs[0]["time_stamps"][::per][-1]
        assert abs(jump * 1e9 - (times[10] - times[9])) < 1000  # the step, not smoothed away
        clock = segs[1]["info"]["desc"][0]["clock"][0]
        assert clock["step_ns"] == [str(step_ns)] and clock["witness"] == ["codebook 3 / emitter lab-left"]
        assert "witness" not in segs[0]["info"]["desc"][0]["clock"][0]


def test_segments_must_increase(take_dir, synth):
    cam = CameraSource("cam", 16, 8, "GREY", 60.0)
    with TakeWriter(take_dir, [cam]) as take:
        take.begin_clock_segment("cam", ClockSegment(4, "locked"))  # before any frame: the take's first segment
        take.write_frame("cam", synth.noise(cam.shape, 0), synth.T0_NS, sequence=0)
        with pytest.raises(ValueError, match="does not follow segment 4"):
            take.begin_clock_segment("cam", ClockSegment(4, "locked"))
        take.begin_clock_segment("cam", ClockSegment(5, "locked"))
        take.write_frame("cam", synth.noise(cam.shape, 1), synth.T0_NS + PERIOD_NS, sequence=1)
    assert [s.index for s in take.manifest.source("cam").clock_segments] == [4, 5]
