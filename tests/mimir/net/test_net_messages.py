"""Wire format: round trips, strict rejections with a cause, and property-based fuzzing of the decoder and the
listener's per-frame rules (never crash, every frame ends in exactly one counter)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimir.net.messages import (
    DECODE_CAUSES,
    MAX_MESSAGE_BYTES,
    SCHEMA_VERSION,
    Ack,
    Anchor,
    AnchorBatch,
    AudioRequest,
    AudioWindow,
    BandStat,
    BufferHealth,
    ClockFitSummary,
    DownEnvelope,
    Envelope,
    MessageRejected,
    Refusal,
    ResponseUpdate,
    SymbolStat,
    decode_downlink,
    decode_uplink,
    encode,
)
from mimir.net.sources import REJECT_CAUSES, SourceTable


def _fit(**kw) -> ClockFitSummary:
    base = dict(codebook_id="mimir-default", seed=0, nominal_rate_hz=48000.0, locked=True, segment=0,
                stream_sample=96000, local_sample_at_epoch=-4_800_000.25, rate_hz=48000.004,
                confidence=0.97, mae_samples=0.02, offset_sigma_samples=0.01, rate_sigma_ppm=0.02,
                anchor_count=9, first_canonical_s=100.2, last_canonical_s=101.8)
    base.update(kw)
    return ClockFitSummary(**base)


BODIES = [
    _fit(),
    _fit(locked=False, local_sample_at_epoch=None, rate_hz=None, confidence=0.0),
    AnchorBatch(segment=0, decoded_unix_ns=1_700_000_000_000_000_000,
                anchors=[Anchor(event_index=501, canonical_s=100.2, local_sample=9600.125, confidence=0.9)]),
    ResponseUpdate(bands=[BandStat(low_hz=2000.0, high_hz=2750.0, gain_db=-1.0, reliability=1.0)],
                   symbols=[SymbolStat(count=3, reliability=1.0)], events_checked=3, confusion_rate=0.0),
    BufferHealth(state="locked", samples_consumed=96000, backlog_messages=3, backlog_dropped_messages=1),
    AudioWindow(request_id=1, status="ok", sample_rate_hz=48000.0, local_start_sample=10, scale=1e-4,
                pcm_s16le=b"\x01\x00\xff\xff"),
]


def _env(body, seq: int = 0, low: int = 0, source: str = "phone-left", session: int = 7, v: int = SCHEMA_VERSION):
    return Envelope(v=v, source_id=source, session=session, seq=seq, low_water=low, sent_unix_ns=1, body=body)


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_every_kind_round_trips(body):
    env = _env(body, seq=5, low=3)
    assert decode_uplink(encode(env)) == env


def test_downlink_round_trips():
    for body in (Ack(session=7, through=12), Refusal(cause="wrong_source_id", detail="x"),
                 AudioRequest(request_id=3, duration_s=0.5, local_start_sample=None)):
        env = DownEnvelope(v=SCHEMA_VERSION, body=body)
        assert decode_downlink(encode(env)) == env


def test_compact_sizes():
    """The budget behind <= 2 KB/s: a fit report < 200 bytes, an anchor < 50 bytes."""
    assert len(encode(_env(_fit()))) < 200
    one = len(encode(_env(BODIES[2])))
    two = len(encode(_env(AnchorBatch(segment=0, decoded_unix_ns=1, anchors=BODIES[2].anchors * 2))))
    assert two - one < 50


def _cause(raw: bytes) -> str:
    with pytest.raises(MessageRejected) as info:
        decode_uplink(raw)
    return info.value.cause


def test_rejections_name_their_cause():
    good = encode(_env(_fit()))
    assert _cause(good[:-3]) == "truncated"
    assert _cause(b"") == "truncated"
    assert _cause(good + b"\x00") == "malformed"
    assert _cause(b"\xc1") == "malformed"
    assert _cause(encode(_env(_fit(), v=2))) == "wrong_schema"
    assert _cause(b"\x00" * (MAX_MESSAGE_BYTES + 1)) == "oversized"
    assert _cause(encode(_env(_fit(), seq=3, low=4))) == "malformed"  # low-water above its own seq
    assert _cause(encode(_env(_fit(confidence=float("nan"))))) == "malformed"
    assert _cause(encode(_env(_fit(local_sample_at_epoch=float("inf"))))) == "malformed"
    assert _cause(encode(_env(_fit(), source="not/a/name"))) == "malformed"
    too_many = AnchorBatch(segment=0, decoded_unix_ns=1, anchors=BODIES[2].anchors * 65)
    assert _cause(encode(_env(too_many))) == "malformed"
    # an unknown body tag, and an envelope with an extra field
    as_list = msgspec.msgpack.decode(encode(_env(_fit())))
    assert _cause(msgspec.msgpack.encode(as_list[:-1] + [[99, 1, 2]])) == "malformed"
    assert _cause(msgspec.msgpack.encode(as_list + [1])) == "malformed"
    assert _cause(encode(_env(AudioWindow(request_id=1, status="ok", sample_rate_hz=48000.0,
                                          pcm_s16le=b"\x01")))) == "malformed"


# ---------------------------------------------------------------------------------------------------- fuzzing
_valid = [encode(_env(b, seq=i, low=max(0, i - 2))) for i, b in enumerate(BODIES)]


@st.composite
def _mutated(draw) -> bytes:
    raw = bytearray(draw(st.sampled_from(_valid)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "splice"]))
        if op == "flip" and raw:
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] = draw(st.integers(0, 255))
        elif op == "cut" and raw:
            raw = raw[: draw(st.integers(0, len(raw) - 1))]
        elif op == "insert":
            i = draw(st.integers(0, len(raw)))
            raw[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            other = draw(st.sampled_from(_valid))
            i = draw(st.integers(0, len(raw)))
            raw = raw[:i] + other[draw(st.integers(0, len(other))):]
    return bytes(raw)


_frames = st.one_of(st.binary(max_size=300), _mutated(), st.sampled_from(_valid))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames)
def test_fuzz_decoder_never_crashes_and_names_a_cause(raw):
    try:
        env = decode_uplink(raw)
    except MessageRejected as exc:
        assert exc.cause in DECODE_CAUSES
    else:
        assert isinstance(env, Envelope) and env.low_water <= env.seq


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frames, min_size=1, max_size=25))
def test_fuzz_listener_rules_count_every_frame_exactly_once(frames):
    table = SourceTable([("phone-left", "trusted-evidence")], codebook=("mimir-default", 0))
    verdicts = [table.ingest("phone-left", raw, routing_id=b"r").verdict for raw in frames]
    assert set(verdicts) <= {"accepted", *REJECT_CAUSES}
    (status,) = table.status()
    c = status.counters
    assert c.accepted + c.rejected.total() == len(frames)
    assert c.accepted == verdicts.count("accepted")


def test_listener_rules_identity_duplicates_sessions_and_losses():
    table = SourceTable([("phone-left", "trusted-evidence"), ("raven", "observe-only")])
    ok = encode(_env(_fit(), seq=0))
    assert table.ingest("phone-left", ok).verdict == "accepted"
    assert table.ingest("phone-left", ok).verdict == "duplicate"          # replayed
    assert table.ingest("raven", ok).verdict == "wrong_source_id"         # raven's key claiming phone-left
    assert table.ingest(None, ok).verdict == "unauthenticated"
    # seq 1 and 2 never arrive; the sender's low-water mark (3) says they never will
    assert table.ingest("phone-left", encode(_env(_fit(), seq=3, low=3))).verdict == "accepted"
    # a restarted receiver (larger session) starts again at 0; the old session is stale now
    assert table.ingest("phone-left", encode(_env(_fit(), seq=0, session=8))).verdict == "accepted"
    assert table.ingest("phone-left", encode(_env(_fit(), seq=4, low=4, session=7))).verdict == "stale"
    c = table.status()[0].counters
    assert (c.accepted, c.lost, c.sessions) == (3, 2, 2)
    assert (c.rejected.duplicate, c.rejected.stale) == (1, 1)
    assert table.status()[1].counters.rejected.wrong_source_id == 1


def test_older_fit_never_replaces_a_newer_one_whatever_its_timestamp():
    table = SourceTable([("phone-left", "trusted-evidence")])
    newer = _env(_fit(local_sample_at_epoch=-1000.0), seq=5, low=0)
    older = Envelope(v=1, source_id="phone-left", session=7, seq=4, low_water=0,
                     sent_unix_ns=2**62, body=_fit(local_sample_at_epoch=-2000.0))  # "sent later" by its timestamp
    table.ingest("phone-left", encode(newer))
    assert table.ingest("phone-left", encode(older)).verdict == "accepted"
    status = table.status()[0]
    assert status.clock_fit.local_sample_at_epoch == -1000.0
    assert status.counters.superseded == 1 and status.counters.reordered == 1


def test_event_claims_follow_the_trust_level():
    table = SourceTable([("a", "observe-only"), ("b", "candidate-evidence"), ("c", "trusted-evidence")],
                        codebook=("mimir-default", 0))
    for sid in "abc":
        table.ingest(sid, encode(_env(_fit(), seq=0, source=sid)))
        table.ingest(sid, encode(_env(BODIES[2], seq=1, source=sid)))
    claims = table.drain_claims()
    kinds = {(c.source_id, c.kind) for c in claims}
    assert ("a", "anchor") not in kinds and ("a", "clock_fit") not in kinds
    assert {("b", "anchor"), ("b", "clock_fit"), ("c", "anchor"), ("c", "clock_fit")} <= kinds
    anchor = next(c for c in claims if c.source_id == "c" and c.kind == "anchor")
    assert anchor.canonical_ns == 100_200_000_000 and anchor.evidence_class == "trusted"
    assert anchor.influences_canonical
    assert not next(c for c in claims if c.source_id == "b" and c.kind == "anchor").influences_canonical
    by_id = {s.source_id: s for s in table.status()}
    assert [by_id[x].influences_canonical for x in "abc"] == [False, False, True]
    # another codebook never influences, whatever the trust
    other = SourceTable([("c", "canonical-authority")], codebook=("mimir-default", 0))
    other.ingest("c", encode(_env(_fit(codebook_id="elsewhere"), seq=0, source="c")))
    assert not other.status()[0].influences_canonical
    assert "another codebook" in other.status()[0].decision.reason
