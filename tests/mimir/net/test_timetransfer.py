"""Time transfer without sockets: the estimator (mimir.net.timetransfer) and the probe book's echo rules
(mimir.net.probes), each rule exactly on its boundary, with exchanges simulated on a known truth.

An exchange: the probe leaves at t1, travels ``up_ns`` to the receiver (arrives at t2 on the same clock: these
simulations share one clock, so the truth is exact), is held ``hold_ns``, and the echo travels ``down_ns`` back
(t4). The receiver reports canonical time at t3 by the truth line.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mimir.net.messages import TimeEcho
from mimir.net.probes import ECHO_CAUSES, MAX_HOLD_NS, MAX_ROUND_TRIP_NS, ProbeBook
from mimir.net.timetransfer import TimeSample, TimeTransferEstimator

MS = 1_000_000
S = 1_000_000_000
H0 = 5_000 * S          # rig host time where the truth line is anchored
C0 = 123_456 * S        # canonical time there
SCALE = 1.0 + 37e-6     # canonical ns per rig host ns


def truth(h: int, c0: int = C0, scale: float = SCALE) -> int:
    return c0 + round(scale * (h - H0))


class Exchanges:
    """Drives one ProbeBook through simulated exchanges (session 7) at a given probe period."""

    def __init__(self, book: ProbeBook | None = None, period_ns: int = 500 * MS, c0: int = C0) -> None:
        self.book = book or ProbeBook()
        self.book.new_session(7)
        self.period_ns = period_ns
        self.t = H0
        self.c0 = c0

    def probe(self) -> int:
        self.t += self.period_ns
        self.book.sent(self.t)
        return self.t

    def exchange(self, up_ns: int, down_ns: int, hold_ns: int = 20_000, segment: int = 0,
                 canonical_shift_ns: int = 0) -> str:
        t1 = self.probe()
        t2 = t1 + up_ns
        t3 = t2 + hold_ns
        echo = TimeEcho(probe_sent_ns=t1, received_ns=t2, sent_ns=t3,
                        canonical_ns=truth(t3, self.c0) + canonical_shift_ns, segment=segment, clock="pacing")
        return self.book.echo(echo, 7, t3 + down_ns)

    def line(self):
        return self.book.line(self.t + 2 * S)


def test_a_known_line_is_recovered_within_the_uncertainty_it_reports():
    ex = Exchanges()
    rng = random.Random(1)
    for _ in range(64):
        assert ex.exchange(rng.randint(60_000, 900_000), rng.randint(60_000, 900_000)) == "used"
    line = ex.line()
    assert line is not None and line.samples_used == 32
    best_half_delay = min(ex.book.estimator._ring[:, 3])
    assert best_half_delay <= line.uncertainty_ns < 1 * MS
    for h in (line.origin_host_ns, line.origin_host_ns - 10 * S, line.origin_host_ns + S):
        assert abs(line.canonical_ns_at(h) - truth(h)) <= line.uncertainty_ns_at(h)
    assert abs(line.scale - SCALE) * 1e6 <= line.scale_uncertainty_ppm
    st = ex.book.status(ex.t)
    assert st.ready and st.used == 64 and st.refused.total() == 0 and st.samples == 64
    assert 60 <= st.round_trip_us_min <= st.round_trip_us_p50 <= st.round_trip_us_p99 <= 1800


def test_the_lower_envelope_keeps_queued_and_one_sided_samples_out():
    """Half the exchanges queue 40 ms on the way back only (each biased by 20 ms, within its own bound);
    the line follows the quick, symmetric half."""
    ex = Exchanges()
    for i in range(64):
        slow = i % 2 == 1
        ex.exchange(100_000, 40 * MS if slow else 100_000)
    line = ex.line()
    assert line is not None and line.samples_used == 32
    assert abs(line.canonical_ns_at(line.origin_host_ns) - truth(line.origin_host_ns)) <= 1_000
    assert line.uncertainty_ns < 200_000


def _run_paths(paths, scale: float):
    book = ProbeBook()
    book.new_session(7)
    t = H0
    for up, down, hold in paths:
        t += 250 * MS
        book.sent(t)
        t3 = t + up + hold
        echo = TimeEcho(probe_sent_ns=t, received_ns=t + up, sent_ns=t3, canonical_ns=truth(t3, scale=scale),
                        segment=0, clock="adc")
        assert book.echo(echo, 7, t3 + down) == "used"
    return book.line(t)


_paths = st.lists(st.tuples(st.integers(10_000, 50 * MS), st.integers(10_000, 50 * MS), st.integers(0, 5 * MS)),
                  min_size=8, max_size=90)


@settings(max_examples=80, deadline=None)
@given(_paths, st.floats(-300e-6, 300e-6))
def test_a_line_always_covers_the_truth(paths, ppm):
    """Any delays up to 50 ms each way, any asymmetry, any hold: whenever there is a line (too asymmetric a
    set over too short a span may give none), the truth is within its bound at the origin and 2 s away."""
    line = _run_paths(paths, 1.0 + ppm)
    if line is not None:
        for h in (line.origin_host_ns, line.origin_host_ns + 2 * S):
            assert abs(line.canonical_ns_at(h) - truth(h, scale=1.0 + ppm)) <= line.uncertainty_ns_at(h)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(10_000, 200_000), st.integers(10_000, 200_000), st.integers(0, MS)),
                min_size=8, max_size=90), st.floats(-300e-6, 300e-6))
@example(paths=[(10000, 10000, 0), (10000, 182453, 0), (169909, 10000, 0), (169754, 10000, 0), (177104, 10000, 0),
                (153432, 127465, 0), (153424, 155013, 1), (153428, 182561, 1)], ppm=0.0)  # found by CI: 250 us
def test_a_line_exists_from_eight_quick_exchanges(paths, ppm):
    """LAN-like delays (<= 0.2 ms each way, any split): 8 exchanges always make a line, within twice the longest
    round trip (so under a millisecond). Each sample is only known to within half its round trip and an
    asymmetric path biases it by up to as much again, which no exchange can see: an earlier bound of 0.25 ms
    was not a property (CI found 8 exchanges of up to 0.34 ms round trip whose honest line is 0.25 ms wide).
    The worst seen over 19,000 seeded adversarial sets (extreme and one-sided splits): 0.998 x the longest."""
    line = _run_paths(paths, 1.0 + ppm)
    longest = max(up + down for up, down, _ in paths)
    assert line is not None and line.uncertainty_ns <= 2 * longest
    assert abs(line.canonical_ns_at(line.origin_host_ns) - truth(line.origin_host_ns, scale=1.0 + ppm)) \
        <= line.uncertainty_ns


def test_among_equal_delays_the_newest_samples_bound_the_line():
    """Eighteen exchanges of one round trip, alternately one-sided each way (biases of +-95 us): the lower envelope
    of delay is a tie, broken for the newest samples, which bound the line at its origin. Taking the oldest half
    (a stable sort's order) left the origin 2 s from every fitted sample: 616 us for a 210 us round trip."""
    paths = [((10_000, 200_000)[i % 2], (200_000, 10_000)[i % 2], 0) for i in range(18)]
    line = _run_paths(paths, 1.0)
    assert line is not None and line.uncertainty_ns <= 210_000


def test_a_scale_too_far_from_one_is_not_a_line():
    est = TimeTransferEstimator(min_samples=8)
    for i in range(16):
        h = H0 + i * S
        est.add(TimeSample(h, C0 + round(1.001 * i * S), 200_000, 100_000))
    assert est.line is None and "+1000 ppm" in est.reason
    ok = TimeTransferEstimator(min_samples=8)
    for i in range(16):
        ok.add(TimeSample(H0 + i * S, C0 + round((1 + 499e-6) * i * S), 200_000, 100_000))
    assert ok.line is not None


def test_an_outlier_never_moves_the_line_and_a_lasting_step_restarts_it():
    ex = Exchanges()
    for _ in range(20):
        ex.exchange(100_000, 100_000)
    before = ex.book.estimator.line
    assert before is not None
    # one echo 5 ms off: refused, the line is the same object
    assert ex.exchange(100_000, 100_000, canonical_shift_ns=5 * MS) == "outlier"
    assert ex.book.estimator.line is before
    assert ex.exchange(100_000, 100_000) == "used"  # a good one in between: the outlier run starts again
    # the remote's timeline stepped by 5 ms without a new segment: 7 refused, the 8th restarts from all 8
    verdicts = [ex.exchange(100_000, 100_000, canonical_shift_ns=5 * MS) for _ in range(8)]
    assert verdicts == ["outlier"] * 8
    st = ex.book.status(ex.t)
    assert st.resets.outliers == 1 and st.refused.outlier == 9 and st.samples == 8
    line = ex.line()
    assert line is not None and abs(line.canonical_ns_at(ex.t) - (truth(ex.t) + 5 * MS)) <= line.uncertainty_ns


def test_a_wrong_sample_before_there_is_a_line_is_dropped_from_the_fit():
    """No line yet, so no outlier test: the pairwise scale-limit test drops the one sample that cannot be true
    together with the others (here the quickest, which the weights would otherwise follow)."""
    est = TimeTransferEstimator(min_samples=8)
    for i in range(9):
        h = H0 + i * S
        wrong = 5 * MS if i == 4 else 0
        est.add(TimeSample(h, truth(h) + wrong, 20_000 if i == 4 else 200_000, 10_000 if i == 4 else 100_000))
    line = est.line
    assert line is not None and line.samples_used == 8
    assert abs(line.canonical_ns_at(line.origin_host_ns) - truth(line.origin_host_ns)) <= line.uncertainty_ns
    split = TimeTransferEstimator(min_samples=8)  # two timelines 5 ms apart, half and half: no line at all
    for i in range(10):
        h = H0 + i * S
        split.add(TimeSample(h, truth(h) + (5 * MS if i % 2 else 0), 200_000, 100_000))
    assert split.line is None and "disagree" in split.reason


def _book_with_probe(**kw) -> tuple[ProbeBook, int]:
    book = ProbeBook(**kw)
    book.new_session(7)
    book.sent(H0)
    return book, H0


def _echo(t1: int, t2: int, t3: int, canonical: int | None = C0, segment: int = 0) -> TimeEcho:
    return TimeEcho(probe_sent_ns=t1, received_ns=t2, sent_ns=t3, canonical_ns=canonical, segment=segment,
                    clock="entry")


@pytest.mark.parametrize("case, expected", [
    # (t2 - t1 here is meaningless between two hosts: only t3 - t2 and t4 - t1 are used)
    ("t2 before t1 is fine", "used"),
    ("t3 == t2", "used"),
    ("t3 one ns before t2", "disordered"),
    ("held exactly the round trip (d = 0)", "used"),
    ("held one ns longer than the round trip", "negative_delay"),
    ("d at the limit", "used"),
    ("d one ns over", "slow_round_trip"),
    ("hold at the limit", "used"),
    ("hold one ns over", "long_hold"),
    ("no canonical time", "unlocked"),
])
def test_echo_rules_on_their_boundaries(case, expected):
    book, t1 = _book_with_probe()
    t2 = 10**15  # the receiver's clock: any origin
    e = {
        "t2 before t1 is fine": (_echo(t1, 5, 5 + 1000), t1 + 50_000),
        "t3 == t2": (_echo(t1, t2, t2), t1 + 50_000),
        "t3 one ns before t2": (_echo(t1, t2, t2 - 1), t1 + 50_000),
        "held exactly the round trip (d = 0)": (_echo(t1, t2, t2 + 50_000), t1 + 50_000),
        "held one ns longer than the round trip": (_echo(t1, t2, t2 + 50_001), t1 + 50_000),
        "d at the limit": (_echo(t1, t2, t2 + 1000), t1 + 1000 + MAX_ROUND_TRIP_NS),
        "d one ns over": (_echo(t1, t2, t2 + 1000), t1 + 1001 + MAX_ROUND_TRIP_NS),
        "hold at the limit": (_echo(t1, t2, t2 + MAX_HOLD_NS), t1 + MAX_HOLD_NS + 50_000),
        "hold one ns over": (_echo(t1, t2, t2 + MAX_HOLD_NS + 1), t1 + MAX_HOLD_NS + 50_001),
        "no canonical time": (_echo(t1, t2, t2 + 1000, canonical=None), t1 + 50_000),
    }[case]
    assert book.echo(e[0], 7, e[1]) == expected
    st = book.status(e[1])
    assert st.used + st.refused.total() == 1
    assert (st.used == 1) == (expected == "used")


def test_a_sample_is_placed_mid_round_trip_with_half_of_it_as_bound():
    book, t1 = _book_with_probe()
    hold = 2 * MS
    assert book.echo(_echo(t1, 77, 77 + hold, canonical=C0), 7, t1 + 300_000 + hold) == "used"
    (host, canonical, delay, unc) = book.estimator._ring[0].tolist()
    assert delay == 300_000 and host == t1 + hold + 150_000 and canonical == C0
    assert unc == 150_000 + 1_000  # d/2, plus the hold times the host clocks' rate bound (500 ppm of 2 ms)


def test_each_probe_is_answered_once_and_only_in_its_session():
    book, t1 = _book_with_probe()
    good = _echo(t1, 10, 20)
    assert book.echo(good, 8, t1 + 1000) == "wrong_session"     # another session: refused, the probe stays
    assert book.echo(good, 7, t1 + 1000) == "used"
    assert book.echo(good, 7, t1 + 2000) == "unknown_probe"     # a replay
    assert book.echo(_echo(t1 + 1, 10, 20), 7, t1 + 3000) == "unknown_probe"  # forged t1
    book.sent(t1 + 10 * MS)
    book.new_session(9)                                          # a new session voids the probe
    assert book.echo(_echo(t1 + 10 * MS, 10, 20), 9, t1 + 11 * MS) == "unknown_probe"
    st = book.status(t1)
    assert (st.used, st.refused.wrong_session, st.refused.unknown_probe, st.probes_unanswered) == (1, 1, 3, 1)
    assert st.resets.session == 1 and st.samples == 0
    assert ProbeBook().echo(good, 7, t1) == "wrong_session"      # no session at all


def test_pending_probes_are_bounded_and_expire():
    book = ProbeBook(max_pending=4)
    book.new_session(7)
    for k in range(6):
        book.sent(H0 + k)
    assert book.probes_unanswered == 2 and len(book._pending) == 4
    assert book.echo(_echo(H0, 1, 2), 7, H0 + 1000) == "unknown_probe"     # pushed out
    assert book.echo(_echo(H0 + 2, 1, 2), 7, H0 + 1000) == "used"
    book.sent(H0 + 5 + MAX_ROUND_TRIP_NS)                                  # H0+3 and H0+4 are now too old
    assert book.probes_unanswered == 4 and len(book._pending) == 2
    book.sent(H0 + 5 + MAX_ROUND_TRIP_NS + 1)                              # and now H0+5
    assert book.probes_unanswered == 5 and len(book._pending) == 2


def test_a_new_segment_restarts_the_line_and_an_older_one_is_refused():
    ex = Exchanges()
    for _ in range(12):
        ex.exchange(100_000, 100_000, segment=3)
    assert ex.line() is not None
    ex.c0 = C0 + 250 * MS  # the remote relocked onto another timeline
    assert ex.exchange(100_000, 100_000, segment=4) == "used"
    st = ex.book.status(ex.t)
    assert st.resets.relock == 1 and st.samples == 1 and not st.ready and st.segment == 4
    assert ex.exchange(100_000, 100_000, segment=3) == "old_segment"
    for _ in range(7):
        ex.exchange(100_000, 100_000, segment=4)
    line = ex.line()
    assert line is not None and abs(line.canonical_ns_at(ex.t) - truth(ex.t, ex.c0)) <= line.uncertainty_ns


def test_a_line_goes_stale():
    ex = Exchanges()
    for _ in range(10):
        ex.exchange(100_000, 100_000)
    newest = ex.book.estimator.newest_host_ns
    assert ex.book.line(newest + 10 * S) is not None
    assert ex.book.line(newest + 10 * S + 1) is None
    assert "s old" in ex.book.status(newest + 11 * S).reason


def test_every_cause_is_a_counter():
    assert set(ECHO_CAUSES) == set(ProbeBook().refused.__struct_fields__)
