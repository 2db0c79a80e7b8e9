"""Mapping a reservoir segment: header validation and the views the writer and readers share.

:class:`Mapped` turns a mapped :class:`ringbuf.Segment` into the word view
(a memoryview of u64: the fast path for scalar loads and stores), numpy views
of the record, descriptor, kind-index and latest tables (the batch path) and
the word offsets the queries use. The layout itself is declared in
:mod:`mimir.reservoir.layout`.
"""

from __future__ import annotations

import mmap

import msgspec
import numpy as np

from ringbuf.segment import Segment

from .errors import ReservoirLayoutMismatch
from .layout import (
    DESCRIPTOR_SLOT_BYTES, KIND_COUNT, LINE, MAGIC, STATUS_OFFSET, TYPED_DESCRIPTORS, VERSION, Geometry, doc_hash,
    header_dtype, latest_dtype, layout_document, padded_dtype, record_dtype, status_dtype,
)

__all__ = ["Mapped", "read_header", "write_header", "publish_magic", "header_writer"]

HEADER_DTYPE = header_dtype()
STATUS_DTYPE = status_dtype()
RECORD_DTYPE = record_dtype()
LATEST_DTYPE = latest_dtype()


class Mapped:
    """Views over a mapped reservoir segment, shared by the writer and readers.

    Holds the word view (memoryview of u64, the fast scalar path), numpy views
    of the record, descriptor, kind-index and latest tables (the batch path),
    and the derived word offsets.
    """

    def __init__(self, segment: Segment, rig: str, name: str) -> None:
        self.segment = segment
        self.rig = rig
        self.name = name
        header = read_header(segment)
        self.header_copy = header
        self.capacity = int(header["capacity"])
        self.duration_ns = int(header["duration_ns"])
        self.latest_slots = int(header["latest_slots"])
        self.max_sensors = int(header["max_sensors"])
        self.handle_id = int(header["handle_id"])
        self.records_offset = int(header["records_offset"])
        self.descriptors_offset = int(header["descriptors_offset"])
        self.kind_index_offset = int(header["kind_index_offset"])
        self.latest_offset = int(header["latest_offset"])
        buf = segment.buf
        self.buf = buf
        try:
            # Where shmem THP is "advise" this backs the tables with 2 MB pages (fewer TLB misses on random
            # reads of a large window); with shmem THP "never" (this project's test machines) it does nothing.
            buf.madvise(mmap.MADV_HUGEPAGE)
        except (AttributeError, OSError, ValueError):
            pass
        self.words = memoryview(buf).cast("Q")
        self.header = np.ndarray((), dtype=HEADER_DTYPE, buffer=buf, offset=0)
        cap = self.capacity
        self.records = np.ndarray((cap,), dtype=RECORD_DTYPE, buffer=buf, offset=self.records_offset)
        self.kind_index = np.ndarray((KIND_COUNT, cap), dtype=np.uint64, buffer=buf, offset=self.kind_index_offset)
        self.descriptor_bytes = np.ndarray(
            (cap, DESCRIPTOR_SLOT_BYTES), dtype=np.uint8, buffer=buf, offset=self.descriptors_offset,
        )
        self.descriptor_views = {
            kind: np.ndarray((cap,), dtype=padded_dtype(cls, DESCRIPTOR_SLOT_BYTES), buffer=buf,
                             offset=self.descriptors_offset)
            for kind, cls in TYPED_DESCRIPTORS.items()
        }
        self.latest = np.ndarray((self.latest_slots,), dtype=LATEST_DTYPE, buffer=buf, offset=self.latest_offset)
        self.status_view = np.ndarray((), dtype=STATUS_DTYPE, buffer=buf, offset=STATUS_OFFSET)
        # Word indices of the table starts.
        self.record_word0 = self.records_offset // 8
        self.kind_word0 = self.kind_index_offset // 8
        self.latest_word0 = self.latest_offset // 8

    def release(self) -> None:
        """Drop every view and unmap (a view still held by a caller keeps the mapping until freed)."""
        self.words.release()
        for attr in ("header", "records", "kind_index", "descriptor_bytes", "descriptor_views", "latest",
                     "status_view"):
            setattr(self, attr, None)
        try:
            self.segment.close()
        except BufferError:
            pass


def read_header(segment: Segment) -> np.void:
    """Copy and validate the static header; raise :class:`ReservoirLayoutMismatch` naming what differs."""
    name = segment.name
    if segment.size < 4 * LINE:
        raise ReservoirLayoutMismatch(f"reservoir {name}: segment of {segment.size} B is too small to be a reservoir")
    header = np.ndarray((), dtype=HEADER_DTYPE, buffer=segment.buf, offset=0).copy()
    if int(header["magic"]) != MAGIC:
        raise ReservoirLayoutMismatch(
            f"reservoir {name}: bad magic {int(header['magic']):#x} (expected {MAGIC:#x}); "
            "not a Mimir reservoir, or its writer died while creating it"
        )
    if int(header["version"]) != VERSION:
        raise ReservoirLayoutMismatch(
            f"reservoir {name}: format version {int(header['version'])}, this Mimir reads version {VERSION}; "
            "run the same Mimir version in the supervisor and its readers"
        )
    start = int(header["layout_doc_offset"])
    doc = bytes(segment.buf[start:start + int(header["layout_doc_bytes"])])
    ours = msgspec.json.encode(layout_document())
    if int(header["layout_hash"]) != doc_hash(doc) or doc != ours:
        raise ReservoirLayoutMismatch(
            f"reservoir {name}: its record/descriptor layouts differ from this Mimir's "
            f"(segment: {doc[:200]!r}...); run the same Mimir version in the supervisor and its readers"
        )
    if int(header["kind_count"]) != KIND_COUNT:
        raise ReservoirLayoutMismatch(f"reservoir {name}: {int(header['kind_count'])} kinds, expected {KIND_COUNT}")
    return header


def write_header(segment: Segment, geometry: Geometry, *, duration_ns: int, max_sensors: int, handle_id: int,
                 writer_pid: int, writer_start_ticks: int, created_unix_ns: int, doc: bytes) -> None:
    """Fill the static header and layout document of a fresh segment; ``magic`` is left for :func:`publish_magic`."""
    buf = segment.buf
    buf[geometry.layout_doc_offset:geometry.layout_doc_offset + len(doc)] = doc
    h = np.ndarray((), dtype=HEADER_DTYPE, buffer=buf, offset=0)
    h["version"] = VERSION
    h["kind_count"] = KIND_COUNT
    h["layout_hash"] = doc_hash(doc)
    h["capacity"] = geometry.capacity
    h["duration_ns"] = duration_ns
    h["latest_slots"] = geometry.latest_slots
    h["max_sensors"] = max_sensors
    h["status_offset"] = STATUS_OFFSET
    h["layout_doc_offset"] = geometry.layout_doc_offset
    h["layout_doc_bytes"] = geometry.layout_doc_bytes
    h["kind_index_offset"] = geometry.kind_index_offset
    h["records_offset"] = geometry.records_offset
    h["descriptors_offset"] = geometry.descriptors_offset
    h["latest_offset"] = geometry.latest_offset
    h["created_unix_ns"] = created_unix_ns
    h["writer_pid"] = writer_pid
    h["writer_start_ticks"] = writer_start_ticks
    h["handle_id"] = handle_id
    del h


def publish_magic(segment: Segment) -> None:
    memoryview(segment.buf).cast("Q")[0] = MAGIC


def header_writer(segment: Segment) -> tuple[int, int, int, bool]:
    """``(magic, writer_pid, writer_start_ticks, closed)`` of a possibly half-built segment (no validation)."""
    if segment.size < 4 * LINE:
        return 0, 0, 0, True
    h = np.ndarray((), dtype=HEADER_DTYPE, buffer=segment.buf, offset=0).copy()
    return int(h["magic"]), int(h["writer_pid"]), int(h["writer_start_ticks"]), bool(int(h["closed"]))
