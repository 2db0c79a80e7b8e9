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

**Authority.** By default the local reference channel defines canonical
time (above). ``[sync] authority`` may name a remote receiver holding
``canonical-authority`` trust instead: while its time transfer gives a line
(rig host ns -> canonical ns, :mod:`mimir.net`), :meth:`CanonicalClock.follow_authority`
makes that line canonical time and local fits are only kept for the
fallback; :meth:`CanonicalClock.authority_lost` returns to the local
reference (or holds the line), never silently: both are ``AUTHORITY``
segments with their measured step, and every segment records its authority.

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

from mimir.timebase import HostToDevice

__all__ = [
    "DeviceToCanonical", "CanonicalClock", "ClockState", "SegmentReason", "ClockSegment", "STEP_THRESHOLD_NS",
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
    REFERENCE = 6        # another audio channel became the reference (a found one heard earlier than the last)


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
    authority: int = 0  # what defined canonical time: 0 the local reference channel, k network.sources[k - 1]


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
        self.authority = 0  # 0: the local reference; k: a remote canonical authority (network.sources[k - 1])
        self._authority_line: tuple[int, int, float] | None = None  # its (origin_host_ns, origin_canonical_ns, scale)
        self._new_segment(ClockState.PROVISIONAL, SegmentReason.START, now, 0)

    # ---- state --------------------------------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        return self.state == ClockState.LOCKED and (self._authority_line is not None or self.host_to_device.ready)

    @property
    def segment(self) -> ClockSegment:
        return self.segments[-1]

    def _new_segment(self, state: ClockState, reason: SegmentReason, host_ns: int, step_ns: int) -> None:
        self.state = state
        self.segments.append(ClockSegment(self.segment_count, state, reason, host_ns, self.from_host_ns(host_ns),
                                          step_ns, self.stream, self.authority))
        self.segment_count += 1

    def _freeze(self, host_ns: int) -> None:
        """Keep the present host-to-canonical line (holdover)."""
        self._affine = self.host_affine(host_ns)

    # ---- inputs -------------------------------------------------------------------------------------------
    def observe_audio_block(self, host_ns: int, start_sample: int) -> None:
        self.host_to_device.add(host_ns, start_sample)

    def set_fit(self, fit: DeviceToCanonical, now_ns: int | None = None, *, new_reference: bool = False) -> None:
        """Adopt a sync fit of the current stream; a lock, a relock or a step starts a segment, and so does a fit
        of another reference channel (``new_reference``) while locked, whatever its step."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        if self.authority:
            self.fit = fit  # kept for the fallback; a remote authority defines canonical time now
            return
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
        elif new_reference or abs(step) > self.step_threshold_ns:
            self.last_step_ns = step
            self._new_segment(ClockState.LOCKED, SegmentReason.REFERENCE if new_reference else SegmentReason.STEP,
                              now, step)

    def stream_restarted(self, now_ns: int | None = None) -> None:
        """The audio worker restarted: its device counter starts again. Hold the present line until relock."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        self._freeze(now)
        self.fit = None
        self.host_to_device = HostToDevice(self.host_to_device.window)
        self.stream += 1
        if self.authority:  # the authority's line does not depend on the local device clock: still locked
            self._new_segment(ClockState.LOCKED, SegmentReason.STREAM_RESTART, now, 0)
            return
        state = ClockState.HOLDOVER if self.state != ClockState.PROVISIONAL else ClockState.PROVISIONAL
        self._new_segment(state, SegmentReason.STREAM_RESTART, now, 0)

    def lock_lost(self, now_ns: int | None = None) -> None:
        """The reference lost its lock: hold the present line (nothing jumps) until a fit comes back."""
        if self.authority:
            self.fit = None  # nothing to fall back to until the local reference locks again
            return
        if self.state != ClockState.LOCKED:
            return
        now = time.monotonic_ns() if now_ns is None else now_ns
        self._freeze(now)
        self.fit = None
        self._new_segment(ClockState.HOLDOVER, SegmentReason.LOCK_LOST, now, 0)

    def follow_authority(self, authority: int, line: tuple[int, int, float], now_ns: int | None = None) -> None:
        """A remote canonical authority's line (rig host ns -> canonical ns) defines canonical time from now.

        Selecting it (or another one) starts an ``AUTHORITY`` segment with the
        step it made, measured now; refinements of its line over the step
        threshold are ``STEP`` segments, as for a local fit.
        """
        now = time.monotonic_ns() if now_ns is None else now_ns
        before = self.from_host_ns(now)
        switching = self.authority != authority or self.state != ClockState.LOCKED
        self.authority = authority
        self._authority_line = line
        self.state = ClockState.LOCKED
        step = self.from_host_ns(now) - before
        if switching:
            self.relocks += 1
            self.last_step_ns = step
            self._new_segment(ClockState.LOCKED, SegmentReason.AUTHORITY, now, step)
        elif abs(step) > self.step_threshold_ns:
            self.last_step_ns = step
            self._new_segment(ClockState.LOCKED, SegmentReason.STEP, now, step)

    def authority_lost(self, now_ns: int | None = None) -> None:
        """The remote authority lost its lock or its trust: back to the local reference, visibly.

        An ``AUTHORITY`` segment either way: locked on the local reference's
        fit when it has one (with the measured step), else holding the
        authority's last line (holdover) until the local reference locks.
        """
        if not self.authority:
            return
        now = time.monotonic_ns() if now_ns is None else now_ns
        held = self.host_affine(now)
        before = self.from_host_ns(now)
        self.authority = 0
        self._authority_line = None
        if self.fit is not None and self.host_to_device.ready:
            self.state = ClockState.LOCKED
            step = self.from_host_ns(now) - before
            self.last_step_ns = step
            self._new_segment(ClockState.LOCKED, SegmentReason.AUTHORITY, now, step)
            return
        self._affine = held
        self.state = ClockState.HOLDOVER
        self._new_segment(ClockState.HOLDOVER, SegmentReason.AUTHORITY, now, 0)

    # ---- outputs ------------------------------------------------------------------------------------------
    def from_host_ns(self, host_ns: int) -> int:
        if self._authority_line is not None:
            origin_host, origin_canonical, scale = self._authority_line
            return origin_canonical + int((host_ns - origin_host) * scale)
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
        if self._authority_line is not None:
            return near_host_ns, self.from_host_ns(near_host_ns), self._authority_line[2]
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
        if self._authority_line is not None:
            return self.from_host_ns(self.host_to_device.host_ns_at(device_sample) if self.host_to_device.ready
                                     else host_ns)
        if self.state == ClockState.LOCKED and self.fit is not None:
            return int(self.fit.canonical_s(device_sample) * 1e9)
        if self.host_to_device.ready:
            host_ns = self.host_to_device.host_ns_at(device_sample)
        origin_host, origin_canonical, scale = self._affine
        return origin_canonical + int((host_ns - origin_host) * scale)
