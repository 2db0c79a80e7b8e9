"""A single-writer, many-reader ring of descriptors and payload slots in shared memory.

Memory layout of one ring segment (every region starts on a 64-byte line)::

    line 0-3   static header (RingHeader): magic, version, layout hash, geometry, writer identity
    line 4     published            - items published so far (writer-owned, hot)
    line 5     heartbeat_ns, publish_errors
    line 6     waiting flags        - one byte per reader slot (each reader writes only its byte)
    line 7..   reader slots         - one line each: pid, start ticks, cursor, lost, attached_ns
    ...        status record        - optional worker status Struct (writer writes, anyone reads)
    ...        layout document      - msgspec JSON of RingLayout (descriptor, payload, status)
    ...        descriptor table     - capacity slots of [seq u64 | descriptor | pad]
    ...        payload arena        - capacity slots of payload_slot_bytes (page aligned)

Ownership
    The **writer** (:meth:`Ring.create`) creates the segment and its semaphores,
    is the only process that stores to the header counters, the descriptor
    table, the payload arena and the status record, and is the only process
    that unlinks them (:meth:`Ring.close`). **Readers** (:class:`RingReader`)
    attach, write only their own reader slot and waiting byte, and never
    unlink. Creating over a segment whose writer is dead reclaims it.

Protocol (item ``n`` is the n-th publish, 0-based, in slot ``n % capacity``)
    writer: slot seq := 0; [store fence]; write payload and descriptor;
    [store fence]; slot seq := n + 1; published := n + 1; [full fence];
    ring the doorbell of every reader whose waiting byte is set.

    reader: if slot seq != n + 1 the item is gone (overwritten or being
    rewritten): count it lost and resynchronise from ``published``; otherwise
    copy, then re-check slot seq; a changed seq means the copy may be torn,
    so it is discarded and counted lost. A reader never returns torn data.

The writer never waits for readers; a reader more than ``capacity`` behind
learns exactly how many items it lost (``reader.lost``) and resumes at the
oldest item still in the ring.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
import numpy as np
import posix_ipc

from . import fence
from .hashing import fnv1a_64
from .layout import U32, U64, Layout, describe, dtype_of, layout_hash, packer_of_layout, struct_code
from .segment import (
    Segment, SegmentMissing, create_reclaiming, pid_alive, process_start_ticks,
    segment_name, unlink_segment, unlink_semaphore,
)

__all__ = [
    "Ring", "RingReader", "RingError", "RingLayoutMismatch", "DescriptorError",
    "PayloadError", "RingLayout", "ReaderInfo", "Item", "MAX_READERS", "inspect_ring", "RingNotReady",
]

MAGIC = int.from_bytes(b"MIMIRRNG", "little")
VERSION = 1
LINE = 64
MAX_READERS = 8

# Word (u64) indices of the hot header fields.
_PUBLISHED = 4 * LINE // 8
_HEARTBEAT = 5 * LINE // 8
_PUBLISH_ERRORS = _HEARTBEAT + 1
_WAITING = 6 * LINE // 8
_READERS_OFFSET = 7 * LINE
# Reader slot word offsets within its line.
_R_PID, _R_TICKS, _R_CURSOR, _R_LOST, _R_ATTACHED, _R_ARMED = range(6)
SLOT_SEQ_FIELD = "_slot_seq"  # the internal seqlock word of each descriptor slot


class RingError(RuntimeError):
    """Misuse of a ring (bad geometry, too many readers, writing after close)."""


class RingLayoutMismatch(RingError):
    """An attacher expected a different layout, version or magic than the ring has."""


class RingNotReady(SegmentMissing):
    """The segment exists but its writer has not finished creating it (no magic yet): retry shortly."""


class DescriptorError(RingError, TypeError):
    """Descriptor values do not fit the ring's descriptor layout."""


class PayloadError(RingError, ValueError):
    """A payload is larger than a slot or has the wrong dtype or shape."""


class RingHeader(msgspec.Struct):
    """The static part of the header (first 4 lines). Written once by the creator, magic last."""

    magic: U64
    version: U32
    reader_slots: U32
    layout_hash: U64
    capacity: U64
    descriptor_offset: U64
    descriptor_stride: U64
    payload_offset: U64
    payload_slot_bytes: U64
    status_offset: U64
    layout_doc_offset: U64
    layout_doc_bytes: U64
    created_unix_ns: U64
    writer_pid: U64
    writer_start_ticks: U64
    ring_id: U64
    closed: U64


class RingLayout(msgspec.Struct, frozen=True):
    """Everything an attacher must agree on, stored as JSON in the header."""

    descriptor: Layout
    payload_shape: tuple[int, ...]
    payload_dtype: str
    status: Layout | None = None
    payload_layout: Layout | None = None  # set when the payload elements are records of a Struct

    def __str__(self) -> str:
        element = str(self.payload_layout) if self.payload_layout else self.payload_dtype
        payload = f"payload {element}{list(self.payload_shape)}" if self.payload_shape else "no payload"
        status = f", status {self.status}" if self.status else ""
        return f"{self.descriptor}, {payload}{status}"


class ReaderInfo(NamedTuple):
    slot: int
    pid: int
    cursor: int
    lag: int
    lost: int
    waiting: bool
    alive: bool


class Item(NamedTuple):
    """One item as returned by :meth:`RingReader.read` (a convenience copy)."""

    sequence: int
    descriptor: tuple
    payload: np.ndarray | None


_HEADER_DTYPE = dtype_of(RingHeader)
assert _HEADER_DTYPE.itemsize <= 4 * LINE


def _align(n: int, to: int = LINE) -> int:
    return -(-n // to) * to


def _descriptor_stride(itemsize: int) -> int:
    """Slot stride: 8 bytes of seq + descriptor, rounded to a power of two up to a line, then to whole lines."""
    need = 8 + itemsize
    if need <= LINE:
        stride = 8
        while stride < need:
            stride *= 2
        return stride
    return _align(need)


def ring_id_of(rig: str, name: str) -> int:
    """The 16-bit id that payload handles carry for ring ``name`` of ``rig``."""
    return fnv1a_64(f"{rig}/{name}") & 0xFFFF


@dataclass
class _Geometry:
    capacity: int
    descriptor_offset: int
    descriptor_stride: int
    payload_offset: int
    payload_slot_bytes: int
    status_offset: int
    layout_doc_offset: int
    layout_doc_bytes: int
    total_bytes: int


def _plan(capacity: int, layout: RingLayout, doc: bytes) -> _Geometry:
    status_offset = _READERS_OFFSET + MAX_READERS * LINE
    status_bytes = layout.status.itemsize if layout.status else 0
    doc_offset = _align(status_offset + status_bytes)
    desc_offset = _align(doc_offset + len(doc))
    stride = _descriptor_stride(layout.descriptor.itemsize)
    payload_bytes = int(np.prod(layout.payload_shape, dtype=np.int64)) * payload_dtype_of(layout).itemsize if layout.payload_shape else 0
    slot_bytes = _align(payload_bytes) if payload_bytes else 0
    payload_offset = _align(desc_offset + capacity * stride, 4096)
    total = payload_offset + capacity * slot_bytes
    return _Geometry(capacity, desc_offset, stride, payload_offset, slot_bytes, status_offset, doc_offset, len(doc), total)


class _Mapped:
    """Views over a mapped ring segment shared by the writer and readers."""

    def __init__(self, segment: Segment, header: np.void, layout: RingLayout, rig: str, name: str) -> None:
        self.segment = segment
        self.rig = rig
        self.name = name
        self.layout = layout
        self.capacity = int(header["capacity"])
        self.ring_id = int(header["ring_id"])
        self.stride = int(header["descriptor_stride"])
        self.desc_offset = int(header["descriptor_offset"])
        self.payload_offset = int(header["payload_offset"])
        self.slot_bytes = int(header["payload_slot_bytes"])
        buf = segment.buf
        self.buf = buf
        self.words = memoryview(buf).cast("Q")
        self.u8 = np.frombuffer(buf, dtype=np.uint8)
        self.header = np.ndarray((), dtype=_HEADER_DTYPE, buffer=buf, offset=0)
        self.waiting = self.u8[_WAITING * 8:_WAITING * 8 + MAX_READERS]
        desc_dtype = dtype_of_layout(layout.descriptor)
        self.desc_dtype = desc_dtype
        self.slot_dtype = np.dtype({
            "names": [SLOT_SEQ_FIELD, *desc_dtype.names],
            "formats": ["<u8", *[desc_dtype.fields[n][0] for n in desc_dtype.names]],
            "offsets": [0, *[8 + desc_dtype.fields[n][1] for n in desc_dtype.names]],
            "itemsize": self.stride,
        })
        self.table = np.ndarray((self.capacity,), dtype=self.slot_dtype, buffer=buf, offset=self.desc_offset)
        self.slot_seqs = self.table[SLOT_SEQ_FIELD]
        self.packer = packer_of_layout(layout.descriptor)
        self.seq_word = [(self.desc_offset + s * self.stride) // 8 for s in range(self.capacity)]
        self.desc_byte = [self.desc_offset + s * self.stride + 8 for s in range(self.capacity)]
        size = desc_dtype.itemsize
        self.desc_views = [self.u8[b:b + size] for b in self.desc_byte]  # per-slot byte views: no slicing per read
        if layout.payload_shape:
            dtype = payload_dtype_of(layout)
            self.payload_nbytes = int(np.prod(layout.payload_shape)) * dtype.itemsize
            arena = np.ndarray(
                (self.capacity, *layout.payload_shape), dtype=dtype, buffer=buf, offset=self.payload_offset,
                strides=(self.slot_bytes, *_c_strides(layout.payload_shape, dtype.itemsize)),
            )
            self.arena = arena
            self.slots = [arena[s] for s in range(self.capacity)]
        else:
            self.payload_nbytes = 0
            self.arena = None
            self.slots = []
        status_dtype = dtype_of_layout(layout.status) if layout.status else None
        self.status = (
            np.ndarray((), dtype=status_dtype, buffer=buf, offset=int(header["status_offset"]))
            if status_dtype is not None else None
        )

    def published(self) -> int:
        return self.words[_PUBLISHED]

    def release(self) -> None:
        """Drop every view of the mapping and unmap it (views handed out keep it alive until freed)."""
        self.words.release()
        for attr in ("slots", "arena", "table", "slot_seqs", "u8", "header", "waiting", "status", "desc_views"):
            setattr(self, attr, None)
        try:
            self.segment.close()
        except BufferError:
            pass  # a caller still holds a payload view; the mapping goes when that view does


def payload_dtype_of(layout: "RingLayout") -> np.dtype:
    """The payload element dtype: a plain numpy dtype, or the structured dtype of a payload Struct."""
    if layout.payload_layout is not None:
        return dtype_of_layout(layout.payload_layout)
    return np.dtype(layout.payload_dtype)


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides = []
    step = itemsize
    for dim in reversed(shape[1:]):
        strides.append(step)
        step *= dim
    strides.append(step)
    return tuple(reversed(strides))


def dtype_of_layout(layout: Layout) -> np.dtype:
    """The numpy dtype described by a stored :class:`Layout` document."""
    return np.dtype([(f.name, f.dtype) for f in layout.fields])


def _read_header(segment: Segment, name: str) -> tuple[np.void, RingLayout]:
    if segment.size < 4 * LINE:
        raise RingLayoutMismatch(f"ring {name}: segment of {segment.size} B is too small to be a Mimir ring")
    header = np.ndarray((), dtype=_HEADER_DTYPE, buffer=segment.buf, offset=0).copy()
    if int(header["magic"]) == 0:
        raise RingNotReady(f"ring {name} is still being created by its writer (or its writer died doing so)")
    if int(header["magic"]) != MAGIC:
        raise RingLayoutMismatch(
            f"ring {name}: bad magic {int(header['magic']):#x} (expected {MAGIC:#x}); "
            "not a Mimir ring, or its writer died while creating it"
        )
    if int(header["version"]) != VERSION:
        raise RingLayoutMismatch(f"ring {name}: ring format version {int(header['version'])}, this Mimir reads version {VERSION}")
    start = int(header["layout_doc_offset"])
    doc = bytes(segment.buf[start:start + int(header["layout_doc_bytes"])])
    return header, msgspec.json.decode(doc, type=RingLayout)


class _RingIdentity:
    """What the writer and readers of a ring both know about it (backed by their own ``_Mapped``)."""

    _m: "_Mapped"
    _cap: int

    @property
    def name(self) -> str:
        return self._m.name

    @property
    def rig(self) -> str:
        return self._m.rig

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def ring_id(self) -> int:
        return self._m.ring_id

    @property
    def layout(self) -> RingLayout:
        return self._m.layout


class Ring(_RingIdentity):
    """The writer side of a ring. Create with :meth:`Ring.create`; exactly one per ring name."""

    def __init__(self, mapped: _Mapped, semaphores: list[posix_ipc.Semaphore], lock: posix_ipc.Semaphore) -> None:
        self._m = mapped
        self._sems = semaphores
        self._lock = lock
        self._next = mapped.published()
        self._claimed = False
        self._words = mapped.words
        self._buf = mapped.buf
        self._pack_into = mapped.packer.pack_into
        self._cap = mapped.capacity
        self._seq_word = mapped.seq_word
        self._desc_byte = mapped.desc_byte
        self._slots = mapped.slots
        self._closed = False
        self._payload_dtype = payload_dtype_of(mapped.layout) if mapped.layout.payload_shape else None
        self._payload_shape = mapped.layout.payload_shape
        self._rung = [0] * MAX_READERS  # the reader arming counts this writer has already posted for

    # ---- creation -------------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        *,
        descriptor: type[msgspec.Struct],
        capacity: int,
        payload_shape: tuple[int, ...] | None = None,
        payload_dtype: Any = np.uint8,
        status: type[msgspec.Struct] | None = None,
        rig: str = "default",
    ) -> "Ring":
        """Create ring ``name`` of ``rig``; reclaim it if a previous writer died; fail if one is alive.

        ``descriptor`` is the Struct published per item; ``payload_shape`` and
        ``payload_dtype`` give the preallocated payload slot (None: descriptor-only
        ring; the dtype may also be a binary Struct, for arrays of records);
        ``status`` an optional Struct the writer keeps current in the header.
        """
        if not isinstance(capacity, int) or capacity <= 0:
            raise RingError(f"ring {name}: capacity must be a positive integer, got {capacity!r}")
        if payload_shape is not None and (len(payload_shape) == 0 or any(int(d) <= 0 for d in payload_shape)):
            raise RingError(f"ring {name}: payload_shape must be non-empty positive dimensions, got {payload_shape!r}")
        seg_name = segment_name(rig, name)
        if SLOT_SEQ_FIELD in descriptor.__struct_fields__:
            raise DescriptorError(f"ring {name}: descriptor field name {SLOT_SEQ_FIELD!r} is reserved for the ring")
        payload_layout = None
        if isinstance(payload_dtype, type) and issubclass(payload_dtype, msgspec.Struct):
            payload_layout = describe(payload_dtype)
            payload_dtype = dtype_of(payload_dtype)
        layout = RingLayout(
            descriptor=describe(descriptor),
            payload_shape=tuple(int(d) for d in payload_shape) if payload_shape else (),
            payload_dtype=np.dtype(payload_dtype).str,
            status=describe(status) if status else None,
            payload_layout=payload_layout,
        )
        doc = msgspec.json.encode(layout)
        geometry = _plan(capacity, layout, doc)
        segment = _create_reclaiming(seg_name, geometry.total_bytes)
        try:
            return cls._initialise(segment, seg_name, layout, doc, geometry, capacity, rig, name)
        except BaseException:
            segment.close()
            _unlink_all(seg_name)
            raise

    @classmethod
    def _initialise(cls, segment: Segment, seg_name: str, layout: RingLayout, doc: bytes, geometry: "_Geometry",
                    capacity: int, rig: str, name: str) -> "Ring":
        buf = segment.buf
        buf[geometry.layout_doc_offset:geometry.layout_doc_offset + len(doc)] = doc
        header = np.ndarray((), dtype=_HEADER_DTYPE, buffer=buf, offset=0)
        header["version"] = VERSION
        header["reader_slots"] = MAX_READERS
        header["layout_hash"] = layout_hash(layout.descriptor) ^ fnv1a_64(doc)
        header["capacity"] = capacity
        header["descriptor_offset"] = geometry.descriptor_offset
        header["descriptor_stride"] = geometry.descriptor_stride
        header["payload_offset"] = geometry.payload_offset
        header["payload_slot_bytes"] = geometry.payload_slot_bytes
        header["status_offset"] = geometry.status_offset
        header["layout_doc_offset"] = geometry.layout_doc_offset
        header["layout_doc_bytes"] = len(doc)
        header["created_unix_ns"] = time.time_ns()
        header["writer_pid"] = os.getpid()
        header["writer_start_ticks"] = process_start_ticks(os.getpid())
        header["ring_id"] = ring_id_of(rig, name)
        del header
        sems = [
            posix_ipc.Semaphore(f"/{seg_name}.r{i}", posix_ipc.O_CREAT, mode=0o600, initial_value=0)
            for i in range(MAX_READERS)
        ]
        lock = posix_ipc.Semaphore(f"/{seg_name}.lock", posix_ipc.O_CREAT, mode=0o600, initial_value=1)
        fence.full_fence()
        memoryview(buf).cast("Q")[0] = MAGIC  # last: attachers ignore a ring without magic
        hdr, _ = _read_header(segment, seg_name)
        return cls(_Mapped(segment, hdr, layout, rig, name), sems, lock)

    # ---- status -----------------------------------------------------------------------------------------------
    @property
    def published(self) -> int:
        """Items published so far (== the sequence number the next publish gets)."""
        return self._next

    @property
    def status(self) -> np.ndarray:
        """A writable 0-d structured view of the status record (the writer's to update)."""
        if self._m.status is None:
            raise RingError(f"ring {self.name} was created without a status Struct")
        return self._m.status

    @property
    def publish_errors(self) -> int:
        return self._words[_PUBLISH_ERRORS]

    def handle(self, sequence: int) -> int:
        """The rig-wide payload handle of item ``sequence`` (see mimir.descriptors.make_handle)."""
        return (self._m.ring_id << 48) | (sequence & 0xFFFF_FFFF_FFFF)

    def heartbeat(self) -> None:
        """Store the monotonic time as the writer's heartbeat (publish does this too)."""
        self._words[_HEARTBEAT] = time.monotonic_ns()

    def readers(self) -> list[ReaderInfo]:
        return _readers(self._m)

    # ---- writing --------------------------------------------------------------------------------------------
    def claim(self) -> np.ndarray:
        """A writable view of the next payload slot, for a device to write straight into.

        The slot's previous item is invalidated at once (readers see it lost).
        Calling claim() again before publish() returns the same slot.
        """
        slot = self._next % self._cap
        if not self._claimed:
            self._words[self._seq_word[slot]] = 0
            fence.store_fence()
            self._claimed = True
        return self._slots[slot]

    def publish(self, *values: int | float) -> int:
        """Publish the next item with descriptor ``values`` (in the Struct's field order); return its sequence.

        The payload is whatever was written into :meth:`claim`'s view. On a
        descriptor error nothing becomes visible and ``publish_errors`` counts it.
        """
        n = self._next
        slot = n % self._cap
        words = self._words
        seq_word = self._seq_word[slot]
        if not self._claimed:
            words[seq_word] = 0
            fence.store_fence()
        try:
            self._pack_into(self._buf, self._desc_byte[slot], *values)
        except (struct.error, TypeError, OverflowError) as exc:
            self._claimed = True  # the slot stays invalid until rewritten
            words[_PUBLISH_ERRORS] += 1
            raise self._descriptor_error(values, exc) from None
        fence.store_fence()
        words[seq_word] = n + 1
        words[_PUBLISHED] = n + 1
        words[_HEARTBEAT] = time.monotonic_ns()
        self._next = n + 1
        self._claimed = False
        fence.full_fence()
        waiting = words[_WAITING]
        if waiting:
            self._ring_doorbells(waiting)
        return n

    def publish_struct(self, descriptor: msgspec.Struct) -> int:
        """Convenience: publish a descriptor Struct instance (allocates; not for hot paths)."""
        return self.publish(*msgspec.structs.astuple(descriptor))

    def write(self, payload: np.ndarray, *values: int | float) -> int:
        """Copy ``payload`` into the next slot (one copy) and publish it with ``values``."""
        self._check_payload(payload)
        slot_view = self.claim()
        if payload.shape == slot_view.shape:
            np.copyto(slot_view, payload, casting="no")
        else:
            np.copyto(slot_view[: payload.shape[0]], payload, casting="no")
        return self.publish(*values)

    def publish_batch(self, records: np.ndarray) -> int:
        """Publish many descriptor-only items at once from a structured array; return the first sequence."""
        if records.dtype != self._m.desc_dtype:
            raise DescriptorError(
                f"ring {self.name}: batch dtype {records.dtype} differs from the descriptor dtype {self._m.desc_dtype}"
            )
        count = len(records)
        if count > self._cap:
            raise RingError(f"ring {self.name}: batch of {count} exceeds capacity {self._cap}")
        if self._claimed:
            raise RingError(f"ring {self.name}: publish the claimed slot before a batch")
        first = self._next
        table = self._m.table
        seqs = self._m.slot_seqs
        start = first % self._cap
        head = min(count, self._cap - start)
        spans = [(start, 0, head)]
        if head < count:
            spans.append((0, head, count - head))
        for slot, src, length in spans:
            seqs[slot:slot + length] = 0
        fence.store_fence()
        for slot, src, length in spans:
            dst = table[slot:slot + length]
            for name in records.dtype.names:
                dst[name] = records[name][src:src + length]
        fence.store_fence()
        for slot, src, length in spans:
            seqs[slot:slot + length] = np.arange(first + src + 1, first + src + length + 1, dtype=np.uint64)
        words = self._words
        words[_PUBLISHED] = first + count
        words[_HEARTBEAT] = time.monotonic_ns()
        self._next = first + count
        fence.full_fence()
        waiting = words[_WAITING]
        if waiting:
            self._ring_doorbells(waiting)
        return first

    def _ring_doorbells(self, waiting: int) -> None:
        """Post once per arming to every reader whose waiting byte is set in the ``waiting`` word."""
        words = self._words
        i = 0
        while waiting:
            if waiting & 0xFF:
                armed = words[(_READERS_OFFSET + i * LINE) // 8 + _R_ARMED]
                if armed != self._rung[i]:
                    self._rung[i] = armed
                    self._sems[i].release()
            waiting >>= 8
            i += 1

    def _check_payload(self, payload: np.ndarray) -> None:
        want = self._payload_dtype
        if want is None:
            raise PayloadError(f"ring {self.name} carries no payload")
        if isinstance(payload, np.ndarray) and payload.shape == self._payload_shape and payload.dtype == want:
            return
        layout = self._m.layout
        if not isinstance(payload, np.ndarray) or payload.dtype != want:
            got = payload.dtype if isinstance(payload, np.ndarray) else type(payload).__name__
            raise PayloadError(f"ring {self.name}: payload dtype {got}, the ring holds {want}")
        shape = layout.payload_shape
        fits = payload.shape == shape or (
            payload.ndim == len(shape) and payload.shape[1:] == shape[1:] and payload.shape[0] <= shape[0]
        )
        if not fits:
            raise PayloadError(
                f"ring {self.name}: payload shape {payload.shape} ({payload.nbytes} B) does not fit the slot "
                f"shape {shape} ({self._m.payload_nbytes} B); only the first dimension may be shorter"
            )

    def _descriptor_error(self, values: tuple, exc: Exception) -> DescriptorError:
        layout = self._m.layout.descriptor
        if len(values) != len(layout.fields):
            return DescriptorError(
                f"ring {self.name}: {layout.name} has {len(layout.fields)} fields "
                f"({', '.join(f.name for f in layout.fields)}), got {len(values)} values"
            )
        for field_, value in zip(layout.fields, values):
            try:
                struct.pack("<" + struct_code(field_.dtype), value)
            except (struct.error, TypeError, OverflowError):
                return DescriptorError(
                    f"ring {self.name}: {layout.name}.{field_.name} expects {field_.dtype}, got {value!r}"
                )
        return DescriptorError(f"ring {self.name}: {exc}")

    # ---- teardown -----------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Mark the ring closed, unlink the segment and semaphores, unmap. Idempotent."""
        if self._closed:
            return
        self._closed = True
        m = self._m
        m.header["closed"] = 1
        # Wake blocked readers so they notice the writer is gone.
        for sem in self._sems:
            sem.release()
        seg_name = m.segment.name
        _unlink_all(seg_name)
        for sem in [*self._sems, self._lock]:
            sem.close()
        self._slots = []
        self._words = None
        self._buf = None
        m.release()

    def __enter__(self) -> "Ring":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unlink_all(seg_name: str) -> None:
    unlink_segment(seg_name)
    for i in range(MAX_READERS):
        unlink_semaphore(f"{seg_name}.r{i}")
    unlink_semaphore(f"{seg_name}.lock")


def _create_reclaiming(seg_name: str, size: int) -> Segment:
    """Create the ring's segment; reclaim it (and its semaphores) when its writer is dead; refuse a live one."""
    return create_reclaiming(seg_name, size, _live_writer_refusal, unlink=_unlink_all)


def _live_writer_refusal(seg: Segment) -> str | None:
    """Why ring ``seg`` must not be reclaimed (its writer is alive), or None if it is stale (dead writer, bad header)."""
    if seg.size < 4 * LINE:
        return None
    header = np.ndarray((), dtype=_HEADER_DTYPE, buffer=seg.buf, offset=0).copy()
    pid = int(header["writer_pid"])
    if int(header["magic"]) != MAGIC or int(header["closed"]):
        # No magic: either being created right now by a live process, or its creator died mid-way.
        live = int(header["magic"]) != MAGIC and pid_alive(pid) and pid != os.getpid()
    else:
        live = pid_alive(pid, int(header["writer_start_ticks"]))
    if not live:
        return None
    return f"ring {seg.name} is already written by live process {pid}; stop it first (one writer per ring)"


def _readers(m: _Mapped) -> list[ReaderInfo]:
    words = m.words
    published = words[_PUBLISHED]
    out = []
    for i in range(MAX_READERS):
        base = (_READERS_OFFSET + i * LINE) // 8
        pid = words[base + _R_PID]
        if not pid:
            continue
        cursor = words[base + _R_CURSOR]
        out.append(ReaderInfo(
            slot=i, pid=pid, cursor=cursor, lag=max(0, published - cursor), lost=words[base + _R_LOST],
            waiting=bool(m.waiting[i]), alive=pid_alive(pid, words[base + _R_TICKS]),
        ))
    return out


class RingReader(_RingIdentity):
    """A reader of a ring with its own cursor. Attach with :meth:`RingReader.attach`."""

    def __init__(self, mapped: _Mapped, slot: int, sem: posix_ipc.Semaphore | None, start: str) -> None:
        self._m = mapped
        self._slot = slot
        self._sem = sem
        self._words = mapped.words
        self._buf = mapped.buf
        self._cap = mapped.capacity
        self._seq_word = mapped.seq_word
        self._desc_byte = mapped.desc_byte
        self._unpack_from = mapped.packer.unpack_from
        self._slots = mapped.slots
        base = (_READERS_OFFSET + slot * LINE) // 8 if slot >= 0 else -1
        self._cursor_word = base + _R_CURSOR
        self._lost_word = base + _R_LOST
        published = mapped.published()
        self.cursor = published if start == "latest" else max(0, published - self._cap)
        self.lost = 0
        if slot >= 0:
            self._words[self._cursor_word] = self.cursor
            self._words[self._lost_word] = 0
        self._desc_views = mapped.desc_views
        self._armed_word = base + _R_ARMED
        self._closed = False

    @classmethod
    def attach(
        cls,
        name: str,
        *,
        rig: str = "default",
        descriptor: type[msgspec.Struct] | None = None,
        start: str = "oldest",
        register: bool = True,
    ) -> "RingReader":
        """Attach to ring ``name`` of ``rig``.

        ``descriptor``: the Struct the caller expects; a different layout fails
        with :class:`RingLayoutMismatch` naming both. ``start``: ``"oldest"``
        item still in the ring, or ``"latest"`` (only new items). ``register``:
        take a reader slot (cursor visible to tools, doorbell wake-ups); an
        unregistered reader can only poll.
        """
        if start not in ("oldest", "latest"):
            raise ValueError(f"start must be 'oldest' or 'latest', got {start!r}")
        seg_name = segment_name(rig, name)
        segment = Segment.attach(seg_name)
        try:
            header, layout = _read_header(segment, seg_name)
            if descriptor is not None:
                expected = describe(descriptor)
                if expected != layout.descriptor:
                    raise RingLayoutMismatch(
                        f"ring {seg_name}: its descriptor layout is {layout.descriptor}, "
                        f"but the reader expects {expected}"
                    )
            mapped = _Mapped(segment, header, layout, rig, name)
        except BaseException:
            segment.close()
            raise
        if not register:
            return cls(mapped, -1, None, start)
        slot, sem = _register_reader(mapped, seg_name)
        return cls(mapped, slot, sem, start)

    # ---- state ----------------------------------------------------------------------------------------------
    @property
    def descriptor_dtype(self) -> np.dtype:
        return self._m.desc_dtype

    @property
    def published(self) -> int:
        return self._words[_PUBLISHED]

    def available(self) -> int:
        """Items published and not yet read (may exceed capacity: the excess is lost on the next read)."""
        return self._words[_PUBLISHED] - self.cursor

    @property
    def status(self) -> np.ndarray:
        if self._m.status is None:
            raise RingError(f"ring {self.name} has no status record")
        return self._m.status

    @property
    def heartbeat_ns(self) -> int:
        return self._words[_HEARTBEAT]

    @property
    def publish_errors(self) -> int:
        return self._words[_PUBLISH_ERRORS]

    def writer_pid(self) -> int:
        return int(self._m.header["writer_pid"])

    def writer_alive(self) -> bool:
        """False once the writer closed the ring or its process is gone."""
        header = self._m.header
        if int(header["closed"]):
            return False
        return pid_alive(int(header["writer_pid"]), int(header["writer_start_ticks"]))

    def readers(self) -> list[ReaderInfo]:
        return _readers(self._m)

    # ---- reading --------------------------------------------------------------------------------------------
    def _resync(self, published: int) -> None:
        """Jump over items that can no longer be read, counting them lost."""
        oldest = published - self._cap
        if self.cursor < oldest:
            self.lost += oldest - self.cursor
            self.cursor = oldest

    def read_into(self, descriptor_out: np.ndarray, payload_out: np.ndarray | None = None) -> int:
        """Copy the next item's descriptor (and payload) into preallocated arrays; return its sequence or -1.

        ``descriptor_out`` is a 1-element array of :attr:`descriptor_dtype`
        viewed as bytes, or any writable uint8 array of the descriptor's size.
        """
        words = self._words
        while True:
            published = words[_PUBLISHED]
            n = self.cursor
            if n >= published:
                return -1
            if published - n > self._cap:
                self._resync(published)
                continue
            slot = n % self._cap
            seq_word = self._seq_word[slot]
            if words[seq_word] != n + 1:
                self._lose_one()
                continue
            descriptor_out[:] = self._desc_views[slot]
            if payload_out is not None:
                np.copyto(payload_out, self._slots[slot])
            if words[seq_word] != n + 1:
                self._lose_one()
                continue
            self._advance(n + 1)
            return n

    def read(self, *, copy_payload: bool = True) -> Item | None:
        """Convenience: the next item as an :class:`Item` (allocates per call; not for hot paths)."""
        words = self._words
        while True:
            published = words[_PUBLISHED]
            n = self.cursor
            if n >= published:
                return None
            if published - n > self._cap:
                self._resync(published)
                continue
            slot = n % self._cap
            seq_word = self._seq_word[slot]
            if words[seq_word] != n + 1:
                self._lose_one()
                continue
            values = self._unpack_from(self._buf, self._desc_byte[slot])
            payload = self._slots[slot].copy() if (copy_payload and self._slots) else None
            if words[seq_word] != n + 1:
                self._lose_one()
                continue
            self._advance(n + 1)
            return Item(n, values, payload)

    def read_batch(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` descriptors into structured array ``out`` (of :attr:`descriptor_dtype`).

        Returns how many were copied; torn or overwritten items are dropped
        and counted in :attr:`lost`. One vectorised copy per contiguous span.
        """
        if out.dtype != self._m.desc_dtype:
            raise DescriptorError(f"ring {self.name}: out dtype {out.dtype} differs from {self._m.desc_dtype}")
        words = self._words
        published = words[_PUBLISHED]
        self._resync(published)
        first = self.cursor
        count = min(published - first, len(out))
        if count <= 0:
            return 0
        table = self._m.table
        seqs = self._m.slot_seqs
        start = first % self._cap
        head = min(count, self._cap - start)
        spans = [(start, 0, head)] if head == count else [(start, 0, head), (0, head, count - head)]
        for slot, dst, length in spans:
            src = table[slot:slot + length]
            for name in out.dtype.names:
                out[name][dst:dst + length] = src[name]
        # Seqlock check after the copy: items overwritten meanwhile form a prefix (the writer moves forward).
        valid_from = 0
        for slot, dst, length in spans:
            expected = np.arange(first + dst + 1, first + dst + length + 1, dtype=np.uint64)
            bad = np.flatnonzero(seqs[slot:slot + length] != expected)
            if bad.size:
                valid_from = dst + int(bad[-1]) + 1
        if valid_from:
            out[: count - valid_from] = out[valid_from:count]
            self.lost += valid_from
        got = count - valid_from
        self._advance(first + count)
        return got

    # ---- zero-copy access ----------------------------------------------------------------------------------------
    def view_next(self) -> tuple[int, tuple, np.ndarray] | None:
        """Zero-copy: ``(sequence, descriptor, payload_view)`` of the next item, advancing the cursor.

        The payload view aliases the ring slot: after using it, call
        :meth:`valid` with the sequence; False means the writer overwrote the
        slot meanwhile and what was read may be torn.
        """
        item = self.read(copy_payload=False)
        if item is None:
            return None
        return item.sequence, item.descriptor, self._slots[item.sequence % self._cap]

    def latest(self) -> Item | None:
        """A seqlock-checked copy of the newest item, without moving the cursor (None if nothing yet).

        For snapshot rings (status boards) where only the newest item matters.
        """
        words = self._words
        for _ in range(100):
            published = words[_PUBLISHED]
            if published == 0:
                return None
            n = published - 1
            slot = n % self._cap
            seq_word = self._seq_word[slot]
            if words[seq_word] != n + 1:
                continue
            values = self._unpack_from(self._buf, self._desc_byte[slot])
            payload = self._slots[slot].copy() if self._slots else None
            if words[seq_word] == n + 1:
                return Item(n, values, payload)
        raise RingError(f"ring {self.name}: could not read a consistent newest item in 100 tries")

    def valid(self, sequence: int) -> bool:
        """True while the slot of item ``sequence`` still holds that item."""
        return self._words[self._seq_word[sequence % self._cap]] == sequence + 1

    def payload_view(self, sequence: int) -> np.ndarray:
        """Zero-copy view of item ``sequence``'s slot; raises :class:`StaleItem` if it has been overwritten."""
        if not self._slots:
            raise PayloadError(f"ring {self.name} carries no payload")
        if not self.valid(sequence):
            raise StaleItem(f"ring {self.name}: item {sequence} has been overwritten (ring holds the last {self._cap})")
        return self._slots[sequence % self._cap]

    def descriptor_of(self, sequence: int) -> tuple:
        """The descriptor of item ``sequence`` if still in the ring (seqlock-checked), else raise :class:`StaleItem`."""
        slot = sequence % self._cap
        seq_word = self._seq_word[slot]
        words = self._words
        if words[seq_word] == sequence + 1:
            values = self._unpack_from(self._buf, self._desc_byte[slot])
            if words[seq_word] == sequence + 1:
                return values
        raise StaleItem(f"ring {self.name}: item {sequence} has been overwritten (ring holds the last {self._cap})")

    # ---- waiting ------------------------------------------------------------------------------------------------
    def wait(self, timeout_s: float | None = None, *, spin_s: float = 0.0) -> bool:
        """Block until an item is available or ``timeout_s`` passes; True if one is available.

        Sleeps on this reader's semaphore (no core spun). With ``spin_s`` it
        first polls for that long (lowest latency, one core busy meanwhile).
        """
        words = self._words
        if words[_PUBLISHED] > self.cursor:
            return True
        if spin_s > 0:
            deadline = time.perf_counter() + spin_s
            while time.perf_counter() < deadline:
                if words[_PUBLISHED] > self.cursor:
                    return True
        if self._sem is None:
            raise RingError(f"ring {self.name}: an unregistered reader cannot wait; poll available() instead")
        waiting = self._m.waiting
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            words[self._armed_word] += 1  # a new arming: the writer posts at most once for it
            waiting[self._slot] = 1
            fence.full_fence()
            if words[_PUBLISHED] > self.cursor:
                waiting[self._slot] = 0
                return True
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self._sem.acquire(remaining)
            except posix_ipc.BusyError:
                pass
            waiting[self._slot] = 0
            if words[_PUBLISHED] > self.cursor:
                return True
            # A post for an earlier arming that timed out, or the writer closing: not data.
            if self._m.header["closed"] or (deadline is not None and time.monotonic() >= deadline):
                return False

    # ---- internals ------------------------------------------------------------------------------------------------
    def _lose_one(self) -> None:
        self.lost += 1
        self.cursor += 1
        if self._slot >= 0:
            self._words[self._lost_word] = self.lost

    def _advance(self, cursor: int) -> None:
        self.cursor = cursor
        if self._slot >= 0:
            self._words[self._cursor_word] = cursor
            self._words[self._lost_word] = self.lost

    def close(self) -> None:
        """Release the reader slot and unmap. Never unlinks anything. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._slot >= 0:
            base = (_READERS_OFFSET + self._slot * LINE) // 8
            self._m.waiting[self._slot] = 0
            self._words[base + _R_PID] = 0
            self._sem.close()
        self._slots = []
        self._words = None
        self._buf = None
        self._desc_views = None
        self._m.release()

    def __enter__(self) -> "RingReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StaleItem(RingError, LookupError):
    """The item asked for has been overwritten in its ring."""


__all__.append("StaleItem")


def _register_reader(m: _Mapped, seg_name: str) -> tuple[int, posix_ipc.Semaphore]:
    """Take a free (or dead-owner) reader slot under the ring's registration lock."""
    lock = posix_ipc.Semaphore(f"/{seg_name}.lock")
    try:
        try:
            lock.acquire(2.0)
        except posix_ipc.BusyError:
            # The holder died inside this few-line section; take the lock over.
            pass
        words = m.words
        me = os.getpid()
        for i in range(MAX_READERS):
            base = (_READERS_OFFSET + i * LINE) // 8
            pid = words[base + _R_PID]
            if pid and pid_alive(pid, words[base + _R_TICKS]):
                continue
            words[base + _R_PID] = me
            words[base + _R_TICKS] = process_start_ticks(me)
            words[base + _R_CURSOR] = 0
            words[base + _R_LOST] = 0
            words[base + _R_ATTACHED] = time.monotonic_ns()
            m.waiting[i] = 0
            break
        else:
            raise RingError(
                f"ring {seg_name}: all {MAX_READERS} reader slots are taken by live processes: "
                + ", ".join(str(r.pid) for r in _readers(m))
            )
    finally:
        lock.release()
        lock.close()
    sem = posix_ipc.Semaphore(f"/{seg_name}.r{i}")
    try:  # clear posts meant for a previous owner of this slot
        while True:
            sem.acquire(0)
    except posix_ipc.BusyError:
        pass
    return i, sem


def inspect_ring(name: str, *, rig: str = "default") -> dict:
    """A snapshot of a ring for tools: layout, counters, writer liveness, readers and lag."""
    reader = RingReader.attach(name, rig=rig, register=False)
    try:
        header = reader._m.header
        return {
            "name": name,
            "rig": rig,
            "layout": str(reader.layout),
            "capacity": reader.capacity,
            "published": reader.published,
            "publish_errors": reader.publish_errors,
            "writer_pid": int(header["writer_pid"]),
            "writer_alive": reader.writer_alive(),
            "heartbeat_age_s": (time.monotonic_ns() - reader.heartbeat_ns) / 1e9 if reader.heartbeat_ns else None,
            "readers": [r._asdict() for r in reader.readers()],
        }
    finally:
        reader.close()
