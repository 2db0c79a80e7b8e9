"""The writer's window state machine: one-at-a-time push, eviction, publication of the status words.

:class:`WindowWriter` holds the writer's private state (mirrors of the status
words, the suffix-minimum runs, the latest-table words) and the one-at-a-time
path every push goes through. :class:`mimir.reservoir.batch.BatchPush` adds
the vectorised path on top of it, :class:`mimir.reservoir.store.Reservoir`
the public API (creation, producers, validation). The window semantics are
in the store module's docstring; the memory layout and the seqlock protocol
in :mod:`mimir.reservoir.layout`.

How eviction stays amortised O(1)
    The writer keeps the push-order suffix minima of the timestamps (positions
    whose timestamp is <= every later one) as runs of consecutive positions:
    ``_minima_runs`` (each ``[start, end)``, oldest first), then the last run
    ``[_last_run_start, tail)``. While pushes arrive in timestamp order that is
    one run ``[head, tail)`` and eviction is "advance the head while its
    timestamp is before the window start" (inline in :meth:`_push`). An
    out-of-order push trims the last run from the back
    (:meth:`_restart_last_run`); eviction consumes runs from the front
    (:meth:`_evict_aged`). Each position enters and leaves once.

Hot path
    :meth:`_push` (admission: edge, window start, eviction) then
    :meth:`_append` (store and publish), behind ``Producer.push``, take no
    lock, allocate no container and log nothing: about ten aligned 8-byte
    stores and one ``struct.pack_into`` into the shared segment. Word indices
    are module constants (derived from the layout's Structs) so the names cost
    nothing per push. The order of the stores is the seqlock protocol of
    :mod:`mimir.reservoir.layout`: the record's stamp 0, its body and
    descriptor, [store fence], stamp ``position + 1``, the kind-index entry;
    then the status words inside one generation (tail and kind tail; edge and
    window start when the sample set the edge, else ``out_of_order``; head,
    view heads and eviction counters when something left); last the
    latest-table word, so a reader that finds it finds a published sample.
"""

from __future__ import annotations

import operator
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import SupportsIndex

from mimir.descriptors import HANDLE_SEQUENCE_BITS
from ringbuf import fence
from ringbuf.layout import packer_of

from .errors import SensorTableFull
from .layout import (
    DESCRIPTOR_SLOT_BYTES, KIND_COUNT, KIND_SHIFT, LATEST_WORD, RECORD_BODY, RECORD_WORD, STATUS_WORD,
    TYPED_DESCRIPTORS, WORDS_PER_LATEST_ENTRY, WORDS_PER_RECORD,
)
from .mapping import Mapped
from .queries import _KIND_MIX, ReservoirQueries
from .results import LATE

__all__ = ["WindowWriter", "MAX_U64", "DescriptorPack"]

MAX_U64 = (1 << 64) - 1
_STORE_FENCE = None if fence.TSO else fence.store_fence
# Word indices bound once as module constants (see the module docstring).
_GENERATION_WORD = STATUS_WORD.generation
_EDGE_WORD = STATUS_WORD.edge_ns
_WINDOW_START_WORD = STATUS_WORD.window_start_ns
_HEAD_WORD = STATUS_WORD.head
_TAIL_WORD = STATUS_WORD.tail
_LATE_WORD = STATUS_WORD.late
_OUT_OF_ORDER_WORD = STATUS_WORD.out_of_order
_REJECTED_WORD = STATUS_WORD.rejected
_EVICTED_AGED_WORD = STATUS_WORD.evicted_aged
_EVICTED_DISORDER_WORD = STATUS_WORD.evicted_disorder
_EVICTED_CAPACITY_WORD = STATUS_WORD.evicted_capacity
_SENSORS_WORD = STATUS_WORD.sensors
_KIND_HEAD_WORD0 = STATUS_WORD.kind_head
_KIND_TAIL_WORD0 = STATUS_WORD.kind_tail
_BODY_WORD = RECORD_WORD.sensor_id_hash  # the record body (RECORD_BODY) starts here, after the stamp
_TIMESTAMP_WORD = RECORD_WORD.timestamp_ns
_KIND_POSITION_WORD = RECORD_WORD.kind_position

DescriptorPack = Callable[..., None]
"""``pack_into(buffer, byte_offset, *descriptor_values)`` of one typed descriptor Struct."""


class WindowWriter(ReservoirQueries):
    """The single writer's state and one-at-a-time path (see the module docstring). Writer process only."""

    def __init__(self, mapped: Mapped) -> None:
        self._bind(mapped)
        self._closed = False
        self._duration_ns = mapped.duration_ns
        self._descriptor_handle_base = mapped.handle_id << HANDLE_SEQUENCE_BITS  # | position: a descriptor handle
        self._descriptors_offset = mapped.descriptors_offset  # bytes; slot s at + s * DESCRIPTOR_SLOT_BYTES
        self._pack_record_body = RECORD_BODY.pack_into
        # Private mirrors of the status words of the same names (the writer never reads shared memory to decide).
        self._generation = 0
        self._edge_ns = 0
        self._window_start_ns = 0
        self._head = 0
        self._tail = 0
        self._late = 0
        self._out_of_order = 0
        self._rejected = 0
        self._evicted_aged = 0
        self._evicted_disorder = 0
        self._evicted_capacity = 0
        self._sensors = 0
        self._kind_head = [0] * KIND_COUNT
        self._kind_tail = [0] * KIND_COUNT
        # Suffix minima of the window's timestamps as runs: runs [start, end) oldest first, then the last run
        # [last_run_start, tail). Empty window <=> no runs and last_run_start == tail.
        self._minima_runs: deque[list[int]] = deque()
        self._last_run_start = 0
        self._last_timestamp_ns = 0  # timestamp of the newest stored sample
        # kind -> {sensor: word index of the position_plus_one word of the pair's latest-table entry}.
        self._latest_words: list[dict[int, int]] = [{} for _ in range(KIND_COUNT)]
        self._descriptor_pack: dict[int, DescriptorPack] = {
            int(kind): packer_of(cls).pack_into for kind, cls in TYPED_DESCRIPTORS.items()
        }

    # ---- the latest-for-sensor table --------------------------------------------------------------------------
    def _latest_word_for(self, kind: int, sensor: int) -> int:
        """The word of ``position_plus_one`` in the latest-table entry of (kind, sensor), inserting it if new.

        An entry's key words are stored before its tag, so a reader probing
        the table never matches a half-written entry.
        """
        known = self._latest_words[kind].get(sensor)
        if known is not None:
            return known
        if not 0 <= sensor <= MAX_U64:
            raise ValueError(f"sensor_id_hash {sensor!r} is not a u64")
        if self._sensors >= self._m.max_sensors:
            raise SensorTableFull(
                f"reservoir {self._m.name}: {self._sensors} (kind, sensor) pairs already indexed, the table holds "
                f"max_sensors={self._m.max_sensors}; create the reservoir with a larger max_sensors"
            )
        words = self._words
        slot_mask = self._latest_slot_mask
        slot = (sensor ^ _KIND_MIX[kind]) & slot_mask
        while True:
            entry_word = self._latest_word0 + slot * WORDS_PER_LATEST_ENTRY
            tag = words[entry_word + LATEST_WORD.tag]
            if tag == 0:
                break
            if tag == kind + 1 and words[entry_word + LATEST_WORD.sensor_id_hash] == sensor:
                self._latest_words[kind][sensor] = entry_word + LATEST_WORD.position_plus_one
                return entry_word + LATEST_WORD.position_plus_one
            slot = (slot + 1) & slot_mask
        words[entry_word + LATEST_WORD.sensor_id_hash] = sensor
        words[entry_word + LATEST_WORD.position_plus_one] = 0
        words[entry_word + LATEST_WORD.reserved] = 0
        if _STORE_FENCE is not None:
            _STORE_FENCE()
        words[entry_word + LATEST_WORD.tag] = kind + 1
        self._sensors += 1
        self._publish_all()
        self._latest_words[kind][sensor] = entry_word + LATEST_WORD.position_plus_one
        return entry_word + LATEST_WORD.position_plus_one

    # ---- one push ---------------------------------------------------------------------------------------------
    def _push(self, kind: int, sensor: int, timestamp_ns: int, arrival_ns: int, sequence: int, payload_handle: int,
              reserved: int, latest_word: int, descriptor_pack: DescriptorPack | None,
              descriptor_values: Sequence[int | float]) -> int:
        """Admit one live sample (flags 0, kind and latest word already checked); return its position, or LATE.

        Moves the edge and the window start, evicts what aged out (inline
        while the window is in timestamp order, the common case), counts a
        late sample, then stores the sample with :meth:`_append` (the one
        call the common case makes). With ``descriptor_pack`` the
        ``descriptor_values`` are stored beside the record and the payload
        handle becomes the descriptor handle. Afterwards no sample of
        ``[head, tail)`` is older than the window start and ``tail - head <=
        capacity``.
        """
        if timestamp_ns.__class__ is not int:
            timestamp_ns = _u64(timestamp_ns, "timestamp_ns")
        evicted_kinds = 0  # bit k set: kind k's view head moved
        if timestamp_ns > self._edge_ns:
            if timestamp_ns > MAX_U64:
                raise ValueError(f"timestamp_ns {timestamp_ns} is not a u64")
            self._edge_ns = timestamp_ns
            window_start_ns = timestamp_ns - self._duration_ns if timestamp_ns > self._duration_ns else 0
            if window_start_ns > self._window_start_ns:
                self._window_start_ns = window_start_ns
                head = self._head
                tail = self._tail
                if head >= tail:
                    pass  # empty window: nothing to evict
                elif self._minima_runs or self._last_run_start != head:
                    evicted_kinds = self._evict_aged(window_start_ns)
                else:
                    # In timestamp order (one run from the head): evict from the head while it is before the start.
                    words = self._words
                    capacity = self._capacity
                    record_word0 = self._record_word0
                    timestamp_word0 = record_word0 + _TIMESTAMP_WORD
                    kind_position_word0 = record_word0 + _KIND_POSITION_WORD
                    kind_heads = self._kind_head
                    while head < tail:
                        slot_word = (head % capacity) * WORDS_PER_RECORD  # the record's first word - _record_word0
                        if words[timestamp_word0 + slot_word] >= window_start_ns:
                            break
                        evicted_kind = words[kind_position_word0 + slot_word] >> KIND_SHIFT
                        kind_heads[evicted_kind] += 1
                        evicted_kinds |= 1 << evicted_kind
                        head += 1
                    if evicted_kinds:
                        self._evicted_aged += head - self._head
                        self._head = head
                        self._last_run_start = head
        elif timestamp_ns < self._window_start_ns:
            return self._count_late()
        return self._append(kind, sensor, timestamp_ns, arrival_ns, sequence, payload_handle, reserved, latest_word,
                            descriptor_pack, descriptor_values, evicted_kinds)

    def _append(self, kind: int, sensor: int, timestamp_ns: int, arrival_ns: int, sequence: int, payload_handle: int,
                reserved: int, latest_word: int, descriptor_pack: DescriptorPack | None,
                descriptor_values: Sequence[int | float], evicted_kinds: int) -> int:
        """Store an admitted sample at position ``tail`` and publish it; return the position.

        ``timestamp_ns`` is at or after the window start, so one before the
        edge is out of order. A full window first evicts its oldest sample.
        Stores in the order the module docstring gives; ``evicted_kinds`` (bit
        k: kind k's view head moved) says which view heads to publish.
        """
        words = self._words
        capacity = self._capacity
        position = tail = self._tail
        head = self._head
        if tail - head >= capacity:
            evicted_kinds |= self._evict_capacity()
            head = self._head
        slot = position % capacity
        record_word = self._record_word0 + slot * WORDS_PER_RECORD
        kind_tails = self._kind_tail
        kind_tail = kind_tails[kind]
        if descriptor_pack is not None:
            payload_handle = self._descriptor_handle_base | position
        words[record_word] = 0
        try:
            self._pack_record_body(self._buf, (record_word + _BODY_WORD) * 8, sensor, timestamp_ns, arrival_ns,
                                   sequence, payload_handle, 0, reserved, (kind << KIND_SHIFT) | kind_tail)
            if descriptor_pack is not None:
                descriptor_pack(self._buf, self._descriptors_offset + slot * DESCRIPTOR_SLOT_BYTES, *descriptor_values)
        except (struct.error, TypeError, OverflowError) as exc:
            self._publish_all()  # evictions this push already made stay valid
            raise self._unfit(exc, sensor, timestamp_ns, arrival_ns, sequence, payload_handle, reserved,
                              descriptor_values) from None
        if _STORE_FENCE is not None:
            _STORE_FENCE()
        words[record_word] = position + 1
        words[self._kind_index_word0 + kind * capacity + kind_tail % capacity] = position
        if timestamp_ns < self._last_timestamp_ns or head == tail:
            self._restart_last_run(timestamp_ns, position)
        self._last_timestamp_ns = timestamp_ns
        self._tail = tail + 1
        kind_tails[kind] = kind_tail + 1
        generation = self._generation + 1
        words[_GENERATION_WORD] = generation
        words[_TAIL_WORD] = tail + 1
        words[_KIND_TAIL_WORD0 + kind] = kind_tail + 1
        if timestamp_ns < self._edge_ns:
            self._out_of_order += 1
            words[_OUT_OF_ORDER_WORD] = self._out_of_order
        else:  # this sample set the edge (or met it)
            words[_EDGE_WORD] = timestamp_ns
            words[_WINDOW_START_WORD] = self._window_start_ns
        if evicted_kinds:
            words[_HEAD_WORD] = head
            if evicted_kinds & (evicted_kinds - 1):  # several kinds
                self._store_kind_heads()
            else:
                evicted_kind = evicted_kinds.bit_length() - 1
                words[_KIND_HEAD_WORD0 + evicted_kind] = self._kind_head[evicted_kind]
            words[_EVICTED_AGED_WORD] = self._evicted_aged
            words[_EVICTED_DISORDER_WORD] = self._evicted_disorder
            words[_EVICTED_CAPACITY_WORD] = self._evicted_capacity
        words[_GENERATION_WORD] = generation + 1
        self._generation = generation + 1
        words[latest_word] = position + 1
        return position

    def _unfit(self, exc: Exception, sensor: object, timestamp_ns: object, arrival_ns: object, sequence: object,
               payload_handle: object, reserved: object, descriptor_values: object) -> ValueError:
        """The error for a sample or descriptor whose values do not fit their binary fields."""
        return ValueError(
            f"reservoir {self._m.name}: sample or descriptor values do not fit their u64/u32 fields "
            f"({exc}); sensor={sensor!r} timestamp_ns={timestamp_ns!r} arrival_ns={arrival_ns!r} "
            f"sequence={sequence!r} payload_handle={payload_handle!r} reserved={reserved!r} "
            f"descriptor={descriptor_values or None!r}"
        )

    def _count_late(self) -> int:
        """Count a sample accepted before the window start (never stored); return LATE."""
        self._late += 1
        words = self._words
        generation = self._generation + 1
        words[_GENERATION_WORD] = generation
        words[_LATE_WORD] = self._late
        words[_GENERATION_WORD] = generation + 1
        self._generation = generation + 1
        return LATE

    # ---- eviction ---------------------------------------------------------------------------------------------
    def _timestamp_at(self, position: int) -> int:
        """The timestamp of the sample at ``position`` (in the window: the writer's own record)."""
        return self._words[self._record_word0 + (position % self._capacity) * WORDS_PER_RECORD + _TIMESTAMP_WORD]

    def _evict_aged(self, window_start_ns: int) -> int:
        """Advance the head past the newest suffix minimum before ``window_start_ns``; return the evicted kinds' bits.

        The general case (the window holds out-of-order samples): consumes
        suffix-minimum runs from the front, then retires the positions passed.
        """
        new_head = self._head_after_minima_before(window_start_ns)
        if new_head <= self._head:
            return 0
        return self._retire(new_head, window_start_ns)

    def _head_after_minima_before(self, window_start_ns: int) -> int:
        """Drop the suffix minima before ``window_start_ns`` from the runs; return one past the newest dropped.

        Returns the current head if none is before it. Runs stay a partition
        of the suffix minima in ``[new head, tail)``.
        """
        timestamp_at = self._timestamp_at
        runs = self._minima_runs
        new_head = self._head
        while True:
            if runs:
                run: list[int] | None = runs[0]
                start, end = runs[0]
            else:
                run = None
                start, end = self._last_run_start, self._tail
                if start >= end:
                    break
            if timestamp_at(start) >= window_start_ns:
                break
            position = start + 1
            while position < end and timestamp_at(position) < window_start_ns:
                position += 1
            new_head = position
            if run is None:
                self._last_run_start = position
                break
            if position < end:
                run[0] = position
                break
            runs.popleft()
        return new_head

    def _retire(self, new_head: int, window_start_ns: int) -> int:
        """Move the head to ``new_head``, counting each passed sample as aged or disorder; return their kinds' bits.

        A passed sample with a timestamp before ``window_start_ns`` aged out;
        one at or after it leaves early behind an older, later-pushed one
        (``evicted_disorder``). Every passed sample moves its kind's view head.
        """
        words = self._words
        capacity = self._capacity
        timestamp_word0 = self._record_word0 + _TIMESTAMP_WORD
        kind_position_word0 = self._record_word0 + _KIND_POSITION_WORD
        kind_heads = self._kind_head
        evicted_kinds = 0
        aged = 0
        for position in range(self._head, new_head):
            slot_word = (position % capacity) * WORDS_PER_RECORD  # the record's first word - _record_word0
            kind = words[kind_position_word0 + slot_word] >> KIND_SHIFT
            kind_heads[kind] += 1
            evicted_kinds |= 1 << kind
            if words[timestamp_word0 + slot_word] < window_start_ns:
                aged += 1
        self._evicted_aged += aged
        self._evicted_disorder += new_head - self._head - aged
        self._head = new_head
        if new_head == self._tail:
            self._minima_runs.clear()
            self._last_run_start = new_head
        return evicted_kinds

    def _evict_capacity(self) -> int:
        """Evict the oldest sample to make room (``evicted_capacity``); return the bit of its kind."""
        head = self._head
        record_word = self._record_word0 + (head % self._capacity) * WORDS_PER_RECORD
        kind = self._words[record_word + _KIND_POSITION_WORD] >> KIND_SHIFT
        self._kind_head[kind] += 1
        self._evicted_capacity += 1
        self._head = head + 1
        runs = self._minima_runs
        if runs:
            run = runs[0]
            if run[0] == head:
                run[0] = head + 1
                if run[0] >= run[1]:
                    runs.popleft()
        elif self._last_run_start == head:
            self._last_run_start = head + 1
        return 1 << kind

    def _restart_last_run(self, timestamp_ns: int, position: int) -> None:
        """The sample at ``position`` starts a new last run: the window was empty, or it arrived out of order.

        Out of order, the suffix minima later than ``timestamp_ns`` stop being
        minima: they are dropped from the back of the runs.
        """
        if self._head == position:  # the window was empty: the new sample is the only run
            self._minima_runs.clear()
            self._last_run_start = position
            return
        timestamp_at = self._timestamp_at
        start = self._last_run_start
        kept = position - 1  # walks back to the newest suffix minimum still <= timestamp_ns
        while kept >= start and timestamp_at(kept) > timestamp_ns:
            kept -= 1
        if kept >= start:
            self._minima_runs.append([start, kept + 1])
        else:
            runs = self._minima_runs
            while runs:
                run = runs[-1]
                kept = run[1] - 1
                while kept >= run[0] and timestamp_at(kept) > timestamp_ns:
                    kept -= 1
                if kept >= run[0]:
                    run[1] = kept + 1
                    break
                runs.pop()
        self._last_run_start = position

    # ---- publication ----------------------------------------------------------------------------------------
    def _publish_all(self) -> None:
        """Store every status word from the private mirrors inside one generation (slow path)."""
        words = self._words
        generation = self._generation + 1
        words[_GENERATION_WORD] = generation
        words[_EDGE_WORD] = self._edge_ns
        words[_WINDOW_START_WORD] = self._window_start_ns
        words[_HEAD_WORD] = self._head
        words[_TAIL_WORD] = self._tail
        words[_LATE_WORD] = self._late
        words[_OUT_OF_ORDER_WORD] = self._out_of_order
        words[_REJECTED_WORD] = self._rejected
        words[_EVICTED_AGED_WORD] = self._evicted_aged
        words[_EVICTED_DISORDER_WORD] = self._evicted_disorder
        words[_EVICTED_CAPACITY_WORD] = self._evicted_capacity
        words[_SENSORS_WORD] = self._sensors
        self._store_kind_heads()
        for kind in range(KIND_COUNT):
            words[_KIND_TAIL_WORD0 + kind] = self._kind_tail[kind]
        words[_GENERATION_WORD] = generation + 1
        self._generation = generation + 1

    def _store_kind_heads(self) -> None:
        """Store every view head from the mirrors (inside a generation the caller holds odd)."""
        words = self._words
        for kind in range(KIND_COUNT):
            words[_KIND_HEAD_WORD0 + kind] = self._kind_head[kind]

    def _reject(self, count: int) -> None:
        """Count ``count`` refused samples (non-zero flags) and publish the counter."""
        self._rejected += count
        words = self._words
        generation = self._generation + 1
        words[_GENERATION_WORD] = generation
        words[_REJECTED_WORD] = self._rejected
        words[_GENERATION_WORD] = generation + 1
        self._generation = generation + 1


def _u64(value: object, what: str) -> int:
    """``value`` as an int in u64 range, or TypeError / ValueError saying what is wrong."""
    if not isinstance(value, SupportsIndex):
        raise TypeError(f"{what} must be an int (u64 nanoseconds), got {type(value).__name__} {value!r}")
    index = operator.index(value)
    if not 0 <= index <= MAX_U64:
        raise ValueError(f"{what} {index} is outside u64")
    return index
