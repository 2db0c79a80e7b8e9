"""From the streaming receiver's state to wire message bodies, on a schedule in stream time.

:class:`ReportScheduler` is called by the decode thread after every block it
feeds. It decides what is due (by the audio clock: samples fed / rate, so a
file decoded faster than real time produces the same messages as live audio)
and builds the bodies:

* anchors: as soon as new ones are decoded (low latency), each sent once;
* clock fit: every ``fit_period_s`` and at once when the lock state or the
  fit segment changes;
* health: every ``health_period_s``; response/confusion: every ``response_period_s``.

It calls ``StreamingReceiver.report()`` only when something is due.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mimir.sync import StreamingReceiver, SyncReport

from .messages import (
    MAX_ANCHORS_PER_BATCH,
    Anchor,
    AnchorBatch,
    BandStat,
    BufferHealth,
    ClockFitSummary,
    ResponseUpdate,
    SymbolStat,
)

__all__ = ["ReportSchedule", "ReportScheduler", "fit_body", "response_body"]


@dataclass(frozen=True)
class ReportSchedule:
    fit_period_s: float = 0.5
    health_period_s: float = 2.0
    response_period_s: float = 10.0


def _clip01(x: float | None) -> float | None:
    return None if x is None else min(1.0, max(0.0, float(x)))


def fit_body(rep: SyncReport, stream_sample: int) -> ClockFitSummary:
    f = rep.canonical_clock_fit
    return ClockFitSummary(
        codebook_id=rep.codebook_id[:64], seed=rep.seed, nominal_rate_hz=rep.nominal_rate_hz, locked=rep.locked,
        segment=rep.health.discontinuities, stream_sample=max(0, int(stream_sample)),
        local_sample_at_epoch=f.local_sample_at_epoch, rate_hz=f.rate_hz,
        confidence=_clip01(f.confidence) or 0.0, mae_samples=f.mae_samples,
        offset_sigma_samples=f.offset_sigma_samples, rate_sigma_ppm=f.rate_sigma_ppm, anchor_count=f.anchor_count,
        first_canonical_s=f.first_canonical_s, last_canonical_s=f.last_canonical_s,
    )


def response_body(rep: SyncReport) -> ResponseUpdate:
    p = rep.response_profile
    return ResponseUpdate(
        bands=[BandStat(low_hz=b.low_hz, high_hz=b.high_hz, gain_db=b.gain_db, reliability=_clip01(b.reliability),
                        timing_residual_samples=b.timing_residual_samples) for b in p.bands],
        symbols=[SymbolStat(count=s.count, reliability=_clip01(s.reliability), mean_score=s.mean_score,
                            timing_residual_samples=s.timing_residual_samples) for s in p.symbols],
        events_checked=p.events_checked, confusion_rate=_clip01(p.confusion_rate),
    )


class ReportScheduler:
    """Owned by the decode thread. ``sender_health`` fills the sender/backlog part of health reports."""

    def __init__(self, rx: StreamingReceiver, schedule: ReportSchedule,
                 sender_health: Callable[[], dict] | None = None) -> None:
        self.rx = rx
        self.schedule = schedule
        self.sender_health = sender_health or (dict)
        self.rate_hz = rx.rate_hz
        self._next_fit_s = 0.0
        self._next_health_s = 0.0
        self._next_response_s = schedule.response_period_s
        self._anchors_accepted = -1
        self._locked = False
        self._segment = 0
        self._sent_events: set[int] = set()
        self._sent_order: deque[int] = deque()

    def due(self, stream_sample: int, *, final: bool = False) -> list:
        """Bodies to send after the receiver has consumed ``stream_sample`` samples (``final``: everything)."""
        rx = self.rx
        t = stream_sample / self.rate_hz
        h = rx.health
        anchors_moved = h.anchors_accepted != self._anchors_accepted
        state_changed = rx.locked != self._locked or h.discontinuities != self._segment
        fit_due = final or state_changed or t >= self._next_fit_s
        health_due = final or t >= self._next_health_s
        response_due = final or t >= self._next_response_s
        if not (anchors_moved or fit_due or health_due or response_due):
            return []
        rep = rx.report()
        self._anchors_accepted = h.anchors_accepted
        self._locked = rep.locked
        self._segment = rep.health.discontinuities
        out: list = []
        if fit_due:
            self._next_fit_s = t + self.schedule.fit_period_s
            out.append(fit_body(rep, stream_sample))
        fresh = [a for a in rep.anchors if a.event_index not in self._sent_events]
        if fresh:
            now = time.time_ns()
            for a in fresh:
                self._sent_events.add(a.event_index)
                self._sent_order.append(a.event_index)
                if len(self._sent_order) > 4096:
                    self._sent_events.discard(self._sent_order.popleft())
            for k in range(0, len(fresh), MAX_ANCHORS_PER_BATCH):
                out.append(AnchorBatch(
                    segment=rep.health.discontinuities, decoded_unix_ns=now,
                    anchors=[Anchor(event_index=a.event_index, canonical_s=a.canonical_s,
                                    local_sample=a.local_sample, confidence=_clip01(a.confidence) or 0.0,
                                    residual_samples=a.residual_samples)
                             for a in fresh[k:k + MAX_ANCHORS_PER_BATCH]]))
        if health_due:
            self._next_health_s = t + self.schedule.health_period_s
            hh = rep.health
            out.append(BufferHealth(
                state=hh.state[:64], samples_consumed=hh.samples_consumed, gap_samples=hh.gap_samples,
                non_finite_samples=hh.non_finite_samples, anchors_accepted=max(0, hh.anchors_accepted),
                anchors_rejected=max(0, hh.anchors_rejected), events_missed=hh.events_missed, locks=hh.locks,
                relocks=hh.relocks, discontinuities=hh.discontinuities, **self.sender_health()))
        if response_due:
            self._next_response_s = t + self.schedule.response_period_s
            out.append(response_body(rep))
        return out
