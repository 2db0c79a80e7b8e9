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
by the smaller fit error. A found reference is kept while it stays locked;
canonical time is never locked on a channel that is neither declared nor
found (:attr:`ReferenceChoice.channel` is None, with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ReferenceChooser", "ReferenceChoice", "MIN_CONFIDENCE", "MAX_MAE_SAMPLES", "TIE_SAMPLES"]

MIN_CONFIDENCE = 0.9
MAX_MAE_SAMPLES = 0.5
TIE_SAMPLES = 0.5
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

    def __init__(self, roles: tuple[str, ...] = (), declared: int | None = None) -> None:
        self.roles = roles
        self.declared = declared
        self.current: ReferenceChoice = ReferenceChoice(declared, True, "declared in the channel map") \
            if declared is not None else ReferenceChoice(None, False, "waiting for locked channels")

    def _role(self, channel: int) -> str:
        return self.roles[channel] if channel < len(self.roles) else ""

    def choose(self, rows: np.ndarray, now_canonical_s: float) -> ReferenceChoice:
        """The reference given the present fit rows (``FitRow`` records of every channel)."""
        if self.declared is not None:
            locked = self.declared < len(rows) and bool(rows[self.declared]["locked"])
            self.current = ReferenceChoice(self.declared, True, "declared in the channel map" if locked else
                                           "declared in the channel map, not locked: is the witness reaching it?")
            return self.current
        current = self.current.channel
        if current is not None and current < len(rows) and rows[current]["locked"]:
            return self.current  # a found reference is kept while it holds its lock
        candidates = []
        rejected = []
        for c, row in enumerate(rows):
            if self._role(c) in NOT_REFERENCES or not row["locked"] or row["rate_hz"] <= 0:
                continue
            if row["confidence"] < MIN_CONFIDENCE or row["mae_samples"] > MAX_MAE_SAMPLES:
                rejected.append(f"ch{c} locked but not clean (confidence {row['confidence']:.2f}, "
                                f"mae {row['mae_samples']:.2f} smp)")
                continue
            # Where this channel's fit puts the present moment, in its own samples: smaller = heard earlier.
            arrival = float(row["local_sample_at_epoch"]) + now_canonical_s * float(row["rate_hz"])
            candidates.append((arrival, float(row["mae_samples"]), c))
        if not candidates:
            why = "; ".join(rejected) if rejected else "no channel that may be a reference is locked"
            self.current = ReferenceChoice(None, False, f"none found: {why}")
            return self.current
        candidates.sort()
        first = candidates[0][0]
        tied = [cand for cand in candidates if cand[0] - first <= TIE_SAMPLES]
        arrival, mae, channel = min(tied, key=lambda cand: (cand[1], cand[2]))
        lead = next((cand[0] - first for cand in candidates if cand[0] - first > TIE_SAMPLES), None)
        lead_text = f"earliest by {lead:.1f} smp" if lead is not None else "the only clean locked channel"
        self.current = ReferenceChoice(channel, False, f"found: {lead_text}, mae {mae:.2f} smp")
        return self.current
