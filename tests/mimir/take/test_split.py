"""File rotation: ``split_seconds`` rolls every file over with no frame or sample lost or written twice."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
import pyxdf

from mimir.take import AudioSource, CameraSource, TakeWriter, open_take

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
    split_ns = round(SPLIT_S * 1e9)
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
        # Lagging sources join the oldest open part, so they may have a few files fewer than parts.
        assert len(videos) >= 25 and [f.part for f in videos] == sorted({f.part for f in videos})
        if audio_lead_s == 0.0:  # delivered in time order: each file holds exactly its part's span
            for f in videos:
                start = m.origin_ns + f.part * split_ns
                assert start <= f.first_ns <= f.last_ns < start + split_ns
        assert m.source(cam).gaps == [] and m.source(cam).written == len(sent_frames[cam])
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
