"""Mapping one clock onto another from paired readings: pure arithmetic, no I/O, nothing of the rig.

The supervisor places every sample on canonical time with these
(:mod:`mimir.supervisor.clock`), and a remote receiver places its own audio
on its host clock with the same ones (:mod:`mimir.net`), so both sides of a
time transfer make the same estimates the same way.

* :class:`HostToDevice`: a sliding-window least-squares line, device sample
  against host seconds (O(1) per point);
* :class:`StreamToHost`: a driver's stream-clock times (audio ADC times) on the
  host clock, by the lower envelope of (entry - stream) offsets;
* :class:`DeviceTimeToHost`: a camera driver's frame timestamps on the host
  clock (rate from a long line, offset from the lower envelope).
"""

from __future__ import annotations

import collections
import enum

__all__ = ["HostToDevice", "StreamToHost", "DeviceTimeToHost", "TimeSource"]


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

    def _line(self) -> tuple[tuple[int, int], float, float]:
        """The origin, intercept and slope of the fit; ZeroDivisionError before the first :meth:`add`."""
        n = len(self._points)
        slope = self.slope_hz()
        intercept = (self._sy - slope * self._sx) / n
        assert self._origin is not None  # n > 0 here, so add() has set it
        return self._origin, intercept, slope

    def device_sample_at(self, host_ns: int) -> float:
        """The (fractional) device sample at host time ``host_ns``."""
        origin, intercept, slope = self._line()
        x = (host_ns - origin[0]) / 1e9
        return origin[1] + intercept + slope * x

    def host_ns_at(self, device_sample: float) -> int:
        origin, intercept, slope = self._line()
        return origin[0] + int((device_sample - origin[1] - intercept) / slope * 1e9)
