"""The reservoir segment's binary layout: header, status words, record and latest-table structs, geometry.

The reservoir is a :class:`ringbuf.shared.SharedObject` of kind ``reservoir``
(the common header: magic stored last, version, layout document and its
hash, writer pid and identity, closed flag, label). Memory layout of segment
``mimir-<rig>-<name>`` after that header (every region starts on a 64-byte line)::

    line 4-7     ReservoirGeometry static: capacity, window duration, region offsets, handle id
    line 8-12    StatusWords       live: generation (seqlock), edge, window start, head, tail,
                                   counters, per-kind view heads and tails
    ...          layout document   msgspec JSON of ReservoirLayoutDoc (what the layout hash covers)
    ...          kind index        9 circular arrays of ``capacity`` u64: global positions of each view
    ...          records           ``capacity`` ReservoirRecord slots of 64 B (one line each)
    ...          descriptors       ``capacity`` slots of 64 B, parallel to records (typed kinds only)
    ...          latest table      open-addressing table of LatestEntry (32 B): (kind, sensor) -> position

Positions
    Every stored sample gets the next *global position* (0, 1, 2 ...), its
    slot is ``position % capacity``. The window holds positions ``[head, tail)``.
    Each kind view holds *kind positions* ``[kind_head, kind_tail)``; entry
    ``kind_position % capacity`` of that kind's index array holds the global
    position. Counts are differences of these counters: O(1).

Consistency (one writer, readers in any process)
    * Record slot: ``stamp`` is 0 while the writer rewrites the slot and
      ``position + 1`` once it holds that sample. A reader checks the stamp
      before and after copying, then checks ``head <= position`` (the sample
      was still in the window). The record's ``kind_position`` lets a view
      read detect a recycled kind-index entry. The descriptor slot is covered
      by the same stamp.
    * Status words: ``generation`` is odd while the writer updates them; a
      reader copying them retries until it sees the same even value before and
      after. Multi-field queries (status, count, view count) use it.
    * Latest table: an entry's key words are written before its tag; its
      position word is one aligned 8-byte store.

Ownership
    The supervisor creates the segment (:meth:`Reservoir.create`), is its only
    writer and the only process that unlinks it. Attachers map it read-only.
"""

from __future__ import annotations

import hashlib
import operator
import struct
import typing
from dataclasses import dataclass, fields
from typing import SupportsIndex

import msgspec
import numpy as np

from mimir.descriptors import (
    AudioBlockDescriptor, CameraFeature, CameraFrameDescriptor, RenderPacketDescriptor, SampleHandle, SampleKind,
)
from ringbuf.layout import U32, U64, Layout, describe, dtype_of, struct_code
from ringbuf.shared import KIND_HEADER_OFFSET
from .errors import UnknownKind

__all__ = [
    "KIND", "DEFAULT_NAME", "VERSION", "LINE", "KIND_COUNT", "KINDS", "DEFAULT_WINDOW_NS", "DESCRIPTOR_SLOT_BYTES",
    "TYPED_DESCRIPTORS", "StatusWords", "ReservoirRecord", "LatestEntry",
    "ReservoirLayoutDoc", "Geometry", "plan", "check_kind", "KIND_SHIFT", "KIND_POSITION_MASK",
    "StatusWordIndex", "STATUS_WORD", "RecordWords", "RECORD_WORD", "WORDS_PER_RECORD", "RECORD_BODY",
    "LatestEntryWords", "LATEST_WORD", "WORDS_PER_LATEST_ENTRY", "struct_fields",
    "padded_dtype", "layout_document", "doc_hash", "STATUS_OFFSET", "PAGE", "VERSION",
    "status_dtype", "record_dtype", "geometry_dtype", "latest_dtype", "GEOMETRY_OFFSET", "ReservoirGeometry",
]

KIND = "reservoir"
DEFAULT_NAME = "res"  # the object name within its rig (short: every name must fit macOS's 31 characters)
VERSION = 2
LINE = 64
PAGE = 4096
KINDS: tuple[SampleKind, ...] = tuple(SampleKind)
KIND_COUNT = len(KINDS)
DEFAULT_WINDOW_NS = 5_000_000_000
DESCRIPTOR_SLOT_BYTES = 64
KIND_SHIFT = 56
KIND_POSITION_MASK = (1 << KIND_SHIFT) - 1

# The typed kinds whose descriptor the reservoir stores beside the sample.
TYPED_DESCRIPTORS: dict[SampleKind, type[msgspec.Struct]] = {
    SampleKind.CAMERA_FRAME: CameraFrameDescriptor,
    SampleKind.CAMERA_FEATURE: CameraFeature,
    SampleKind.AUDIO_BLOCK: AudioBlockDescriptor,
    SampleKind.RENDER_PACKET: RenderPacketDescriptor,
}


class ReservoirGeometry(msgspec.Struct):
    """The reservoir's static header (line 4, after the common object header). Written once by the creator."""

    kind_count: U32
    reserved: U32
    capacity: U64
    duration_ns: U64
    latest_slots: U64
    max_sensors: U64
    status_offset: U64
    kind_index_offset: U64
    records_offset: U64
    descriptors_offset: U64
    latest_offset: U64
    handle_id: U64


_KIND_NAMES = [k.name.lower() for k in KINDS]
StatusWords = msgspec.defstruct(
    "StatusWords",
    [
        ("generation", U64),        # seqlock: odd while the writer updates these words
        ("edge_ns", U64),
        ("window_start_ns", U64),
        ("head", U64),              # global position of the oldest sample in the window
        ("tail", U64),              # global position the next stored sample gets (== samples stored)
        ("late", U64),              # accepted with a timestamp before the window start: never visible
        ("out_of_order", U64),      # stored with a timestamp before the edge (late but inside the window)
        ("rejected", U64),          # refused: non-zero flags
        ("evicted_aged", U64),      # left because their timestamp fell before the window start
        ("evicted_disorder", U64),  # left inside the window because a later-pushed sample aged out
        ("evicted_capacity", U64),  # left inside the window because the capacity was full
        ("sensors", U64),           # (kind, sensor) pairs in the latest table
        *[(f"head_{n}", U64) for n in _KIND_NAMES],
        *[(f"tail_{n}", U64) for n in _KIND_NAMES],
    ],
)
StatusWords.__doc__ = "The live status words (line 4 on), guarded by ``generation``. Counts are tail - head."


def _record_fields() -> list[tuple[str, object]]:
    hints = typing.get_type_hints(SampleHandle, include_extras=True)
    return [("stamp", U64), *[(name, hints[name]) for name in SampleHandle.__struct_fields__], ("kind_position", U64)]


# One record slot (64 B): a seqlock stamp, the 48-byte SampleHandle (its fields, declared once in
# mimir.descriptors), then ``kind << 56 | kind position``.
ReservoirRecord = msgspec.defstruct("ReservoirRecord", _record_fields())


class LatestEntry(msgspec.Struct):
    """One latest-for-sensor table entry (32 B). ``tag`` is kind + 1 (0: empty); ``position_plus_one`` 0: none yet."""

    tag: U64
    sensor_id_hash: U64
    position_plus_one: U64
    reserved: U64


class ReservoirLayoutDoc(msgspec.Struct, frozen=True):
    """Everything an attacher must agree on; its hash is stored in the header."""

    version: int
    kinds: tuple[str, ...]
    record: Layout
    status: Layout
    latest: Layout
    descriptors: dict[str, Layout]


def struct_fields(dtype: np.dtype) -> list[tuple[str, np.dtype, int]]:
    """``(name, field dtype, byte offset)`` of every field of the structured ``dtype``, in declaration order."""
    names, fields_ = dtype.names, dtype.fields
    if names is None or fields_ is None:
        raise TypeError(f"{dtype} is not a structured dtype")
    return [(name, fields_[name][0], fields_[name][1]) for name in names]


_GEOMETRY_DTYPE = dtype_of(ReservoirGeometry)
_STATUS_DTYPE = dtype_of(StatusWords)
_RECORD_DTYPE = dtype_of(ReservoirRecord)
_LATEST_DTYPE = dtype_of(LatestEntry)
assert _GEOMETRY_DTYPE.itemsize <= 4 * LINE
assert _RECORD_DTYPE.itemsize == LINE
assert _LATEST_DTYPE.itemsize == 32
# The record embeds SampleHandle verbatim at offset 8.
assert [(n, d, offset - 8) for n, d, offset in struct_fields(_RECORD_DTYPE)[1:-1]] == struct_fields(
    dtype_of(SampleHandle))
for _cls in TYPED_DESCRIPTORS.values():
    assert dtype_of(_cls).itemsize <= DESCRIPTOR_SLOT_BYTES

GEOMETRY_OFFSET = KIND_HEADER_OFFSET
STATUS_OFFSET = GEOMETRY_OFFSET + 4 * LINE
WORDS_PER_RECORD = _RECORD_DTYPE.itemsize // 8
WORDS_PER_LATEST_ENTRY = _LATEST_DTYPE.itemsize // 8


def _u64_word_offsets(dtype: np.dtype, base_byte: int = 0) -> dict[str, int]:
    """``{name: (base_byte + byte offset) // 8}`` for every u64 field of ``dtype`` (each 8-byte aligned)."""
    words = {}
    for name, field_dtype, offset in struct_fields(dtype):
        if field_dtype == np.dtype("<u8"):
            assert (base_byte + offset) % 8 == 0, f"{name} is not 8-byte aligned"
            words[name] = (base_byte + offset) // 8
    return words


@dataclass(frozen=True, slots=True)
class RecordWords:
    """Word (u64) offsets of a record's u64 fields from the record's first word: ``field offset // 8``.

    Derived from :data:`ReservoirRecord` (the fields of this class must be
    exactly the record's u64 fields: checked at import). ``flags`` and
    ``reserved`` (two u32 sharing one word) are only read through
    :data:`RECORD_BODY`.
    """

    stamp: int
    sensor_id_hash: int
    timestamp_ns: int
    arrival_ns: int
    sequence: int
    payload_handle: int
    kind_position: int  # kind << KIND_SHIFT | the sample's kind position


@dataclass(frozen=True, slots=True)
class StatusWordIndex:
    """Word (u64) indices, from the start of the segment, of the status words: ``(STATUS_OFFSET + offset) // 8``.

    Derived from :data:`StatusWords`. ``kind_head + k`` and ``kind_tail + k``
    are the view head and tail of kind ``k`` (the per-kind words are
    contiguous in SampleKind order: checked at import).
    """

    generation: int
    edge_ns: int
    window_start_ns: int
    head: int
    tail: int
    late: int
    out_of_order: int
    rejected: int
    evicted_aged: int
    evicted_disorder: int
    evicted_capacity: int
    sensors: int
    kind_head: int
    kind_tail: int


@dataclass(frozen=True, slots=True)
class LatestEntryWords:
    """Word (u64) offsets of a :class:`LatestEntry`'s fields from the entry's first word. Derived from it."""

    tag: int
    sensor_id_hash: int
    position_plus_one: int
    reserved: int


def _record_words() -> RecordWords:
    offsets = _u64_word_offsets(_RECORD_DTYPE)
    assert sorted(offsets) == sorted(f.name for f in fields(RecordWords)), offsets
    return RecordWords(**offsets)


def _status_word_index() -> StatusWordIndex:
    offsets = _u64_word_offsets(_STATUS_DTYPE, STATUS_OFFSET)
    heads = [offsets.pop(f"head_{n}") for n in _KIND_NAMES]
    tails = [offsets.pop(f"tail_{n}") for n in _KIND_NAMES]
    assert heads == list(range(heads[0], heads[0] + KIND_COUNT)), heads
    assert tails == list(range(tails[0], tails[0] + KIND_COUNT)), tails
    return StatusWordIndex(**offsets, kind_head=heads[0], kind_tail=tails[0])


def _latest_entry_words() -> LatestEntryWords:
    return LatestEntryWords(**_u64_word_offsets(_LATEST_DTYPE))


RECORD_WORD = _record_words()
STATUS_WORD = _status_word_index()
LATEST_WORD = _latest_entry_words()
# The record after its stamp word (the SampleHandle fields, then kind << 56 | kind position): one unpack per read,
# from byte ``8 * RECORD_WORD.sensor_id_hash`` of the record.
assert RECORD_WORD.stamp == 0 and RECORD_WORD.sensor_id_hash == 1
RECORD_BODY = struct.Struct("<" + "".join(struct_code(f.dtype) for f in describe(ReservoirRecord).fields[1:]))
assert RECORD_BODY.size == _RECORD_DTYPE.itemsize - 8


def layout_document() -> ReservoirLayoutDoc:
    return ReservoirLayoutDoc(
        version=VERSION,
        kinds=tuple(k.name for k in KINDS),
        record=describe(ReservoirRecord),
        status=describe(StatusWords),
        latest=describe(LatestEntry),
        descriptors={k.name: describe(cls) for k, cls in TYPED_DESCRIPTORS.items()},
    )


def doc_hash(doc: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(doc, digest_size=8).digest(), "little")


def padded_dtype(struct_cls: type[msgspec.Struct], itemsize: int) -> np.dtype:
    """``dtype_of(struct_cls)`` with its itemsize widened to ``itemsize`` (a strided slot view)."""
    fields_ = struct_fields(dtype_of(struct_cls))
    return np.dtype({
        "names": [name for name, _, _ in fields_], "formats": [d for _, d, _ in fields_],
        "offsets": [offset for _, _, offset in fields_], "itemsize": itemsize,
    })


def check_kind(kind: object) -> int:
    """Return ``kind`` as an int if it is a known SampleKind id, else raise :class:`UnknownKind`."""
    try:
        value = operator.index(kind) if isinstance(kind, SupportsIndex) else -1
    except TypeError:  # e.g. a 0-d float array: it has __index__, which refuses
        value = -1
    if 0 <= value < KIND_COUNT:
        return value
    raise UnknownKind(
        f"unknown sample kind {kind!r}: use a mimir.descriptors.SampleKind "
        f"({', '.join(f'{k.name}={k.value}' for k in KINDS)})"
    )


def _align(n: int, to: int = LINE) -> int:
    return -(-n // to) * to


@dataclass(frozen=True)
class Geometry:
    capacity: int
    latest_slots: int
    layout_doc_offset: int
    layout_doc_bytes: int
    kind_index_offset: int
    records_offset: int
    descriptors_offset: int
    latest_offset: int
    total_bytes: int


def plan(capacity: int, latest_slots: int, doc: bytes) -> Geometry:
    doc_offset = _align(STATUS_OFFSET + _STATUS_DTYPE.itemsize)
    kind_index = _align(doc_offset + len(doc))
    records = _align(kind_index + KIND_COUNT * capacity * 8, PAGE)
    descriptors = _align(records + capacity * LINE, PAGE)
    latest = _align(descriptors + capacity * DESCRIPTOR_SLOT_BYTES, PAGE)
    total = latest + latest_slots * _LATEST_DTYPE.itemsize
    return Geometry(capacity, latest_slots, doc_offset, len(doc), kind_index, records, descriptors, latest, total)


def status_dtype() -> np.dtype:
    return _STATUS_DTYPE


def record_dtype() -> np.dtype:
    return _RECORD_DTYPE


def geometry_dtype() -> np.dtype:
    return _GEOMETRY_DTYPE


def latest_dtype() -> np.dtype:
    return _LATEST_DTYPE

