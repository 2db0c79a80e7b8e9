"""Shared-memory rings: one writer, many readers, zero-copy payload slots, seqlocked descriptors.

Public API::

    from ringbuf import Ring, RingReader, U64, F32
    ring = Ring.create("cam0", descriptor=Frame, capacity=64, payload_shape=(480, 640, 2))
    view = ring.claim(); fill(view); ring.publish(seq, t_ns, ...)
    reader = RingReader.attach("cam0", descriptor=Frame)
    if reader.wait(0.1): item = reader.read()
"""

from .layout import F32, F64, I8, I16, I32, I64, U8, U16, U32, U64, Layout, LayoutError, describe, dtype_of, layout_hash
from .ring import (
    MAX_READERS, DescriptorError, Item, PayloadError, ReaderInfo, Ring, RingError, RingLayout,
    RingLayoutMismatch, RingNotReady, RingReader, StaleItem, inspect_ring, ring_id_of,
)
from .segment import Segment, SegmentError, SegmentExists, SegmentMissing, list_segments, segment_name

__all__ = [
    "U8", "U16", "U32", "U64", "I8", "I16", "I32", "I64", "F32", "F64",
    "Layout", "LayoutError", "describe", "dtype_of", "layout_hash",
    "Ring", "RingReader", "RingLayout", "Item", "ReaderInfo", "MAX_READERS",
    "RingError", "RingLayoutMismatch", "RingNotReady", "DescriptorError", "PayloadError", "StaleItem",
    "inspect_ring", "ring_id_of",
    "Segment", "SegmentError", "SegmentExists", "SegmentMissing", "list_segments", "segment_name",
]
