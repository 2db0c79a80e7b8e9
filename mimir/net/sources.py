"""What the listener knows about each remote source, and the rules that update it. No sockets, no threads.

:class:`SourceTable` is owned by the listener's thread (the supervisor loop).
:meth:`SourceTable.ingest` takes one authenticated frame (the identity comes from
the CURVE key via ZAP, never from the message) and returns what to send back.
Every frame ends in exactly one counter: ``accepted`` or one rejection cause.

Rules
    * identity: the message's ``source_id`` must equal the key's source id
      (else ``wrong_source_id``);
    * sessions: a larger session id is a restarted receiver (state about its old
      fit is dropped); a smaller one is ``stale``, unless the current session has
      been silent for ``session_takeover_s`` (a receiver whose clock stepped back);
    * sequence numbers (:class:`~mimir.net.seqwindow.SeqWindow`): repeats are
      ``duplicate`` (and re-acknowledged), gaps the sender gave up on are ``lost``;
    * a fit, health or response report replaces the stored one only if its
      sequence number is newer: transport order and packet timestamps never
      decide which fit is current;
    * anchors are de-duplicated by event index per session;
    * rate: a token bucket per source (``max_messages_per_s``, saving up to
      ``message_burst``, one full receiver backlog) bounds the frames read from
      it; a frame over the rate is ``rate_limited`` before it is decoded, is not
      acknowledged, and the receiver sends it again later (its backlog keeps it);
    * claims: another token bucket per source (``claim_limits``) bounds the
      event claims it makes; a claim over it is counted in
      ``claims_rate_limited`` and never queued, so no source's flood can push
      another's claims out of the bounded queue;
    * time echoes (:class:`~mimir.net.messages.TimeEcho`) are unsequenced: after
      the identity check they are counted in ``time_echoes`` (not ``accepted``)
      and judged by the source's :class:`~mimir.net.probes.ProbeBook` (used, or
      refused by cause); they never start a session, take a sequence number or
      get acknowledged. So every frame ends in exactly one of ``accepted``,
      ``time_echoes`` or one rejection cause.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from mimir.config import NetworkConfig
from mimir.reservoir.ids import hash_source_id

from .claims import ClaimLimits
from .messages import (
    AnchorBatch,
    AudioWindow,
    BufferHealth,
    ClockFitSummary,
    Envelope,
    MessageRejected,
    ResponseUpdate,
    TimeEcho,
    body_kind,
    decode_uplink,
)
from .probes import ProbeBook, TimeTransferStatus
from .ratelimit import TokenBucket
from .seqwindow import SeqWindow
from .trust import TrustDecision, decide

__all__ = [
    "REJECT_CAUSES",
    "EventClaim",
    "IngestResult",
    "RejectCounts",
    "RemoteClockFit",
    "RemoteSourceStatus",
    "SourceCounters",
    "SourceState",
    "SourceTable",
]

REJECT_CAUSES: tuple[str, ...] = (
    "unknown_key", "refused_by_policy", "wrong_source_id", "malformed", "oversized", "truncated", "duplicate",
    "wrong_schema", "stale", "out_of_window", "unauthenticated", "rate_limited",
)
MAX_MESSAGES_PER_S = NetworkConfig().max_messages_per_s  # about 10 a second; retransmissions come in bursts
MESSAGE_BURST = 1024         # one full receiver backlog (mimir.net.backlog.Backlog's default) at once


class RejectCounts(msgspec.Struct, kw_only=True):
    """Frames (or, for the first two, handshakes) refused, by cause."""

    unknown_key: int = 0         # CURVE handshakes with a key not in the config (listener-wide only)
    refused_by_policy: int = 0   # handshakes of a known key whose trust is `reject`
    wrong_source_id: int = 0     # the message claims another source id than its key's
    malformed: int = 0           # not a valid message (bad structure, types, ranges, framing)
    oversized: int = 0           # larger than the message size limit
    truncated: int = 0           # cut short (or empty)
    duplicate: int = 0           # a sequence number already received (replay or retransmission)
    wrong_schema: int = 0        # another schema version
    stale: int = 0               # from a superseded session of this source
    out_of_window: int = 0       # sequence number too far ahead of what was received
    unauthenticated: int = 0     # no authenticated identity on the frame (should never happen with CURVE + ZAP)
    rate_limited: int = 0        # over the source's message rate: not read, not acknowledged (the sender retries)

    def total(self) -> int:
        return sum(getattr(self, f) for f in self.__struct_fields__)


class SourceCounters(msgspec.Struct, kw_only=True):
    accepted: int = 0
    accepted_bytes: int = 0
    clock_fits: int = 0
    anchor_batches: int = 0
    responses: int = 0
    healths: int = 0
    audio_windows: int = 0
    superseded: int = 0          # accepted, but an equal-kind report with a newer sequence was already applied
    reordered: int = 0           # accepted after a message with a larger sequence number
    lost: int = 0                # sequence numbers the sender dropped before they arrived here
    sessions: int = 0            # receiver sessions seen (restarts + 1)
    anchors: int = 0             # distinct anchors received
    anchors_repeated: int = 0    # anchors of an event index already received in this session
    audio_unsolicited: int = 0   # audio windows nobody asked for (dropped)
    event_claims: int = 0        # claims made (queued for the observed store, mimir.net.claims)
    claims_rate_limited: int = 0  # claims over the source's claim rate: never made
    connections: int = 0         # connections its frames came over (1 + reconnections, e.g. after a dropped one)
    time_echoes: int = 0         # time echoes read (unsequenced; each is used or refused: time_transfer)
    rejected: RejectCounts = msgspec.field(default_factory=RejectCounts)


class RemoteClockFit(msgspec.Struct, kw_only=True):
    """A source's latest fit: ``local_sample = local_sample_at_epoch + canonical_s * rate_hz``."""

    locked: bool
    codebook_id: str
    seed: int
    nominal_rate_hz: float
    local_sample_at_epoch: float | None
    rate_hz: float | None
    confidence: float
    mae_samples: float | None
    offset_sigma_samples: float | None
    rate_sigma_ppm: float | None
    anchor_count: int
    first_canonical_s: float | None
    last_canonical_s: float | None
    segment: int
    sequence: int
    age_s: float


class RemoteSourceStatus(msgspec.Struct, kw_only=True):
    source_id: str
    trust: str
    decision: TrustDecision
    influences_canonical: bool
    connected: bool
    peer_address: str
    session: int | None
    last_sequence: int
    acked_through: int
    last_message_age_s: float | None
    clock_fit: RemoteClockFit | None
    health: dict | None                     # the latest BufferHealth report, by field name
    response: dict | None                   # the latest ResponseUpdate: bands, symbols, events_checked, confusion_rate
    counters: SourceCounters
    network_delay_ms_p50: float | None      # arrival minus the sender's send time: metadata, needs synced clocks
    decode_to_state_ms_p50: float | None    # anchor decoded (sender clock) -> applied here (same caveat)
    decode_to_state_ms_p99: float | None
    time_transfer: TimeTransferStatus = msgspec.field(default_factory=TimeTransferStatus)  # mimir.net.probes


ClaimKind = Literal["anchor", "clock_fit", "trust"]


class EventClaim(msgspec.Struct, frozen=True, kw_only=True):
    """Evidence for the reservoir (SampleKind.EVENT_CLAIM). ``canonical_ns``: the canonical time the claim is about
    (the anchor's event; a fit's newest anchor; None for a trust decision). ``arrival_ns``: time.monotonic_ns() here."""

    source_id: str
    sensor_id_hash: int
    kind: ClaimKind
    canonical_ns: int | None
    arrival_ns: int
    sequence: int
    evidence_class: str
    influences_canonical: bool
    event_index: int | None = None
    local_sample: float | None = None
    confidence: float = 0.0
    detail: str = ""


@dataclass
class IngestResult:
    verdict: str                                  # "accepted", "time_echo" or a rejection cause
    ack: tuple[int, int] | None = None            # (session, through) to acknowledge
    refusal: tuple[str, str] | None = None        # (cause, detail) worth telling the sender
    echo: str | None = None                       # for a time echo: "used" or its cause (mimir.net.probes)


def _response_dict(r: ResponseUpdate) -> dict:
    return {"bands": [msgspec.structs.asdict(b) for b in r.bands],
            "symbols": [msgspec.structs.asdict(x) for x in r.symbols],
            "events_checked": r.events_checked, "confusion_rate": r.confusion_rate}


def _percentile_ms(values: deque, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))] / 1e6


@dataclass
class SourceState:
    """Everything about one configured source. Mutated only by :class:`SourceTable` (one thread)."""

    source_id: str
    trust: str
    sensor_id_hash: int
    decision: TrustDecision
    counters: SourceCounters = field(default_factory=SourceCounters)
    session: int | None = None
    window: SeqWindow = field(default_factory=SeqWindow)
    routing_id: bytes | None = None
    peer_address: str = ""
    last_message_ns: int | None = None
    fit: ClockFitSummary | None = None
    fit_seq: int = -1
    fit_arrival_ns: int = 0
    health: BufferHealth | None = None
    health_seq: int = -1
    response: ResponseUpdate | None = None
    response_seq: int = -1
    anchors_seen: set[int] = field(default_factory=set)
    anchors_order: deque = field(default_factory=lambda: deque(maxlen=1024))
    recent_anchors: deque = field(default_factory=lambda: deque(maxlen=64))
    audio_windows: dict[int, AudioWindow] = field(default_factory=dict)
    pending_audio: set[int] = field(default_factory=set)
    network_delay_ns: deque = field(default_factory=lambda: deque(maxlen=512))
    decode_to_state_ns: deque = field(default_factory=lambda: deque(maxlen=4096))
    claim_seq: int = 0
    last_refusal_ns: int = 0
    bucket: TokenBucket | None = None        # frames read
    claim_bucket: TokenBucket | None = None  # claims made
    time: ProbeBook = field(default_factory=ProbeBook)  # the time transfer with this source

    def new_session(self, session: int, window: int) -> None:
        self.session = session
        self.time.new_session(session)
        self.window = SeqWindow(window)
        self.fit = self.health = self.response = None
        self.fit_seq = self.health_seq = self.response_seq = -1
        self.anchors_seen.clear()
        self.anchors_order.clear()
        self.recent_anchors.clear()
        self.counters.sessions += 1


class SourceTable:
    """The per-source state of one listener: one entry per configured source (``reject`` ones included)."""

    def __init__(self, sources: list[tuple[str, str]], *, influence_at: str = "trusted-evidence",
                 codebook: tuple[str, int] | None = None, min_confidence: float = 0.5, max_fit_age_s: float = 10.0,
                 session_takeover_s: float = 30.0, window: int = 8192, connected_within_s: float = 5.0,
                 max_claims: int = 8192, on_event_claim: Callable[[EventClaim], None] | None = None,
                 max_messages_per_s: float = MAX_MESSAGES_PER_S, message_burst: int = MESSAGE_BURST,
                 claim_limits: ClaimLimits | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns, unix_ns: Callable[[], int] = time.time_ns) -> None:
        self.influence_at = influence_at
        self.codebook = codebook
        self.min_confidence = min_confidence
        self.max_fit_age_s = max_fit_age_s
        self.session_takeover_ns = int(session_takeover_s * 1e9)
        self.window = window
        self.connected_within_ns = int(connected_within_s * 1e9)
        self.on_event_claim = on_event_claim
        self.clock_ns = clock_ns
        self.unix_ns = unix_ns
        self.claims: deque[EventClaim] = deque()
        self.max_claims = max_claims
        self.claims_dropped = 0
        self.unattributed = RejectCounts()
        self.states: dict[str, SourceState] = {}
        now = clock_ns()
        claim_limits = claim_limits or ClaimLimits()
        for source_id, level in sources:
            st = SourceState(source_id=source_id, trust=level, sensor_id_hash=hash_source_id(f"remote.{source_id}"),
                             decision=decide(level, influence_at=influence_at),
                             bucket=TokenBucket(max_messages_per_s, message_burst, now),
                             claim_bucket=TokenBucket(claim_limits.per_second, claim_limits.burst, now))
            self.states[source_id] = st

    # ------------------------------------------------------------------------------------------------ decisions
    def _decision(self, st: SourceState, now_ns: int) -> TrustDecision:
        fit = st.fit
        matches = None
        if self.codebook is not None and fit is not None:
            matches = (fit.codebook_id, fit.seed) == self.codebook
        return decide(
            st.trust, influence_at=self.influence_at, fit_locked=bool(fit and fit.locked),
            fit_confidence=fit.confidence if fit else 0.0,
            fit_age_s=(now_ns - st.fit_arrival_ns) / 1e9 if fit else None,
            codebook_matches=matches, min_confidence=self.min_confidence, max_fit_age_s=self.max_fit_age_s,
        )

    def refresh(self, now_ns: int | None = None) -> None:
        """Re-evaluate every decision (fits age even when nothing arrives); emits trust claims on changes."""
        now_ns = self.clock_ns() if now_ns is None else now_ns
        for st in self.states.values():
            if st.decision.records_state:
                self._update_decision(st, now_ns)

    def _update_decision(self, st: SourceState, now_ns: int) -> None:
        new = self._decision(st, now_ns)
        if new != st.decision:
            st.decision = new
            self._claim(st, "trust", None, now_ns, detail=new.reason)

    def _claim(self, st: SourceState, kind: ClaimKind, canonical_ns: int | None, now_ns: int, **extra) -> None:
        assert st.claim_bucket is not None  # SourceTable gives every source its buckets
        if not st.claim_bucket.take(now_ns):
            st.counters.claims_rate_limited += 1
            return
        st.claim_seq += 1
        st.counters.event_claims += 1
        claim = EventClaim(source_id=st.source_id, sensor_id_hash=st.sensor_id_hash, kind=kind,
                           canonical_ns=canonical_ns, arrival_ns=now_ns, sequence=st.claim_seq,
                           evidence_class=st.decision.evidence_class,
                           influences_canonical=st.decision.influences_canonical, **extra)
        if self.on_event_claim is not None:
            self.on_event_claim(claim)
            return
        if len(self.claims) >= self.max_claims:
            self.claims.popleft()
            self.claims_dropped += 1
        self.claims.append(claim)

    # ------------------------------------------------------------------------------------------------ time transfer
    def probe_targets(self, now_ns: int) -> list[SourceState]:
        """Sources to probe now: in a session, heard from within ``connected_within_s``, with a connection."""
        return [st for st in self.states.values()
                if st.routing_id is not None and st.session is not None and st.last_message_ns is not None
                and now_ns - st.last_message_ns <= self.connected_within_ns]

    def authority_line(self, source_id: str, now_ns: int | None = None) -> tuple[int, int, float, int] | None:
        """``(origin_host_ns, origin_canonical_ns, scale, uncertainty_ns)`` if ``source_id`` may define canonical
        time now (its trust decision says ``canonical_authority``) and its time-transfer line is ready; else None.

        ``KeyError`` for a source that is not configured. Re-decides trust first (fits age), as :meth:`refresh` does.
        """
        now_ns = self.clock_ns() if now_ns is None else now_ns
        st = self.states[source_id]
        if not st.decision.records_state:
            return None
        self._update_decision(st, now_ns)
        if not st.decision.canonical_authority:
            return None
        line = st.time.line(now_ns)
        if line is None:
            return None
        return line.origin_host_ns, line.origin_canonical_ns, line.scale, line.uncertainty_ns

    def drain_claims(self) -> list[EventClaim]:
        out = list(self.claims)
        self.claims.clear()
        return out

    # ------------------------------------------------------------------------------------------------ ingest
    def reject_unattributed(self, cause: str) -> None:
        setattr(self.unattributed, cause, getattr(self.unattributed, cause) + 1)

    def ingest(self, source_id: str | None, raw: bytes | memoryview, *, routing_id: bytes | None = None,
               peer_address: str = "", now_ns: int | None = None) -> IngestResult:
        """Handle one frame from the peer CURVE authenticated as ``source_id`` (None: no identity)."""
        now_ns = self.clock_ns() if now_ns is None else now_ns
        st = self.states.get(source_id) if source_id is not None else None
        if st is None:
            self.reject_unattributed("unauthenticated")
            return IngestResult("unauthenticated")
        if st.trust == "reject":  # ZAP refuses these keys; a frame can only get here if that changes
            return self._reject(st, "refused_by_policy", "trust = reject", now_ns)
        assert st.bucket is not None  # SourceTable gives every source its buckets
        if not st.bucket.take(now_ns):
            return self._reject(st, "rate_limited", f"over {st.bucket.rate_per_s:g} messages/s; "
                                "send fewer (it will be read when sent again)", now_ns, refuse=True)
        c = st.counters
        try:
            env = decode_uplink(raw)
        except MessageRejected as exc:
            return self._reject(st, exc.cause, exc.detail, now_ns, refuse=True)
        if env.source_id != st.source_id:
            return self._reject(st, "wrong_source_id",
                                f"this key belongs to {st.source_id!r}, the message claims {env.source_id!r}",
                                now_ns, refuse=True)
        if isinstance(env.body, TimeEcho):  # unsequenced: no session change, no window, no acknowledgement
            c.time_echoes += 1
            if env.session == st.session:
                st.last_message_ns = now_ns
            return IngestResult("time_echo", echo=st.time.echo(env.body, env.session, now_ns))
        if st.session is None or env.session > st.session:
            st.new_session(env.session, self.window)
            self._update_decision(st, now_ns)
        elif env.session < st.session:
            quiet = st.last_message_ns is None or now_ns - st.last_message_ns > self.session_takeover_ns
            if not quiet:
                return self._reject(st, "stale", f"session {env.session} is older than {st.session}", now_ns)
            st.new_session(env.session, self.window)
            self._update_decision(st, now_ns)
        if routing_id is not None and routing_id != st.routing_id:
            c.connections += 1
        st.routing_id = routing_id  # replies go to the connection of the current session's newest message
        st.peer_address = peer_address or st.peer_address
        lost_before, reordered_before = st.window.lost, st.window.reordered
        verdict = st.window.offer(env.seq, env.low_water)
        c.lost += st.window.lost - lost_before
        c.reordered += st.window.reordered - reordered_before
        if verdict == "duplicate":
            st.last_message_ns = now_ns
            c.rejected.duplicate = c.rejected.duplicate + 1
            return IngestResult("duplicate", ack=(env.session, st.window.through))
        if verdict == "out_of_window":
            return self._reject(st, "out_of_window", f"seq {env.seq} is beyond the receive window", now_ns,
                                refuse=True)
        st.last_message_ns = now_ns
        c.accepted += 1
        c.accepted_bytes += len(raw)
        st.network_delay_ns.append(self.unix_ns() - env.sent_unix_ns)
        self._apply(st, env, now_ns)  # re-decides trust when a fit arrives; refresh() ages fits
        return IngestResult("accepted", ack=(env.session, st.window.through))

    def _reject(self, st: SourceState, cause: str, detail: str, now_ns: int, refuse: bool = False) -> IngestResult:
        setattr(st.counters.rejected, cause, getattr(st.counters.rejected, cause) + 1)
        refusal = None
        if refuse and now_ns - st.last_refusal_ns >= 1_000_000_000:
            st.last_refusal_ns = now_ns
            refusal = (cause, detail[:240])
        return IngestResult(cause, refusal=refusal)

    def _apply(self, st: SourceState, env: Envelope, now_ns: int) -> None:
        body = env.body
        c = st.counters
        if isinstance(body, ClockFitSummary):
            c.clock_fits += 1
            if env.seq < st.fit_seq:
                c.superseded += 1
                return
            st.fit, st.fit_seq, st.fit_arrival_ns = body, env.seq, now_ns
            self._update_decision(st, now_ns)
            if st.decision.emits_evidence and body.locked and body.last_canonical_s is not None:
                self._claim(st, "clock_fit", int(round(body.last_canonical_s * 1e9)), now_ns,
                            local_sample=body.local_sample_at_epoch, confidence=body.confidence,
                            detail=f"rate {body.rate_hz!r} Hz")
        elif isinstance(body, AnchorBatch):
            c.anchor_batches += 1
            fresh = 0
            for a in body.anchors:
                if a.event_index in st.anchors_seen:
                    c.anchors_repeated += 1
                    continue
                if len(st.anchors_order) == st.anchors_order.maxlen:
                    st.anchors_seen.discard(st.anchors_order[0])
                st.anchors_order.append(a.event_index)
                st.anchors_seen.add(a.event_index)
                st.recent_anchors.append(a)
                c.anchors += 1
                fresh += 1
                if st.decision.emits_evidence:
                    self._claim(st, "anchor", int(round(a.canonical_s * 1e9)), now_ns, event_index=a.event_index,
                                local_sample=a.local_sample, confidence=a.confidence)
            if fresh and body.decoded_unix_ns:
                st.decode_to_state_ns.append(self.unix_ns() - body.decoded_unix_ns)
        elif isinstance(body, BufferHealth):
            c.healths += 1
            if env.seq < st.health_seq:
                c.superseded += 1
                return
            st.health, st.health_seq = body, env.seq
        elif isinstance(body, ResponseUpdate):
            c.responses += 1
            if env.seq < st.response_seq:
                c.superseded += 1
                return
            st.response, st.response_seq = body, env.seq
        elif isinstance(body, AudioWindow):
            if body.request_id not in st.pending_audio:
                c.audio_unsolicited += 1
                return
            c.audio_windows += 1
            st.pending_audio.discard(body.request_id)
            st.audio_windows[body.request_id] = body
            while len(st.audio_windows) > 4:
                st.audio_windows.pop(next(iter(st.audio_windows)))
        else:  # pragma: no cover - the decoder only yields the union's types
            raise AssertionError(body_kind(body))

    # ------------------------------------------------------------------------------------------------ status
    def status(self, now_ns: int | None = None) -> list[RemoteSourceStatus]:
        now_ns = self.clock_ns() if now_ns is None else now_ns
        out = []
        for st in self.states.values():
            fit = None
            if st.fit is not None:
                f = st.fit
                fit = RemoteClockFit(
                    locked=f.locked, codebook_id=f.codebook_id, seed=f.seed, nominal_rate_hz=f.nominal_rate_hz,
                    local_sample_at_epoch=f.local_sample_at_epoch, rate_hz=f.rate_hz,
                    confidence=f.confidence, mae_samples=f.mae_samples,
                    offset_sigma_samples=f.offset_sigma_samples, rate_sigma_ppm=f.rate_sigma_ppm,
                    anchor_count=f.anchor_count, first_canonical_s=f.first_canonical_s,
                    last_canonical_s=f.last_canonical_s, segment=f.segment, sequence=st.fit_seq,
                    age_s=(now_ns - st.fit_arrival_ns) / 1e9,
                )
            age = None if st.last_message_ns is None else (now_ns - st.last_message_ns) / 1e9
            out.append(RemoteSourceStatus(
                source_id=st.source_id, trust=st.trust, decision=st.decision,
                influences_canonical=st.decision.influences_canonical,
                connected=age is not None and age * 1e9 <= self.connected_within_ns,
                peer_address=st.peer_address, session=st.session, last_sequence=st.window.highest,
                acked_through=st.window.through, last_message_age_s=age, clock_fit=fit,
                health=None if st.health is None else msgspec.structs.asdict(st.health),
                response=None if st.response is None else _response_dict(st.response), counters=msgspec.structs.replace(
                    st.counters, rejected=msgspec.structs.replace(st.counters.rejected)),
                network_delay_ms_p50=_percentile_ms(st.network_delay_ns, 50),
                decode_to_state_ms_p50=_percentile_ms(st.decode_to_state_ns, 50),
                decode_to_state_ms_p99=_percentile_ms(st.decode_to_state_ns, 99),
                time_transfer=st.time.status(now_ns),
            ))
        return out
