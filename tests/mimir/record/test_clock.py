"""The recorder's clock tracker: a locked segment gets its witness fit, or the take says it did not.

The rig's plan is the real contract (``tests/mimir/_fake_rig.py``); the clock board and the status board are
played by the test through the tracker's two reader seams.
"""

from __future__ import annotations

from mimir.record.clock import ClockTracker
from mimir.snapshot.segments import Fit
from mimir.supervisor.clock import ClockSegment, ClockState, SegmentReason
from mimir.supervisor.clock_board import ClockSnapshot

FIT = Fit(-1_234_567.25, 48_000.0012, 0.97)


def _clock(*segments: ClockSegment) -> ClockSnapshot:
    last = segments[-1]
    return ClockSnapshot(last.state, 0, last.index, 1, 0, 0, 1.0, 0, 0, segments)


_START = ClockSegment(0, ClockState.PROVISIONAL, SegmentReason.START, 1_000, 0, 0, 0)
_LOCK = ClockSegment(1, ClockState.LOCKED, SegmentReason.LOCK, 2_000_000_000, 1_000_000_000, 0, 0)


def test_a_lock_just_before_the_end_gets_its_fit_from_a_last_look_at_the_board(fake_rig):
    """Invariant: a take that ends within one poll interval of a lock records that segment's fit when the status
    board shows it by then; the take lists it missing only when the board never did. (The last look was not
    taken: a rig stopped ~0.1 s after locking closed its take incomplete, "the witness fit ... did not show",
    while the board held the fit; CI saw it once, a recorder killed and replaced just before the lock.)"""
    rig = fake_rig()
    board = {"fit": (0, None)}  # the status board still shows the provisional segment
    tracker = ClockTracker(rig.rig, rig.plan, clock_reader=lambda _: _clock(_START, _LOCK),
                           fit_reader=lambda _: board["fit"])
    tracker.refresh(now_ns=10_000_000_000)
    assert tracker.pending  # the locked segment waits for its fit
    board["fit"] = (1, FIT)  # the next status tick shows it, inside the poll interval
    tracker.close_pending()
    assert not tracker.pending and tracker.missing == []
    locked = tracker.slots[1].take
    assert locked is not None and locked.state == "locked"
    assert locked.local_sample_at_epoch == FIT.local_sample_at_epoch and locked.rate_hz == FIT.rate_hz


def test_a_lock_whose_fit_never_showed_is_listed_missing(fake_rig):
    """Invariant: nothing is claimed that was not seen: a locked segment whose fit the board never showed is
    written without it and listed in the take's missing, with why."""
    rig = fake_rig()
    tracker = ClockTracker(rig.rig, rig.plan, clock_reader=lambda _: _clock(_START, _LOCK),
                           fit_reader=lambda _: (0, None))
    tracker.refresh(now_ns=10_000_000_000)
    tracker.close_pending()
    assert not tracker.pending
    assert [m.what for m in tracker.missing] == ["the witness fit of clock segment 1"]
    assert tracker.slots[1].take is not None and tracker.slots[1].take.local_sample_at_epoch is None
