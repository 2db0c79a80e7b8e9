"""O(1) seqlocked queries over a mapped reservoir, shared by the writer and read-only views.

Every query costs the same whatever the window holds: counts are differences
of counters, an index becomes a position by one addition (total) or one
kind-index load (view), latest-for-sensor is one hash probe. Reads never take
a lock and never see a torn record (see :mod:`mimir.reservoir.layout`):

* a record read is returned only if its stamp was ``position + 1`` before
  and after the copy, its ``kind_position`` is the one asked for, and the
  window head had not passed it when the copy ended;
* multi-word answers (count, view count, status) are copied between two equal
  even ``generation`` values.

So every answer describes the window as it was at one instant during the
call. Indices are relative to that instant: to walk a moving window
stably, take ``bounds()`` once and use ``read_at(position)``.

A read that keeps failing (the writer stopped in the middle of an update)
spins briefly, then yields, then raises :class:`ReservoirBusy` after
``busy_timeout_s``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import msgspec
import numpy as np

from mimir.descriptors import HANDLE_SEQUENCE_BITS, split_handle
from ringbuf import fence
from ringbuf.layout import dtype_of, packer_of

from .errors import Evicted, ReservoirBusy, ReservoirClosed, StaleHandle, UnknownHandle
from .layout import (
    DESCRIPTOR_SLOT_BYTES, KIND_COUNT, KIND_POSITION_MASK, KIND_SHIFT, KINDS, LATEST_WORD, RECORD_BODY, RECORD_WORD,
    STATUS_OFFSET, STATUS_WORD, TYPED_DESCRIPTORS, WORDS_PER_LATEST_ENTRY, WORDS_PER_RECORD, StatusWords, check_kind,
    status_dtype, struct_fields,
)
from .mapping import Mapped
from .results import ReservoirStatus, Sample

__all__ = ["ReservoirQueries", "SNAPSHOT_DTYPE", "kind_mix"]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_SPIN = 64
_STATUS = packer_of(StatusWords)
_STATUS_NAMES = [name for name, _, _ in struct_fields(status_dtype())]
# Word indices bound once as module constants: the read loops pay one global load per use, as for a literal.
_GENERATION_WORD = STATUS_WORD.generation
_HEAD_WORD = STATUS_WORD.head
_TAIL_WORD = STATUS_WORD.tail
_KIND_HEAD_WORD0 = STATUS_WORD.kind_head
_KIND_TAIL_WORD0 = STATUS_WORD.kind_tail
_BODY_WORD = RECORD_WORD.sensor_id_hash  # the record body (RECORD_BODY) starts here, after the stamp
_SENSOR_WORD = RECORD_WORD.sensor_id_hash
_TIMESTAMP_WORD = RECORD_WORD.timestamp_ns
_PAYLOAD_WORD = RECORD_WORD.payload_handle
_KIND_POSITION_WORD = RECORD_WORD.kind_position
_LATEST_SENSOR_WORD = LATEST_WORD.sensor_id_hash
_LATEST_POSITION_WORD = LATEST_WORD.position_plus_one
# x86-64 (TSO) keeps loads in order: no fence. Elsewhere a barrier after the first stamp load (acquire) and
# before the re-check keeps the record loads between the two stamp loads.
_READ_FENCE = None if fence.TSO else fence.full_fence


def _sleep_zero() -> None:
    time.sleep(0)


# Give up the CPU once: sched_yield where it exists (Linux, macOS), a zero sleep (Windows' Sleep(0)) elsewhere.
_yield_cpu: Callable[[], None] = getattr(os, "sched_yield", _sleep_zero)

SNAPSHOT_DTYPE = np.dtype([
    ("position", "<u8"), ("kind", "u1"), ("sensor_id_hash", "<u8"), ("timestamp_ns", "<u8"),
    ("arrival_ns", "<u8"), ("sequence", "<u8"), ("payload_handle", "<u8"), ("flags", "<u4"), ("reserved", "<u4"),
])


def kind_mix(kind: int) -> int:
    """The per-kind constant XORed into a sensor hash to pick its latest-table slot."""
    return ((kind + 1) * _GOLDEN) & _MASK64


_KIND_MIX = tuple(kind_mix(k) for k in range(KIND_COUNT))


class _ClosedWords:
    """Stands in for the word view after close, so any use says so clearly."""

    def __getitem__(self, index: int) -> int:
        raise ReservoirClosed("this reservoir has been closed; create or attach a new one")

    def __setitem__(self, index: int, value: int) -> None:
        raise ReservoirClosed("this reservoir has been closed; create or attach a new one")


class ReservoirQueries:
    """The read side of a reservoir. Subclassed by the writer and by the read-only view.

    Word indices: ``_record_word0`` is the first word of the record table,
    record ``slot`` starts at word ``_record_word0 + slot * WORDS_PER_RECORD``;
    ``_kind_index_word0 + kind * capacity + kind_position % capacity`` holds a
    kind position's global position; latest-table entry ``slot`` starts at
    word ``_latest_word0 + slot * WORDS_PER_LATEST_ENTRY``.
    """

    busy_timeout_s: float = 2.0
    _words: memoryview | _ClosedWords  # the segment as u64 words; _ClosedWords once closed

    def _bind(self, mapped: Mapped) -> None:
        self._m = mapped  # the mapping (views, geometry); named as ringbuf's readers name theirs
        self._words = mapped.words
        self._buf = mapped.buf
        self._capacity = mapped.capacity
        self._record_word0 = mapped.record_word0
        self._kind_index_word0 = mapped.kind_index_word0
        self._latest_word0 = mapped.latest_word0
        self._latest_slot_mask = mapped.latest_slots - 1
        self._unpack_record_body = RECORD_BODY.unpack_from
        self._descriptor_unpack = {
            int(kind): packer_of(cls).unpack_from for kind, cls in TYPED_DESCRIPTORS.items()
        }
        self._descriptor_class = {int(kind): cls for kind, cls in TYPED_DESCRIPTORS.items()}
        self._busy_deadline_s = 0.0  # time.monotonic() after which a read that keeps failing gives up

    # ---- identity -----------------------------------------------------------------------------------------
    @property
    def rig(self) -> str:
        return self._m.rig

    @property
    def name(self) -> str:
        return self._m.name

    @property
    def capacity(self) -> int:
        """Samples the window can hold; beyond it the oldest are evicted early (``evicted_capacity``)."""
        return self._capacity

    @property
    def duration_ns(self) -> int:
        return self._m.duration_ns

    @property
    def handle_id(self) -> int:
        """The 16-bit id in the descriptor handles this reservoir issues (``ring_id_of(rig, name)``)."""
        return self._m.handle_id

    @property
    def edge_ns(self) -> int:
        return self._words[STATUS_WORD.edge_ns]

    @property
    def window_start_ns(self) -> int:
        return self._words[STATUS_WORD.window_start_ns]

    def writer_pid(self) -> int:
        return self._m.obj.writer_pid

    def writer_alive(self) -> bool:
        """False once the writer closed the reservoir or its process is gone."""
        return self._m.obj.writer_alive()

    # ---- retry policy ---------------------------------------------------------------------------------------
    def _settle(self, attempt: int) -> None:
        """After ``attempt`` failed optimistic reads: spin, then yield the CPU, then give up."""
        if isinstance(self._words, _ClosedWords):
            raise ReservoirClosed(f"reservoir {self._m.name}: this handle has been closed")
        if attempt < _SPIN:
            return
        if attempt == _SPIN:
            self._busy_deadline_s = time.monotonic() + self.busy_timeout_s
        _yield_cpu()
        if time.monotonic() > self._busy_deadline_s:
            alive = self.writer_alive()
            raise ReservoirBusy(
                f"reservoir {self._m.name}: no settled read for {self.busy_timeout_s} s; the writer "
                f"(pid {self.writer_pid()}) is {'alive but stuck mid-update' if alive else 'gone'}"
                + ("" if alive else "; restart the supervisor, which recreates the reservoir")
            )

    # ---- counts ---------------------------------------------------------------------------------------------
    def count(self) -> int:
        """Samples in the window (upstream ``len``)."""
        words = self._words
        attempt = 0
        while True:
            generation = words[_GENERATION_WORD]
            head = words[_HEAD_WORD]
            tail = words[_TAIL_WORD]
            if not generation & 1 and words[_GENERATION_WORD] == generation:
                return tail - head
            attempt += 1
            self._settle(attempt)

    def __len__(self) -> int:
        return self.count()

    def view_count(self, kind: int) -> int:
        """Samples of ``kind`` in the window (upstream ``view_len``)."""
        if not 0 <= kind < KIND_COUNT:
            check_kind(kind)
        words = self._words
        kind_head_word = _KIND_HEAD_WORD0 + kind
        kind_tail_word = _KIND_TAIL_WORD0 + kind
        attempt = 0
        while True:
            generation = words[_GENERATION_WORD]
            kind_head = words[kind_head_word]
            kind_tail = words[kind_tail_word]
            if not generation & 1 and words[_GENERATION_WORD] == generation:
                return kind_tail - kind_head
            attempt += 1
            self._settle(attempt)

    def bounds(self) -> tuple[int, int]:
        """``(head, tail)``: the window holds global positions ``head <= p < tail``."""
        words = self._words
        attempt = 0
        while True:
            generation = words[_GENERATION_WORD]
            head = words[_HEAD_WORD]
            tail = words[_TAIL_WORD]
            if not generation & 1 and words[_GENERATION_WORD] == generation:
                return head, tail
            attempt += 1
            self._settle(attempt)

    # ---- indexed reads ----------------------------------------------------------------------------------------
    def read(self, index: int) -> Sample:
        """The ``index``-th oldest sample of the window, any kind (upstream ``sample_at``).

        Raises IndexError when ``index`` is not below :meth:`count`.
        """
        words = self._words
        capacity = self._capacity
        record_word0 = self._record_word0
        attempt = 0
        while True:
            head = words[_HEAD_WORD]
            if index < 0 or index >= words[_TAIL_WORD] - head:
                raise IndexError(
                    f"reservoir {self._m.name}: index {index} outside the window of {self.count()} samples"
                )
            position = head + index
            record_word = record_word0 + (position % capacity) * WORDS_PER_RECORD
            stamp = position + 1
            if words[record_word] == stamp:
                if _READ_FENCE is not None:
                    _READ_FENCE()
                sensor, timestamp_ns, arrival_ns, sequence, payload, flags, reserved, kind_word = \
                    self._unpack_record_body(self._buf, (record_word + _BODY_WORD) * 8)
                if _READ_FENCE is not None:
                    _READ_FENCE()
                if words[record_word] == stamp and words[_HEAD_WORD] <= position:
                    return Sample(KINDS[kind_word >> KIND_SHIFT], position, sensor, timestamp_ns, arrival_ns,
                                  sequence, payload, flags, reserved)
            attempt += 1
            self._settle(attempt)

    def read_view(self, kind: int, index: int) -> Sample:
        """The ``index``-th oldest sample of kind ``kind`` (upstream ``view_sample_at``); IndexError past the view."""
        if not 0 <= kind < KIND_COUNT:
            check_kind(kind)
        words = self._words
        capacity = self._capacity
        kind_head_word = _KIND_HEAD_WORD0 + kind
        kind_tail_word = _KIND_TAIL_WORD0 + kind
        kind_index_word0 = self._kind_index_word0 + kind * capacity
        record_word0 = self._record_word0
        kind_tag = kind << KIND_SHIFT
        attempt = 0
        while True:
            kind_head = words[kind_head_word]
            if index < 0 or index >= words[kind_tail_word] - kind_head:
                raise IndexError(
                    f"reservoir {self._m.name}: index {index} outside the {KINDS[kind].name} view "
                    f"of {self.view_count(kind)} samples"
                )
            kind_position = kind_head + index
            position = words[kind_index_word0 + kind_position % capacity]
            record_word = record_word0 + (position % capacity) * WORDS_PER_RECORD
            stamp = position + 1
            if words[record_word] == stamp:
                if _READ_FENCE is not None:
                    _READ_FENCE()
                sensor, timestamp_ns, arrival_ns, sequence, payload, flags, reserved, kind_word = \
                    self._unpack_record_body(self._buf, (record_word + _BODY_WORD) * 8)
                if _READ_FENCE is not None:
                    _READ_FENCE()
                if (words[record_word] == stamp and kind_word == kind_tag | kind_position
                        and words[kind_head_word] <= kind_position):
                    return Sample(KINDS[kind], position, sensor, timestamp_ns, arrival_ns, sequence, payload, flags,
                                  reserved)
            attempt += 1
            self._settle(attempt)

    def read_at(self, position: int) -> Sample:
        """The sample at global ``position``; :class:`Evicted` if it left the window, IndexError if not yet pushed."""
        words = self._words
        record_word = self._record_word0 + (position % self._capacity) * WORDS_PER_RECORD
        stamp = position + 1
        attempt = 0
        while True:
            if words[_HEAD_WORD] > position:
                raise Evicted(f"reservoir {self._m.name}: position {position} has left the window")
            if position >= words[_TAIL_WORD] or position < 0:
                raise IndexError(f"reservoir {self._m.name}: position {position} has not been pushed yet")
            if words[record_word] == stamp:
                if _READ_FENCE is not None:
                    _READ_FENCE()
                sensor, timestamp_ns, arrival_ns, sequence, payload, flags, reserved, kind_word = \
                    self._unpack_record_body(self._buf, (record_word + _BODY_WORD) * 8)
                if _READ_FENCE is not None:
                    _READ_FENCE()
                if words[record_word] == stamp and words[_HEAD_WORD] <= position:
                    return Sample(KINDS[kind_word >> KIND_SHIFT], position, sensor, timestamp_ns, arrival_ns,
                                  sequence, payload, flags, reserved)
            attempt += 1
            self._settle(attempt)

    # ---- stable kind positions (for walking or searching one view while the window moves) --------------------
    def kind_bounds(self, kind: int) -> tuple[int, int]:
        """``(kind_head, kind_tail)``: the ``kind`` view holds kind positions ``kind_head <= k < kind_tail``.

        A kind position numbers the samples of one kind in push order (0, 1,
        2 ...; never reused), as a global position numbers all samples. Unlike
        a view index it does not shift when the head moves: read it with
        :meth:`read_kind_at`.
        """
        if not 0 <= kind < KIND_COUNT:
            check_kind(kind)
        words = self._words
        attempt = 0
        while True:
            generation = words[_GENERATION_WORD]
            kind_head = words[_KIND_HEAD_WORD0 + kind]
            kind_tail = words[_KIND_TAIL_WORD0 + kind]
            if not generation & 1 and words[_GENERATION_WORD] == generation:
                return kind_head, kind_tail
            attempt += 1
            self._settle(attempt)

    def read_kind_at(self, kind: int, kind_position: int) -> Sample:
        """The sample at ``kind_position`` of the ``kind`` view.

        :class:`Evicted` once it left the window, IndexError if not pushed yet.
        Same seqlock checks as :meth:`read_view`.
        """
        if not 0 <= kind < KIND_COUNT:
            check_kind(kind)
        words = self._words
        capacity = self._capacity
        kind_head_word = _KIND_HEAD_WORD0 + kind
        record_word0 = self._record_word0
        kind_index_word = self._kind_index_word0 + kind * capacity + kind_position % capacity
        kind_tag = kind << KIND_SHIFT
        attempt = 0
        while True:
            if words[kind_head_word] > kind_position:
                raise Evicted(
                    f"reservoir {self._m.name}: {KINDS[kind].name} position {kind_position} has left the window"
                )
            if kind_position >= words[_KIND_TAIL_WORD0 + kind] or kind_position < 0:
                raise IndexError(
                    f"reservoir {self._m.name}: {KINDS[kind].name} position {kind_position} has not been pushed yet"
                )
            position = words[kind_index_word]
            record_word = record_word0 + (position % capacity) * WORDS_PER_RECORD
            stamp = position + 1
            if words[record_word] == stamp:
                if _READ_FENCE is not None:
                    _READ_FENCE()
                sensor, timestamp_ns, arrival_ns, sequence, payload, flags, reserved, kind_word = \
                    self._unpack_record_body(self._buf, (record_word + _BODY_WORD) * 8)
                if _READ_FENCE is not None:
                    _READ_FENCE()
                if (words[record_word] == stamp and kind_word == kind_tag | kind_position
                        and words[kind_head_word] <= kind_position):
                    return Sample(KINDS[kind], position, sensor, timestamp_ns, arrival_ns, sequence, payload, flags,
                                  reserved)
            attempt += 1
            self._settle(attempt)

    def sensor_time_at(self, kind: int, kind_position: int) -> tuple[int, int]:
        """``(sensor_id_hash, timestamp_ns)`` of the sample at ``kind_position``: :meth:`read_kind_at`, lean.

        The same seqlock checks for two words instead of the whole record: what a
        search probes. :class:`Evicted` / IndexError as :meth:`read_kind_at`.
        """
        words = self._words
        capacity = self._capacity
        kind_head_word = _KIND_HEAD_WORD0 + kind
        kind_index_word = self._kind_index_word0 + kind * capacity + kind_position % capacity
        record_word0 = self._record_word0
        kind_tag = kind << KIND_SHIFT
        attempt = 0
        while True:
            if words[kind_head_word] > kind_position:
                raise Evicted(
                    f"reservoir {self._m.name}: {KINDS[kind].name} position {kind_position} has left the window"
                )
            if kind_position >= words[_KIND_TAIL_WORD0 + kind] or kind_position < 0:
                raise IndexError(
                    f"reservoir {self._m.name}: {KINDS[kind].name} position {kind_position} has not been pushed yet"
                )
            position = words[kind_index_word]
            record_word = record_word0 + (position % capacity) * WORDS_PER_RECORD
            stamp = position + 1
            if words[record_word] == stamp:
                if _READ_FENCE is not None:
                    _READ_FENCE()
                sensor = words[record_word + _SENSOR_WORD]
                timestamp_ns = words[record_word + _TIMESTAMP_WORD]
                kind_word = words[record_word + _KIND_POSITION_WORD]
                if _READ_FENCE is not None:
                    _READ_FENCE()
                if (words[record_word] == stamp and kind_word == kind_tag | kind_position
                        and words[kind_head_word] <= kind_position):
                    return sensor, timestamp_ns
            attempt += 1
            self._settle(attempt)

    def kind_position_of(self, sample: Sample) -> int:
        """The kind position of ``sample`` (read back from its record); :class:`Evicted` once it left the window."""
        words = self._words
        position = sample.position
        record_word = self._record_word0 + (position % self._capacity) * WORDS_PER_RECORD
        stamp = position + 1
        attempt = 0
        while True:
            if words[_HEAD_WORD] > position:
                raise Evicted(f"reservoir {self._m.name}: position {position} has left the window")
            if words[record_word] == stamp:
                kind_word = words[record_word + _KIND_POSITION_WORD]
                if _READ_FENCE is not None:
                    _READ_FENCE()
                if words[record_word] == stamp:
                    return kind_word & KIND_POSITION_MASK
            attempt += 1
            self._settle(attempt)

    def latest_for_sensor(self, kind: int, sensor_id_hash: int) -> Sample | None:
        """The most recently pushed sample of ``kind`` from ``sensor_id_hash`` still in the window, or None."""
        if not 0 <= kind < KIND_COUNT:
            check_kind(kind)
        words = self._words
        slot_mask = self._latest_slot_mask
        latest_word0 = self._latest_word0
        tag = kind + 1
        slot = (sensor_id_hash ^ _KIND_MIX[kind]) & slot_mask
        while True:
            entry_word = latest_word0 + slot * WORDS_PER_LATEST_ENTRY
            found = words[entry_word]
            if found == tag and words[entry_word + _LATEST_SENSOR_WORD] == sensor_id_hash:
                break
            if found == 0:
                return None
            slot = (slot + 1) & slot_mask
        position_word = entry_word + _LATEST_POSITION_WORD
        record_word0 = self._record_word0
        capacity = self._capacity
        attempt = 0
        while True:
            stamp = words[position_word]  # position + 1 of the pair's newest sample (0: none yet)
            if stamp == 0:
                return None
            position = stamp - 1
            if words[_HEAD_WORD] > position:
                return None
            record_word = record_word0 + (position % capacity) * WORDS_PER_RECORD
            if words[record_word] == stamp:
                if _READ_FENCE is not None:
                    _READ_FENCE()
                sensor, timestamp_ns, arrival_ns, sequence, payload, flags, reserved, _ = \
                    self._unpack_record_body(self._buf, (record_word + _BODY_WORD) * 8)
                if _READ_FENCE is not None:
                    _READ_FENCE()
                if words[record_word] == stamp and words[_HEAD_WORD] <= position:
                    return Sample(KINDS[kind], position, sensor, timestamp_ns, arrival_ns, sequence, payload, flags,
                                  reserved)
            attempt += 1
            self._settle(attempt)

    # ---- descriptors ----------------------------------------------------------------------------------------
    def descriptor_at(self, position: int) -> msgspec.Struct:
        """The typed descriptor stored with the sample at ``position`` (camera frame, audio block, render packet).

        Raises :class:`StaleHandle` if the sample left the window or its slot
        was reused, IndexError if it was never pushed, LookupError if the
        sample's kind carries no descriptor.
        """
        words = self._words
        if position < 0 or position >= words[_TAIL_WORD]:
            raise IndexError(f"reservoir {self._m.name}: position {position} has not been pushed yet")
        slot = position % self._capacity
        record_word = self._record_word0 + slot * WORDS_PER_RECORD
        own_handle = (self._m.handle_id << HANDLE_SEQUENCE_BITS) | position
        stamp = position + 1
        attempt = 0
        while True:
            if words[_HEAD_WORD] > position or (words[record_word] != stamp and words[record_word] != 0):
                raise StaleHandle(
                    f"reservoir {self._m.name}: the sample at position {position} has left the window; "
                    "its descriptor is gone (copy what you need while the sample is in the window)"
                )
            if words[record_word] == stamp:
                kind = words[record_word + _KIND_POSITION_WORD] >> KIND_SHIFT
                unpack = self._descriptor_unpack.get(kind)
                # A sample carries a descriptor iff its payload handle is its own descriptor handle.
                values = None
                if unpack is not None and words[record_word + _PAYLOAD_WORD] == own_handle:
                    values = unpack(self._buf, self._m.descriptors_offset + slot * DESCRIPTOR_SLOT_BYTES)
                if _READ_FENCE is not None:
                    _READ_FENCE()
                if words[record_word] == stamp and words[_HEAD_WORD] <= position:
                    if values is None:
                        raise LookupError(
                            f"reservoir {self._m.name}: the sample at position {position} ({KINDS[kind].name}) "
                            "carries no descriptor: only typed pushes (push_camera_frame, push_audio_block, "
                            "push_render_packet) store one"
                        )
                    return self._descriptor_class[kind](*values)
            attempt += 1
            self._settle(attempt)

    def descriptor(self, handle: int) -> msgspec.Struct:
        """Resolve a descriptor handle this reservoir issued (a typed sample's ``payload_handle``)."""
        handle_id, position = split_handle(handle)
        if handle_id != self._m.handle_id:
            raise UnknownHandle(
                f"handle {handle:#x} has id {handle_id:#06x}; reservoir {self._m.name} issues id "
                f"{self._m.handle_id:#06x} (resolve ring payload handles with HandleResolver)"
            )
        return self.descriptor_at(position)

    # ---- status ---------------------------------------------------------------------------------------------
    def status(self) -> ReservoirStatus:
        """A consistent snapshot of the status words (see :class:`ReservoirStatus` for its invariants)."""
        words = self._words
        attempt = 0
        while True:
            generation = words[_GENERATION_WORD]
            if not generation & 1:
                values = _STATUS.unpack_from(self._buf, STATUS_OFFSET)
                if words[_GENERATION_WORD] == generation:
                    break
            attempt += 1
            self._settle(attempt)
        word = dict(zip(_STATUS_NAMES, values))
        counts = {
            f"{k.name.lower()}_count": word[f"tail_{k.name.lower()}"] - word[f"head_{k.name.lower()}"] for k in KINDS
        }
        return ReservoirStatus(
            generation=generation, edge_ns=word["edge_ns"], window_start_ns=word["window_start_ns"],
            duration_ns=self._m.duration_ns, capacity=self._capacity,
            total_sample_count=word["tail"] - word["head"], **counts,
            accepted=word["tail"] + word["late"], stored=word["tail"], late=word["late"],
            out_of_order=word["out_of_order"], rejected=word["rejected"], evicted_aged=word["evicted_aged"],
            evicted_disorder=word["evicted_disorder"], evicted_capacity=word["evicted_capacity"],
            head=word["head"], tail=word["tail"], sensors=word["sensors"],
        )

    # ---- bulk copy ----------------------------------------------------------------------------------------------
    def _settled_range(self, head_word: int, tail_word: int) -> tuple[int, int]:
        """``(words[head_word], words[tail_word])`` copied between two equal even generations."""
        words = self._words
        attempt = 0
        while True:
            generation = words[_GENERATION_WORD]
            first, end = words[head_word], words[tail_word]
            if not generation & 1 and words[_GENERATION_WORD] == generation:
                return first, end
            attempt += 1
            self._settle(attempt)

    def snapshot(self, kind: int | None = None) -> np.ndarray:
        """Copy the window (or one view) into a structured array of :data:`SNAPSHOT_DTYPE`, oldest first.

        O(n) by nature, vectorised. The result holds the samples that were in
        the window both when the copy began and when it ended.
        """
        capacity = self._capacity
        records = self._m.records
        if kind is None:
            first, end = self._settled_range(_HEAD_WORD, _TAIL_WORD)
            positions = counters = np.arange(first, end, dtype=np.uint64)
        else:
            kind = check_kind(kind)
            first, end = self._settled_range(_KIND_HEAD_WORD0 + kind, _KIND_TAIL_WORD0 + kind)
            counters = np.arange(first, end, dtype=np.uint64)
            positions = self._m.kind_index[kind][(counters % capacity).astype(np.intp)]
        slots = (positions % capacity).astype(np.intp)
        rows = records[slots]
        if _READ_FENCE is not None:
            _READ_FENCE()
        stamps_after = records["stamp"][slots]
        head_after = self._words[_HEAD_WORD]
        ok = (rows["stamp"] == positions + 1) & (stamps_after == positions + 1) & (positions >= head_after)
        if kind is not None:
            ok &= rows["kind_position"] == ((np.uint64(kind) << np.uint64(KIND_SHIFT)) | counters)
        out = np.empty(int(ok.sum()), dtype=SNAPSHOT_DTYPE)
        rows = rows[ok]
        out["position"] = positions[ok]
        out["kind"] = (rows["kind_position"] >> np.uint64(KIND_SHIFT)).astype(np.uint8)
        for name in ("sensor_id_hash", "timestamp_ns", "arrival_ns", "sequence", "payload_handle", "flags", "reserved"):
            out[name] = rows[name]
        return out

    def typed_snapshot(self, kind: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``kind`` view with its descriptors, oldest first: ``(rows, descriptors)``.

        ``rows`` is a :data:`SNAPSHOT_DTYPE` array as :meth:`snapshot` gives;
        ``descriptors[i]`` is the typed descriptor of ``rows[i]`` as a
        structured array of the kind's descriptor Struct (camera frame, audio
        block, render packet). Only samples stored with a descriptor and still
        in the window when the copy ended are returned (one vectorised,
        seqlock-checked copy: O(n) by nature). LookupError for a kind that
        carries no descriptors.
        """
        kind = check_kind(kind)
        kind = check_kind(kind)
        first, end = self._settled_range(_KIND_HEAD_WORD0 + kind, _KIND_TAIL_WORD0 + kind)
        return self._typed_rows(kind, first, end)

    def typed_range(self, kind: int, first: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`typed_snapshot` of the kind positions ``[first, end)`` only: what a reader walking the view
        with its own cursor asks for (O(end - first), whatever the window holds).

        Positions that have left the window (below the kind head) or were not
        pushed yet (at or past the kind tail) are not returned; neither is a
        sample evicted while it was copied. The caller learns how many were
        left out by comparing with :meth:`kind_bounds`.
        """
        kind = check_kind(kind)
        head, tail = self.kind_bounds(kind)
        return self._typed_rows(kind, max(first, head), min(end, tail))

    def _typed_rows(self, kind: int, first: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        cls = self._descriptor_class.get(kind)
        if cls is None:
            raise LookupError(f"{KINDS[kind].name} samples carry no descriptor; use snapshot({kind})")
        capacity = self._capacity
        records = self._m.records
        counters = np.arange(first, max(first, end), dtype=np.uint64)
        positions = self._m.kind_index[kind][(counters % capacity).astype(np.intp)]
        slots = (positions % capacity).astype(np.intp)
        rows = records[slots]
        descriptors = self._m.descriptor_views[kind][slots]
        if _READ_FENCE is not None:
            _READ_FENCE()
        stamps_after = records["stamp"][slots]
        head_after = self._words[_HEAD_WORD]
        own_handle = (np.uint64(self._m.handle_id) << np.uint64(HANDLE_SEQUENCE_BITS)) | positions
        ok = ((rows["stamp"] == positions + 1) & (stamps_after == positions + 1) & (positions >= head_after)
              & (rows["kind_position"] == ((np.uint64(kind) << np.uint64(KIND_SHIFT)) | counters))
              & (rows["payload_handle"] == own_handle))
        out = np.empty(int(ok.sum()), dtype=SNAPSHOT_DTYPE)
        rows = rows[ok]
        out["position"] = positions[ok]
        out["kind"] = kind
        for name in ("sensor_id_hash", "timestamp_ns", "arrival_ns", "sequence", "payload_handle", "flags", "reserved"):
            out[name] = rows[name]
        typed = np.empty(len(out), dtype=dtype_of(cls))
        chosen = descriptors[ok]
        for name, _, _ in struct_fields(typed.dtype):
            typed[name] = chosen[name]
        return out, typed

    def __repr__(self) -> str:
        state = "closed" if isinstance(self._words, _ClosedWords) else f"{self.count()} samples"
        return f"<{type(self).__name__} {self._m.name} capacity={self._capacity} {state}>"
