"""Resolving 64-bit handles of one rig in any process: ring payloads and reservoir descriptors.

A handle is ``id << 48 | sequence`` (:func:`mimir.descriptors.make_handle`).
The id is the 16-bit ``ring_id_of(rig, name)`` of the ring that holds the
payload, or of the reservoir that holds the descriptor. Resolving:

* ring payload handle -> zero-copy numpy view of the ring slot
  (``RingReader.payload_view``); raises :class:`StaleHandle` once the ring has
  overwritten that item. The view aliases the slot: after using it, call
  :meth:`HandleResolver.valid` -- False means the writer reused the slot
  meanwhile and what was read may be torn (copy first if in doubt);
* reservoir descriptor handle (a typed sample's ``payload_handle``) -> the
  descriptor Struct, seqlock-checked; :class:`StaleHandle` once the sample
  left the window.

The resolver attaches every ring of the rig as an unregistered reader (it
takes no reader slot and never moves a cursor) and, for an id it does not
know, rescans the rig once before raising :class:`UnknownHandle`. Ownership:
it owns only its own mappings; :meth:`close` unmaps them.
"""

from __future__ import annotations

import msgspec
import numpy as np

from mimir.descriptors import split_handle
from ringbuf.ring import RingLayoutMismatch, RingReader, StaleItem
from ringbuf.segment import PREFIX, SegmentMissing, list_segments

from .errors import HandleIdCollision, StaleHandle, UnknownHandle
from .queries import ReservoirQueries
from .results import Sample

__all__ = ["HandleResolver"]


class HandleResolver:
    """Maps handle ids to the rig's rings (and optionally its reservoir) and resolves handles."""

    def __init__(self, rig: str, *, reservoir: ReservoirQueries | None = None) -> None:
        self.rig = rig
        self._rings: dict[int, RingReader] = {}
        self._reservoir = reservoir
        self._skip: set[str] = set()
        self.rescan()

    # ---- discovery --------------------------------------------------------------------------------------------
    def rescan(self) -> None:
        """Attach every ring of the rig not yet attached (segments that are not rings are skipped)."""
        prefix = f"{PREFIX}{self.rig}-"
        known = {reader.name for reader in self._rings.values()}
        for entry in list_segments(self.rig):
            if "#" in entry:
                continue  # a companion file (lock, doorbell), not an object
            obj = entry[len(prefix):]
            if obj in known or obj in self._skip:
                continue
            if self._reservoir is not None and obj == self._reservoir.name:
                continue
            try:
                reader = RingReader.attach(obj, rig=self.rig, register=False)
            except (RingLayoutMismatch, SegmentMissing, ValueError):
                self._skip.add(obj)  # a reservoir or another non-ring object, or gone already
                continue
            self.add_ring(reader)

    def add_ring(self, reader: RingReader) -> None:
        """Register an attached ring reader; two rings with the same 16-bit id cannot be told apart."""
        other = self._rings.get(reader.ring_id)
        if other is not None and other is not reader:
            raise HandleIdCollision(
                f"rings {other.name} and {reader.name} of rig {self.rig} share handle id {reader.ring_id:#06x}; "
                "rename one of them"
            )
        if self._reservoir is not None and reader.ring_id == self._reservoir.handle_id:
            raise HandleIdCollision(
                f"ring {reader.name} and reservoir {self._reservoir.name} share handle id {reader.ring_id:#06x}; "
                "rename one of them"
            )
        self._rings[reader.ring_id] = reader

    def _ring(self, ring_id: int, handle: int) -> RingReader:
        reader = self._rings.get(ring_id)
        if reader is None:
            self.rescan()
            reader = self._rings.get(ring_id)
            if reader is None:
                names = ", ".join(f"{r.name}={i:#06x}" for i, r in sorted(self._rings.items())) or "none"
                raise UnknownHandle(
                    f"handle {handle:#x}: no ring of rig {self.rig} has id {ring_id:#06x} (rings: {names}); "
                    "was the ring closed, or is the handle from another rig?"
                )
        return reader

    # ---- resolution -------------------------------------------------------------------------------------------
    def payload(self, handle: int) -> np.ndarray:
        """Zero-copy view of the ring slot a payload handle names; :class:`StaleHandle` if overwritten."""
        ring_id, sequence = split_handle(handle)
        reader = self._ring(ring_id, handle)
        try:
            return reader.payload_view(sequence)
        except StaleItem:
            raise StaleHandle(
                f"handle {handle:#x}: item {sequence} of ring {reader.name} has been overwritten "
                f"(the ring keeps its last {reader.capacity} items); copy payloads sooner or grow the ring"
            ) from None

    def valid(self, handle: int) -> bool:
        """True while the item a ring payload handle names is still in its slot."""
        ring_id, sequence = split_handle(handle)
        return self._ring(ring_id, handle).valid(sequence)

    def descriptor(self, handle: int) -> msgspec.Struct | tuple:
        """The descriptor a handle names: a reservoir descriptor Struct, or a ring item's descriptor tuple."""
        ring_id, sequence = split_handle(handle)
        if self._reservoir is not None and ring_id == self._reservoir.handle_id:
            return self._reservoir.descriptor(handle)
        reader = self._ring(ring_id, handle)
        try:
            return reader.descriptor_of(sequence)
        except StaleItem:
            raise StaleHandle(
                f"handle {handle:#x}: item {sequence} of ring {reader.name} has been overwritten "
                f"(the ring keeps its last {reader.capacity} items)"
            ) from None

    def payload_of(self, sample: Sample) -> np.ndarray:
        """Follow a typed sample to its payload: sample -> reservoir descriptor -> ring slot view."""
        descriptor = self.descriptor(sample.payload_handle)
        for field in ("data_handle", "point_buffer_handle", "payload_handle"):
            handle = getattr(descriptor, field, None)
            if handle is not None:
                return self.payload(handle)
        raise LookupError(f"descriptor {type(descriptor).__name__} names no payload handle")

    def rings(self) -> dict[int, str]:
        """``{handle id: ring name}`` of the attached rings."""
        return {i: r.name for i, r in self._rings.items()}

    def close(self) -> None:
        """Unmap every attached ring (views handed out keep their mapping alive until freed). Idempotent."""
        for reader in self._rings.values():
            reader.close()
        self._rings.clear()

    def __enter__(self) -> "HandleResolver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
