"""Shared-memory rings: one writer, many readers, zero-copy payload slots, seqlocked descriptors.

Public API::

    from ringbuf import Ring, RingReader, U64, F32
    ring = Ring.create("cam0", descriptor=Frame, capacity=64, payload_shape=(480, 640, 2))
    view = ring.claim(); fill(view); ring.publish(seq, t_ns, ...)
    reader = RingReader.attach("cam0", descriptor=Frame)
    if reader.wait(0.1): item = reader.read()

Layers, bottom up: :mod:`ringbuf.platform` (the OS seam), :mod:`ringbuf.process`
(process identity), :mod:`ringbuf.segment` (named segments),
:mod:`ringbuf.shared` (the self-describing single-writer object),
:mod:`ringbuf.ring` (the ring).
"""

from .layout import F32, F64, I8, I16, I32, I64, U8, U16, U32, U64, Layout, LayoutError, describe, dtype_of, layout_hash
from .platform import LockTimeout, NameTooLong, OutOfSharedMemory
from .ring import (
    MAX_READERS, DescriptorError, Item, PayloadError, ReaderInfo, Ring, RingError, RingLayout,
    RingLayoutMismatch, RingNotReady, RingReader, StaleItem, inspect_ring, ring_bytes, ring_id_of, wait_any,
)
from .segment import (
    MAX_RIG_CHARS, Segment, SegmentError, SegmentExists, SegmentMissing, check_rig_name, list_segments, segment_name,
)
from .shared import ForeignObject, ObjectInfo, ObjectMismatch, ObjectNotReady, SharedObject, remove_stale, scan

__all__ = [
    "U8", "U16", "U32", "U64", "I8", "I16", "I32", "I64", "F32", "F64",
    "Layout", "LayoutError", "describe", "dtype_of", "layout_hash",
    "Ring", "RingReader", "RingLayout", "Item", "ReaderInfo", "MAX_READERS",
    "RingError", "RingLayoutMismatch", "RingNotReady", "DescriptorError", "PayloadError", "StaleItem",
    "inspect_ring", "ring_id_of", "ring_bytes", "wait_any",
    "Segment", "SegmentError", "SegmentExists", "SegmentMissing", "list_segments", "segment_name", "check_rig_name",
    "MAX_RIG_CHARS", "OutOfSharedMemory", "NameTooLong", "LockTimeout",
    "SharedObject", "ObjectInfo", "ObjectMismatch", "ObjectNotReady", "ForeignObject", "scan", "remove_stale",
]
