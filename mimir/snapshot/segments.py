"""Which clock segment each item of a snapshot belongs to, from the rig's published clock history.

The supervisor keeps canonical time in segments (``mimir.supervisor.clock``):
every lock, step over 0.1 ms, audio stream restart or lost lock starts one,
and the ``clk`` board (:func:`mimir.supervisor.clock_board.read_clock`)
publishes the newest :data:`~mimir.supervisor.clock_board.MAX_SEGMENTS`, each
with the host time it started and the step it made. The switch happens
between two indexing passes of the supervisor's one thread, and every sample
carries the host time it was indexed at (``arrival_ns``), so an item belongs
to the newest segment that started at or before its ``arrival_ns``: exact.

Take segments (:class:`mimir.take.ClockSegment`) keep the rig's segment
index, so every source of a take numbers the same segment alike. State:
``locked`` for a witness fit; ``provisional`` for the provisional clock *and*
for holdover (the last line held after a stream restart or a lost lock: not
from a current witness fit; the take format has no holdover state, the
manifest says which). The segment in effect now gets the rig's current fit
from the status board; the board keeps no fit per segment, so an earlier
locked segment has none (listed as missing by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mimir.supervisor.clock import ClockSegment as RigSegment
from mimir.supervisor.clock import ClockState
from mimir.take import ClockSegment

__all__ = ["Fit", "assign", "authority_name", "predates", "take_segment"]


@dataclass(frozen=True)
class Fit:
    """The rig's clock fit now: ``device_sample = local_sample_at_epoch + canonical_s * rate_hz``."""

    local_sample_at_epoch: float
    rate_hz: float
    confidence: float


def assign(arrival_ns: np.ndarray, segments: tuple[RigSegment, ...]) -> list[tuple[int, RigSegment]]:
    """``[(first item index, rig segment), ...]`` for items indexed at ``arrival_ns`` (non-decreasing).

    Items indexed before the oldest published segment began are put in it
    (the caller says so in the manifest: :func:`predates`).
    """
    if not len(arrival_ns) or not segments:
        return []
    starts = np.array([s.started_host_ns for s in segments], np.int64)
    which = np.maximum(np.searchsorted(starts, arrival_ns.astype(np.int64), side="right") - 1, 0)
    firsts = np.flatnonzero(np.diff(which, prepend=-1))
    return [(int(i), segments[int(which[i])]) for i in firsts]


def predates(arrival_ns: np.ndarray, segments: tuple[RigSegment, ...]) -> bool:
    """True when some item was indexed before the oldest segment the rig still publishes."""
    return bool(len(arrival_ns)) and bool(segments) and int(arrival_ns.min()) < segments[0].started_host_ns


def authority_name(authority: int, remote_sources: tuple[str, ...]) -> str:
    """``"local"`` for the rig's reference channel (0), else the remote source id ``remote_sources[k - 1]``."""
    if authority == 0:
        return "local"
    return remote_sources[authority - 1] if authority <= len(remote_sources) else f"network.sources[{authority - 1}]"


def take_segment(rig_segment: RigSegment, *, first_in_span: bool, current_index: int, fit_now: Fit | None,
                 witness: str, remote_sources: tuple[str, ...] = ()) -> ClockSegment:
    """The take's record of one rig segment (``first_ns`` is left to the writer).

    ``step_ns`` is the step the segment started with, None for the first
    segment of the span (its step happened before the span began).
    ``reason`` and ``authority`` say why it began and what defined
    canonical time in it (``remote_sources``: the plan's, to name a remote
    authority).
    """
    step = None if first_in_span else rig_segment.step_ns
    reason = rig_segment.reason.name.lower().replace("_", " ")
    authority = authority_name(rig_segment.authority, remote_sources)
    if rig_segment.state != ClockState.LOCKED:
        return ClockSegment(rig_segment.index, "provisional", step_ns=step, reason=reason, authority=authority)
    if rig_segment.index == current_index and fit_now is not None and rig_segment.authority == 0:
        return ClockSegment(rig_segment.index, "locked", local_sample_at_epoch=fit_now.local_sample_at_epoch,
                            rate_hz=fit_now.rate_hz, confidence=fit_now.confidence, witness=witness, step_ns=step,
                            reason=reason, authority=authority)
    return ClockSegment(rig_segment.index, "locked", witness=witness, step_ns=step, reason=reason,
                        authority=authority)
