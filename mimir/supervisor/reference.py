"""Which audio channel defines canonical time: the declared reference, or the one found to be the loopback.

A rig's canonical time must come through the wire, not the air: the
electrical loopback hears the witness before any microphone (no acoustic
path) and cleanly (no room). When the channel map declares a channel with
role ``reference``, that channel is the reference, found or not. Otherwise
:class:`ReferenceChooser` finds it among the channels whose role may be one
(anything but ``microphone`` and ``unused``): a locked fit with confidence at
least :data:`MIN_CONFIDENCE` and a mean fit error at most
:data:`MAX_MAE_SAMPLES`, that arrives first -- compared at the present
moment, never extrapolated to the epoch. Two candidates within
:data:`TIE_SAMPLES` of each other (a stereo loopback pair) are a tie, broken
by the smaller fit error. Canonical time is never locked on a channel that
is neither declared nor found (:attr:`ReferenceChoice.channel` is None, with
the reason).

Which channel locks first is a race between the sync worker's passes, not a
fact about the wiring (found in CI: under load a microphone locked before the
loopback and, kept while locked, defined canonical time for good). So:

* the first choice waits until every channel that may be a reference holds
  a clean lock, or until the sync worker has decoded :data:`GRACE_S` more
  seconds of audio after the first clean lock (an input with nothing on it
  never locks). The grace counts audio decoded, not time passed: under load
  the sync worker falls behind, and its channels' lock times differ in audio,
  not in wall-clock time. After a found reference loses its lock the next is
  chosen at once (its stereo partner, typically);
* a found reference is kept while it stays locked and no clean channel is
  heard earlier than it by more than :data:`TIE_SAMPLES`; one that is
  replaces it (the reason says so), and the supervisor starts a
  ``REFERENCE`` clock segment with the step it made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ReferenceChooser", "ReferenceChoice", "MIN_CONFIDENCE", "MAX_MAE_SAMPLES", "TIE_SAMPLES", "GRACE_S"]

MIN_CONFIDENCE = 0.9
MAX_MAE_SAMPLES = 0.5
TIE_SAMPLES = 0.5
GRACE_S = 3.0    # seconds of audio decoded after the first clean lock that the first choice waits, at most
NOT_REFERENCES = ("microphone", "unused")


@dataclass(frozen=True)
class ReferenceChoice:
    channel: int | None     # ring channel index, or None: no channel may define canonical time now
    declared: bool
    why: str                # for `mimir status`


class ReferenceChooser:
    """Chooses the reference channel from the sync worker's fit rows (see module docstring).

    ``roles`` gives each ring channel's role from the channel map (``""`` when
    the map says nothing); ``declared`` the ring index of the channel declared
    ``reference``, if any.
    """

    def __init__(self, roles: tuple[str, ...] = (), declared: int | None = None, rate_hz: float = 48_000.0) -> None:
        self.roles = roles
        self.declared = declared
        self.current: ReferenceChoice = ReferenceChoice(declared, True, "declared in the channel map") \
            if declared is not None else ReferenceChoice(None, False, "waiting for locked channels")
        self.grace_samples = GRACE_S * rate_hz
        self._first_clean_at: int | None = None    # samples decoded when a clean candidate was first seen, none chosen
        self._chosen_once = False                  # the grace is for the first choice only (see module docstring)

    def _role(self, channel: int) -> str:
        return self.roles[channel] if channel < len(self.roles) else ""

    def choose(self, rows: np.ndarray, now_canonical_s: float) -> ReferenceChoice:
        """The reference given the present fit rows (``FitRow`` records of every channel)."""
        if self.declared is not None:
            locked = self.declared < len(rows) and bool(rows[self.declared]["locked"])
            self.current = ReferenceChoice(self.declared, True, "declared in the channel map" if locked else
                                           "declared in the channel map, not locked: is the witness reaching it?")
            return self.current
        candidates, rejected, pending = self._candidates(rows, now_canonical_s)
        current = self.current.channel
        if current is not None and current < len(rows) and rows[current]["locked"]:
            heard_at = _arrival(rows[current], now_canonical_s)
            if not any(c[0] < heard_at - TIE_SAMPLES for c in candidates):
                return self.current  # kept while it holds its lock and nothing clean is heard earlier
            return self._found(candidates, switched_from=current)
        if not candidates:
            self._first_clean_at = None
            why = "; ".join(rejected) if rejected else "no channel that may be a reference is locked"
            self.current = ReferenceChoice(None, False, f"none found: {why}")
            return self.current
        decoded = int(rows["samples_consumed"].max())
        if self._first_clean_at is None:
            self._first_clean_at = decoded
        if not self._chosen_once and pending and decoded - self._first_clean_at < self.grace_samples:
            names = ", ".join(f"ch{c}" for c in pending)
            self.current = ReferenceChoice(None, False, f"choosing: waiting up to {GRACE_S:g} s of audio for "
                                                        f"{names} to lock cleanly")
            return self.current
        return self._found(candidates, switched_from=None)

    def _candidates(self, rows: np.ndarray, now_canonical_s: float
                    ) -> tuple[list[tuple[float, float, int]], list[str], list[int]]:
        """(arrival, mae, channel) of each clean locked channel that may be a reference; why the locked others are
        not clean; which that may be one are not (yet) clean locks."""
        candidates: list[tuple[float, float, int]] = []
        rejected: list[str] = []
        pending: list[int] = []
        for c, row in enumerate(rows):
            if self._role(c) in NOT_REFERENCES:
                continue
            if not row["locked"] or row["rate_hz"] <= 0:
                pending.append(c)
                continue
            if row["confidence"] < MIN_CONFIDENCE or row["mae_samples"] > MAX_MAE_SAMPLES:
                rejected.append(f"ch{c} locked but not clean (confidence {row['confidence']:.2f}, "
                                f"mae {row['mae_samples']:.2f} smp)")
                pending.append(c)  # a fresh lock's first fits are rough: it may yet be the cleanest
                continue
            candidates.append((_arrival(row, now_canonical_s), float(row["mae_samples"]), c))
        return sorted(candidates), rejected, pending

    def _found(self, candidates: list[tuple[float, float, int]], switched_from: int | None) -> ReferenceChoice:
        first = candidates[0][0]
        tied = [cand for cand in candidates if cand[0] - first <= TIE_SAMPLES]
        _, mae, channel = min(tied, key=lambda cand: (cand[1], cand[2]))
        lead = next((cand[0] - first for cand in candidates if cand[0] - first > TIE_SAMPLES), None)
        lead_text = f"earliest by {lead:.1f} smp" if lead is not None else "the only clean locked channel"
        switched = f", replacing ch{switched_from} (heard later)" if switched_from is not None else ""
        self._first_clean_at = None
        self._chosen_once = True
        self.current = ReferenceChoice(channel, False, f"found: {lead_text}, mae {mae:.2f} smp{switched}")
        return self.current


def _arrival(row: np.void, now_canonical_s: float) -> float:
    """Where this channel's fit puts the present moment, in its own samples: smaller = heard earlier."""
    return float(row["local_sample_at_epoch"]) + now_canonical_s * float(row["rate_hz"])
