"""Trust policy for remote receivers: what a source's reports may affect. Small, pure, no I/O.

Levels, lowest first (the config's ``network.sources[].trust``; default ``observe-only``):

=====================  ==================================================================================
``reject``             the key is known but refused at the CURVE handshake; nothing it says is read.
``observe-only``       reports are decoded and shown (status, counters); no evidence reaches the reservoir.
``candidate-evidence`` anchors and fits go to the reservoir as event claims marked *candidate*.
``trusted-evidence``   event claims marked *trusted*.
``canonical-authority`` trusted, and the supervisor may select it as the clock that defines canonical time.
=====================  ==================================================================================

A key that is not in the config is refused (``unknown key``); knowing the codebook
grants nothing, since only a listed key can send at all.

A source *influences canonical time* only when all hold: its level is at or above
``network.influence_at``; it has a locked fit with confidence >= ``min_confidence``
made from the rig's own codebook; and that fit arrived within ``max_fit_age_s``
(by the listener's own clock: packet timestamps never count).
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["TRUST_LEVELS", "UNKNOWN_KEY", "TrustDecision", "TrustLevel", "decide", "rank"]

EvidenceClass = Literal["none", "candidate", "trusted"]
TrustLevel = Literal["reject", "observe-only", "candidate-evidence", "trusted-evidence", "canonical-authority"]
TRUST_LEVELS: tuple[str, ...] = ("reject", "observe-only", "candidate-evidence", "trusted-evidence",
                                 "canonical-authority")


class TrustDecision(msgspec.Struct, frozen=True, kw_only=True):
    """What one source's reports may do right now, and why (``reason`` is for people)."""

    level: str
    accepts_connection: bool
    records_state: bool
    emits_evidence: bool
    evidence_class: EvidenceClass
    influences_canonical: bool
    canonical_authority: bool
    reason: str


def rank(level: str) -> int:
    """Position of ``level`` in :data:`TRUST_LEVELS`; ``ValueError`` for an unknown level."""
    try:
        return TRUST_LEVELS.index(level)
    except ValueError:
        raise ValueError(f"unknown trust level {level!r}; one of {', '.join(TRUST_LEVELS)}") from None


UNKNOWN_KEY = TrustDecision(level="reject", accepts_connection=False, records_state=False, emits_evidence=False,
                            evidence_class="none", influences_canonical=False, canonical_authority=False,
                            reason="unknown key")


def decide(level: str, *, influence_at: str, fit_locked: bool = False, fit_confidence: float = 0.0,
           fit_age_s: float | None = None, codebook_matches: bool | None = None, min_confidence: float = 0.5,
           max_fit_age_s: float = 10.0) -> TrustDecision:
    """The decision for a configured source at ``level`` given the state of its latest fit.

    ``codebook_matches``: None when the listener was not told the rig's codebook
    (then it is not checked), else whether the source's fit used it.
    """
    r = rank(level)
    threshold = rank(influence_at)
    if r == 0:
        return TrustDecision(level=level, accepts_connection=False, records_state=False, emits_evidence=False,
                             evidence_class="none", influences_canonical=False, canonical_authority=False,
                             reason="trust = reject in the config")
    evidence: EvidenceClass = "none" if r < 2 else ("candidate" if r == 2 else "trusted")
    reasons = []
    if r < threshold:
        reasons.append(f"trust {level} is below influence_at = {influence_at}")
    if codebook_matches is False:
        reasons.append("reports use another codebook")
        evidence = "none"
    if fit_age_s is None:
        reasons.append("no fit received")
    elif not fit_locked:
        reasons.append("no locked fit")
    elif fit_confidence < min_confidence:
        reasons.append(f"fit confidence {fit_confidence:.2f} < {min_confidence:.2f}")
    if fit_age_s is not None and fit_age_s > max_fit_age_s:
        reasons.append(f"last fit is {fit_age_s:.0f} s old")
    influences = not reasons
    return TrustDecision(
        level=level, accepts_connection=True, records_state=True, emits_evidence=evidence != "none",
        evidence_class=evidence, influences_canonical=influences,
        canonical_authority=influences and level == "canonical-authority",
        reason="influences canonical time" if influences else "; ".join(reasons),
    )
