"""The reader thread: back-to-back bulk reads from one PS3 Eye into a FrameSink.

pyusb reads are synchronous, so the device FIFO drains only while a read is
outstanding. The thread therefore does nothing but read into one
preallocated buffer, hand it to the :class:`~.assembler.FrameAssembler`
(which copies frame bytes once, into the sink's slot) and read again.

Two ways to run it: :meth:`CameraStream.run` loops in the caller's thread (a
worker that owns its capture threads starts the camera, calls ``run(stop)``,
stops the camera), or :meth:`CameraStream.start` / :meth:`CameraStream.stop`
start the camera and a reader thread of its own.

Ownership: a :class:`CameraStream` owns its read buffer, its assembler and its
thread; it borrows the :class:`~.device.PS3Eye` (closed by the caller) and the
sink. Counters are written by the reading thread only; other threads may read
them at any time.

End of stream: a disconnect (libusb NO_DEVICE) ends the loop with state
DISCONNECTED and ``usb_disconnects`` counted; ``max_consecutive_errors``
other USB errors in a row end it with FAILED. Timeouts are counted and the
loop keeps reading. The owner learns of the end through :attr:`state`,
:attr:`error` and :meth:`wait`, and may open the camera again and start a new
stream with the same counters.
"""

from __future__ import annotations

import array
import enum
import threading

import numpy as np
import usb.core

from .assembler import (
    DEFAULT_PTS_CLOCK_HZ, PAYLOAD_BYTES, PAYLOAD_DATA_BYTES, FrameAssembler, FrameSink,
    StreamCounters,
)
from .device import PS3Eye, is_disconnect


class StreamState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPED = "stopped"
    DISCONNECTED = "disconnected"
    FAILED = "failed"


def default_read_bytes(frame_bytes: int) -> int:
    """One whole frame of payloads: a read normally returns exactly one frame."""
    return -(-frame_bytes // PAYLOAD_DATA_BYTES) * PAYLOAD_BYTES


class CameraStream:
    """Streams one started camera into a sink on a dedicated reader thread."""

    def __init__(self, camera: PS3Eye, sink: FrameSink, *, counters: StreamCounters | None = None,
                 read_bytes: int | None = None, timeout_ms: int = 100,
                 max_consecutive_errors: int = 8, pts_clock_hz: int = DEFAULT_PTS_CLOCK_HZ) -> None:
        read_bytes = read_bytes or default_read_bytes(camera.mode.frame_bytes)
        if read_bytes % PAYLOAD_BYTES:
            # A read must end on a payload boundary, or the next read starts mid-payload.
            raise ValueError(f"read_bytes must be a multiple of {PAYLOAD_BYTES}, got {read_bytes}")
        self.camera = camera
        self.counters = counters if counters is not None else StreamCounters()
        self.assembler = FrameAssembler(sink, camera.mode.frame_bytes, self.counters,
                                        pts_clock_hz=pts_clock_hz)
        self.timeout_ms = timeout_ms
        self.max_consecutive_errors = max_consecutive_errors
        self._buffer = array.array("B", bytes(read_bytes))
        self._view = np.frombuffer(self._buffer, dtype=np.uint8)  # shares the buffer's memory
        self._consecutive_errors = 0
        self._state = StreamState.IDLE
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> StreamState:
        return self._state

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the stream (DISCONNECTED or FAILED), else None."""
        return self._error

    def run(self, stop: threading.Event) -> StreamState:
        """Read and assemble in the calling thread until ``stop`` is set or the stream ends.

        For a worker that owns its capture thread: start the camera, call
        this, stop the camera. Returns STOPPED, DISCONNECTED or FAILED (then
        :attr:`error` says why).
        """
        self.assembler.reset()
        self._state = StreamState.RUNNING
        while not stop.is_set():
            if not self.poll_once():
                return self._state
        self._state = StreamState.STOPPED
        return self._state

    def start(self) -> None:
        """Start the camera and run :meth:`run` on a reader thread of its own."""
        if self._thread is not None:
            raise RuntimeError("a CameraStream starts once; make a new one to restart")
        self.camera.start()
        self._state = StreamState.RUNNING
        self._thread = threading.Thread(target=self._thread_main, name=f"ps3eye-{self.camera.port_path}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the reader thread (within one read timeout), then the camera."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.camera.stop()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the reader thread has ended; True if it has."""
        return self._ended.wait(timeout_s)

    def _thread_main(self) -> None:
        try:
            self.run(self._stop)
        except BaseException as error:  # a bug must end the stream visibly, not silently
            self._finish(StreamState.FAILED, error)
        finally:
            self._ended.set()

    def poll_once(self) -> bool:
        """One bulk read and its assembly. False once the stream has ended.

        The loop body of :meth:`run`; tests call it directly for step-by-step control.
        """
        counters = self.counters
        try:
            nbytes = self.camera.read(self._buffer, self.timeout_ms)
        except usb.core.USBTimeoutError:
            counters.read_timeouts += 1
            return True
        except usb.core.USBError as error:
            if is_disconnect(error):
                counters.usb_disconnects += 1
                self._finish(StreamState.DISCONNECTED, error)
                return False
            counters.read_errors += 1
            self._consecutive_errors += 1
            if self._consecutive_errors >= self.max_consecutive_errors:
                self._finish(StreamState.FAILED, error)
                return False
            return True
        self._consecutive_errors = 0
        counters.bulk_reads += 1
        counters.bulk_bytes += nbytes
        self.assembler.feed(self._view, nbytes)
        return True

    def _finish(self, state: StreamState, error: BaseException) -> None:
        self._state = state
        self._error = error
