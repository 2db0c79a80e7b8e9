"""Payload parsing and frame assembly for the PS3 Eye bulk stream.

The bridge cuts the video stream into payloads of :data:`PAYLOAD_BYTES` bytes,
each starting with a 12-byte header::

    byte 0      header length, always 12
    byte 1      flags: EOH 0x80, ERR 0x40, PTS 0x04, EOF 0x02, FID 0x01
    bytes 2-5   PTS, 32-bit little-endian, constant within a frame
    bytes 6-11  SCR (ignored)

The last payload of a frame is shorter. Bulk transfers end on a USB short
packet, so a read returned by the device always starts at a payload boundary
when its buffer is a multiple of :data:`PAYLOAD_BYTES`.

Frame rules (REFERENCE.md section 3, as in Linux gspca/ov534 and
PS3EYEDriver): a frame starts when the PTS or the FID changes; it ends on a
payload with EOF, and is delivered only if it holds exactly ``frame_bytes``
bytes; payloads with ERR, without PTS or with a bad header are discarded, and
so is the frame they interrupt.

Ownership. The assembler never allocates frame memory: frame bytes are copied
once, from the caller's read buffer straight into the slot the
:class:`FrameSink` hands out. Each discarded frame and each discarded payload
is counted in :class:`StreamCounters`, one counter per cause.

Device time. The PTS is converted with an assumed clock of
:data:`DEFAULT_PTS_CLOCK_HZ` (pass ``pts_clock_hz`` to override) and unwrapped
across 32-bit wraparound; :meth:`FrameAssembler.measured_pts_clock_hz` checks
the assumption against host time on live hardware.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Protocol

import msgspec
import numpy as np

PAYLOAD_BYTES: Final = 2048
HEADER_BYTES: Final = 12
PAYLOAD_DATA_BYTES: Final = PAYLOAD_BYTES - HEADER_BYTES
FLAG_EOH: Final = 0x80
FLAG_ERR: Final = 0x40
FLAG_PTS: Final = 0x04
FLAG_EOF: Final = 0x02
FLAG_FID: Final = 0x01

# ASSUMPTION, not verified on hardware: the OV534 stamps PTS with a 48 MHz
# counter (the USB 2.0 high-speed bridge clock). A 32-bit counter at 48 MHz wraps
# every 89.5 s, which the unwrapping below handles as long as consecutive
# delivered frames are less than half a wrap (44.7 s) apart.
DEFAULT_PTS_CLOCK_HZ: Final = 48_000_000
_PTS_MODULUS: Final = 1 << 32
_PTS_HALF: Final = 1 << 31
_NS_PER_S: Final = 1_000_000_000


class FrameSink(Protocol):
    """Where assembled frames land (a shared-memory ring slot in production).

    ``claim()`` returns a writable, C-contiguous, flat uint8 view of the next
    slot, at least ``frame_bytes`` long; calling it again before ``publish()``
    returns the same slot, so a discarded frame simply reuses it.
    ``publish()`` makes the claimed slot visible to consumers.
    """

    def claim(self) -> np.ndarray: ...

    def publish(self, *, device_time_ns: int, host_time_ns: int, byte_length: int) -> None: ...


class StreamCounters(msgspec.Struct):
    """Per-camera stream counters; plain ints written by the reader thread only.

    Payload-level causes count payloads, frame-level causes count frames. One
    fault can touch two counters when it splits a frame in two: a FID toggle
    mid-frame discards the head (``frames_fid_restart``) and then the tail
    (``frames_wrong_size``); an ERR/no-PTS/bad-header payload in the first
    payload of a frame leaves the rest of it as a wrong-size frame.
    """

    frames_delivered: int = 0
    payloads_seen: int = 0
    payloads_bad_header: int = 0  # header length byte != 12, or payload shorter than a header
    payloads_error_flag: int = 0  # ERR flag set
    payloads_without_pts: int = 0  # PTS flag clear
    payloads_skipped: int = 0  # valid payloads of a frame already discarded
    frames_abandoned: int = 0  # frame in progress cut by a bad/ERR/no-PTS payload
    frames_wrong_size: int = 0  # EOF with the wrong byte count, or overflow
    frames_missing_eof: int = 0  # new PTS arrived before the frame's EOF
    frames_fid_restart: int = 0  # FID toggled within a frame (same PTS)
    bulk_reads: int = 0
    bulk_bytes: int = 0
    read_timeouts: int = 0
    read_errors: int = 0
    usb_disconnects: int = 0

    @property
    def frames_discarded(self) -> int:
        """Partial frames thrown away, whatever the cause."""
        return (self.frames_abandoned + self.frames_wrong_size
                + self.frames_missing_eof + self.frames_fid_restart)


class FrameAssembler:
    """Turns bulk-read buffers into whole frames in the sink.

    Invariants: at most one frame is in progress; its bytes live only in the
    slot returned by ``sink.claim()``; ``_filled_bytes <= frame_bytes``.
    Not thread-safe: one reader thread calls :meth:`feed`.
    """

    def __init__(
        self,
        sink: FrameSink,
        frame_bytes: int,
        counters: StreamCounters | None = None,
        *,
        pts_clock_hz: int = DEFAULT_PTS_CLOCK_HZ,
        host_clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if frame_bytes <= 0:
            raise ValueError(f"frame_bytes must be positive, got {frame_bytes}")
        self.sink = sink
        self.frame_bytes = frame_bytes
        self.counters = counters if counters is not None else StreamCounters()
        self.pts_clock_hz = pts_clock_hz
        self._host_clock_ns = host_clock_ns
        self.reset()

    def reset(self) -> None:
        """Forget any frame in progress and the PTS history (call on stream restart)."""
        self._assembling = False
        self._slot: np.ndarray | None = None
        self._filled_bytes = 0
        self._last_pts = -1  # -1: no payload seen yet, so the first valid one starts a frame
        self._last_fid = -1
        self._frame_pts = 0
        self._pts_ref_raw: int | None = None
        self._pts_ticks = 0
        self._first_stamp: tuple[int, int] | None = None  # (pts ticks, host ns)
        self._last_stamp: tuple[int, int] | None = None

    # -- feeding ----------------------------------------------------------------

    def feed(self, data: np.ndarray, nbytes: int) -> None:
        """Parse ``data[:nbytes]``, one bulk read: it starts at a payload boundary
        and only its last payload may be short (a short packet ends a transfer).

        ``data`` is a flat uint8 array (the reader's preallocated buffer); it
        is only read during the call. Runs of ordinary continuation payloads
        (header bytes 0-5 identical to the payload before them) are copied in
        one numpy operation; everything else goes payload by payload. The only
        allocations are numpy views and a few header-sized temporaries per
        read, never frame-sized buffers.
        """
        payloads_total = -(-nbytes // PAYLOAD_BYTES)
        payloads_full = nbytes // PAYLOAD_BYTES
        rows = data[: payloads_full * PAYLOAD_BYTES].reshape(payloads_full, PAYLOAD_BYTES)  # a view
        index = 0
        while index < payloads_total:
            start = index * PAYLOAD_BYTES
            self._payload(data, start, min(PAYLOAD_BYTES, nbytes - start))
            index += 1
            if self._assembling and index < payloads_full:
                index += self._copy_run(rows, index, payloads_full)

    def _copy_run(self, rows: np.ndarray, index: int, stop: int) -> int:
        """Copy the full payloads from ``index`` whose header matches payload ``index - 1``.

        Payload ``index - 1`` was just appended to the frame, so it had PTS, no
        ERR and no EOF; identical header bytes mean the same flags and PTS.
        Returns how many payloads were consumed (0 leaves them to the slow path).
        """
        same = (rows[index:stop, :6] == rows[index - 1, :6]).all(axis=1)
        run = int(same.argmin()) if not same.all() else stop - index
        room = (self.frame_bytes - self._filled_bytes) // PAYLOAD_DATA_BYTES
        run = min(run, room)  # a payload that would overflow is left to the slow path to report
        if run == 0:
            return 0
        assert self._slot is not None
        end = self._filled_bytes + run * PAYLOAD_DATA_BYTES
        np.copyto(
            self._slot[self._filled_bytes:end].reshape(run, PAYLOAD_DATA_BYTES),
            rows[index:index + run, HEADER_BYTES:],
        )
        self._filled_bytes = end
        self.counters.payloads_seen += run
        return run

    def _payload(self, data: np.ndarray, start: int, length: int) -> None:
        """Apply the frame rules to one payload at ``data[start:start+length]``."""
        counters = self.counters
        counters.payloads_seen += 1
        if length < HEADER_BYTES or data[start] != HEADER_BYTES:
            counters.payloads_bad_header += 1
            self._abandon()
            return
        flags = int(data[start + 1])
        if flags & FLAG_ERR:
            counters.payloads_error_flag += 1
            self._abandon()
            return
        if not flags & FLAG_PTS:
            counters.payloads_without_pts += 1
            self._abandon()
            return
        pts = int.from_bytes(data[start + 2:start + 6], "little")
        fid = flags & FLAG_FID
        if pts != self._last_pts or fid != self._last_fid:
            if self._assembling:
                if pts != self._last_pts:
                    counters.frames_missing_eof += 1
                else:
                    counters.frames_fid_restart += 1
            self._last_pts = pts
            self._last_fid = fid
            self._begin_frame(pts)
        elif not self._assembling:
            counters.payloads_skipped += 1
            return

        data_bytes = length - HEADER_BYTES
        end = self._filled_bytes + data_bytes
        if end > self.frame_bytes:
            counters.frames_wrong_size += 1
            self._assembling = False
            return
        assert self._slot is not None
        self._slot[self._filled_bytes:end] = data[start + HEADER_BYTES:start + length]
        self._filled_bytes = end
        if flags & FLAG_EOF:
            self._assembling = False
            if end == self.frame_bytes:
                self._publish()
            else:
                counters.frames_wrong_size += 1

    # -- frame lifecycle ----------------------------------------------------------

    def _begin_frame(self, pts: int) -> None:
        self._slot = self.sink.claim()
        self._filled_bytes = 0
        self._frame_pts = pts
        self._assembling = True

    def _abandon(self) -> None:
        if self._assembling:
            self.counters.frames_abandoned += 1
            self._assembling = False

    def _publish(self) -> None:
        host_time_ns = self._host_clock_ns()
        ticks = self._unwrap(self._frame_pts)
        if self._first_stamp is None:
            self._first_stamp = (ticks, host_time_ns)
        self._last_stamp = (ticks, host_time_ns)
        self.sink.publish(
            device_time_ns=ticks * _NS_PER_S // self.pts_clock_hz,
            host_time_ns=host_time_ns,
            byte_length=self.frame_bytes,
        )
        self.counters.frames_delivered += 1

    def _unwrap(self, pts: int) -> int:
        """Extend a 32-bit PTS to a monotonic tick count (first frame = its raw PTS)."""
        if self._pts_ref_raw is None:
            self._pts_ticks = pts
        else:
            delta = (pts - self._pts_ref_raw) % _PTS_MODULUS
            if delta >= _PTS_HALF:
                delta -= _PTS_MODULUS  # a step backwards, not most of a wrap forwards
            self._pts_ticks += delta
        self._pts_ref_raw = pts
        return self._pts_ticks

    def measured_pts_clock_hz(self) -> float | None:
        """PTS ticks per second of host time over the delivered frames so far.

        None until two frames at least 1 s apart were delivered. On hardware,
        compare with ``pts_clock_hz`` to validate the assumed clock.
        """
        if self._first_stamp is None or self._last_stamp is None:
            return None
        ticks = self._last_stamp[0] - self._first_stamp[0]
        host_ns = self._last_stamp[1] - self._first_stamp[1]
        if host_ns < _NS_PER_S:
            return None
        return ticks * _NS_PER_S / host_ns
