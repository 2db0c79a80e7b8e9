"""A single-writer, many-reader ring of descriptors and payload slots in shared memory.

A ring is a :class:`~ringbuf.shared.SharedObject` of kind ``ring``. Memory
layout after the common 256-byte object header (every region on a 64-byte line)::

    line 4      RingGeometry   static: capacity, region offsets, ring id (written once by the creator)
    line 8      published      items published so far (writer-owned, hot)
    line 9      heartbeat_ns, publish_errors
    line 10     waiting flags  one byte per reader slot (each reader writes only its byte)
    line 11..   reader slots   one line each: pid, identity, cursor, lost, attached_ns, armed, bell id
    ...         status record  optional worker status Struct (writer writes, anyone reads)
    ...         layout document msgspec JSON of RingLayout (descriptor, payload, status)
    ...         descriptor table  capacity slots of [seq u64 | descriptor | pad]
    ...         payload arena  capacity slots of payload_slot_bytes (page aligned)

Ownership
    The **writer** (:meth:`Ring.create`) creates the object and its lock file,
    is the only process that stores to the header counters, the descriptor
    table, the payload arena and the status record, and the only one that
    unlinks (:meth:`Ring.close`). **Readers** (:class:`RingReader`) attach,
    write only their own reader slot and waiting byte, and never unlink.
    Creating over a ring whose writer is dead reclaims it.

Protocol (item ``n`` is the n-th publish, 0-based, in slot ``n % capacity``)
    writer: slot seq := 0; [store fence]; write payload and descriptor;
    [store fence]; slot seq := n + 1; published := n + 1; [full fence];
    ring the doorbell of every reader whose waiting byte is set, once per arming.

    reader: if slot seq != n + 1 the item is gone (overwritten or being
    rewritten): count it lost and resynchronise from ``published``; otherwise
    copy, then re-check slot seq; a changed seq means the copy may be torn,
    so it is discarded and counted lost. A reader never returns torn data.

Doorbells
    A reader that waits owns a doorbell listener (:mod:`ringbuf.platform`): a
    file descriptor that ``select`` and ``zmq.Poller`` accept. Its id is in
    the reader slot. Several rings may share one listener (the supervisor
    waits on all its rings and its network socket at once): :meth:`RingReader.arm`
    each, then wait on the listener.

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

from . import fence, process
from .hashing import fnv1a_64
from .layout import U32, U64, Layout, describe, dtype_of, packer_of_layout, record_fields, struct_code
from .platform import PLATFORM, DoorbellListener, LockTimeout
from .segment import PAGE_BYTES
from .shared import KIND_HEADER_OFFSET, ObjectMismatch, ObjectNotReady, SharedObject

__all__ = [
    "Ring", "RingReader", "RingError", "RingLayoutMismatch", "DescriptorError", "PayloadError", "RingLayout",
    "ReaderInfo", "Item", "MAX_READERS", "inspect_ring", "RingNotReady", "StaleItem", "ring_id_of", "KIND",
    "VERSION", "wait_any",
]

KIND = "ring"
VERSION = 2
LINE = 64
MAX_READERS = 8

# Word (u64) indices of the hot header fields.
_GEOMETRY_OFFSET = KIND_HEADER_OFFSET
_PUBLISHED = 8 * LINE // 8
_HEARTBEAT = 9 * LINE // 8
_PUBLISH_ERRORS = _HEARTBEAT + 1
_WAITING = 10 * LINE // 8
_READERS_OFFSET = 11 * LINE
# Reader slot word offsets within its line.
_R_PID, _R_IDENTITY, _R_CURSOR, _R_LOST, _R_ATTACHED, _R_ARMED, _R_BELL = range(7)
SLOT_SEQ_FIELD = "_slot_seq"  # the internal seqlock word of each descriptor slot


class RingError(RuntimeError):
    """Misuse of a ring (bad geometry, too many readers, writing after close)."""


class RingLayoutMismatch(RingError, ObjectMismatch):
    """An attacher expected a different layout, version or kind than the object has."""


class RingNotReady(ObjectNotReady):
    """The segment exists but its writer has not finished creating it (no magic yet): retry shortly."""


class DescriptorError(RingError, TypeError):
    """Descriptor values do not fit the ring's descriptor layout."""


class PayloadError(RingError, ValueError):
    """A payload is larger than a slot or has the wrong dtype or shape."""


class StaleItem(RingError, LookupError):
    """The item asked for has been overwritten in its ring."""


class RingGeometry(msgspec.Struct):
    """The ring's static header (line 4): written once by the creator before the magic."""

    reader_slots: U32
    reserved: U32
    capacity: U64
    descriptor_offset: U64
    descriptor_stride: U64
    payload_offset: U64
    payload_slot_bytes: U64
    status_offset: U64
    ring_id: U64
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



_GEOMETRY_DTYPE = dtype_of(RingGeometry)
assert _GEOMETRY_DTYPE.itemsize <= 4 * LINE


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
    total_bytes: int


def _plan(capacity: int, layout: RingLayout, doc: bytes) -> _Geometry:
    status_offset = _READERS_OFFSET + MAX_READERS * LINE
    status_bytes = layout.status.itemsize if layout.status else 0
    doc_offset = _align(status_offset + status_bytes)
    desc_offset = _align(doc_offset + len(doc))
    stride = _descriptor_stride(layout.descriptor.itemsize)
    payload_bytes = (int(np.prod(layout.payload_shape, dtype=np.int64)) * payload_dtype_of(layout).itemsize
                     if layout.payload_shape else 0)
    slot_bytes = _align(payload_bytes) if payload_bytes else 0
    payload_offset = _align(desc_offset + capacity * stride, PAGE_BYTES)
    total = payload_offset + capacity * slot_bytes
    return _Geometry(capacity, desc_offset, stride, payload_offset, slot_bytes, status_offset, doc_offset, total)


def ring_bytes(capacity: int, descriptor: type[msgspec.Struct], payload_shape: tuple[int, ...] | None = None,
               payload_dtype: Any = np.uint8, status: type[msgspec.Struct] | None = None) -> int:
    """Shared-memory bytes a ring of this geometry takes (what :meth:`Ring.create` will reserve)."""
    layout = _layout(descriptor, payload_shape, payload_dtype, status)
    geometry = _plan(capacity, layout, msgspec.json.encode(layout))
    return -(-geometry.total_bytes // PAGE_BYTES) * PAGE_BYTES


def _layout(descriptor: type[msgspec.Struct], payload_shape: tuple[int, ...] | None, payload_dtype: Any,
            status: type[msgspec.Struct] | None) -> RingLayout:
    payload_layout = None
    if isinstance(payload_dtype, type) and issubclass(payload_dtype, msgspec.Struct):
        payload_layout = describe(payload_dtype)
        payload_dtype = dtype_of(payload_dtype)
    return RingLayout(
        descriptor=describe(descriptor),
        payload_shape=tuple(int(d) for d in payload_shape) if payload_shape else (),
        payload_dtype=np.dtype(payload_dtype).str,
        status=describe(status) if status else None,
        payload_layout=payload_layout,
    )


class _Mapped:
    """Views over a mapped ring object shared by the writer and readers."""

    def __init__(self, obj: SharedObject, layout: RingLayout) -> None:
        self.obj = obj
        self.rig = obj.rig
        self.name = obj.name
        self.label = obj.label
        self.layout = layout
        buf = obj.buf
        geometry = np.ndarray((), dtype=_GEOMETRY_DTYPE, buffer=buf, offset=_GEOMETRY_OFFSET).copy()
        self.capacity = int(geometry["capacity"])
        self.ring_id = int(geometry["ring_id"])
        self.stride = int(geometry["descriptor_stride"])
        self.desc_offset = int(geometry["descriptor_offset"])
        self.payload_offset = int(geometry["payload_offset"])
        self.slot_bytes = int(geometry["payload_slot_bytes"])
        self.buf = buf
        self.words = memoryview(buf).cast("Q")
        self.u8 = np.frombuffer(buf, dtype=np.uint8)
        self.waiting = self.u8[_WAITING * 8:_WAITING * 8 + MAX_READERS]
        desc_dtype = dtype_of_layout(layout.descriptor)
        self.desc_dtype = desc_dtype
        names = record_fields(desc_dtype)
        fields = desc_dtype.fields
        assert fields is not None  # a record dtype (record_fields checked) has both names and fields
        self.slot_dtype = np.dtype({
            "names": [SLOT_SEQ_FIELD, *names],
            "formats": ["<u8", *[fields[n][0] for n in names]],
            "offsets": [0, *[8 + fields[n][1] for n in names]],
            "itemsize": self.stride,
        })
        self.table = np.ndarray((self.capacity,), dtype=self.slot_dtype, buffer=buf, offset=self.desc_offset)
        self.slot_seqs = self.table[SLOT_SEQ_FIELD]
        self.packer = packer_of_layout(layout.descriptor)
        self.seq_word = [(self.desc_offset + s * self.stride) // 8 for s in range(self.capacity)]
        self.desc_byte = [self.desc_offset + s * self.stride + 8 for s in range(self.capacity)]
        size = desc_dtype.itemsize
        self.desc_views = [self.u8[b:b + size] for b in self.desc_byte]  # per-slot byte views: no slicing per read
        self.arena: np.ndarray | None = None  # the payload slots as one array (None: descriptor-only ring)
        self.slots: list[np.ndarray] = []
        self.payload_nbytes = 0
        if layout.payload_shape:
            dtype = payload_dtype_of(layout)
            self.payload_nbytes = int(np.prod(layout.payload_shape)) * dtype.itemsize
            arena = np.ndarray(
                (self.capacity, *layout.payload_shape), dtype=dtype, buffer=buf, offset=self.payload_offset,
                strides=(self.slot_bytes, *_c_strides(layout.payload_shape, dtype.itemsize)),
            )
            self.arena = arena
            self.slots = [arena[s] for s in range(self.capacity)]
        status_dtype = dtype_of_layout(layout.status) if layout.status else None
        self.status = (
            np.ndarray((), dtype=status_dtype, buffer=buf, offset=int(geometry["status_offset"]))
            if status_dtype is not None else None
        )

    def published(self) -> int:
        return self.words[_PUBLISHED]

    def release(self) -> None:
        """Drop every view of the mapping and unmap it (views handed out keep it alive until freed)."""
        self.words.release()
        for attr in ("slots", "arena", "table", "slot_seqs", "u8", "waiting", "status", "desc_views"):
            setattr(self, attr, None)
        self.obj.unmap()


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


def _attach_object(name: str, rig: str, readonly: bool = False) -> tuple[SharedObject, RingLayout]:
    try:
        obj = SharedObject.attach(rig, name, kind=KIND, version=VERSION, readonly=readonly)
    except ObjectNotReady as exc:
        raise RingNotReady(str(exc)) from None
    except ObjectMismatch as exc:
        raise RingLayoutMismatch(str(exc)) from None
    try:
        return obj, msgspec.json.decode(obj.doc, type=RingLayout)
    except BaseException:
        obj.unmap()
        raise


class _RingIdentity:
    """What the writer and readers of a ring both know about it (backed by their own ``_Mapped``)."""

    _m: "_Mapped"
    _cap: int

    @property
    def name(self) -> str:
        return self._m.name

    @property
    def label(self) -> str:
        """The readable name the writer gave the ring (``<rig>/<logical name>``)."""
        return self._m.label

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

    @property
    def arena_bytes(self) -> np.ndarray | None:
        """The whole payload arena as flat uint8 (``capacity`` page-aligned slots with their padding; None for
        descriptor-only rings): what a DMA engine registers once (see :mod:`mimir.gpu`)."""
        m = self._m
        if m.arena is None:
            return None
        return m.u8[m.payload_offset:m.payload_offset + m.capacity * m.slot_bytes]


class Ring(_RingIdentity):
    """The writer side of a ring. Create with :meth:`Ring.create`; exactly one per ring name."""

    def __init__(self, mapped: _Mapped) -> None:
        self._m = mapped
        self._bells = PLATFORM.doorbell_sender(mapped.rig)
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
        self._rung = [0] * MAX_READERS  # the reader arming counts this writer has already rung for
        self._reader_words = [(_READERS_OFFSET + i * LINE) // 8 for i in range(MAX_READERS)]

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
        label: str = "",
        prefault: bool = False,
    ) -> "Ring":
        """Create ring ``name`` of ``rig``; reclaim it if a previous writer died; fail if one is alive.

        ``descriptor`` is the Struct published per item; ``payload_shape`` and
        ``payload_dtype`` give the preallocated payload slot (None: descriptor-only
        ring; the dtype may also be a binary Struct, for arrays of records);
        ``status`` an optional Struct the writer keeps current in the header;
        ``label`` a readable name for the tools (default ``<rig>/<name>``).
        The memory is reserved at creation (a full /dev/shm fails here, with
        the numbers); ``prefault`` also maps every payload page now, so the
        first lap of the ring takes no page faults in the capture path.
        """
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
            raise RingError(f"ring {name}: capacity must be a positive integer, got {capacity!r}")
        if payload_shape is not None and (len(payload_shape) == 0 or any(int(d) <= 0 for d in payload_shape)):
            raise RingError(f"ring {name}: payload_shape must be non-empty positive dimensions, got {payload_shape!r}")
        if SLOT_SEQ_FIELD in descriptor.__struct_fields__:
            raise DescriptorError(f"ring {name}: descriptor field name {SLOT_SEQ_FIELD!r} is reserved for the ring")
        layout = _layout(descriptor, payload_shape, payload_dtype, status)
        doc = msgspec.json.encode(layout)
        geometry = _plan(capacity, layout, doc)
        obj = SharedObject.create(rig, name, kind=KIND, version=VERSION, doc=doc, size=geometry.total_bytes,
                                  label=label, doc_offset=geometry.layout_doc_offset)
        try:
            g = np.ndarray((), dtype=_GEOMETRY_DTYPE, buffer=obj.buf, offset=_GEOMETRY_OFFSET)
            g["reader_slots"] = MAX_READERS
            g["capacity"] = capacity
            g["descriptor_offset"] = geometry.descriptor_offset
            g["descriptor_stride"] = geometry.descriptor_stride
            g["payload_offset"] = geometry.payload_offset
            g["payload_slot_bytes"] = geometry.payload_slot_bytes
            g["status_offset"] = geometry.status_offset
            g["ring_id"] = ring_id_of(rig, name)
            del g
            if prefault:
                _prefault(obj.buf, geometry.payload_offset)
            PLATFORM.create_lock(obj.segment.name)
            obj.publish()
            return cls(_Mapped(obj, layout))
        except BaseException:
            obj.close()
            obj.unmap()
            raise

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
            for name in record_fields(records.dtype):
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
        """Ring, once per arming, the doorbell of every reader whose waiting byte is set in the ``waiting`` word."""
        words = self._words
        i = 0
        while waiting:
            if waiting & 0xFF:
                base = self._reader_words[i]
                armed = words[base + _R_ARMED]
                if armed != self._rung[i]:
                    self._rung[i] = armed
                    self._bells.ring(words[base + _R_BELL])
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
        """Mark the ring closed, wake waiting readers, unlink the object and its lock, unmap. Idempotent."""
        if self._closed:
            return
        self._closed = True
        m = self._m
        m.obj.close()  # closed flag, then unlink (and the lock file)
        # Wake blocked readers so they notice the writer is gone.
        words = self._words
        for i in range(MAX_READERS):
            base = self._reader_words[i]
            if words[base + _R_PID] and m.waiting[i]:
                self._bells.ring(words[base + _R_BELL])
        self._bells.close()
        self._slots = []
        self._buf = None
        m.release()  # releases the words memoryview too: a use after close raises ValueError

    def __enter__(self) -> "Ring":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _prefault(buf, start: int) -> None:
    """Back every page of ``buf`` from ``start`` in this process now (reservation gave the object its memory;
    this maps it), so the capture path takes no page faults on the first lap."""
    try:
        buf.madvise(23, start - start % PAGE_BYTES)  # MADV_POPULATE_WRITE (Linux 5.14+)
        return
    except (OSError, ValueError, AttributeError):
        pass
    pages = np.frombuffer(buf, dtype=np.uint8)[start::PAGE_BYTES]
    pages[:] = 0  # one store per page


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
            waiting=bool(m.waiting[i]), alive=process.alive(pid, words[base + _R_IDENTITY]),
        ))
    return out


class RingReader(_RingIdentity):
    """A reader of a ring with its own cursor. Attach with :meth:`RingReader.attach`."""

    def __init__(self, mapped: _Mapped, slot: int, start: str, doorbell: DoorbellListener | None) -> None:
        self._m = mapped
        self._slot = slot
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
        self._armed_word = base + _R_ARMED
        self._bell_word = base + _R_BELL
        published = mapped.published()
        self.cursor = published if start == "latest" else max(0, published - self._cap)
        self.lost = 0
        if slot >= 0:
            self._words[self._cursor_word] = self.cursor
            self._words[self._lost_word] = 0
        self._desc_views = mapped.desc_views
        self._bell = doorbell
        self._own_bell = False
        if doorbell is not None and slot >= 0:
            self._words[self._bell_word] = doorbell.bell_id
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
        doorbell: DoorbellListener | None = None,
    ) -> "RingReader":
        """Attach to ring ``name`` of ``rig``.

        ``descriptor``: the Struct the caller expects; a different layout fails
        with :class:`RingLayoutMismatch` naming both. ``start``: ``"oldest"``
        item still in the ring, or ``"latest"`` (only new items). ``register``:
        take a reader slot (cursor visible to tools, doorbell wake-ups); an
        unregistered reader can only poll. ``doorbell``: a listener this
        reader shares with others (to wait on several rings at once); by
        default a waiting reader makes its own on the first :meth:`wait`.
        """
        if start not in ("oldest", "latest"):
            raise ValueError(f"start must be 'oldest' or 'latest', got {start!r}")
        obj, layout = _attach_object(name, rig)
        try:
            if descriptor is not None:
                expected = describe(descriptor)
                if expected != layout.descriptor:
                    raise RingLayoutMismatch(
                        f"ring {obj.segment.name}: its descriptor layout is {layout.descriptor}, "
                        f"but the reader expects {expected}"
                    )
            mapped = _Mapped(obj, layout)
        except BaseException:
            obj.unmap()
            raise
        if not register:
            return cls(mapped, -1, start, None)
        try:
            slot = _register_reader(mapped)
        except BaseException:
            mapped.release()
            raise
        return cls(mapped, slot, start, doorbell)

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
        return self._m.obj.writer_pid

    def writer_alive(self) -> bool:
        """False once the writer closed the ring or its process is gone."""
        return self._m.obj.writer_alive()

    @property
    def writer_closed(self) -> bool:
        """True once the writer closed the ring (a cheap shared-memory read; no process query)."""
        return self._m.obj.closed

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
            for name in record_fields(out.dtype):
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
    def arm(self) -> bool:
        """Ask the writer to ring this reader's doorbell on its next publish; True if an item is already here.

        After ``arm()`` returned False, waiting on the doorbell cannot miss a
        publish (the writer stores ``published`` then reads the waiting byte;
        the reader stores the byte then reads ``published``, with a full
        fence on both sides). Call :meth:`disarm` after waking.
        """
        words = self._words
        if self._bell is None:
            self._listener()
        words[self._armed_word] += 1  # a new arming: the writer rings at most once for it
        self._m.waiting[self._slot] = 1
        fence.full_fence()
        if words[_PUBLISHED] > self.cursor:
            self._m.waiting[self._slot] = 0
            return True
        return False

    def _listener(self) -> DoorbellListener:
        """The doorbell this reader sleeps on: the shared one, else its own, made on first use."""
        bell = self._bell
        if bell is None:
            if self._slot < 0:
                raise RingError(f"ring {self.name}: an unregistered reader cannot wait; poll available() instead")
            bell = self._bell = PLATFORM.doorbell_listener(self._m.rig)
            self._own_bell = True
            self._words[self._bell_word] = bell.bell_id
        return bell

    def disarm(self) -> None:
        self._m.waiting[self._slot] = 0

    @property
    def doorbell(self) -> DoorbellListener | None:
        return self._bell

    def wait(self, timeout_s: float | None = None, *, spin_s: float = 0.0) -> bool:
        """Block until an item is available or ``timeout_s`` passes; True if one is available.

        Sleeps on this reader's doorbell (no core spun). With ``spin_s`` it
        first polls for that long (lowest latency, one core busy meanwhile).
        """
        words = self._words
        if words[_PUBLISHED] > self.cursor:
            return True
        if spin_s > 0:
            spin_until = time.perf_counter() + spin_s
            while time.perf_counter() < spin_until:
                if words[_PUBLISHED] > self.cursor:
                    return True
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        bell = self._listener()
        while True:
            if self.arm():
                return True
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            bell.wait(remaining)
            self.disarm()
            if words[_PUBLISHED] > self.cursor:
                return True
            # A ring for an earlier arming, another ring sharing the doorbell, or the writer closing: not data.
            if self._m.obj.closed or (deadline is not None and time.monotonic() >= deadline):
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
        """Release the reader slot (and an own doorbell) and unmap. Never unlinks the ring. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._slot >= 0:
            base = (_READERS_OFFSET + self._slot * LINE) // 8
            self._m.waiting[self._slot] = 0
            self._words[base + _R_BELL] = 0
            self._words[base + _R_PID] = 0
        if self._own_bell and self._bell is not None:
            self._bell.close()
        self._bell = None
        self._slots = []
        self._buf = None
        self._desc_views = []
        self._m.release()  # releases the words memoryview too: a use after close raises ValueError

    def __enter__(self) -> "RingReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_any(readers: list[RingReader], doorbell: DoorbellListener, timeout_s: float | None) -> bool:
    """Arm every reader (all sharing ``doorbell``) and sleep until one has an item or ``timeout_s`` passes.

    Returns True when at least one reader has an item. The building block of
    an event-driven loop over many rings; a caller that also waits on other
    descriptors (a zmq socket) arms with :meth:`RingReader.arm` and polls
    ``doorbell.fileno()`` beside them.
    """
    ready = False
    for reader in readers:
        if reader.arm():
            ready = True
    if not ready:
        ready = doorbell.wait(timeout_s)
    for reader in readers:
        reader.disarm()
    return ready or any(r.available() > 0 for r in readers)


def _register_reader(m: _Mapped) -> int:
    """Take a free (or dead-owner) reader slot under the ring's lock (released by the OS if we die holding it)."""
    lock = PLATFORM.open_lock(m.obj.segment.name)
    try:
        try:
            lock.acquire(2.0)
        except LockTimeout as exc:
            raise RingError(f"ring {m.obj.segment.name}: {exc}") from None
        try:
            words = m.words
            me = os.getpid()
            for i in range(MAX_READERS):
                base = (_READERS_OFFSET + i * LINE) // 8
                pid = words[base + _R_PID]
                if pid and process.alive(pid, words[base + _R_IDENTITY]):
                    continue
                words[base + _R_PID] = me
                words[base + _R_IDENTITY] = process.identity()
                words[base + _R_CURSOR] = 0
                words[base + _R_LOST] = 0
                words[base + _R_ATTACHED] = time.monotonic_ns()
                words[base + _R_BELL] = 0
                m.waiting[i] = 0
                return i
            raise RingError(
                f"ring {m.obj.segment.name}: all {MAX_READERS} reader slots are taken by live processes: "
                + ", ".join(str(r.pid) for r in _readers(m))
            )
        finally:
            lock.release()
    finally:
        lock.close()


def inspect_ring(name: str, *, rig: str = "default") -> dict:
    """A snapshot of a ring for tools: layout, counters, writer liveness, readers and lag."""
    reader = RingReader.attach(name, rig=rig, register=False)
    try:
        return {
            "name": name,
            "label": reader.label,
            "rig": rig,
            "layout": str(reader.layout),
            "capacity": reader.capacity,
            "published": reader.published,
            "publish_errors": reader.publish_errors,
            "writer_pid": reader.writer_pid(),
            "writer_alive": reader.writer_alive(),
            "heartbeat_age_s": (time.monotonic_ns() - reader.heartbeat_ns) / 1e9 if reader.heartbeat_ns else None,
            "readers": [r._asdict() for r in reader.readers()],
        }
    finally:
        reader.close()
