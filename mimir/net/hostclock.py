"""Canonical time at this receiver's host clock: what its time echoes report (``docs/net.md``, "Time transfer").

Two fits compose: the audio's local samples against host time
(:class:`mimir.timebase.HostToDevice`, fed with each block's host time from its
:class:`~mimir.net.audio_source.AudioSource`), and the streaming receiver's fit
of local samples against canonical time. :class:`HostCanonical` is owned by
the decode thread; after each block it publishes an immutable
:class:`HostCanonicalLine` (one attribute assignment, so the sender thread
reads a whole line or the previous one, never half of each), or None while
there is no canonical time at a host time (not locked, no host clock, fewer
than 8 blocks).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from mimir.timebase import HostToDevice

__all__ = ["HostCanonical", "HostCanonicalLine"]


class _Receiver(Protocol):  # the part of mimir.sync.StreamingReceiver used here
    @property
    def locked(self) -> bool: ...

    def canonical_seconds_at(self, local_sample: float) -> float | None: ...


class HostCanonicalLine(NamedTuple):
    """``canonical_ns = origin_canonical_ns + scale * (host_ns - origin_host_ns)``; ``segment``: the fit segment."""

    origin_host_ns: int
    origin_canonical_ns: int
    scale: float
    segment: int

    def canonical_ns_at(self, host_ns: int) -> int:
        return self.origin_canonical_ns + round(self.scale * (host_ns - self.origin_host_ns))


class HostCanonical:
    """Local sample -> host time, composed with the receiver's local sample -> canonical fit. Decode thread only.

    ``window``: blocks in the host-time fit (4096 blocks of 1024 samples at 48 kHz: 87 s).
    """

    def __init__(self, window: int = 4096) -> None:
        self._host = HostToDevice(window)
        self.line: HostCanonicalLine | None = None   # read by other threads

    def add_block(self, start_sample: int, host_ns: int | None) -> None:
        """The block starting at local sample ``start_sample`` began at ``host_ns`` (None: no host time)."""
        if host_ns is not None:
            self._host.add(host_ns, start_sample)

    def update(self, rx: _Receiver, position: int, segment: int) -> HostCanonicalLine | None:
        """Publish the line at local sample ``position`` (the end of what ``rx`` was fed) for fit ``segment``.

        Both points are taken at or after ``position``, so both lie in the
        receiver's current fit segment (segment boundaries are never ahead of
        what was fed).
        """
        line = None
        host = self._host
        if rx.locked and host.ready:
            rate = host.slope_hz()  # local samples per host second
            c0 = rx.canonical_seconds_at(float(position))
            c1 = rx.canonical_seconds_at(float(position) + rate)
            if rate > 0 and c0 is not None and c1 is not None:
                line = HostCanonicalLine(origin_host_ns=host.host_ns_at(position),
                                         origin_canonical_ns=round(c0 * 1e9), scale=c1 - c0, segment=segment)
        self.line = line
        return line
