"""Per-camera statistics: the status Struct kept in each camera ring's header, and the counters behind it.

Ownership
    :class:`FrameStats` is written by the one thread that publishes the
    camera's frames (:meth:`FrameStats.on_frame`, hot path: scalar stores into
    preallocated arrays, no allocation of buffers, no locks) and read by the
    worker's main thread, which folds it into the ring's status record every
    status period (:meth:`FrameStats.flush`, off the hot path). Readers of the
    ring (``mimir status``) see :class:`CameraStatus` through
    ``RingReader.status``.

Consistency
    Each status field is one aligned store (x86-64: 8-byte stores are atomic),
    but the record is not a snapshot: a reader may see fields from two
    consecutive updates. ``updated_ns`` tells how fresh the record is.
"""

from __future__ import annotations

import enum
import time

import msgspec
import numpy as np

from ringbuf.layout import F32, U32, U64

from .family import CameraMode

__all__ = ["CameraState", "CameraStatus", "FrameStats", "INTERVAL_WINDOW"]

INTERVAL_WINDOW = 512  # frames kept for the interval percentiles (8.5 s at 60 fps)


class CameraState(enum.IntEnum):
    STARTING = 0
    STREAMING = 1
    RECONNECTING = 2
    STOPPED = 3


class CameraStatus(msgspec.Struct):
    """Status record of one camera ring (160 B), refreshed by the worker about twice a second.

    Counters are cumulative since the ring was created. ``delivered_fps`` is
    measured over the last status period; ``interval_p*_ns`` over the last
    :data:`INTERVAL_WINDOW` frame intervals (host receipt times; the interval
    across a reconnect is not counted). ``frame_cpu_ns`` is the capture
    thread's CPU time per frame and ``fill_ns`` the wall time from ``claim()``
    to ``publish()`` (the landing/copy of the frame), both means over the last
    status period. ``process_cpu_ns`` is the CPU time of the whole worker
    process (every thread) since it started, read at the refresh
    (``time.process_time_ns``: nanosecond clocks on Linux and macOS, the
    scheduler tick on Windows); it shares the record with
    ``frames_delivered``, so two records give CPU per frame at that
    resolution. ``lost_to_overrun`` is the largest ``reader.lost`` among the
    readers attached at the last update (the writer never blocks; readers
    that fall more than a ring behind lose the oldest frames).
    ``fallback_copies`` counts frames the driver would not write in place
    (OpenCV returned a new array) and that were copied into the slot.
    """

    frames_delivered: U64
    dropped_by_device: U64
    discarded_corrupt: U64
    lost_to_overrun: U64
    fallback_copies: U64
    disconnects: U64
    reconnects: U64
    last_host_time_ns: U64
    last_device_time_ns: U64
    updated_ns: U64
    interval_p50_ns: U64
    interval_p95_ns: U64
    interval_p99_ns: U64
    frame_cpu_ns: U64
    fill_ns: U64
    process_cpu_ns: U64
    source_id_hash: U64
    delivered_fps: F32
    negotiated_fps: F32
    width: U32
    height: U32
    pixel_format: U32
    state: U32


class FrameStats:
    """Hot-path counters of one camera plus the preallocated scratch used to summarise them."""

    __slots__ = (
        "frames", "fill_ns_total", "cpu_ns_total", "fallback_copies", "last_host_ns", "last_device_ns",
        "_intervals", "_scratch", "_index", "_filled", "_last_cpu_ns",
        "_flushed_frames", "_flushed_fill", "_flushed_cpu", "_flushed_at_ns",
    )

    def __init__(self, window: int = INTERVAL_WINDOW) -> None:
        self.frames = 0
        self.fill_ns_total = 0
        self.cpu_ns_total = 0
        self.fallback_copies = 0
        self.last_host_ns = 0
        self.last_device_ns = 0
        self._intervals = np.zeros(window, dtype=np.int64)
        self._scratch = np.zeros(window, dtype=np.int64)
        self._index = 0
        self._filled = 0
        self._last_cpu_ns = -1
        self._flushed_frames = 0
        self._flushed_fill = 0
        self._flushed_cpu = 0
        self._flushed_at_ns = time.monotonic_ns()

    # ---- hot path (the publishing thread) --------------------------------------------------------------------
    def on_frame(self, host_time_ns: int, device_time_ns: int, fill_ns: int) -> None:
        """Account one published frame. Scalar stores only."""
        last = self.last_host_ns
        if last:
            i = self._index
            self._intervals[i] = host_time_ns - last
            i += 1
            self._index = 0 if i == len(self._intervals) else i
            if self._filled < i:
                self._filled = i
        self.last_host_ns = host_time_ns
        self.last_device_ns = device_time_ns
        self.frames += 1
        self.fill_ns_total += fill_ns
        cpu = time.thread_time_ns()
        if self._last_cpu_ns >= 0:
            self.cpu_ns_total += cpu - self._last_cpu_ns
        self._last_cpu_ns = cpu

    def break_interval(self) -> None:
        """The next frame follows a gap that is not an inter-frame interval (reconnect): don't record it."""
        self.last_host_ns = 0
        self._last_cpu_ns = -1

    # ---- off the hot path (the worker's main thread) -------------------------------------------------------------
    def percentiles_ns(self) -> tuple[int, int, int]:
        """p50, p95, p99 of the recorded intervals (0s when none), computed in preallocated scratch."""
        n = self._filled
        if n == 0:
            return 0, 0, 0
        scratch = self._scratch[:n]
        np.copyto(scratch, self._intervals[:n])
        ks = (int(0.50 * (n - 1) + 0.5), int(0.95 * (n - 1) + 0.5), int(0.99 * (n - 1) + 0.5))
        scratch.partition(ks)
        return int(scratch[ks[0]]), int(scratch[ks[1]]), int(scratch[ks[2]])

    def flush(self, status: np.ndarray, *, now_ns: int, lost_to_overrun: int,
              dropped_by_device: int, discarded_corrupt: int) -> None:
        """Fold the counters into ``status`` (a ring's 0-d CameraStatus view)."""
        frames = self.frames
        fill = self.fill_ns_total
        cpu = self.cpu_ns_total
        new = frames - self._flushed_frames
        span_ns = now_ns - self._flushed_at_ns
        p50, p95, p99 = self.percentiles_ns()
        status["frames_delivered"] = frames
        status["dropped_by_device"] = dropped_by_device
        status["discarded_corrupt"] = discarded_corrupt
        status["lost_to_overrun"] = lost_to_overrun
        status["fallback_copies"] = self.fallback_copies
        status["last_host_time_ns"] = self.last_host_ns
        status["last_device_time_ns"] = self.last_device_ns
        status["interval_p50_ns"] = p50
        status["interval_p95_ns"] = p95
        status["interval_p99_ns"] = p99
        if new > 0:
            status["fill_ns"] = (fill - self._flushed_fill) // new
            status["frame_cpu_ns"] = (cpu - self._flushed_cpu) // new
        status["delivered_fps"] = new * 1e9 / span_ns if span_ns > 0 else 0.0
        status["process_cpu_ns"] = time.process_time_ns()
        status["updated_ns"] = now_ns
        self._flushed_frames = frames
        self._flushed_fill = fill
        self._flushed_cpu = cpu
        self._flushed_at_ns = now_ns


def init_status(status: np.ndarray, *, mode: CameraMode, source_id_hash: int) -> None:
    """Fill the static fields of a fresh status record."""
    status["width"] = mode.width
    status["height"] = mode.height
    status["pixel_format"] = int(mode.pixel_format)
    status["negotiated_fps"] = mode.fps
    status["source_id_hash"] = source_id_hash
    status["state"] = CameraState.STARTING
    status["updated_ns"] = time.monotonic_ns()


__all__.append("init_status")
