"""Time lookups for one sensor inside a kind view that mixes sensors: O(log n) probes, exact.

A kind view (every camera frame of the rig, every audio block) holds the
samples of several sensors in push order. It is *not* sorted by timestamp
across sensors (the supervisor indexes ring after ring, so camera 1's frame
can be pushed after camera 2's newer one), but each sensor's own samples are
pushed in its ring order and carry non-decreasing canonical times while the
canonical clock does not step back. These searches rely on exactly that:

* :func:`neighbours` first binary-searches the whole view by time, ignoring
  sensors (one lean probe per step, :meth:`ReservoirQueries.sensor_time_at`):
  the view is nearly sorted, so this lands within a few samples of the
  answer. It then walks back and forward to the sensor's own samples on
  either side; when the one behind is at or before ``t_ns`` and the one ahead
  after it, they are the answer (the sensor's times only grow). Otherwise
  (disorder right at ``t_ns``) an exact search runs over the bracket known to
  be right: a binary search whose probe at kind position ``m`` walks forward
  to the sensor's first sample at or after ``m``. A walk passes the other
  sensors' samples pushed between two of this sensor's: about the number of
  sensors in steady state, more across a gap in this sensor's samples. So a
  lookup reads ``O(log n + sensors)`` records in the common case and
  ``O(sensors x log n)`` at worst, never the whole window.
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


def _first_at_or_after(reservoir: ReservoirQueries, kind: int, sensor: int, start: int, end: int
                       ) -> tuple[int, int] | None:
    """``(kind position, time)`` of the sensor's first sample at ``start <= k < end``, or None. May raise Evicted."""
    probe = reservoir.sensor_time_at
    kind_position = start
    while kind_position < end:
        probed_sensor, timestamp_ns = probe(kind, kind_position)
        if probed_sensor == sensor:
            return kind_position, timestamp_ns
        kind_position += 1
    return None


def _last_before(reservoir: ReservoirQueries, kind: int, sensor: int, end: int, start: int
                 ) -> tuple[int, int] | None:
    """``(kind position, time)`` of the sensor's last sample at ``start <= k < end`` (None if none)."""
    probe = reservoir.sensor_time_at
    kind_position = end - 1
    while kind_position >= start:
        probed_sensor, timestamp_ns = probe(kind, kind_position)
        if probed_sensor == sensor:
            return kind_position, timestamp_ns
        kind_position -= 1
    return None


def neighbours(reservoir: ReservoirQueries, kind: int, sensor: int, t_ns: int) -> tuple[Hit | None, Hit | None]:
    """``(before, after)``: the sensor's last sample with time ``<= t_ns`` and its first with time ``> t_ns``.

    Either is None where the window holds no such sample; both are None when
    the sensor has no sample in the window.
    """
    for _ in range(RESTARTS):
        try:
            before, after = _neighbours(reservoir, kind, sensor, t_ns)
            return (None if before is None else Hit(before, reservoir.read_kind_at(kind, before)),
                    None if after is None else Hit(after, reservoir.read_kind_at(kind, after)))
        except Evicted:
            continue  # the head passed a probe: search the new window
    raise Evicted(
        f"reservoir {reservoir.name}: the window moved under {RESTARTS} searches in a row; is the reader starved?"
    )


def _neighbours(reservoir: ReservoirQueries, kind: int, sensor: int, t_ns: int) -> tuple[int | None, int | None]:
    """Kind positions of ``(before, after)``.

    1. Binary search over every sample of the view for the first time after
       ``t_ns``, ignoring sensors: one probe per step. The view is nearly
       sorted (sensors are mixed by milliseconds), so this lands next to the
       answer.
    2. Walk back and forward from there to the sensor's own samples on either
       side. If the one behind is at or before ``t_ns`` and the one ahead is
       after it, they are the answer: the sensor's times only grow.
    3. Otherwise (disorder right at ``t_ns``), the exact search over the
       bracket that is known to be right, probing with walks (see the module
       docstring).
    """
    head, _ = reservoir.kind_bounds(kind)
    latest = reservoir.latest_for_sensor(kind, sensor)
    if latest is None:
        return None, None
    latest_kind_position = reservoir.kind_position_of(latest)
    if latest.timestamp_ns <= t_ns:  # the common "now" query, and a sensor that stopped: no search
        return latest_kind_position, None
    probe = reservoir.sensor_time_at
    lo, hi = head, latest_kind_position
    while lo < hi:  # 1
        mid = (lo + hi) // 2
        if probe(kind, mid)[1] <= t_ns:
            lo = mid + 1
        else:
            hi = mid
    behind = _last_before(reservoir, kind, sensor, lo, head)  # 2
    ahead = _first_at_or_after(reservoir, kind, sensor, lo, latest_kind_position + 1)
    lo = head
    before = None
    if behind is not None and behind[1] <= t_ns:
        lo, before = behind[0] + 1, behind[0]
    hi, after = latest_kind_position, latest_kind_position
    if ahead is not None and ahead[1] > t_ns:
        hi, after = ahead[0], ahead[0]
    # 3. Invariant: the sensor's samples below lo are <= t_ns, those at or above hi are > t_ns;
    # ``before`` is its last sample below lo, ``after`` its first at or above hi. (Empty when step 2 settled it.)
    while lo < hi:
        mid = (lo + hi) // 2
        hit = _first_at_or_after(reservoir, kind, sensor, mid, hi)
        if hit is None:
            hi = mid  # nothing of this sensor in [mid, hi)
        elif hit[1] <= t_ns:
            before = hit[0]
            lo = hit[0] + 1
        else:
            after = hit[0]
            hi = mid  # nothing of this sensor in [mid, hit), and hit itself is > t_ns
    return before, after


def first_hit(reservoir: ReservoirQueries, kind: int, sensor: int, t_ns: int) -> Hit | None:
    """The sensor's first sample with time ``>= t_ns`` (None if none)."""
    return neighbours(reservoir, kind, sensor, t_ns - 1)[1]


def walk(reservoir: ReservoirQueries, kind: int, sensor: int, start: Hit) -> Iterator[Hit]:
    """``start`` and then every later sample of the same sensor, in push order, up to the current tail.

    Raises :class:`Evicted` if the walk falls behind the moving head.
    """
    yield start
    kind_position = start.kind_position + 1
    while True:
        _, tail = reservoir.kind_bounds(kind)
        hit = _first_at_or_after(reservoir, kind, sensor, kind_position, tail)
        if hit is None:
            return
        yield Hit(hit[0], reservoir.read_kind_at(kind, hit[0]))
        kind_position = hit[0] + 1
