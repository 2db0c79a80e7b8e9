"""The recorder against a rig the test drives item by item: every published item written bit-exact or counted.

The rig is real shared memory (the published plan, the reservoir, the rings:
``tests/mimir/_fake_rig.py``); the test plays the workers and the supervisor, so items
that are never indexed, evicted, overwritten, or published by a restarted
worker happen exactly where the test puts them, and the expected counts
are exact.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mimir.record import Recorder
from mimir.record.clock import ClockTracker
from mimir.record.feed import RigFeed, plan_sources
from mimir.record.ledger import CAUSE_TEXT, Cause
from mimir.record.queues import Block, Frame, Queues, Skipped
from mimir.reservoir import ReservoirView
from mimir.take import open_take
from mimir.topology import RESERVOIR

_spec = importlib.util.spec_from_file_location("_fake_rig", Path(__file__).parents[1] / "_fake_rig.py")
fake = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake)

CAMS = ("cam.synthetic.0", "cam.synthetic.1")


def record_all(rig, out) -> "RecordResult":  # noqa: F821
    """Record the rig from its first item until it stops (the test stops it once everything is published)."""
    rec = Recorder(rig.rig, out, from_start=True, board=False).start()
    rig.stop()
    assert rec.wait(60), "the recorder did not finish after the rig stopped"
    return rec.close()


def test_every_item_of_a_rig_is_written_bit_exact_at_its_time_or_counted_with_its_cause(fake_rig, tmp_path):
    r = fake_rig()
    unindexed = frozenset({("c", 0, 5), ("c", 0, 6), ("c", 1, 40), ("a", 0, 100), ("a", 0, 101), ("a", 0, 102)})
    r.run(2.0, skip_index=unindexed)
    r.publish_frame(1, index=False)  # published after the last indexed item: the rig stops before indexing it
    result = record_all(r, tmp_path / "take")
    assert result.ended_by == "rig stopped" and result.error is None
    published = {CAMS[0]: r.frames_published[0], CAMS[1]: r.frames_published[1], "audio": r.blocks_published}
    assert result.published == published
    assert result.skipped == {CAMS[0]: 2, CAMS[1]: 2, "audio": 3}
    for name in published:
        assert result.written[name] + result.skipped[name] == published[name]
    m = result.manifest
    assert not m.complete  # items are missing, and the manifest says which
    skips = {r_.source.name: [(s.count, s.cause) for s in r_.skipped] for r_ in m.sources}
    never = CAUSE_TEXT[Cause.NOT_INDEXED]
    assert skips == {CAMS[0]: [(2, never)], CAMS[1]: [(1, never), (1, never)], "audio": [(3, never)]}
    cam0_skip = m.source(CAMS[0]).skipped[0]  # between frames 4 and 7: their own times are unknown
    assert r.frame_time(4, 0) < cam0_skip.first_ns <= cam0_skip.last_ns < r.frame_time(7, 0)
    take = open_take(result.path)
    for c, name in enumerate(CAMS):
        frames = take.frames(name)
        expected = [n for n in range(r.frames_published[c]) if ("c", c, n) not in unindexed and (c, n) in r.frame_times]
        assert len(frames.sequence) == len(expected) == m.source(name).written
        for i, n in enumerate(expected):
            assert np.array_equal(frames.pixels[i], fake.frame_pixels(c, n))   # bit-exact, the right frame
            assert frames.canonical_ns[i] == r.frame_times[(c, n)]              # at the time the reservoir indexed
    runs = take.audio("audio")
    blocks = [n for n in range(r.blocks_published) if ("a", 0, n) not in unindexed]
    assert [int(run.blocks["start_sample"][0]) for run in runs] == [0, 103 * fake.BLOCK]  # the gap starts a new WAV
    samples = np.concatenate([run.samples for run in runs])
    assert np.array_equal(samples, np.concatenate([fake.block_samples(n) for n in blocks]))
    assert np.array_equal(np.concatenate([run.blocks["canonical_ns"] for run in runs]),
                          [r.block_time(n) for n in blocks])
    assert m.rig["record"]["sources"][CAMS[0]]["first_ring_sequence"] == 0


def test_items_evicted_before_the_recorder_read_them_are_counted_per_source(fake_rig):
    r = fake_rig(reservoir_capacity=1024)
    with ReservoirView.attach(r.rig, RESERVOIR) as view:
        sources, _ = plan_sources(r.rig, r.plan, "raw")
        queues = Queues([s.queue for s in sources], stage_bytes=1 << 20, audio_bytes=1 << 24)
        feed = RigFeed(r.rig, view, sources, queues, ClockTracker(r.rig, r.plan))
        try:
            feed.start(0.0)
            r.run(0.5)
            feed.poll()  # read in time
            before = {s.queue.name: len(s.queue.items) for s in sources}
            r.run(2.0)   # 60 frames x 2 + 1,500 blocks: more than the reservoir holds; the oldest leave first
            feed.poll()
            for s in sources:
                got = [i for i in s.queue.items if not isinstance(i, Skipped)]
                skipped = [i for i in s.queue.items if isinstance(i, Skipped)]
                published = r.frames_published[s.queue.index] if s.is_camera else r.blocks_published
                assert s.ledger.published == published
                assert len(got) + sum(k.count for k in skipped) == published
                assert [k.cause for k in skipped] == [Cause.EVICTED], s.queue.name
                assert skipped[0].count == published - len(got)
                assert before[s.queue.name] > 0
            assert feed.evicted_positions[fake_kind("camera")] + feed.evicted_positions[fake_kind("audio")] > 0
        finally:
            feed.close()


def fake_kind(what: str) -> int:
    from mimir.descriptors import SampleKind

    return int(SampleKind.CAMERA_FRAME if what == "camera" else SampleKind.AUDIO_BLOCK)


def test_frames_overwritten_before_the_recorder_copied_them_are_counted_never_written_torn(fake_rig):
    r = fake_rig(camera_capacity=8)
    with ReservoirView.attach(r.rig, RESERVOIR) as view:
        sources, _ = plan_sources(r.rig, r.plan, "raw")
        queues = Queues([s.queue for s in sources], stage_bytes=1 << 20, audio_bytes=1 << 24)
        feed = RigFeed(r.rig, view, sources, queues, ClockTracker(r.rig, r.plan))
        try:
            feed.start(0.0)
            r.run(1.0)  # 30 frames per camera into rings of 8: the first 22 are gone before the recorder looks
            feed.poll()
            for s in sources[:2]:
                items = list(s.queue.items)
                assert sum(i.count for i in items if isinstance(i, Skipped) and i.cause == Cause.LAPPED) == 22
                frames = [i for i in items if isinstance(i, Frame)]
                assert len(frames) == 8 and s.ledger.published == 30
            assert all(isinstance(i, Block) for i in sources[2].queue.items)  # audio rings hold them all
        finally:
            feed.close()


class Walk:
    """A :class:`RigFeed` driven by the test, pass by pass (no threads)."""

    def __init__(self, rig) -> None:
        self.view = ReservoirView.attach(rig.rig, RESERVOIR)
        self.sources, _ = plan_sources(rig.rig, rig.plan, "raw")
        self.queues = Queues([s.queue for s in self.sources], stage_bytes=1 << 20, audio_bytes=1 << 24)
        self.feed = RigFeed(rig.rig, self.view, self.sources, self.queues, ClockTracker(rig.rig, rig.plan))

    def items(self, index: int) -> list:
        return list(self.sources[index].queue.items)

    def close(self) -> None:
        self.feed.close()
        self.view.close()


def test_a_worker_restarted_during_the_recording_is_followed_into_its_new_ring(fake_rig):
    r = fake_rig()
    walk = Walk(r)
    try:
        walk.feed.start(0.0)
        r.run(0.5)
        walk.feed.poll()
        r.publish_frame(0, index=False)   # published by the dying worker, never indexed
        r.publish_frame(0, index=False)
        r.restart_camera(0)               # the new ring counts from 0 again
        r.run(0.5)
        walk.feed.poll()
        cam = walk.sources[0]
        assert cam.ledger.published == r.frames_published[0] == 32
        items = walk.items(0)
        frames = [i for i in items if isinstance(i, Frame)]
        skips = [i for i in items if isinstance(i, Skipped)]
        assert [(k.count, k.cause) for k in skips] == [(2, Cause.NOT_INDEXED)]
        assert len(frames) == 30 and len({id(f.reader) for f in frames}) == 2  # two ring incarnations
        expected = [n for n in range(32) if n not in (15, 16)]
        for f, n in zip(frames, expected, strict=True):
            assert np.array_equal(f.reader.payload_view(f.ring_seq), fake.frame_pixels(0, n))
            assert f.ts_ns == r.frame_times[(0, n)]
        assert walk.sources[1].ledger.published == r.frames_published[1]  # the other camera is untouched
    finally:
        walk.close()


def test_a_pre_roll_over_an_earlier_restart_counts_the_gone_ring_s_items(fake_rig, tmp_path):
    """The old ring was gone before the recorder attached: its indexed items are counted (lapped), not written."""
    r = fake_rig()
    r.run(0.5)
    r.restart_camera(0)
    r.run(0.5)
    result = record_all(r, tmp_path / "take")
    assert result.published[CAMS[0]] == 30 and result.written[CAMS[0]] == 15 and result.skipped[CAMS[0]] == 15
    assert result.manifest.source(CAMS[0]).skipped[0].cause == CAUSE_TEXT[Cause.LAPPED]
    frames = open_take(result.path).frames(CAMS[0])
    for i in range(15):
        assert np.array_equal(frames.pixels[i], fake.frame_pixels(0, 15 + i))
    assert result.written[CAMS[1]] == result.published[CAMS[1]] == 30
