"""What the recorder's reader thread hands its writer thread: per-source queues, staging, audio first.

Items (one per published frame or block, in each source's ring order):

* :class:`Frame` - a camera frame still in its ring: the writer copies it
  out (seqlock-checked) just before writing it, unless the reader thread
  had to *stage* it first (copy it into memory because its ring was about
  to overwrite it);
* :class:`Block` - an audio block, already copied out of its ring by the
  reader thread (audio is small: 8 channels x 48 kHz float32 is 1.5 MB/s);
* :class:`Skipped` - items the reader found missing (never indexed, evicted
  before it read them, overwritten before it copied them), with their span.

Policy (why the writer can fall behind without capture ever waiting):

* **Order.** The writer takes the oldest head (canonical time) among the
  sources whose next item is ready, so every source advances together and
  split parts fill in time order.
* **Staging.** A camera frame that comes within ``stage_margin_s`` of capture
  of being overwritten in its ring is copied into a reused buffer, while the
  staging budget (``stage_bytes``) lasts. This absorbs a writer stalled for
  longer than the ring's spare seconds (a disk that stops for a while, a
  pre-roll that starts at the oldest frames of the window).
* **Audio first.** Audio is copied as soon as it is indexed and kept in
  memory (up to ``audio_bytes``). When the writer cannot keep up, only video
  is dropped: a frame the writer finds overwritten before it could copy it
  (it is behind by more than the ring and the staging budget hold) makes it
  drop that camera's unstaged frames with less than ``drop_to_s`` of ring
  life left, in one burst (one manifest entry per burst, not one per frame:
  the writer then spends its time on frames it can still save). Audio is
  only ever dropped when its own memory budget is full, and before that
  happens video gives way: when queued audio passes half its budget the
  writer drops every queued frame (staged ones too) older than a second
  before the newest indexed item, so the lag that audio has to hold in memory
  shrinks to about a second.

Thread safety: every method takes the one condition lock; the reader thread
calls :meth:`put`, :meth:`stage` and :meth:`finish`, the writer thread
:meth:`next`, :meth:`drop_behind` and :meth:`release`.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ringbuf import RingReader, StaleItem

from .clock import SegmentSlot

__all__ = ["Frame", "Block", "Skipped", "SourceQueue", "Queues", "ring_life", "copy_frame", "AUDIO_BATCH",
           "AUDIO_LEAD_NS"]

AUDIO_BATCH = 512                 # audio blocks handed to the writer at once (one libsndfile write per file)
AUDIO_LEAD_NS = 100_000_000       # how far a batch of audio may run ahead of the oldest other source


@dataclass(slots=True, eq=False)
class Frame:
    ts_ns: int
    ring_seq: int
    sequence: int
    device_ns: int
    host_ns: int
    stride_bytes: int
    reader: RingReader            # the ring incarnation that holds it
    segment: SegmentSlot | None
    pixels: np.ndarray | None = None   # a staged copy (a pool buffer), or None while it is still only in the ring
    lost: bool = False                 # the reader found it overwritten while staging it

    @property
    def decided(self) -> bool:
        return self.pixels is not None or self.lost


@dataclass(slots=True, eq=False)
class Block:
    ts_ns: int
    ring_seq: int
    start_sample: int
    host_ns: int
    samples: np.ndarray           # (frames, channels), a copy
    segment: SegmentSlot | None


@dataclass(slots=True, eq=False)
class Skipped:
    ts_ns: int                    # first_ns of the span
    last_ns: int
    count: int
    cause: int                    # ledger.Cause
    segment: None = None


Item = Frame | Block | Skipped


def ring_life(frame: Frame) -> int:
    """Items the frame's ring can still publish before it overwrites the frame (<= 0: gone)."""
    reader = frame.reader
    return reader.capacity - (reader.published - frame.ring_seq)


class SourceQueue:
    """One source's pending items (ring order) and its staging buffers. Used under :class:`Queues`' lock."""

    def __init__(self, index: int, name: str, is_camera: bool, rate_hz: float, *,
                 slot_shape: tuple[int, ...] = (), slot_dtype: np.dtype | None = None) -> None:
        self.index = index
        self.name = name
        self.is_camera = is_camera
        self.rate_hz = rate_hz
        self.slot_shape = slot_shape        # cameras: one ring slot (what a staging buffer holds)
        self.slot_dtype = slot_dtype
        self.items: deque[Item] = deque()
        self.decided = 0          # cameras: the front items the reader has staged or found lost
        self.free: list[np.ndarray] = []   # staging buffers the writer gave back

    def items_for(self, seconds: float) -> int:
        return max(1, math.ceil(seconds * self.rate_hz))


class Queues:
    """The hand-over between the reader thread and the writer thread (see the module docstring)."""

    def __init__(self, queues: Sequence[SourceQueue], *, stage_bytes: int, audio_bytes: int,
                 stage_margin_s: float = 1.0, drop_to_s: float = 1.5) -> None:
        self.queues = list(queues)
        self.stage_bytes = stage_bytes
        self.audio_bytes = audio_bytes
        self.stage_margin_s = stage_margin_s
        self.drop_to_s = drop_to_s
        self.cond = threading.Condition()
        self.pool_bytes = 0       # staging buffers allocated (in use or free): never above stage_bytes
        self.staged_bytes = 0     # staging buffers holding a frame now
        self.staged_frames = 0    # frames staged so far (a count, for the result)
        self.queued_audio_bytes = 0
        self.finished = False     # the reader will put nothing more
        self.frozen = False       # the rig stopped: its rings are written no more (nothing is at risk)

    # ---- reader side ----------------------------------------------------------------------------------------
    def put(self, queue: SourceQueue, items: Sequence[Item]) -> None:
        if not items:
            return
        with self.cond:
            queue.items.extend(items)
            for item in items:
                if isinstance(item, Block):
                    self.queued_audio_bytes += item.samples.nbytes
            self.cond.notify()

    def audio_room(self, nbytes: int) -> bool:
        """True while ``nbytes`` more of audio fit the audio budget."""
        return self.queued_audio_bytes + nbytes <= self.audio_bytes

    def stage(self) -> int:
        """Copy every queued camera frame within the staging margin of being overwritten; return how many.

        Frames are in ring order, so a camera is done at its first frame with
        more life left than the margin (or when the budget is spent).
        """
        staged = 0
        with self.cond:
            for q in self.queues:
                if not q.is_camera:
                    continue
                margin = q.items_for(self.stage_margin_s)
                for frame in itertools.islice(q.items, q.decided, None):  # a deque: walk it, never index it
                    if isinstance(frame, Frame) and not frame.decided:
                        if ring_life(frame) > margin:
                            break
                        buffer = self._buffer(q)
                        if buffer is None:
                            break  # the budget is spent: the writer catches up by dropping, if it must
                        if copy_frame(buffer, frame):
                            frame.pixels = buffer
                            self.staged_bytes += buffer.nbytes
                            self.staged_frames += 1
                            staged += 1
                        else:
                            q.free.append(buffer)
                            frame.lost = True
                    q.decided += 1
        return staged

    def _buffer(self, q: SourceQueue) -> np.ndarray | None:
        if q.free:
            return q.free.pop()
        assert q.slot_dtype is not None, "a camera queue knows its ring's slot"
        nbytes = math.prod(q.slot_shape) * q.slot_dtype.itemsize
        if self.pool_bytes + nbytes > self.stage_bytes:
            return None
        self.pool_bytes += nbytes
        return np.empty(q.slot_shape, q.slot_dtype)

    def finish(self) -> None:
        with self.cond:
            self.finished = True
            self.cond.notify_all()

    # ---- writer side ----------------------------------------------------------------------------------------
    def next(self, timeout_s: float) -> tuple[SourceQueue, list[Item]] | None:
        """The oldest ready head of all queues, removed (with the audio blocks right behind it); None when
        nothing is ready within ``timeout_s``.

        A head that is an audio block comes with the blocks that follow it in
        its queue (same clock segment, at most :data:`AUDIO_BATCH` blocks, none
        later than :data:`AUDIO_LEAD_NS` past the oldest other head), so the
        writer hands them to the take in one call.
        """
        with self.cond:
            while True:
                best: SourceQueue | None = None
                best_ts = second_ts = 0
                for q in self.queues:
                    if not q.items:
                        continue
                    head = q.items[0]
                    if head.segment is not None and not head.segment.ready:
                        continue
                    if best is None or head.ts_ns < best_ts:
                        if best is not None:
                            second_ts = best_ts
                        best, best_ts = q, head.ts_ns
                    elif second_ts == 0 or head.ts_ns < second_ts:
                        second_ts = head.ts_ns
                if best is not None:
                    first = self._pop(best)
                    items = [first]
                    if isinstance(first, Block):
                        limit = second_ts + AUDIO_LEAD_NS if second_ts else None
                        queue = best.items
                        while queue and len(items) < AUDIO_BATCH:
                            nxt = queue[0]
                            if not isinstance(nxt, Block) or nxt.segment is not first.segment or \
                                    (limit is not None and nxt.ts_ns > limit):
                                break
                            items.append(self._pop(best))
                    return best, items
                if self.finished and not any(q.items for q in self.queues):
                    return None
                if not self.cond.wait(timeout_s):
                    return None

    def _pop(self, q: SourceQueue) -> Item:
        item = q.items.popleft()
        if q.decided:
            q.decided -= 1
        if isinstance(item, Block):
            self.queued_audio_bytes -= item.samples.nbytes
        return item

    def drop_behind(self, q: SourceQueue) -> list[Frame]:
        """Remove and return ``q``'s unstaged frames with less than ``drop_to_s`` of ring life left.

        The writer calls this when it found a frame overwritten before it
        could copy it: it is behind by more than the ring (and staging) can
        hold. Nothing is dropped once the rig has stopped (:attr:`frozen`):
        its rings are not written any more.
        """
        keep_above = q.items_for(self.drop_to_s)
        if self.frozen:
            return []
        with self.cond:
            kept: deque[Item] = deque()
            dropped: list[Frame] = []
            for item in q.items:
                if (isinstance(item, Frame) and item.pixels is None and not item.reader.writer_closed
                        and ring_life(item) < keep_above):
                    dropped.append(item)
                else:
                    kept.append(item)
            q.items = kept
            q.decided = 0
            for item in kept:
                if isinstance(item, Frame) and not item.decided:
                    break
                q.decided += 1
            return dropped

    def audio_pressed(self) -> bool:
        """True when queued audio passed half its budget: the writer must shed video to catch up."""
        return self.queued_audio_bytes > self.audio_bytes // 2

    def drop_video_before(self, ts_ns: int) -> dict[int, list[Frame]]:
        """Remove every queued frame (staged or not) older than ``ts_ns``; ``{queue index: frames}``.

        What the writer does when queued audio presses on its budget: it is
        behind by seconds, and shedding video is how audio keeps priority
        (staged frames' buffers go back to their cameras).
        """
        dropped: dict[int, list[Frame]] = {}
        with self.cond:
            for q in self.queues:
                if not q.is_camera:
                    continue
                kept: deque[Item] = deque()
                for item in q.items:
                    if isinstance(item, Frame) and item.ts_ns < ts_ns:
                        if item.pixels is not None:
                            self.staged_bytes -= item.pixels.nbytes
                            q.free.append(item.pixels)
                            item.pixels = None
                        dropped.setdefault(q.index, []).append(item)
                    else:
                        kept.append(item)
                q.items = kept
                q.decided = 0
                for item in kept:
                    if isinstance(item, Frame) and not item.decided:
                        break
                    q.decided += 1
        return dropped

    def release(self, q: SourceQueue, frame: Frame) -> None:
        """The writer is done with a staged frame: its buffer goes back to the camera's free list."""
        if frame.pixels is None:
            return
        with self.cond:
            self.staged_bytes -= frame.pixels.nbytes
            q.free.append(frame.pixels)
            frame.pixels = None

    def pending(self) -> int:
        with self.cond:
            return sum(len(q.items) for q in self.queues)


def copy_frame(buffer: np.ndarray, frame: Frame) -> bool:
    """Copy the frame's ring payload into ``buffer``; False when it was overwritten before or during the copy."""
    try:
        view = frame.reader.payload_view(frame.ring_seq)
    except StaleItem:
        return False
    np.copyto(buffer, view)
    return frame.reader.valid(frame.ring_seq)
