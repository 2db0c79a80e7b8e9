"""File rotation: ``split_seconds`` rolls every file over with no frame or sample lost or written twice."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
import pyxdf

from mimir.take import AudioSource, CameraSource, ClockSegment, TakeWriter, open_take

RATE = 48_000
BLOCK = 256
SPLIT_S = 0.1
DURATION_S = 3.0  # 30 boundaries


def _events(t0: int, audio_lead_ns: int):
    """(delivery key, kind, index, canonical_ns) of 2 cameras at 60 and 90 fps and 256-sample audio blocks.

    Audio is delivered ``audio_lead_ns`` ahead of the cameras (a recorder serves audio first), so with a lead
    longer than two split periods the cameras lag behind parts that the audio has already left.
    """
    events = []
    for cam, fps in (("cam0", 60), ("cam1", 90)):
        period = round(1e9 / fps)
        for n in range(int(DURATION_S * fps)):
            events.append((t0 + n * period, cam, n, t0 + n * period + 7 * n))
    for b in range(int(DURATION_S * RATE / BLOCK)):
        t = t0 + b * BLOCK * 1_000_000_000 // RATE
        events.append((t - audio_lead_ns, "mic", b, t))
    heapq.heapify(events)
    return [heapq.heappop(events) for _ in range(len(events))]


@pytest.mark.parametrize("audio_lead_s", [0.0, 0.25], ids=["in-order", "audio-ahead-2.5-parts"])
def test_rotation_loses_and_duplicates_nothing(take_dir, synth, audio_lead_s):
    pats = {"cam0": synth.pattern("YUYV", 16, 24), "cam1": synth.pattern("BGR3", 16, 24)}
    cams = [CameraSource("cam0", 16, 24, "YUYV", 60.0), CameraSource("cam1", 16, 24, "BGR3", 90.0, encoding="raw")]
    mic = AudioSource("mic", 2, RATE, "int32")
    t0 = synth.T0_NS
    sent_frames = {"cam0": [], "cam1": []}
    sent_blocks = []
    with TakeWriter(take_dir, [*cams, mic], split_seconds=SPLIT_S, flush_interval_s=0.1) as take:
        for _, kind, n, t in _events(t0, round(audio_lead_s * 1e9)):
            if kind == "mic":
                block = (np.arange(BLOCK * 2, dtype=np.int32).reshape(BLOCK, 2) + n * BLOCK * 2) * 977
                sent_blocks.append((t, block))
                take.write_audio("mic", block, t, start_sample=n * BLOCK)
            else:
                sent_frames[kind].append(t)
                take.write_frame(kind, pats[kind].render(n, t), t, sequence=n)
    m = take.manifest
    assert m.complete and m.origin_ns == min(t0, sent_blocks[0][0])
    n_parts = len(m.files_of(None, "xdf"))
    assert n_parts >= 30
    assert all(f.closed for f in m.files)

    take_r = open_take(take_dir)
    for cam in ("cam0", "cam1"):
        frames = take_r.frames(cam)
        assert frames.canonical_ns.tolist() == sent_frames[cam]  # each frame once, in order
        assert frames.sequence.tolist() == list(range(len(sent_frames[cam])))
        for n in range(len(frames.sequence)):
            assert pats[cam].verify(frames.pixels[n]) == (n, sent_frames[cam][n])
        videos = m.files_of(cam, "video")
        assert len(videos) >= 25 and [f.part for f in videos] == sorted({f.part for f in videos})
        assert m.source(cam).gaps == [] and m.source(cam).written == len(sent_frames[cam])
    # Delivered in time order or 2.5 parts apart: each file holds exactly its part's span.
    assert_files_inside_their_parts(m)
    runs = take_r.audio("mic")
    assert np.array_equal(np.concatenate([r.samples for r in runs]), np.concatenate([b for _, b in sent_blocks]))
    assert np.concatenate([r.blocks["canonical_ns"] for r in runs]).tolist() == [t for t, _ in sent_blocks]
    assert m.source("mic").gaps == [] and len(runs) >= 30

    # XDF: every part is a complete file; the streams of all parts add up to every item exactly once.
    xdf_frames = {"cam0": [], "cam1": []}
    xdf_audio = []
    for f in m.files_of(None, "xdf"):
        streams, _ = pyxdf.load_xdf(str(take_dir / f.path), dejitter_timestamps=False)
        for s in streams:
            name = s["info"]["name"][0]
            if name == "mic":
                xdf_audio.append(s["time_series"])
            else:
                xdf_frames[name].extend(s["time_series"][:, 2].tolist())
    for cam in ("cam0", "cam1"):
        assert xdf_frames[cam] == list(range(len(sent_frames[cam])))
    assert np.array_equal(np.concatenate(xdf_audio), np.concatenate([b for _, b in sent_blocks]))


def assert_files_inside_their_parts(m, take_dir=None, block_s: float = 0.0) -> None:
    """The promise of a split take: every media file's items lie in ``[origin + part*S, origin + (part+1)*S)``;
    with ``take_dir`` also every XDF part's timestamps (audio: the first sample of each block; the others follow
    it by less than ``block_s``)."""
    split_ns = round(m.split_seconds * 1e9)
    for f in m.files:
        if f.role not in ("video", "audio") or f.count == 0:
            continue
        lo, hi = m.origin_ns + f.part * split_ns, m.origin_ns + (f.part + 1) * split_ns
        assert lo <= f.first_ns <= f.last_ns < hi, (f.path, f.part, f.first_ns - lo, f.last_ns - lo)
    if take_dir is None:
        return
    for f in m.files_of(None, "xdf"):
        lo, hi = (m.origin_ns + f.part * split_ns) / 1e9, (m.origin_ns + (f.part + 1) * split_ns) / 1e9
        streams, _ = pyxdf.load_xdf(str(take_dir / f.path), dejitter_timestamps=False)
        for s in streams:
            stamps = s["time_stamps"]
            if len(stamps):
                assert stamps.min() >= lo - 1e-6 and stamps.max() < hi + block_s + 1e-6, (f.path, s["info"]["name"])


SPLIT_LATE_S = 0.1
BLOCK_LATE = 64


def _late_and_stepped_schedule(t0: int, stepped: bool):
    """Capture of a camera (30 fps) and 64-frame audio blocks over 2 s, 20 parts of 0.1 s, delivered as a recorder
    may hand them to the take writer, with clock steps that move a source across part boundaries.

    Without ``stepped`` only the late audio (what `mimir record` met at the end of a take). Returns
    ``(delivery, segments)``: ``delivery`` is ``(key, kind, n, canonical_ns, segment)`` in delivery order;
    ``segments`` the ClockSegment of each index.

    * clock segment 1 starts at capture 0.71 s with a step of -30 ms: items just past the 0.7 s boundary go back
      into part 6, which every source had left (its XDF file closed);
    * segment 2 at capture 1.23 s steps +250 ms: the sources jump over two parts and come back to none of them;
    * audio stalls from capture 1.00 s to 1.35 s (the camera is 3.5 parts ahead when the blocks come, the step to
      segment 2 among them), and the last 0.3 s of audio comes after every frame (what `mimir record` saw when a rig stopped: audio blocks indexed
      after frames captured later).
    """
    steps = [(0, 0), (710_000_000, -30_000_000), (1_230_000_000, 250_000_000)] if stepped else [(0, 0)]
    segments = [ClockSegment(0), ClockSegment(1, "locked", step_ns=-30_000_000),
                ClockSegment(2, "locked", step_ns=250_000_000)]

    def stamped(capture_ns: int) -> tuple[int, int]:
        index = max(i for i, (at, _) in enumerate(steps) if capture_ns >= at)
        return t0 + capture_ns + sum(step for _, step in steps[1:index + 1]), index

    duration_ns = 2_000_000_000
    events = []
    period = round(1e9 / 30)
    for n in range(duration_ns // period):
        t, seg = stamped(n * period)
        events.append((n * period, 1, n * period, "cam", n, t, seg))
    block_ns = BLOCK_LATE * 1_000_000_000 // RATE
    for b in range(duration_ns // block_ns):
        capture = b * block_ns
        t, seg = stamped(capture)
        key = capture
        if 1_000_000_000 <= capture < 1_350_000_000:
            key = 1_350_000_000
        elif capture >= duration_ns - 300_000_000:
            key += 10 * duration_ns
        events.append((key, 0, capture, "mic", b, t, seg))
    events.sort(key=lambda e: e[:3])  # each source in its own capture order
    return [(key, kind, n, t, seg) for key, _, _, kind, n, t, seg in events], segments


@pytest.mark.parametrize("stepped", [True, False], ids=["clock-steps", "no-steps"])
@pytest.mark.parametrize("batched", [True, False], ids=["write_audio_blocks", "write_audio"])
def test_late_sources_and_clock_steps_across_boundaries_stay_in_their_own_parts(take_dir, synth, batched, stepped):
    """A source delivered more than two parts behind the others, or stepped back over a boundary by its clock, still
    writes each item into the part of its own canonical time; nothing is lost or written twice."""
    cam = CameraSource("cam", 16, 24, "YUYV", 30.0, encoding="raw")
    mic = AudioSource("mic", 2, RATE, "int32")
    pat = synth.pattern("YUYV", 16, 24)
    t0 = synth.T0_NS
    delivery, segments = _late_and_stepped_schedule(t0, stepped)
    rng = np.random.default_rng(11)
    sent_frames, sent_blocks = [], []
    declared = {"cam": 0, "mic": 0}
    pending: list[tuple[int, int, np.ndarray]] = []   # audio blocks for one write_audio_blocks call

    def flush_audio() -> None:
        if pending:
            take.write_audio_blocks("mic", np.concatenate([b for _, _, b in pending]), [t for t, _, _ in pending],
                                    [n * BLOCK_LATE for _, n, _ in pending], [BLOCK_LATE] * len(pending))
            pending.clear()

    with TakeWriter(take_dir, [cam, mic], split_seconds=SPLIT_LATE_S, flush_interval_s=0.1) as take:
        batch_end = 0
        for i, (_, kind, n, t, seg) in enumerate(delivery):
            if kind == "cam" or seg != declared["mic"] or i >= batch_end:
                flush_audio()
                batch_end = i + int(rng.integers(1, 60))
            if seg != declared[kind]:
                take.begin_clock_segment(kind, segments[seg])
                declared[kind] = seg
            if kind == "mic":
                block = (np.arange(BLOCK_LATE * 2, dtype=np.int32).reshape(BLOCK_LATE, 2) + n * BLOCK_LATE * 2) * 977
                sent_blocks.append((t, block))
                if batched:
                    pending.append((t, n, block))
                else:
                    take.write_audio("mic", block, t, start_sample=n * BLOCK_LATE)
            else:
                sent_frames.append(t)
                take.write_frame("cam", pat.render(n, t), t, sequence=n)
        flush_audio()
    m = take.manifest
    assert m.complete and all(f.closed for f in m.files) and m.origin_ns == t0
    assert_files_inside_their_parts(m, take_dir, block_s=BLOCK_LATE / RATE)

    take_r = open_take(take_dir)
    frames = take_r.frames("cam")
    assert frames.canonical_ns.tolist() == sent_frames and frames.sequence.tolist() == list(range(len(sent_frames)))
    for n in range(len(frames.sequence)):
        assert pat.verify(frames.pixels[n]) == (n, sent_frames[n])
    runs = take_r.audio("mic")
    assert np.array_equal(np.concatenate([r.samples for r in runs]), np.concatenate([b for _, b in sent_blocks]))
    assert np.concatenate([r.blocks["canonical_ns"] for r in runs]).tolist() == [t for t, _ in sent_blocks]
    for r in runs:  # each file one contiguous run of device samples
        assert (np.diff(r.blocks["start_sample"]) == BLOCK_LATE).all()
    assert m.source("mic").gaps == [] and m.source("cam").gaps == []
    audio_parts = [f.part for f in m.files_of("mic", "audio")]
    if stepped:  # the -30 ms step took the audio back over the 0.7 s boundary, into part 6, which it had left
        assert [p for p in audio_parts if p in (6, 7)] == [6, 7, 6, 7]
    else:
        assert audio_parts == list(range(20))
    # XDF: every part a source wrote is one file; its streams add up to every item exactly once.
    xdf_parts = [f.part for f in m.files_of(None, "xdf")]
    assert len(xdf_parts) == len(set(xdf_parts))
    assert set(xdf_parts) == {f.part for f in m.files if f.role in ("video", "audio")}
    counts = {"cam": 0, "mic": 0}
    for f in m.files_of(None, "xdf"):
        streams, _ = pyxdf.load_xdf(str(take_dir / f.path), dejitter_timestamps=False)
        for s in streams:
            counts[s["info"]["name"][0]] += len(s["time_stamps"])
    assert counts == {"cam": len(sent_frames), "mic": len(sent_blocks) * BLOCK_LATE}
