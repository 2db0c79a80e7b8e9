"""Items to clock segments by the host time they were indexed at, and the take's record of each segment."""

from __future__ import annotations

import numpy as np

from mimir.snapshot.segments import Fit, assign, predates, take_segment
from mimir.supervisor.clock import ClockSegment, ClockState, SegmentReason

SEGMENTS = (
    ClockSegment(4, ClockState.PROVISIONAL, SegmentReason.START, 1_000, 10_000, 0, 0),
    ClockSegment(5, ClockState.LOCKED, SegmentReason.LOCK, 2_000, 11_000, -289_000_000, 0),
    ClockSegment(6, ClockState.HOLDOVER, SegmentReason.STREAM_RESTART, 3_000, 12_000, 0, 1),
    ClockSegment(7, ClockState.LOCKED, SegmentReason.LOCK, 4_000, 13_000, 1_500_000, 1),
)


def test_items_go_to_the_newest_segment_started_at_or_before_they_were_indexed():
    arrival = np.array([1_500, 1_999, 2_000, 2_001, 2_500, 4_100, 4_200], np.uint64)
    assert [(i, s.index) for i, s in assign(arrival, SEGMENTS)] == [(0, 4), (2, 5), (5, 7)]
    assert assign(np.array([], np.uint64), SEGMENTS) == []
    assert not predates(arrival, SEGMENTS)
    early = np.array([500, 1_500], np.uint64)  # indexed before the oldest segment the rig still publishes
    assert [(i, s.index) for i, s in assign(early, SEGMENTS)] == [(0, 4)] and predates(early, SEGMENTS)


def test_the_take_records_state_step_and_the_fit_in_effect_now():
    fit = Fit(-1.39e12, 48_000.4, 0.97)
    first = take_segment(SEGMENTS[0], first_in_span=True, current_index=7, fit_now=fit, witness="w")
    assert (first.index, first.state, first.step_ns, first.rate_hz, first.witness) == (4, "provisional", None, None,
                                                                                        None)
    lock = take_segment(SEGMENTS[1], first_in_span=False, current_index=7, fit_now=fit, witness="w")
    assert (lock.state, lock.step_ns, lock.rate_hz, lock.witness) == ("locked", -289_000_000, None, "w")
    holdover = take_segment(SEGMENTS[2], first_in_span=False, current_index=7, fit_now=fit, witness="w")
    assert holdover.state == "provisional" and holdover.step_ns == 0
    now = take_segment(SEGMENTS[3], first_in_span=False, current_index=7, fit_now=fit, witness="w")
    assert (now.local_sample_at_epoch, now.rate_hz, now.confidence, now.step_ns) == (-1.39e12, 48_000.4, 0.97,
                                                                                     1_500_000)
    assert take_segment(SEGMENTS[1], first_in_span=True, current_index=7, fit_now=fit, witness="w").step_ns is None


def test_the_take_says_why_each_segment_began_and_which_authority_defined_it():
    """A remote authority's segment names the receiver and carries no local fit (the local reference did not
    define canonical time in it); falling back is an AUTHORITY segment of the local reference."""
    fit = Fit(-1.39e12, 48_000.4, 0.97)
    remotes = ("phone", "raven")
    follow = ClockSegment(8, ClockState.LOCKED, SegmentReason.AUTHORITY, 5_000, 14_000, 100_000_000_000, 1, 2)
    back = ClockSegment(9, ClockState.LOCKED, SegmentReason.AUTHORITY, 6_000, 15_000, -100_000_000_000, 1, 0)
    took = take_segment(follow, first_in_span=False, current_index=8, fit_now=fit, witness="w",
                        remote_sources=remotes)
    assert (took.reason, took.authority, took.step_ns, took.rate_hz) == ("authority", "raven", 100_000_000_000, None)
    fell = take_segment(back, first_in_span=False, current_index=9, fit_now=fit, witness="w", remote_sources=remotes)
    assert (fell.reason, fell.authority, fell.rate_hz) == ("authority", "local", 48_000.4)
    restart = take_segment(SEGMENTS[2], first_in_span=False, current_index=7, fit_now=fit, witness="w")
    assert (restart.reason, restart.authority) == ("stream restart", "local")
    unnamed = ClockSegment(10, ClockState.LOCKED, SegmentReason.AUTHORITY, 7_000, 16_000, 0, 1, 3)
    assert take_segment(unnamed, first_in_span=False, current_index=10, fit_now=None, witness="w",
                        remote_sources=remotes).authority == "network.sources[2]"
