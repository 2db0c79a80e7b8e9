"""The recorder's reader side: walks the reservoir with its own cursors and turns indexed items into queue items.

The reservoir is already a stamped stream: every frame and block the
supervisor indexed, in push order, at kind positions ``[kind_head,
kind_tail)``, each with its source's hash, the canonical time the supervisor
gave it, the host time it was indexed at, and a descriptor whose handle
names its ring slot. :class:`RigFeed` keeps one cursor per kind (camera
frames, audio blocks) and reads only what is new each pass
(:meth:`~mimir.reservoir.ReservoirView.typed_range`, a vectorised copy of
the new records).

Per source it follows the ring sequence numbers of the items it reads: a
jump means items the take will not have, and the cause is known exactly:
the cursor fell behind the kind head since that source's previous item
(*evicted* before the recorder read them), or the supervisor never indexed
them (lost in the ring before it read them). That makes the accounting of
:mod:`mimir.record.ledger` exact.

Worker restarts: a restarted worker makes a new ring of the same name,
numbered from 0 again. Each item's ring descriptor is compared with the one
the reservoir indexed (camera: frame sequence and host time; audio: start
sample and length); an item that is not in the ring the recorder holds,
when that ring's writer has gone, makes the recorder attach the new ring,
count what the old one published and no one indexed, and go on.

Nothing here writes to the rig: the reservoir is mapped read-only, rings are
attached as unregistered readers (no reader slot, no cursor in the ring, no
doorbell: the workers and the supervisor do nothing for the recorder).
Used from the recorder's reader thread only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import numpy as np

from mimir.descriptors import HANDLE_SEQUENCE_MASK, AudioBlockRecord, CameraFrameDescriptor, SampleKind
from mimir.reservoir import Evicted, ReservoirView
from mimir.take import AudioSource, CameraSource, Missing
from mimir.topology import AudioWorkerSpec, CameraWorkerSpec, RigPlan, SourceSpec
from ringbuf import RingReader, SegmentMissing, StaleItem
from ringbuf.ring import payload_dtype_of

from .clock import ClockTracker
from .ledger import Cause, SourceLedger
from .queues import Block, Frame, Item, Queues, Skipped, SourceQueue

__all__ = ["FeedSource", "RigFeed", "plan_sources"]

CAMERA = int(SampleKind.CAMERA_FRAME)
AUDIO = int(SampleKind.AUDIO_BLOCK)
_SEQ = np.uint64(HANDLE_SEQUENCE_MASK)
# Fields compared between the ring's descriptor and the reservoir's (which incarnation of a ring holds an item).
_CAM_SEQUENCE = CameraFrameDescriptor.__struct_fields__.index("sequence")
_CAM_HOST = CameraFrameDescriptor.__struct_fields__.index("host_time_ns")
_AUDIO_START = AudioBlockRecord.__struct_fields__.index("start_sample")
_AUDIO_FRAMES = AudioBlockRecord.__struct_fields__.index("frame_count")
_AUDIO_HOST = AudioBlockRecord.__struct_fields__.index("host_time_ns")


@dataclass(eq=False)
class FeedSource:
    """One recorded source: its spec, its take source, its ring incarnations and its accounting cursor."""

    spec: SourceSpec
    take: CameraSource | AudioSource
    queue: SourceQueue
    ledger: SourceLedger
    reader: RingReader | None
    readers: list[RingReader] = field(default_factory=list)   # every incarnation attached (closed at the end)
    first_seq: int | None = None      # the current incarnation's first ring item the recording covers
    next_seq: int = 0                 # the next ring item expected
    published_before: int = 0         # items of earlier incarnations the recording covered
    last_ts: int | None = None        # canonical time of the last item read
    evictions_at_last: int = 0

    @property
    def is_camera(self) -> bool:
        return isinstance(self.take, CameraSource)

    @property
    def period_ns(self) -> int:
        return round(1e9 / self.spec.nominal_hz)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """A camera's frame array shape (height, width[, bytes per pixel])."""
        assert isinstance(self.take, CameraSource)
        return self.take.shape


def plan_sources(rig: str, plan: RigPlan, video: str) -> tuple[list[FeedSource], list[Missing]]:
    """The sources a take of ``plan`` records, their rings attached; and what it cannot record, with why."""
    out: list[FeedSource] = []
    missing: list[Missing] = []
    for worker in plan.workers:
        if isinstance(worker, CameraWorkerSpec):
            for cam in worker.cameras:
                if worker.pixel_format == "MJPG":
                    missing.append(Missing(cam.source, "frames", "MJPG frames are compressed by the camera; the "
                                                                 "take format holds raw pixels"))
                    continue
                camera = msgspec.convert({"name": cam.source, "width": worker.width, "height": worker.height,
                                          "pixel_format": worker.pixel_format, "nominal_rate_hz": worker.fps,
                                          "encoding": video}, CameraSource)
                out.append(_source(rig, plan.source(cam.source), camera, len(out)))
        elif isinstance(worker, AudioWorkerSpec):
            audio = AudioSource(worker.source, worker.channels, worker.rate_hz, "float32")
            out.append(_source(rig, plan.source(worker.source), audio, len(out)))
    return out, missing


def _attach(rig: str, object_id: str) -> RingReader | None:
    try:
        return RingReader.attach(object_id, rig=rig, register=False)
    except SegmentMissing:
        return None


def _source(rig: str, spec: SourceSpec, take: CameraSource | AudioSource, index: int) -> FeedSource:
    """A source with its ring attached if its worker made it already (else at its first indexed item)."""
    reader = _attach(rig, spec.ring.object_id)
    is_camera = isinstance(take, CameraSource)
    shape: tuple[int, ...] = ()
    dtype: np.dtype | None = None
    if reader is not None and is_camera:
        shape, dtype = tuple(reader.layout.payload_shape), payload_dtype_of(reader.layout)
    queue = SourceQueue(index, spec.name, is_camera, spec.nominal_hz, slot_shape=shape, slot_dtype=dtype)
    return FeedSource(spec, take, queue, SourceLedger(spec.name, is_camera), reader,
                      readers=[reader] if reader is not None else [])


class RigFeed:
    """Reads what the rig indexed since the last pass and queues it (see the module docstring)."""

    def __init__(self, rig: str, view: ReservoirView, sources: list[FeedSource], queues: Queues,
                 clock: ClockTracker) -> None:
        self.rig = rig
        self.view = view
        self.sources = sources
        self.queues = queues
        self.clock = clock
        self._by_hash = {s.spec.source_hash: s for s in sources}
        self.kinds = [k for k in (CAMERA, AUDIO) if any((s.spec.kind == k) for s in sources)]
        self.cursor = {k: 0 for k in self.kinds}
        self.from_start = {k: False for k in self.kinds}
        self.evictions = {k: 0 for k in self.kinds}   # passes in which the cursor was found behind the kind head
        self.evicted_positions = {k: 0 for k in self.kinds}
        self.read_items = 0
        self.newest_ns = 0

    # ---- where the recording starts -------------------------------------------------------------------------------
    def start(self, pre_roll_s: float, *, from_start: bool = False) -> int:
        """Set every cursor; return the canonical time the recording starts at.

        Default: at the kind tail (items indexed from now on). ``pre_roll_s``:
        at the first item indexed at or after ``edge - pre_roll_s``.
        ``from_start``: at the kind head (everything the reservoir holds), and
        every source is accounted from its ring's item 0: what the reservoir no
        longer held is counted as evicted (a recorder the supervisor starts
        with the rig records the rig from its first item this way).
        """
        edge = self.view.edge_ns
        t0 = 0 if from_start else max(0, edge - round(pre_roll_s * 1e9))
        for kind in self.kinds:
            head, tail = self.view.kind_bounds(kind)
            if from_start:
                self.cursor[kind] = head
                self.evictions[kind] += head > 0  # items of the rig's start already gone: a jump from item 0
            elif pre_roll_s > 0:
                self.cursor[kind] = self._first_at_or_after(kind, t0)
            else:
                self.cursor[kind] = tail
            self.from_start[kind] = from_start
        return t0

    def _first_at_or_after(self, kind: int, t_ns: int) -> int:
        """The first kind position whose time is >= ``t_ns`` (times grow along the view to within a few ms)."""
        while True:
            lo, hi = self.view.kind_bounds(kind)
            try:
                while lo < hi:
                    mid = (lo + hi) // 2
                    if self.view.sensor_time_at(kind, mid)[1] < t_ns:
                        lo = mid + 1
                    else:
                        hi = mid
                return lo
            except Evicted:
                continue  # the window moved under the search: start again on the new one

    # ---- each pass --------------------------------------------------------------------------------------------------
    def poll(self) -> int:
        """Read everything indexed since the last pass, queue it; return how many items were read."""
        batches = [(kind, *self._read(kind)) for kind in self.kinds]
        self.clock.refresh()  # after the reads: the board then holds the segment of every item read
        total = 0
        for kind, rows, descriptors in batches:
            if len(rows):
                total += len(rows)
                if kind == CAMERA:
                    self._frames(rows, descriptors)
                else:
                    self._blocks(rows, descriptors)
        self.read_items += total
        return total

    def _read(self, kind: int) -> tuple[np.ndarray, np.ndarray]:
        cursor = self.cursor[kind]
        head, tail = self.view.kind_bounds(kind)
        if head > cursor:
            self.evictions[kind] += 1
            self.evicted_positions[kind] += head - cursor
            cursor = head
        if tail <= cursor:
            self.cursor[kind] = max(cursor, tail)
            return _EMPTY
        rows, descriptors = self.view.typed_range(kind, cursor, tail)
        if len(rows) < tail - cursor:
            head_after = self.view.kind_bounds(kind)[0]
            if head_after > cursor:  # some left the window while they were copied
                self.evictions[kind] += 1
                self.evicted_positions[kind] += min(head_after, tail) - cursor
        self.cursor[kind] = tail
        return rows, descriptors

    def _frames(self, rows: np.ndarray, descriptors: np.ndarray) -> None:
        hashes = rows["sensor_id_hash"].tolist()
        times = rows["timestamp_ns"].tolist()
        arrivals = rows["arrival_ns"].tolist()
        ring_seqs = (descriptors["payload_handle"] & _SEQ).tolist()
        sequences = descriptors["sequence"].tolist()
        devices = descriptors["device_time_ns"].tolist()
        hosts = descriptors["host_time_ns"].tolist()
        strides = descriptors["stride_bytes"].tolist()
        pending: dict[int, list[Item]] = {}
        for i, h in enumerate(hashes):
            src = self._by_hash.get(h)
            if src is None:
                continue
            ts, seq = times[i], ring_seqs[i]
            out = pending.setdefault(src.queue.index, [])
            reader, record, earlier = self._resolve(src, seq, ((_CAM_SEQUENCE, sequences[i]), (_CAM_HOST, hosts[i])),
                                                    ts, out)
            if earlier:
                self._orphan(src, ts, out)
                continue
            if not self._advance(src, seq, ts, CAMERA, out):
                continue
            if record is None or reader is None:
                out.append(Skipped(ts, ts, 1, Cause.LAPPED))
                continue
            out.append(Frame(ts, seq, sequences[i], devices[i], hosts[i], strides[i], reader,
                             self.clock.slot_for(arrivals[i])))
        self._put(pending)

    def _blocks(self, rows: np.ndarray, descriptors: np.ndarray) -> None:
        hashes = rows["sensor_id_hash"].tolist()
        times = rows["timestamp_ns"].tolist()
        arrivals = rows["arrival_ns"].tolist()
        ring_seqs = (descriptors["data_handle"] & _SEQ).tolist()
        starts = descriptors["start_sample"].tolist()
        counts = descriptors["frame_count"].tolist()
        pending: dict[int, list[Item]] = {}
        for i, h in enumerate(hashes):
            src = self._by_hash.get(h)
            if src is None:
                continue
            ts, seq, frames = times[i], ring_seqs[i], counts[i]
            out = pending.setdefault(src.queue.index, [])
            reader, record, earlier = self._resolve(src, seq, ((_AUDIO_START, starts[i]), (_AUDIO_FRAMES, frames)), ts,
                                                    out)
            if earlier:
                self._orphan(src, ts, out)
                continue
            if not self._advance(src, seq, ts, AUDIO, out):
                continue
            samples = _copy_block(reader, seq, frames) if record is not None and reader is not None else None
            if samples is None or record is None:
                out.append(Skipped(ts, ts, 1, Cause.LAPPED))
            elif not self.queues.audio_room(samples.nbytes):
                out.append(Skipped(ts, ts, 1, Cause.MEMORY))
            else:
                out.append(Block(ts, seq, starts[i], record[_AUDIO_HOST], samples, self.clock.slot_for(arrivals[i])))
        self._put(pending)

    def _put(self, pending: dict[int, list[Item]]) -> None:
        for index, items in pending.items():
            self.queues.put(self.sources[index].queue, items)

    # ---- accounting -------------------------------------------------------------------------------------------------
    def _advance(self, src: FeedSource, seq: int, ts: int, kind: int, out: list[Item]) -> bool:
        """Account ring item ``seq`` of ``src`` (queue a skip for any items jumped over); False: not ours to record."""
        if src.first_seq is None:
            src.first_seq = 0 if self.from_start[kind] else seq
            src.next_seq = src.first_seq
        if seq < src.next_seq:
            return False  # already accounted (cannot happen in one incarnation: the reservoir keeps ring order)
        missed = seq - src.next_seq
        if missed:
            cause = Cause.EVICTED if self.evictions[kind] != src.evictions_at_last else Cause.NOT_INDEXED
            out.append(self._span_skip(src, missed, ts, cause))
        src.next_seq = seq + 1
        src.last_ts = ts
        src.evictions_at_last = self.evictions[kind]
        src.ledger.published = src.published_before + src.next_seq - src.first_seq
        self.newest_ns = max(self.newest_ns, ts)
        return True

    @staticmethod
    def _span_skip(src: FeedSource, count: int, next_ts: int, cause: Cause) -> Skipped:
        """Items whose own times are unknown: the span between their neighbours (estimated at the rate without one)."""
        first = src.last_ts + 1 if src.last_ts is not None else next_ts - count * src.period_ns
        last = max(first, next_ts - 1)
        return Skipped(min(first, last), last, count, cause)

    def _orphan(self, src: FeedSource, ts: int, out: list[Item]) -> None:
        """An item of a ring incarnation that was gone before the recorder attached (a pre-roll over a restart)."""
        src.published_before += 1
        src.ledger.published += 1
        out.append(Skipped(ts, ts, 1, Cause.LAPPED))

    def _resolve(self, src: FeedSource, seq: int, expect: tuple[tuple[int, int], ...], ts: int,
                 out: list[Item]) -> tuple[RingReader | None, tuple | None, bool]:
        """``(ring incarnation, ring descriptor, earlier)`` of item ``seq``.

        The descriptor is None when no ring holds the item now (overwritten).
        ``earlier`` is True for an item of an incarnation older than the one
        the recorder holds (its ring was replaced before the recorder
        attached): the live ring has another item under that number, or has
        not published that number yet.
        """
        reader = src.reader
        record, other = _record(reader, seq, expect) if reader is not None else (None, False)
        if record is not None:
            return reader, record, False
        if reader is not None and not (reader.writer_closed or not reader.writer_alive()):
            return reader, None, other or seq >= reader.published  # else overwritten (lapped) in the live ring
        fresh = _attach(self.rig, src.spec.ring.object_id)
        if fresh is None:
            return reader, None, False
        found, other = _record(fresh, seq, expect)
        newer = reader is None or reader.writer_closed or fresh.writer_alive() or \
            fresh.writer_pid() != reader.writer_pid()  # a closed ring is unlinked: its name now means another
        if other or not newer:
            fresh.close()
            return reader, None, False
        self._switch(src, fresh, ts, out)
        return fresh, found, False

    def _switch(self, src: FeedSource, fresh: RingReader, ts: int, out: list[Item]) -> None:
        """Move ``src`` to a new ring incarnation; the old one's items after the last one read were never indexed."""
        old = src.reader
        if old is not None and src.first_seq is not None:
            final = old.published
            tail = final - src.next_seq
            if tail > 0:
                out.append(self._span_skip(src, tail, ts, Cause.NOT_INDEXED))
            src.published_before += max(final, src.next_seq) - src.first_seq
            src.first_seq, src.next_seq = 0, 0
            src.ledger.published = src.published_before
        elif src.first_seq is not None:  # no ring was attached: the recording covers the new one from item 0
            src.first_seq, src.next_seq = 0, 0
        if src.is_camera and not src.queue.slot_shape:
            src.queue.slot_shape = tuple(fresh.layout.payload_shape)
            src.queue.slot_dtype = payload_dtype_of(fresh.layout)
        src.reader = fresh
        src.readers.append(fresh)

    def account_tails(self) -> None:
        """The rig stopped: what each ring published after its last indexed item was never indexed."""
        for src in self.sources:
            reader = src.reader
            if reader is None or src.first_seq is None and not self.from_start[src.spec.kind]:
                continue
            if src.first_seq is None:
                src.first_seq = src.next_seq = 0
            tail = reader.published - src.next_seq
            if tail > 0:
                last = (src.last_ts or 0) + tail * src.period_ns
                skip = Skipped((src.last_ts or 0) + 1, last, tail, Cause.NOT_INDEXED)
                src.next_seq += tail
                src.ledger.published = src.published_before + src.next_seq - src.first_seq
                self.queues.put(src.queue, [skip])

    def close(self) -> None:
        self.clock.close()
        for src in self.sources:
            for reader in src.readers:
                reader.close()
            src.readers.clear()
            src.reader = None


_EMPTY = (np.zeros(0, np.uint8), np.zeros(0, np.uint8))


def _record(reader: RingReader, seq: int, expect: tuple[tuple[int, int], ...]) -> tuple[tuple | None, bool]:
    """``(ring item seq's descriptor, False)`` if it is the item the reservoir indexed; ``(None, False)`` if it
    was overwritten; ``(None, True)`` if the ring holds another item under that number."""
    try:
        record = reader.descriptor_of(seq)
    except StaleItem:
        return None, False
    for index, value in expect:
        if record[index] != value:
            return None, True
    return record, False


def _copy_block(reader: RingReader, seq: int, frames: int) -> np.ndarray | None:
    try:
        copy = reader.payload_view(seq)[:frames].copy()
    except StaleItem:
        return None
    return copy if reader.valid(seq) else None
