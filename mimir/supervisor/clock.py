"""Canonical time for every indexed sample.

Three clocks meet here:

* **host**: ``time.monotonic_ns()`` - every descriptor carries it (camera
  receipt time, audio callback entry);
* **device**: the audio interface's frame counter (``start_sample``);
* **canonical**: seconds since the codebook epoch, the timeline the active
  witness defines.

:class:`HostToDevice` fits ``device_sample = a + b * host_s`` over a sliding
window of the audio worker's (host time, start sample) pairs - streaming
least squares with O(1) work per block. The sync analyzer fits
``device_sample = offset + canonical_s * rate`` from decoded anchors
(:class:`DeviceToCanonical`). Composed, they map host time to canonical time
(:class:`CanonicalClock`), which is how camera frames get canonical time.

Before the witness is decoded the clock is *provisional*: canonical =
wall-clock seconds since the epoch, read once at start. When the sync fit
locks the mapping switches to it; the step between the two is reported
(``last_step_ns``) rather than hidden.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass

__all__ = ["HostToDevice", "DeviceToCanonical", "CanonicalClock"]


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


class CanonicalClock:
    """Host or device time -> canonical nanoseconds since the epoch."""

    def __init__(self, epoch_unix_s: float = 0.0) -> None:
        # Provisional: wall clock since the epoch, tied to the monotonic clock once, at start.
        self._host_to_canonical_ns = time.time_ns() - time.monotonic_ns() - int(epoch_unix_s * 1e9)
        self.host_to_device = HostToDevice()
        self.fit: DeviceToCanonical | None = None
        self.last_step_ns = 0
        self.relocks = 0

    @property
    def locked(self) -> bool:
        return self.fit is not None and self.host_to_device.ready

    def observe_audio_block(self, host_ns: int, start_sample: int) -> None:
        self.host_to_device.add(host_ns, start_sample)

    def set_fit(self, fit: DeviceToCanonical) -> None:
        """Adopt a new sync fit; record how far it moved canonical time at the present moment."""
        if self.host_to_device.ready:
            now = time.monotonic_ns()
            before = self.from_host_ns(now)
            self.fit = fit
            self.last_step_ns = self.from_host_ns(now) - before
        else:
            self.fit = fit
        self.relocks += 1

    def from_host_ns(self, host_ns: int) -> int:
        if self.locked:
            sample = self.host_to_device.device_sample_at(host_ns)
            return int(self.fit.canonical_s(sample) * 1e9)
        return host_ns + self._host_to_canonical_ns

    def host_affine(self, near_host_ns: int) -> tuple[int, int, float]:
        """``(origin_host_ns, origin_canonical_ns, scale)`` with canonical = origin_canonical + scale * (host - origin_host).

        Exact for the provisional clock; the locked clock is affine in host time
        too (a line composed with a line). Anchoring at a recent host time keeps
        the float part small, so vectorised conversion loses nothing to float64.
        """
        origin_canonical = self.from_host_ns(near_host_ns)
        if not self.locked:
            return near_host_ns, origin_canonical, 1.0
        scale = self.host_to_device.slope_hz() / self.fit.rate_hz
        return near_host_ns, origin_canonical, scale

    def from_device_sample(self, device_sample: int, host_ns: int) -> int:
        """Canonical ns of an audio sample; uses the device clock when locked, its host time otherwise."""
        if self.fit is not None:
            return int(self.fit.canonical_s(device_sample) * 1e9)
        return host_ns + self._host_to_canonical_ns
