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

from ringbuf.shared import ObjectMismatch, SharedObject

from .errors import ReservoirLayoutMismatch
from .layout import (
    DESCRIPTOR_SLOT_BYTES, GEOMETRY_OFFSET, KIND, KIND_COUNT, STATUS_OFFSET, TYPED_DESCRIPTORS, VERSION, Geometry,
    geometry_dtype, latest_dtype, layout_document, padded_dtype, record_dtype, status_dtype,
)

__all__ = ["Mapped", "attach_object", "write_geometry"]

GEOMETRY_DTYPE = geometry_dtype()
STATUS_DTYPE = status_dtype()
RECORD_DTYPE = record_dtype()
LATEST_DTYPE = latest_dtype()


class Mapped:
    """Views over a mapped reservoir object, shared by the writer and readers.

    Holds the word view (memoryview of u64, the fast scalar path), numpy views
    of the record, descriptor, kind-index and latest tables (the batch path),
    and the derived word offsets. ``obj`` is the :class:`SharedObject`
    (common header, writer identity, ownership).
    """

    def __init__(self, obj: SharedObject) -> None:
        self.obj = obj
        self.segment = obj.segment
        self.rig = obj.rig
        self.name = obj.name
        buf = obj.buf
        self.header = obj.header  # the live common header (tests poke it to simulate other versions)
        geometry = np.ndarray((), dtype=GEOMETRY_DTYPE, buffer=buf, offset=GEOMETRY_OFFSET).copy()
        if int(geometry["kind_count"]) != KIND_COUNT:
            raise ReservoirLayoutMismatch(f"reservoir {obj.segment.name}: {int(geometry['kind_count'])} kinds, "
                                          f"expected {KIND_COUNT}")
        self.capacity = int(geometry["capacity"])
        self.duration_ns = int(geometry["duration_ns"])
        self.latest_slots = int(geometry["latest_slots"])
        self.max_sensors = int(geometry["max_sensors"])
        self.handle_id = int(geometry["handle_id"])
        self.records_offset = int(geometry["records_offset"])
        self.descriptors_offset = int(geometry["descriptors_offset"])
        self.kind_index_offset = int(geometry["kind_index_offset"])
        self.latest_offset = int(geometry["latest_offset"])
        self.buf = buf
        try:
            # Where shmem THP is "advise" this backs the tables with 2 MB pages (fewer TLB misses on random
            # reads of a large window); with shmem THP "never" (this project's test machines) it does nothing.
            advice = getattr(mmap, "MADV_HUGEPAGE", None)  # Linux only
            if advice is not None:
                buf.madvise(advice)
        except (AttributeError, OSError, ValueError):
            pass
        self.words = memoryview(buf).cast("Q")
        capacity = self.capacity
        self.records = np.ndarray((capacity,), dtype=RECORD_DTYPE, buffer=buf, offset=self.records_offset)
        self.kind_index = np.ndarray((KIND_COUNT, capacity), dtype=np.uint64, buffer=buf, offset=self.kind_index_offset)
        self.descriptor_bytes = np.ndarray(
            (capacity, DESCRIPTOR_SLOT_BYTES), dtype=np.uint8, buffer=buf, offset=self.descriptors_offset,
        )
        self.descriptor_views = {
            int(kind): np.ndarray((capacity,), dtype=padded_dtype(cls, DESCRIPTOR_SLOT_BYTES), buffer=buf,
                             offset=self.descriptors_offset)
            for kind, cls in TYPED_DESCRIPTORS.items()
        }
        self.latest = np.ndarray((self.latest_slots,), dtype=LATEST_DTYPE, buffer=buf, offset=self.latest_offset)
        self.status_view = np.ndarray((), dtype=STATUS_DTYPE, buffer=buf, offset=STATUS_OFFSET)
        # Word (u64) indices of the table starts in ``words``.
        self.record_word0 = self.records_offset // 8
        self.kind_index_word0 = self.kind_index_offset // 8
        self.latest_word0 = self.latest_offset // 8

    def release(self) -> None:
        """Drop every view and unmap (a view still held by a caller keeps the mapping until freed)."""
        self.words.release()
        for attr in ("header", "records", "kind_index", "descriptor_bytes", "descriptor_views", "latest",
                     "status_view"):
            setattr(self, attr, None)
        self.obj.unmap()


def attach_object(rig: str, name: str, *, readonly: bool) -> SharedObject:
    """Attach reservoir ``name`` of ``rig``; raise :class:`ReservoirLayoutMismatch` naming what differs.

    A reservoir its creator has not finished raises
    :class:`~ringbuf.shared.ObjectNotReady`, a ``SegmentMissing``: not there
    yet (retry shortly), never a layout mismatch.
    """
    try:
        obj = SharedObject.attach(rig, name, kind=KIND, version=VERSION, readonly=readonly)
    except ObjectMismatch as exc:
        raise ReservoirLayoutMismatch(str(exc)) from None
    if obj.doc != msgspec.json.encode(layout_document()):
        obj.unmap()
        raise ReservoirLayoutMismatch(
            f"reservoir {obj.segment.name}: its record/descriptor layouts differ from this Mimir's "
            f"(segment: {obj.doc[:200]!r}...); run the same Mimir version in the supervisor and its readers"
        )
    return obj


def write_geometry(obj: SharedObject, geometry: Geometry, *, duration_ns: int, max_sensors: int,
                   handle_id: int) -> None:
    """Fill the static geometry of a fresh reservoir object (the common header is the object's)."""
    g = np.ndarray((), dtype=GEOMETRY_DTYPE, buffer=obj.buf, offset=GEOMETRY_OFFSET)
    g["kind_count"] = KIND_COUNT
    g["capacity"] = geometry.capacity
    g["duration_ns"] = duration_ns
    g["latest_slots"] = geometry.latest_slots
    g["max_sensors"] = max_sensors
    g["status_offset"] = STATUS_OFFSET
    g["kind_index_offset"] = geometry.kind_index_offset
    g["records_offset"] = geometry.records_offset
    g["descriptors_offset"] = geometry.descriptors_offset
    g["latest_offset"] = geometry.latest_offset
    g["handle_id"] = handle_id
