"""Canonical time for every indexed sample, in segments that say when it moved and why.

Three clocks meet here:

* **host**: ``time.monotonic_ns()`` - every descriptor carries it (camera
  receipt time, audio callback entry);
* **device**: the audio interface's frame counter (``start_sample``) of the
  current audio *stream* (a worker restart is a new stream: a new counter);
* **canonical**: nanoseconds since the witness epoch, the timeline the active
  witness defines.

:class:`HostToDevice` fits ``device_sample = a + b * host_s`` over a sliding
window of the current stream's (host time, start sample) pairs - streaming
least squares, O(1) per block. The sync analyzer fits
``device_sample = local_sample_at_epoch + canonical_s * rate_hz`` from decoded
anchors of the same stream (:class:`DeviceToCanonical`). Composed, they map
host time to canonical time, which is how camera frames get canonical time.

States (:class:`ClockState`):

* ``PROVISIONAL`` - before the first lock: canonical = wall-clock seconds
  since the epoch, tied to the monotonic clock once, at start;
* ``LOCKED`` - the current stream's sync fit, composed with its host fit;
* ``HOLDOVER`` - after the audio stream restarted, or the reference lost its
  lock: the last host-to-canonical line is kept (the host clock does not jump
  when an audio worker restarts), so timestamps stay continuous and close,
  and health says the fit is not current.

Every change of mapping starts a new :class:`ClockSegment`: the first lock,
a relock, a stream restart, a lost lock, a step (a new fit that moves
canonical time at the present moment by more than :data:`STEP_THRESHOLD_NS`).
A segment records the step it made, measured at the moment of the switch,
so nothing is smoothed away (the supervisor publishes the segments; see
:mod:`mimir.clock_board`). Refinements of a fit smaller than the threshold
stay inside their segment.
"""

from __future__ import annotations

import collections
import enum
import time
from dataclasses import dataclass

__all__ = [
    "HostToDevice", "DeviceToCanonical", "CanonicalClock", "ClockState", "SegmentReason", "ClockSegment",
    "StreamToHost", "DeviceTimeToHost", "TimeSource", "STEP_THRESHOLD_NS",
]

STEP_THRESHOLD_NS = 100_000  # 0.1 ms (~5 samples at 48 kHz): finer fit refinements are not steps


class ClockState(enum.IntEnum):
    PROVISIONAL = 0
    LOCKED = 1
    HOLDOVER = 2


class SegmentReason(enum.IntEnum):
    START = 0            # the rig started (provisional)
    LOCK = 1             # a fit was adopted after provisional or holdover time
    STEP = 2             # a new fit moved canonical time by more than the threshold
    STREAM_RESTART = 3   # the audio worker restarted: a new device clock
    LOCK_LOST = 4        # the reference channel lost its lock
    AUTHORITY = 5        # another clock authority was selected


class TimeSource(enum.IntEnum):
    """Which clock a source's samples are placed by (``mimir status`` shows it per source)."""

    UNKNOWN = 0
    CALLBACK_ENTRY = 1   # audio: host time when the callback ran (the driver gave no ADC time)
    ADC = 2              # audio: the driver's ADC time, placed on the host clock
    DEVICE = 3           # camera: the driver's frame timestamp, mapped onto the host clock
    RECEIPT = 4          # camera: host receipt time minus the family's receipt-latency estimate


class StreamToHost:
    """Places a driver's stream-clock times on the host clock (audio blocks' ADC times).

    Each callback gives one pair read at (nearly) the same moment: the host
    time at callback entry and the stream clock's "now". Their difference is
    the clock offset plus however late the callback ran; a late callback only
    makes it larger. So the offset is the smallest difference over a sliding
    window of ``window`` callbacks (a monotonic deque: O(1) amortised), and
    ``adc_host = adc_stream + offset`` follows the driver, not the scheduler.
    Pairs without driver times (0) fall back to the entry time, and
    :attr:`mode` says which is in use (``"adc"`` or ``"entry"``).
    """

    def __init__(self, window: int = 2048) -> None:
        self.window = window
        self._mins: collections.deque[tuple[int, int]] = collections.deque()  # (index, offset), offsets rising
        self._n = 0
        self.mode = "entry"
        self.source = TimeSource.UNKNOWN

    def host_of(self, adc_ns: int, entry_ns: int, stream_ns: int) -> int:
        """The host time of a block's first sample (its ADC time on the host clock, or its entry time)."""
        if not adc_ns or not stream_ns:
            self.mode = "entry"
            self.source = TimeSource.CALLBACK_ENTRY
            return entry_ns
        offset = entry_ns - stream_ns
        n = self._n
        mins = self._mins
        while mins and mins[-1][1] >= offset:
            mins.pop()
        mins.append((n, offset))
        if mins[0][0] <= n - self.window:
            mins.popleft()
        self._n = n + 1
        self.mode = "adc"
        self.source = TimeSource.ADC
        return adc_ns + mins[0][1]


class DeviceTimeToHost:
    """Places a camera driver's frame timestamps on the host clock (PS3 Eye PTS, V4L2 buffer time, a file's pts).

    A frame is received ``latency >= 0`` after its device timestamp, and the
    device clock may run at its own rate. The rate comes from a least-squares
    line of host against device time over a long window (receipt jitter
    averages out); the offset is the *smallest* ``host - rate * device`` over
    the last ``window`` frames (the lower envelope: the least-delayed frame
    shows the line), so the mapped time follows the device clock, not when the
    frame happened to be received. The rate used for the envelope is renewed
    once per ``window`` frames (the envelope is rebuilt then from the frames it
    holds), so the cost is O(1) amortised per frame. Frames without a device
    timestamp (0) are placed at receipt minus ``receipt_latency_ns``.
    """

    def __init__(self, window: int = 256, rate_window: int = 4096) -> None:
        self.window = window
        self._line = HostToDevice(rate_window)  # fed (device ns, host ns): its slope is host ns per device second
        self._xs = [0] * window                  # the last `window` frames, relative device and host times
        self._hs = [0] * window
        self._mins: collections.deque[tuple[int, int]] = collections.deque()  # (frame number, key), keys rising
        self._n = 0
        self._origin = 0
        self._rate = 1.0                         # host ns per device ns, frozen between rebuilds
        self._x_ref = 0
        self.receipt_latency_ns = 0
        self.source = TimeSource.UNKNOWN

    def _push(self, n: int, key: int) -> None:
        mins = self._mins
        while mins and mins[-1][1] >= key:
            mins.pop()
        mins.append((n, key))

    def _rebuild(self, x: int) -> None:
        self._rate = self._line.slope_hz() / 1e9 if self._line.ready else 1.0
        self._x_ref = x
        self._mins.clear()
        first = max(0, self._n - self.window + 1)
        for m in range(first, self._n + 1):
            i = m % self.window
            self._push(m, self._hs[i] - int(self._rate * (self._xs[i] - x)))

    def host_of(self, device_ns: int, host_ns: int) -> int:
        if not device_ns:
            self.source = TimeSource.RECEIPT
            return host_ns - self.receipt_latency_ns
        if not self._origin:
            self._origin = device_ns
        x = device_ns - self._origin
        n = self._n
        self._line.add(x, host_ns)
        i = n % self.window
        self._xs[i] = x
        self._hs[i] = host_ns
        if n % self.window == 0:
            self._rebuild(x)
        else:
            self._push(n, host_ns - int(self._rate * (x - self._x_ref)))
            if self._mins[0][0] <= n - self.window:
                self._mins.popleft()
        self._n = n + 1
        self.source = TimeSource.DEVICE
        return int(self._rate * (x - self._x_ref)) + self._mins[0][1]


class HostToDevice:
    """Sliding-window least squares of device sample against host seconds (O(1) per update).

    Sums are kept relative to the first point to stay well conditioned in float64.
    """

    def __init__(self, window: int = 4096) -> None:
        self.window = window
        self._points: collections.deque[tuple[float, float]] = collections.deque()
        self._origin: tuple[int, int] | None = None
        self._sx = self._sy = self._sxx = self._sxy = 0.0

    def add(self, host_ns: int, device_sample: int) -> None:
        if self._origin is None:
            self._origin = (host_ns, device_sample)
        x = (host_ns - self._origin[0]) / 1e9
        y = float(device_sample - self._origin[1])
        self._points.append((x, y))
        self._sx += x
        self._sy += y
        self._sxx += x * x
        self._sxy += x * y
        if len(self._points) > self.window:
            ox, oy = self._points.popleft()
            self._sx -= ox
            self._sy -= oy
            self._sxx -= ox * ox
            self._sxy -= ox * oy

    @property
    def ready(self) -> bool:
        return len(self._points) >= 8

    def slope_hz(self) -> float:
        n = len(self._points)
        denom = n * self._sxx - self._sx * self._sx
        return (n * self._sxy - self._sx * self._sy) / denom if denom > 0 else 0.0

    def device_sample_at(self, host_ns: int) -> float:
        """The (fractional) device sample at host time ``host_ns``."""
        n = len(self._points)
        slope = self.slope_hz()
        intercept = (self._sy - slope * self._sx) / n
        x = (host_ns - self._origin[0]) / 1e9
        return self._origin[1] + intercept + slope * x

    def host_ns_at(self, device_sample: float) -> int:
        n = len(self._points)
        slope = self.slope_hz()
        intercept = (self._sy - slope * self._sx) / n
        return self._origin[0] + int((device_sample - self._origin[1] - intercept) / slope * 1e9)


@dataclass
class DeviceToCanonical:
    """``device_sample = local_sample_at_epoch + canonical_s * rate_hz`` (the sync analyzer's fit)."""

    local_sample_at_epoch: float
    rate_hz: float
    confidence: float = 0.0

    def canonical_s(self, device_sample: float) -> float:
        return (device_sample - self.local_sample_at_epoch) / self.rate_hz

    def device_sample(self, canonical_s: float) -> float:
        return self.local_sample_at_epoch + canonical_s * self.rate_hz


@dataclass(frozen=True)
class ClockSegment:
    """One stretch of canonical time under one mapping. ``step_ns``: how far the switch moved canonical time
    at ``started_host_ns`` (new minus old; 0 for a holdover, which continues the old line)."""

    index: int
    state: ClockState
    reason: SegmentReason
    started_host_ns: int
    started_canonical_ns: int
    step_ns: int
    stream: int


class CanonicalClock:
    """Host or device time -> canonical nanoseconds since the epoch (see module docstring)."""

    def __init__(self, epoch_unix_s: float = 0.0, *, step_threshold_ns: int = STEP_THRESHOLD_NS,
                 keep_segments: int = 64) -> None:
        now = time.monotonic_ns()
        # Provisional: wall clock since the epoch, tied to the monotonic clock once, at start.
        self._affine = (now, time.time_ns() - int(epoch_unix_s * 1e9), 1.0)
        self.host_to_device = HostToDevice()
        self.fit: DeviceToCanonical | None = None
        self.state = ClockState.PROVISIONAL
        self.stream = 0
        self.step_threshold_ns = step_threshold_ns
        self.segments: collections.deque[ClockSegment] = collections.deque(maxlen=keep_segments)
        self.segment_count = 0
        self.last_step_ns = 0
        self.relocks = 0
        self._new_segment(ClockState.PROVISIONAL, SegmentReason.START, now, 0)

    # ---- state --------------------------------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        return self.state == ClockState.LOCKED and self.host_to_device.ready

    @property
    def segment(self) -> ClockSegment:
        return self.segments[-1]

    def _new_segment(self, state: ClockState, reason: SegmentReason, host_ns: int, step_ns: int) -> None:
        self.state = state
        self.segments.append(ClockSegment(self.segment_count, state, reason, host_ns, self.from_host_ns(host_ns),
                                          step_ns, self.stream))
        self.segment_count += 1

    def _freeze(self, host_ns: int) -> None:
        """Keep the present host-to-canonical line (holdover)."""
        self._affine = self.host_affine(host_ns)

    # ---- inputs -------------------------------------------------------------------------------------------
    def observe_audio_block(self, host_ns: int, start_sample: int) -> None:
        self.host_to_device.add(host_ns, start_sample)

    def set_fit(self, fit: DeviceToCanonical, now_ns: int | None = None) -> None:
        """Adopt a sync fit of the current stream; a lock, a relock or a step starts a segment."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        if not self.host_to_device.ready:
            self.fit = fit  # too early to compose: adopted, and locked once the host fit is ready
            if self.state != ClockState.LOCKED:
                self.relocks += 1
                self._new_segment(ClockState.LOCKED, SegmentReason.LOCK, now, 0)
            return
        before = self.from_host_ns(now)
        was_locked = self.state == ClockState.LOCKED
        self.fit = fit
        self.state = ClockState.LOCKED
        step = self.from_host_ns(now) - before
        if not was_locked:
            self.relocks += 1
            self.last_step_ns = step
            self._new_segment(ClockState.LOCKED, SegmentReason.LOCK, now, step)
        elif abs(step) > self.step_threshold_ns:
            self.last_step_ns = step
            self._new_segment(ClockState.LOCKED, SegmentReason.STEP, now, step)

    def stream_restarted(self, now_ns: int | None = None) -> None:
        """The audio worker restarted: its device counter starts again. Hold the present line until relock."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        self._freeze(now)
        self.fit = None
        self.host_to_device = HostToDevice(self.host_to_device.window)
        self.stream += 1
        state = ClockState.HOLDOVER if self.state != ClockState.PROVISIONAL else ClockState.PROVISIONAL
        self._new_segment(state, SegmentReason.STREAM_RESTART, now, 0)

    def lock_lost(self, now_ns: int | None = None) -> None:
        """The reference lost its lock: hold the present line (nothing jumps) until a fit comes back."""
        if self.state != ClockState.LOCKED:
            return
        now = time.monotonic_ns() if now_ns is None else now_ns
        self._freeze(now)
        self.fit = None
        self._new_segment(ClockState.HOLDOVER, SegmentReason.LOCK_LOST, now, 0)

    # ---- outputs ------------------------------------------------------------------------------------------
    def from_host_ns(self, host_ns: int) -> int:
        if self.state == ClockState.LOCKED and self.fit is not None and self.host_to_device.ready:
            sample = self.host_to_device.device_sample_at(host_ns)
            return int(self.fit.canonical_s(sample) * 1e9)
        origin_host, origin_canonical, scale = self._affine
        return origin_canonical + int((host_ns - origin_host) * scale)

    def host_affine(self, near_host_ns: int) -> tuple[int, int, float]:
        """``(origin_host_ns, origin_canonical_ns, scale)`` with canonical = origin_canonical + scale * (host - origin_host).

        The locked clock is affine in host time (a line composed with a line);
        anchoring at a recent host time keeps the float part small, so
        vectorised conversion loses nothing to float64.
        """
        if self.state == ClockState.LOCKED and self.fit is not None and self.host_to_device.ready:
            scale = self.host_to_device.slope_hz() / self.fit.rate_hz
            return near_host_ns, self.from_host_ns(near_host_ns), scale
        origin_host, origin_canonical, scale = self._affine
        return near_host_ns, origin_canonical + int((near_host_ns - origin_host) * scale), scale

    def from_device_sample(self, device_sample: int, host_ns: int) -> int:
        """Canonical ns of an audio sample of the current stream.

        Locked: the device clock through the sync fit. Otherwise the held (or
        provisional) line at the sample's host time, from the stream's host
        fit once it has one, else the block's own host time.
        """
        if self.state == ClockState.LOCKED and self.fit is not None:
            return int(self.fit.canonical_s(device_sample) * 1e9)
        if self.host_to_device.ready:
            host_ns = self.host_to_device.host_ns_at(device_sample)
        origin_host, origin_canonical, scale = self._affine
        return origin_canonical + int((host_ns - origin_host) * scale)
