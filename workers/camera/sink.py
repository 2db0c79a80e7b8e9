"""The ring-backed :class:`~workers.camera.family.FrameSink`: frames land in ring slots, descriptors follow.

Ownership
    A :class:`RingFrameSink` belongs to one camera and is used by one thread at
    a time (the thread that publishes that camera's frames). It does not own
    the ring: the worker creates and closes rings; the sink only claims slots
    and publishes into them.

Invariants
    * ``claim()`` returns a writable, C-contiguous, flat ``uint8`` view of the
      next ring slot; calling it again before ``publish()`` returns the same
      slot (the ring guarantees this). The view stays valid until that slot
      comes round again (``capacity`` publishes later).
    * ``claim_image()`` / ``claim_rows()`` return the same slot shaped as the
      mode's payload shape / as ``(height, stride_bytes)`` rows, for drivers
      that need a shaped buffer (OpenCV's ``read(image=...)``).
    * ``publish()`` publishes exactly one :class:`~mimir.descriptors.CameraFrameDescriptor`
      whose ``sequence`` is the ring's item sequence (0, 1, 2... per camera,
      contiguous, unchanged by reconnects) and whose ``payload_handle`` is
      ``ring.handle(sequence)``.
    * Hot path: the per-slot shaped views are built the first time each slot
      is used and reused afterwards; claim/publish allocate no buffers, take
      no locks and log nothing.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ringbuf import Ring, RingError

from .family import CameraMode, FrameSink
from .stats import FrameStats

__all__ = ["RingFrameSink", "shaped_claim"]


class RingFrameSink:
    """FrameSink over one camera ring (see module docstring for the invariants)."""

    __slots__ = (
        "_ring", "_stats", "_hash", "_width", "_height", "_format", "_stride", "_max_bytes",
        "_capacity", "_views", "_claim_ns", "_claimed",
    )

    def __init__(self, ring: Ring, *, source_hash: int, mode: CameraMode, stats: FrameStats) -> None:
        shape = ring.layout.payload_shape
        if tuple(shape) != tuple(mode.payload_shape) or np.dtype(ring.layout.payload_dtype) != np.uint8:
            raise RingError(
                f"ring {ring.name}: slot {ring.layout.payload_dtype}{list(shape)} does not hold mode {mode} "
                f"(payload shape {list(mode.payload_shape)} uint8)"
            )
        self._ring = ring
        self._stats = stats
        self._hash = source_hash
        self._width = mode.width
        self._height = mode.height
        self._format = int(mode.pixel_format)
        self._stride = mode.byte_length // mode.height
        self._max_bytes = mode.byte_length
        self._capacity = ring.capacity
        self._views: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * ring.capacity
        self._claim_ns = 0
        self._claimed = False

    @property
    def source_id_hash(self) -> int:
        return self._hash

    @property
    def stats(self) -> FrameStats:
        return self._stats

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self._ring.layout.payload_shape)

    @property
    def rows_shape(self) -> tuple[int, int]:
        return (self._height, self._stride)

    def _slot_views(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = self._ring.claim()  # invalidates the slot's previous item before anything is written
        if not self._claimed:
            self._claimed = True
            self._claim_ns = time.perf_counter_ns()
        slot = self._ring.published % self._capacity
        views = self._views[slot]
        if views is None:
            views = (image, image.reshape(-1), image.reshape(self._height, self._stride))
            self._views[slot] = views
        return views

    def claim(self) -> np.ndarray:
        """Flat writable uint8 view of the next slot (same slot until publish)."""
        return self._slot_views()[1]

    def claim_image(self) -> np.ndarray:
        """The next slot shaped as the mode's payload shape (e.g. ``(h, w, 3)`` for BGR3)."""
        return self._slot_views()[0]

    def claim_rows(self) -> np.ndarray:
        """The next slot as ``(height, stride_bytes)`` uint8 rows."""
        return self._slot_views()[2]

    def publish(self, *, device_time_ns: int, host_time_ns: int, byte_length: int) -> int:
        """Publish the claimed slot; returns its sequence. RingError if nothing was claimed or it overflows."""
        if not self._claimed:
            raise RingError(f"ring {self._ring.name}: publish() without claim()")
        if byte_length > self._max_bytes or byte_length < 0:
            raise RingError(f"ring {self._ring.name}: byte_length {byte_length} exceeds the slot ({self._max_bytes} B)")
        ring = self._ring
        seq = ring.published
        ring.publish(
            self._hash, seq, device_time_ns, host_time_ns, self._width, self._height,
            self._format, self._stride, byte_length, ring.handle(seq),
        )
        self._claimed = False
        self._stats.on_frame(host_time_ns, device_time_ns, time.perf_counter_ns() - self._claim_ns)
        return seq

    def count_fallback_copy(self) -> None:
        """The driver wrote elsewhere and the frame was copied into the slot (OpenCV returned a new array)."""
        self._stats.fallback_copies += 1


def shaped_claim(sink: FrameSink, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    """A zero-argument callable returning the next slot shaped ``shape``.

    Uses the sink's cached ``claim_image``/``claim_rows`` views when it has
    them (:class:`RingFrameSink`); for any other FrameSink it reshapes
    ``claim()`` (one view header per call).
    """
    shape = tuple(shape)
    if isinstance(sink, RingFrameSink):
        if sink.image_shape == shape:
            return sink.claim_image
        if sink.rows_shape == shape:
            return sink.claim_rows
    claim = sink.claim
    return lambda: claim().reshape(shape)
