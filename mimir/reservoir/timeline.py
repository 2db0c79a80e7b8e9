"""Time lookups for one sensor inside a kind view that mixes sensors: O(log n) probes, exact.

A kind view (every camera frame of the rig, every audio block) holds the
samples of several sensors in push order. It is *not* sorted by timestamp
across sensors (the supervisor indexes ring after ring, so camera 1's frame
can be pushed after camera 2's newer one), but each sensor's own samples are
pushed in its ring order and carry non-decreasing canonical times while the
canonical clock does not step back. These searches rely on exactly that:

* :func:`neighbours` binary-searches kind positions for the boundary between
  the sensor's samples at or before ``t_ns`` and those after it. Each probe
  at kind position ``m`` walks forward to the sensor's first sample at or
  after ``m``; that walk passes the other sensors' samples pushed between two
  of this sensor's (about the number of sensors of the kind in steady state,
  more across a gap in this sensor's samples). So a lookup reads
  ``O(sensors x log n)`` records, never the whole window.
* :func:`walk` continues from a hit, sample by sample of the same sensor.

Positions are kind positions (:meth:`ReservoirQueries.kind_bounds`), which do
not shift while the head moves; a probe that meets an evicted position
restarts the search on the new window (the window only moves forward).

Across a *backward* clock step (the canonical clock moved back, e.g. at the
first lock to the witness) a sensor's times are not monotonic until the
pre-step samples leave the window; times inside the overlap exist twice,
and a lookup there answers with samples adjacent to the step boundary of
the push order, not necessarily the nearest in time. ``docs/consumer.md``
says more.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from .errors import Evicted
from .queries import ReservoirQueries
from .results import Sample

__all__ = ["Hit", "neighbours", "walk", "first_hit", "RESTARTS"]

RESTARTS = 16  # searches restarted because the window moved under them before giving up (practically never)


class Hit(NamedTuple):
    """A sample and its kind position."""

    kind_position: int
    sample: Sample


def _first_at_or_after(q: ReservoirQueries, kind: int, sensor: int, start: int, end: int) -> Hit | None:
    """The sensor's first sample at kind position ``start <= k < end`` (None if none). May raise Evicted."""
    read = q.read_kind_at
    k = start
    while k < end:
        s = read(kind, k)
        if s.sensor_id_hash == sensor:
            return Hit(k, s)
        k += 1
    return None


def neighbours(q: ReservoirQueries, kind: int, sensor: int, t_ns: int) -> tuple[Hit | None, Hit | None]:
    """``(before, after)``: the sensor's last sample with time ``<= t_ns`` and its first with time ``> t_ns``.

    Either is None where the window holds no such sample; both are None when
    the sensor has no sample in the window.
    """
    for _ in range(RESTARTS):
        try:
            return _neighbours(q, kind, sensor, t_ns)
        except Evicted:
            continue  # the head passed a probe: search the new window
    raise Evicted(f"reservoir {q.name}: the window moved under {RESTARTS} searches in a row; is the reader starved?")


def _neighbours(q: ReservoirQueries, kind: int, sensor: int, t_ns: int) -> tuple[Hit | None, Hit | None]:
    head, _ = q.kind_bounds(kind)
    latest = q.latest_for_sensor(kind, sensor)
    if latest is None:
        return None, None
    last_k = q.kind_position_of(latest)
    if latest.timestamp_ns <= t_ns:  # the common "now" query, and a sensor that stopped: no search
        return Hit(last_k, latest), None
    # Invariant: the sensor's samples below lo are <= t_ns, those at or above hi are > t_ns;
    # ``before`` is the sensor's last sample below lo, ``after`` its first at or above hi.
    lo, hi = head, last_k
    before: Hit | None = None
    after = Hit(last_k, latest)
    while lo < hi:
        mid = (lo + hi) // 2
        hit = _first_at_or_after(q, kind, sensor, mid, hi)
        if hit is None:
            hi = mid  # nothing of this sensor in [mid, hi)
        elif hit.sample.timestamp_ns <= t_ns:
            before = hit
            lo = hit.kind_position + 1
        else:
            after = hit
            hi = mid  # nothing of this sensor in [mid, hit), and hit itself is > t_ns
    return before, after


def first_hit(q: ReservoirQueries, kind: int, sensor: int, t_ns: int) -> Hit | None:
    """The sensor's first sample with time ``>= t_ns`` (None if none)."""
    return neighbours(q, kind, sensor, t_ns - 1)[1]


def walk(q: ReservoirQueries, kind: int, sensor: int, start: Hit) -> Iterator[Hit]:
    """``start`` and then every later sample of the same sensor, in push order, up to the current tail.

    Raises :class:`Evicted` if the walk falls behind the moving head.
    """
    yield start
    k = start.kind_position + 1
    while True:
        _, tail = q.kind_bounds(kind)
        hit = _first_at_or_after(q, kind, sensor, k, tail)
        if hit is None:
            return
        yield hit
        k = hit.kind_position + 1
