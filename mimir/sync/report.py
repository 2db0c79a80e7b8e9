"""The receiver's output: msgspec Structs serialised with the spec's camelCase names.

``SyncReport`` follows the distributed receiver spec (``sourceId``,
``codebookId``, ``canonicalClockFit``, ``anchors``, ``responseProfile``,
``health``) and adds the segment / discontinuity history and plain-language
status so a report read on its own says what happened.

Two vocabularies, one declaration: Python attributes carry the project's
names (``rate_hz``, ``mae_samples``, ``local_sample_at_epoch``,
``canonical_s``..., as in :class:`mimir.descriptors.FitRow` and
:class:`mimir.net.messages.ClockFitSummary`); the JSON wire format keeps the
spec's camelCase names (``rename="camel"``, and ``msgspec.field(name=...)``
where the two differ, e.g. ``rate_hz`` is ``effectiveSampleRate``). The wire
names do not change: ``tests/mimir/sync/test_report.py`` pins them.

Mapping (per segment): ``local_sample = local_sample_at_epoch +
canonical_s * rate_hz`` (on the wire ``localSampleAtEpoch``,
``effectiveSampleRate``).

``confidence`` is 0 when nothing is locked. Otherwise it is
``p_lock * exp(-sigma / 1 sample) * freshness`` where ``sigma`` is the fit's
predicted 1-sigma error (samples) at the newest anchor, ``p_lock`` the
probability that the code lock is right, and ``freshness`` decays when anchors
stop arriving. So 0.9 means about 0.1 sample, 0.37 about 1 sample, and higher
confidence does mean smaller error.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "ClockFitReport", "AnchorReport", "BandResponse", "SymbolResponse", "PathProfile", "ResponseProfile",
    "Health", "SegmentReport", "DiscontinuityReport", "SyncReport", "encode_report",
]


class ClockFitReport(msgspec.Struct, rename="camel"):
    local_sample_at_epoch: float | None = None
    rate_hz: float | None = msgspec.field(default=None, name="effectiveSampleRate")
    confidence: float = 0.0
    mae_samples: float | None = msgspec.field(default=None, name="meanAbsErrorSamples")  # mean |residual| of the anchors
    offset_sigma_samples: float | None = None  # predicted 1-sigma: the fit's and the first arrival's timing together
    rate_sigma_ppm: float | None = None
    anchor_count: int = 0
    first_canonical_s: float | None = msgspec.field(default=None, name="firstCanonicalSeconds")
    last_canonical_s: float | None = msgspec.field(default=None, name="lastCanonicalSeconds")
    # path calibration applied: the fit maps to emission, not arrival
    path_delay_s: float = msgspec.field(default=0.0, name="pathDelaySeconds")
    reference: str = "direct path"  # what the fit times: "direct path", or "timing reference" before a channel estimate


class AnchorReport(msgspec.Struct, rename="camel"):
    event_index: int
    canonical_s: float = msgspec.field(name="canonicalSeconds")
    local_sample: float
    confidence: float
    symbols: list[int]  # the code-valid run that identifies the event: schedule[i-2], schedule[i-1], schedule[i]
    residual_samples: float = 0.0


class BandResponse(msgspec.Struct, rename="camel"):
    low_hz: float
    high_hz: float
    gain_db: float | None = None  # received/template amplitude relative to the whole band
    reliability: float | None = None  # fraction of anchors where this sub-band alone was detectable (SNR >= 4)
    timing_residual_samples: float | None = None  # mean delay of this sub-band minus the wide-band delay


class SymbolResponse(msgspec.Struct, rename="camel"):
    symbol: int
    count: int = 0  # events of this symbol checked while locked
    reliability: float | None = None  # fraction decoded as this symbol
    mean_score: float | None = None  # mean z of the symbol at its anchors
    timing_residual_samples: float | None = None  # mean fit residual of its anchors


class PathProfile(msgspec.Struct, rename="camel"):
    """The acoustic path as the witness measured it (:mod:`mimir.sync.channel`).

    Offsets are in samples relative to the receiver's timing reference (where
    its matched filter first locked, usually the strongest energy); the clock
    fit is reported at the first arrival (the direct path), minus the path
    calibration's delay when one is given. ``quality`` (0-1) multiplies the
    fit's confidence; ``notes`` say why it is below 1.
    """

    events: int = 0  # events in the channel estimate (exponentially weighted, memory ~128)
    first_arrival_offset_samples: float | None = None  # the direct path: earliest arrival above the floor
    strongest_arrival_offset_samples: float | None = None
    strongest_minus_direct_samples: float | None = None
    strongest_minus_direct_ms: float | None = None
    direct_to_strongest_db: float | None = None  # direct path level relative to the strongest path
    first_arrival_snr_db: float | None = None  # first arrival above the pre-arrival floor
    first_arrival_sigma_samples: float | None = None  # predicted 1-sigma error of its timing
    # the room measurement (mimir.sync.room_response: the witness's response over 4 s blocks; None before the
    # first block, about 12 s after lock, and where the response's dynamic range does not show the decay)
    direct_to_reverberant_db: float | None = None  # energy within +-2.5 ms of the direct path vs all later energy
    rt60_s: float | None = msgspec.field(default=None, name="rt60Seconds")  # 60 dB over the decay's slope (rt60Method)
    rt60_method: str | None = None  # "T20" (-5 to -25 dB of the decay) or "EDT" (0 to -10 dB: a floor too high for T20)
    quality: float = 0.0
    ambiguous: bool = True
    notes: list[str] = []
    path_delay_samples: float | None = None  # the path calibration's delay (known acoustic path), if given
    direct_path_local_sample_at_epoch: float | None = None  # fit at the direct path's arrival (no calibration)
    strongest_path_local_sample_at_epoch: float | None = None  # fit at the strongest path's arrival


class ResponseProfile(msgspec.Struct, rename="camel"):
    bands: list[BandResponse] = []
    symbols: list[SymbolResponse] = []
    events_checked: int = 0
    confusion_rate: float | None = None
    path: PathProfile | None = None


class Health(msgspec.Struct, rename="camel"):
    state: str = "searching"
    samples_consumed: int = 0
    non_finite_samples: int = 0
    gap_samples: int = 0
    proposals: int = 0
    candidates_scored: int = 0
    hypotheses_spawned: int = 0
    anchors_accepted: int = 0
    anchors_rejected: int = 0
    events_missed: int = 0
    locks: int = 0
    relocks: int = 0
    lock_rejections: int = 0
    discontinuities: int = 0
    template_rate_updates: int = 0


class SegmentReport(msgspec.Struct, rename="camel"):
    start_local_sample: float
    local_sample_at_epoch: float
    rate_hz: float = msgspec.field(name="effectiveSampleRate")
    anchor_count: int
    end_local_sample: float | None = None


class DiscontinuityReport(msgspec.Struct, rename="camel"):
    local_sample: float
    kind: str  # "jump" (small, found by residuals), "relock" (lost and found elsewhere), "clock_reset"
    jump_samples: float | None = None


class SyncReport(msgspec.Struct, rename="camel"):
    source_id: str
    codebook_id: str
    seed: int
    nominal_rate_hz: float = msgspec.field(name="nominalSampleRate")
    locked: bool
    status: str
    canonical_clock_fit: ClockFitReport
    anchors: list[AnchorReport]
    response_profile: ResponseProfile
    health: Health
    segments: list[SegmentReport] = []
    discontinuities: list[DiscontinuityReport] = []
    warnings: list[str] = []


def encode_report(report: SyncReport) -> bytes:
    return msgspec.json.encode(report)
