"""The listener's side of a time transfer with one source: probes sent, echoes judged, the line. Pure, no I/O.

:class:`ProbeBook` is owned by :class:`~mimir.net.sources.SourceTable` (the
listener's thread). The listener sends a :class:`~mimir.net.messages.TimeProbe`
carrying ``t1 = time.monotonic_ns()`` and records it with :meth:`ProbeBook.sent`;
the answer, a :class:`~mimir.net.messages.TimeEcho` read at ``t4``, goes
through :meth:`ProbeBook.echo`, which either turns it into a
:class:`~mimir.net.timetransfer.TimeSample` for the estimator or refuses it with
one cause (:class:`EchoRefusals`). Every echo ends in exactly one of ``used``
or a cause. The rules, in order:

==================  ======================================================================================
``wrong_session``   the echo's session is not the source's current session (echoes never start a session)
``unknown_probe``   its t1 is not a probe sent to this session and still unanswered: forged, replayed, or
                    answering a probe that expired (older than ``max_round_trip``, or pushed out of the
                    ``max_pending`` probes remembered)
``disordered``      t3 < t2: sent before it was received
``negative_delay``  (t4 - t1) < (t3 - t2): held longer than the whole round trip took
``slow_round_trip`` d = (t4 - t1) - (t3 - t2) over ``max_round_trip`` (its bound d/2 would be useless)
``long_hold``       t3 - t2 over ``max_hold`` (the two host clocks' rate difference would enter)
``unlocked``        no canonical time (the remote is not locked, or has no host clock for its audio)
``old_segment``     from an older fit segment than one already seen
``outlier``         farther from the current line than both bounds allow (the estimator's rule)
==================  ======================================================================================

Only two machines' *differences* of their own clocks are used (t4 - t1 here,
t3 - t2 there), so nothing compares one machine's clock with the other's:
``t2 < t1`` is normal between two hosts and is not a refusal. A new session or
a new fit segment of the remote resets the estimator (counted in
:class:`TimeTransferResets`): one line never mixes two of the remote's timelines.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

import msgspec

from .messages import TimeEcho
from .timetransfer import MAX_SCALE_ERROR_PPM, TimeSample, TimeTransferEstimator, TransferLine

__all__ = ["ECHO_CAUSES", "EchoRefusals", "ProbeBook", "TimeTransferResets", "TimeTransferStatus"]

ECHO_CAUSES: tuple[str, ...] = ("wrong_session", "unknown_probe", "disordered", "negative_delay", "slow_round_trip",
                                "long_hold", "unlocked", "old_segment", "outlier")
MAX_PENDING_PROBES = 16
MAX_ROUND_TRIP_NS = 500_000_000
MAX_HOLD_NS = 250_000_000
MAX_LINE_AGE_NS = 10_000_000_000
HOST_RATE_BOUND = MAX_SCALE_ERROR_PPM * 1e-6   # the receiver's host clock against ours, over its hold time


class EchoRefusals(msgspec.Struct, kw_only=True):
    """Echoes refused, by cause (:data:`ECHO_CAUSES`; the module docstring says what each means)."""

    wrong_session: int = 0
    unknown_probe: int = 0
    disordered: int = 0
    negative_delay: int = 0
    slow_round_trip: int = 0
    long_hold: int = 0
    unlocked: int = 0
    old_segment: int = 0
    outlier: int = 0

    def total(self) -> int:
        return sum(getattr(self, f) for f in self.__struct_fields__)


class TimeTransferResets(msgspec.Struct, kw_only=True):
    """Times the line was started again: a new remote session, a new remote fit segment, a step seen in samples."""

    session: int = 0
    relock: int = 0
    outliers: int = 0


class TimeTransferStatus(msgspec.Struct, kw_only=True):
    """One source's time transfer, for ``RemoteSourceStatus.time_transfer`` (times on the rig's monotonic clock).

    ``ready``: a line exists, fitted from at least ``min_samples`` echoes, whose
    newest sample is at most 10 s old. The line: ``canonical_ns =
    origin_canonical_ns + scale * (host_ns - origin_host_ns)`` with
    ``uncertainty_ns`` at ``origin_host_ns``, growing by
    ``scale_uncertainty_ppm`` away from it. ``round_trip_us_*``: d over the
    last 256 echoes with sane timing; ``hold_us_p50``: how long the receiver
    held them (t3 - t2). ``used + refused.total()`` = echoes read.
    """

    ready: bool = False
    reason: str = "no echo yet"
    origin_host_ns: int | None = None
    origin_canonical_ns: int | None = None
    scale: float | None = None
    uncertainty_ns: int | None = None
    scale_uncertainty_ppm: float | None = None
    samples: int = 0
    samples_used: int = 0
    last_sample_age_s: float | None = None
    round_trip_us_p50: float | None = None
    round_trip_us_p99: float | None = None
    round_trip_us_min: float | None = None
    hold_us_p50: float | None = None
    segment: int | None = None
    remote_clock: str = ""
    probes_sent: int = 0
    probes_unanswered: int = 0
    used: int = 0
    refused: EchoRefusals = msgspec.field(default_factory=EchoRefusals)
    resets: TimeTransferResets = msgspec.field(default_factory=TimeTransferResets)


def _percentile_us(values: deque[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))] / 1e3


class ProbeBook:
    """Probes sent to one source and what its echoes made of them. Bounded: ``max_pending`` probes, the
    estimator's window, 256 round trips."""

    def __init__(self, *, max_pending: int = MAX_PENDING_PROBES, max_round_trip_ns: int = MAX_ROUND_TRIP_NS,
                 max_hold_ns: int = MAX_HOLD_NS, max_line_age_ns: int = MAX_LINE_AGE_NS,
                 estimator: TimeTransferEstimator | None = None) -> None:
        self.max_pending = max_pending
        self.max_round_trip_ns = max_round_trip_ns
        self.max_hold_ns = max_hold_ns
        self.max_line_age_ns = max_line_age_ns
        self.estimator = estimator or TimeTransferEstimator()
        self.session: int | None = None
        self.segment: int | None = None
        self.remote_clock = ""
        self._pending: OrderedDict[int, None] = OrderedDict()   # t1 of unanswered probes, oldest first
        self._round_trips: deque[int] = deque(maxlen=256)
        self._holds: deque[int] = deque(maxlen=256)
        self.probes_sent = 0
        self.probes_unanswered = 0
        self.used = 0
        self.refused = EchoRefusals()
        self.resets = TimeTransferResets()

    def new_session(self, session: int) -> None:
        """The source started (or restarted) a session: its earlier probes and line are void."""
        if self.session is not None:
            self.resets.session += 1
        self.session = session
        self.segment = None
        self.probes_unanswered += len(self._pending)
        self._pending.clear()
        self.estimator.reset()

    def sent(self, t1_ns: int) -> None:
        """A probe carrying ``t1_ns`` (our monotonic clock, taken just before sending) went to the current session."""
        while self._pending and (len(self._pending) >= self.max_pending
                                 or t1_ns - next(iter(self._pending)) > self.max_round_trip_ns):
            self._pending.popitem(last=False)
            self.probes_unanswered += 1
        self._pending[t1_ns] = None
        self.probes_sent += 1

    def _refuse(self, cause: str) -> str:
        setattr(self.refused, cause, getattr(self.refused, cause) + 1)
        return cause

    def echo(self, echo: TimeEcho, session: int, t4_ns: int) -> str:
        """Judge one echo of ``session`` read at ``t4_ns`` (our monotonic clock, taken after reading it).

        Returns ``used`` or the cause it was refused for (:data:`ECHO_CAUSES`).
        """
        if self.session is None or session != self.session:
            return self._refuse("wrong_session")
        t1 = echo.probe_sent_ns
        if t1 not in self._pending:
            return self._refuse("unknown_probe")
        del self._pending[t1]
        hold = echo.sent_ns - echo.received_ns
        if hold < 0:
            return self._refuse("disordered")
        d = (t4_ns - t1) - hold
        if d < 0:
            return self._refuse("negative_delay")
        if d > self.max_round_trip_ns:
            return self._refuse("slow_round_trip")
        if hold > self.max_hold_ns:
            return self._refuse("long_hold")
        self._round_trips.append(d)
        self._holds.append(hold)
        self.remote_clock = echo.clock
        if echo.canonical_ns is None:
            return self._refuse("unlocked")
        if self.segment is not None and echo.segment < self.segment:
            return self._refuse("old_segment")
        if self.segment is not None and echo.segment > self.segment:
            self.resets.relock += 1
            self.estimator.reset()
        self.segment = echo.segment
        u = (d + 1) // 2 + math.ceil(hold * HOST_RATE_BOUND)
        sample = TimeSample(host_ns=t4_ns - d // 2, canonical_ns=echo.canonical_ns, delay_ns=d, uncertainty_ns=u)
        resets_before = self.estimator.resets
        verdict = self.estimator.add(sample)
        self.resets.outliers += self.estimator.resets - resets_before
        if verdict == "outlier":
            return self._refuse("outlier")
        self.used += 1
        return "used"

    def line(self, now_ns: int) -> TransferLine | None:
        """The fitted line if it is ready: fitted, and its newest sample at most ``max_line_age`` before ``now_ns``."""
        est = self.estimator
        newest = est.newest_host_ns
        if est.line is None or newest is None or now_ns - newest > self.max_line_age_ns:
            return None
        return est.line

    def status(self, now_ns: int) -> TimeTransferStatus:
        est = self.estimator
        line = est.line
        newest = est.newest_host_ns
        age = None if newest is None else (now_ns - newest) / 1e9
        ready = self.line(now_ns) is not None
        if ready:
            reason = "ready"
        elif line is not None:
            reason = f"newest sample is {age:.0f} s old"
        elif not self.probes_sent:
            reason = "no probe sent yet (the source has not sent anything in its current session)"
        elif not self.used and not self.refused.total():
            reason = "no echo yet (a receiver older than time transfer never answers)"
        else:
            reason = est.reason
        return TimeTransferStatus(
            ready=ready, reason=reason,
            origin_host_ns=None if line is None else line.origin_host_ns,
            origin_canonical_ns=None if line is None else line.origin_canonical_ns,
            scale=None if line is None else line.scale,
            uncertainty_ns=None if line is None else line.uncertainty_ns,
            scale_uncertainty_ppm=None if line is None else line.scale_uncertainty_ppm,
            samples=len(est), samples_used=0 if line is None else line.samples_used,
            last_sample_age_s=age,
            round_trip_us_p50=_percentile_us(self._round_trips, 50),
            round_trip_us_p99=_percentile_us(self._round_trips, 99),
            round_trip_us_min=min(self._round_trips) / 1e3 if self._round_trips else None,
            hold_us_p50=_percentile_us(self._holds, 50), segment=self.segment, remote_clock=self.remote_clock,
            probes_sent=self.probes_sent, probes_unanswered=self.probes_unanswered, used=self.used,
            refused=msgspec.structs.replace(self.refused), resets=msgspec.structs.replace(self.resets),
        )
