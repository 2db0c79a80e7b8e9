"""The hand-over between the recorder's threads: canonical order, staging before a ring laps, bursts, audio first."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mimir.descriptors import CameraFrameDescriptor
from mimir.record.clock import SegmentSlot
from mimir.record.queues import Block, Frame, Queues, Skipped, SourceQueue, copy_frame, ring_life
from mimir.supervisor.clock import ClockSegment as RigSegment
from mimir.supervisor.clock import ClockState, SegmentReason
from mimir.take import ClockSegment
from ringbuf import Ring, RingReader

RATE = 10.0   # frames/s: margins in items are seconds x 10
CAPACITY = 40


@pytest.fixture
def camera(rig):
    ring = Ring.create("c0", rig=rig, descriptor=CameraFrameDescriptor, capacity=CAPACITY, payload_shape=(4, 4))
    reader = RingReader.attach("c0", rig=rig, register=False)
    yield ring, reader
    reader.close()
    ring.close()


def publish(ring: Ring, n: int) -> list[int]:
    seqs = []
    for _ in range(n):
        seq = ring.published
        ring.claim()[:] = seq % 256
        ring.publish(1, seq, 0, 0, 4, 4, 0, 4, 16, ring.handle(seq))
        seqs.append(seq)
    return seqs


def frame(reader: RingReader, seq: int, ts: int | None = None, segment=None) -> Frame:
    return Frame(ts if ts is not None else seq * 100, seq, seq, 0, 0, 4, reader, segment)


def block(ts: int, segment=None) -> Block:
    return Block(ts, 0, 0, 0, np.zeros((4, 2), np.float32), segment)


def make(*queues: SourceQueue, stage_bytes: int = 1 << 20, audio_bytes: int = 1 << 20) -> Queues:
    return Queues(list(queues), stage_bytes=stage_bytes, audio_bytes=audio_bytes, stage_margin_s=1.0, drop_to_s=1.5)


def cam_queue(index: int = 0) -> SourceQueue:
    return SourceQueue(index, f"cam{index}", True, RATE, slot_shape=(4, 4), slot_dtype=np.dtype(np.uint8))


S = 1_000_000_000


def test_the_writer_takes_the_oldest_ready_head_of_all_sources():
    cam, mic = cam_queue(0), SourceQueue(1, "mic", False, 750.0)
    q = make(cam, mic)
    q.put(cam, [Skipped(1 * S, 1 * S, 1, 0), Skipped(3 * S, 3 * S, 1, 0)])
    q.put(mic, [block(S // 2), block(2 * S), block(4 * S)])
    order = [[i.ts_ns for i in q.next(0)[1]] for _ in range(5)]
    assert order == [[S // 2], [S], [2 * S], [3 * S], [4 * S]]
    assert q.next(0) is None  # nothing left (and the reader has not finished): times out
    q.finish()
    assert q.next(0) is None and q.finished and not q.pending()


def test_audio_blocks_come_in_batches_of_one_segment_not_far_ahead_of_video():
    cam, mic = cam_queue(0), SourceQueue(1, "mic", False, 750.0)
    q = make(cam, mic)
    other = SegmentSlot(RigSegment(2, ClockState.PROVISIONAL, SegmentReason.STEP, 0, 0, 0, 0), 0)
    other.take = ClockSegment(2)
    ms = 1_000_000
    q.put(cam, [Skipped(10 * ms, 10 * ms, 1, 0)])
    q.put(mic, [block(k * ms) for k in range(0, 150)] + [block(150 * ms, other), block(151 * ms, other)])
    _, first = q.next(0)
    assert [b.ts_ns for b in first] == [k * ms for k in range(0, 111)]  # up to the camera's head + 100 ms
    _, skip = q.next(0)
    assert isinstance(skip[0], Skipped)
    _, rest = q.next(0)                   # nothing else is waiting: the rest of the segment at once
    assert [b.ts_ns for b in rest] == [k * ms for k in range(111, 150)]
    _, last = q.next(0)                   # a new clock segment starts a new batch
    assert [b.ts_ns for b in last] == [150 * ms, 151 * ms] and not q.pending()


def test_items_wait_until_their_clock_segment_is_ready_and_audio_is_not_held_back_by_video():
    slot = SegmentSlot(RigSegment(1, ClockState.LOCKED, SegmentReason.LOCK, 0, 0, 5, 0), 0)
    cam, mic = cam_queue(0), SourceQueue(1, "mic", False, 750.0)
    q = make(cam, mic)
    q.put(cam, [Skipped(10, 10, 1, 0)])
    q.put(mic, [block(5, slot), block(20, slot)])
    assert q.next(0)[1][0].ts_ns == 10   # the older audio waits for its segment's fit; the camera goes on
    assert q.next(0) is None
    slot.take = ClockSegment(1, "locked")
    assert [b.ts_ns for b in q.next(0)[1]] == [5, 20]


def test_the_writer_wakes_as_soon_as_the_reader_puts_something():
    mic = SourceQueue(0, "mic", False, 750.0)
    q = make(mic)
    got = []
    t = threading.Thread(target=lambda: got.append(q.next(10.0)))
    t.start()
    q.put(mic, [block(1)])
    t.join(5)
    assert got and got[0][1][0].ts_ns == 1


def test_frames_about_to_be_overwritten_are_staged_within_the_budget(camera):
    ring, reader = camera
    cam = cam_queue()
    q = make(cam, stage_bytes=3 * 16)  # room for three staged frames
    seqs = publish(ring, 30)
    q.put(cam, [frame(reader, s) for s in seqs])
    # Life left = capacity - (published - seq): frame 0 has 10 items left, frame 19 has 29; the margin is 10 items.
    assert ring_life(cam.items[0]) == 10
    assert q.stage() == 1 and cam.items[0].pixels is not None and cam.items[1].pixels is None
    publish(ring, 5)   # frames 1..5 come within the margin; the budget has room for two more
    assert q.stage() == 2
    assert [f.pixels is not None for f in list(cam.items)[:5]] == [True, True, True, False, False]
    assert q.pool_bytes == q.staged_bytes == 48
    publish(ring, 20)  # frames 0..14 are overwritten in the ring now: the staged copies survive, bit-exact
    for i in range(3):
        f = cam.items[i]
        assert np.array_equal(f.pixels, np.full((4, 4), f.ring_seq % 256, np.uint8))
        assert not reader.valid(f.ring_seq)
    _, (first,) = q.next(0)
    q.release(cam, first)   # its buffer goes back for the next frame the reader stages
    assert q.staged_bytes == 32 and q.pool_bytes == 48 and len(cam.free) == 1
    # Frames 3..14 are overwritten already: found lost, never copied torn; frame 15 (its last moment) is staged.
    assert q.stage() == 1
    items = list(cam.items)
    assert [f.ring_seq for f in items if f.lost] == list(range(3, 15)) and all(f.pixels is None for f in items[2:14])
    assert items[14].ring_seq == 15 and items[14].pixels is not None and items[15].pixels is None


def test_a_frame_overwritten_during_its_copy_is_refused(camera):
    ring, reader = camera
    seq = publish(ring, 1)[0]
    f = frame(reader, seq)
    buffer = np.empty((4, 4), np.uint8)
    assert copy_frame(buffer, f)
    publish(ring, CAPACITY)  # the slot holds another item now
    assert not copy_frame(buffer, f)


def test_a_writer_behind_drops_the_frames_it_cannot_save_in_one_burst(camera):
    ring, reader = camera
    cam = cam_queue()
    q = make(cam, stage_bytes=0)      # no staging: the burst is all the writer can do
    seqs = publish(ring, CAPACITY)
    q.put(cam, [frame(reader, s) for s in seqs])
    q.put(cam, [Skipped(99_999, 99_999, 2, 0)])
    publish(ring, 5)                  # frames 0..4 are gone; the writer finds frame 0 overwritten
    _, (first,) = q.next(0)
    assert not copy_frame(np.empty((4, 4), np.uint8), first)
    dropped = q.drop_behind(cam)
    # Every unstaged frame with less than 1.5 s (15 items) of ring life left goes: frames 1..19.
    assert [f.ring_seq for f in dropped] == list(range(1, 20))
    rest = list(cam.items)
    assert [f.ring_seq for f in rest if isinstance(f, Frame)] == list(range(20, CAPACITY))
    assert isinstance(rest[-1], Skipped)  # what the reader reported is kept
    q.frozen = True                       # the rig stopped: its rings are not written any more
    publish(ring, 30)
    assert q.drop_behind(cam) == []


def test_audio_has_its_own_budget():
    mic = SourceQueue(0, "mic", False, 750.0)
    q = make(mic, audio_bytes=64)
    assert q.audio_room(64) and not q.audio_room(65)
    q.put(mic, [block(1)])            # 32 bytes queued
    assert q.audio_room(32) and not q.audio_room(33)
    q.next(0)
    assert q.audio_room(64)


def test_audio_pressing_on_its_budget_sheds_old_video_staged_or_not(camera):
    ring, reader = camera
    cam, mic = cam_queue(0), SourceQueue(1, "mic", False, 750.0)
    q = make(cam, mic, stage_bytes=1 << 20, audio_bytes=4 * 32)
    seqs = publish(ring, 30)
    q.put(cam, [frame(reader, s, ts=s * S // 10) for s in seqs])   # frames at 0, 0.1 .. 2.9 s
    assert q.stage() == 1 and cam.items[0].pixels is not None      # frame 0 staged
    assert not q.audio_pressed()
    q.put(mic, [block(k) for k in range(3)])                       # 96 of 128 bytes: past half the budget
    assert q.audio_pressed()
    dropped = q.drop_video_before(2 * S)
    assert [f.ring_seq for f in dropped[0]] == list(range(20)) and q.staged_bytes == 0 and len(cam.free) == 1
    assert [f.ring_seq for f in cam.items] == list(range(20, 30))
    assert len(mic.items) == 3                                      # audio is never what gives way
