"""Per-source bounds on remote reports: the message rate (SourceTable) and the observed claim store (ClaimStore).

Invariants: every frame and every claim ends in exactly one counter; the boundaries are exact (one token per
period; a claim at the rig's now is stored, one ns later is refused; a source at its window cap is refused);
one source never pushes another's claims out for capacity.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimir.descriptors import SampleKind
from mimir.net.claims import ClaimCounts, ClaimLimits, ClaimStore
from mimir.net.messages import Anchor, AnchorBatch, Envelope, encode
from mimir.net.ratelimit import TokenBucket
from mimir.net.sources import EventClaim, SourceTable
from mimir.reservoir import ReservoirView
from mimir.reservoir.ids import hash_source_id

S = 1_000_000_000
WINDOW_NS = 5 * S


def claim(source: str, canonical_ns: int | None, arrival_ns: int, seq: int = 1) -> EventClaim:
    return EventClaim(source_id=source, sensor_id_hash=hash_source_id(f"remote.{source}"), kind="anchor",
                      canonical_ns=canonical_ns, arrival_ns=arrival_ns, sequence=seq, evidence_class="candidate",
                      influences_canonical=False)


def identity(arrival_ns: int) -> int:
    return arrival_ns


# ---- the token bucket ------------------------------------------------------------------------------------------
def test_token_bucket_spends_its_burst_then_earns_exactly_one_token_per_period():
    bucket = TokenBucket(rate_per_s=10, burst=3, now_ns=0)
    assert [bucket.take(0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(100_000_000 - 1)   # one ns short of a period
    assert bucket.take(100_000_000)           # exactly one period after empty
    assert not bucket.take(100_000_000)
    assert not bucket.take(50_000_000)        # time going back earns nothing
    assert bucket.take(10 * S) and bucket.tokens == 2  # saved up to the burst, no more
    with pytest.raises(ValueError):
        TokenBucket(float("inf"), 1)


# ---- the message rate ------------------------------------------------------------------------------------------
def _anchor_frame(seq: int, source: str = "phone", event: int | None = None) -> bytes:
    body = AnchorBatch(segment=0, decoded_unix_ns=1, anchors=[Anchor(event_index=seq if event is None else event,
                                                                      canonical_s=1.0, local_sample=0.0,
                                                                      confidence=0.9)])
    return encode(Envelope(v=1, source_id=source, session=1, seq=seq, low_water=0, sent_unix_ns=1, body=body))


def test_a_flood_from_one_key_is_bounded_and_every_frame_is_counted_once():
    """The finding: one key sent 20,000 messages in 0.06 s and all were accepted."""
    table = SourceTable([("phone", "candidate-evidence"), ("raven", "candidate-evidence")],
                        max_messages_per_s=200, message_burst=1024, clock_ns=lambda: 0)
    t0 = 10 * S
    verdicts = [table.ingest("phone", _anchor_frame(i), now_ns=t0 + i * 3000).verdict for i in range(20_000)]
    read = 1024 + 19_999 * 3000 // 5_000_000  # the burst, plus one per 5 ms of the 60 ms flood
    assert verdicts.count("rate_limited") == 20_000 - read
    # of those read, the ones far ahead of the last acknowledged sequence are out of the receive window
    assert verdicts.count("accepted") + verdicts.count("out_of_window") == read
    phone, raven = table.status()
    assert phone.counters.accepted + phone.counters.rejected.total() == 20_000
    assert phone.counters.rejected.rate_limited == 20_000 - read
    # another source is not slowed down by the flood
    assert table.ingest("raven", _anchor_frame(0, "raven"), now_ns=t0 + S).verdict == "accepted"
    assert raven.counters.rejected.rate_limited == 0


def test_a_rate_limited_frame_is_read_when_sent_again():
    table = SourceTable([("phone", "observe-only")], max_messages_per_s=10, message_burst=1, clock_ns=lambda: 0)
    assert table.ingest("phone", _anchor_frame(0), now_ns=S).verdict == "accepted"
    assert table.ingest("phone", _anchor_frame(1), now_ns=S).verdict == "rate_limited"
    assert table.ingest("phone", _anchor_frame(1), now_ns=S + 100_000_000).verdict == "accepted"  # no duplicate
    c = table.status()[0].counters
    assert (c.accepted, c.rejected.rate_limited, c.rejected.duplicate, c.lost) == (2, 1, 0, 0)


def test_claims_over_a_sources_claim_rate_are_never_made_and_other_sources_are_not_slowed():
    """A flood of anchors must not crowd another source's claims out of the listener's bounded queue."""
    table = SourceTable([("phone", "candidate-evidence"), ("raven", "candidate-evidence")], clock_ns=lambda: 0,
                        claim_limits=ClaimLimits(per_second=10, burst=64))
    batch = AnchorBatch(segment=0, decoded_unix_ns=1, anchors=[
        Anchor(event_index=i, canonical_s=1.0, local_sample=0.0, confidence=0.9) for i in range(64)])
    for seq in range(3):  # 192 anchors at once
        frame = encode(Envelope(v=1, source_id="phone", session=1, seq=seq, low_water=0, sent_unix_ns=1,
                                body=AnchorBatch(segment=0, decoded_unix_ns=1, anchors=[
                                    Anchor(event_index=64 * seq + a.event_index, canonical_s=1.0, local_sample=0.0,
                                           confidence=0.9) for a in batch.anchors])))
        assert table.ingest("phone", frame, now_ns=S).verdict == "accepted"
    table.ingest("phone", _anchor_frame(3, event=1000), now_ns=S + 100_000_000)  # a period later: one more
    table.ingest("raven", _anchor_frame(0, "raven"), now_ns=S)
    phone, raven = table.status()
    assert (phone.counters.anchors, phone.counters.event_claims, phone.counters.claims_rate_limited) == (193, 65, 128)
    assert (raven.counters.event_claims, raven.counters.claims_rate_limited) == (1, 0)
    assert len(table.drain_claims()) == 66 and table.claims_dropped == 0


def test_connections_count_each_new_connection_of_a_source():
    table = SourceTable([("phone", "observe-only")], clock_ns=lambda: 0)
    for seq, routing in enumerate([b"a", b"a", b"b", b"b", b"c"]):
        table.ingest("phone", _anchor_frame(seq), routing_id=routing, now_ns=S + seq)
    assert table.status()[0].counters.connections == 3


# ---- the observed claim store ----------------------------------------------------------------------------------
@pytest.fixture
def store(rig):
    s = ClaimStore.create(rig, "obs", sources=2, limits=ClaimLimits(per_window=6), window_ns=WINDOW_NS)
    yield s
    s.close()


def test_a_claim_at_now_is_stored_and_one_ns_later_is_refused(store):
    now = 100 * S
    store.push([claim("a", now + 1, 0), claim("a", now, 1), claim("a", now - WINDOW_NS, 2),
                claim("a", now - WINDOW_NS - 1, 3)], now_ns=now, canonical_of_arrival=identity)
    c = store.counts("a")
    assert (c.stored, c.after_now, c.before_window) == (2, 1, 1)
    assert store.reservoir.status().edge_ns == now  # the rig's now, never a claim's


def test_absurd_future_and_past_claims_are_refused_and_counted(store):
    now = 100 * S
    store.push([claim("a", 10**6 * S + now, 0), claim("a", int(9.99e14 * S), 1), claim("a", -5 * S, 2),
                claim("a", (1 << 64) + 5, 3)], now_ns=now, canonical_of_arrival=identity)
    c = store.counts("a")
    assert (c.after_now, c.before_window, c.stored) == (3, 1, 0)
    assert store.reservoir.status().edge_ns == now


def test_a_trust_claim_is_stamped_with_its_arrival_on_the_rigs_clock_never_after_now(store):
    now = 100 * S
    store.push([claim("a", None, arrival_ns=40 * S), claim("a", None, arrival_ns=500 * S)], now_ns=now,
               canonical_of_arrival=lambda arrival: arrival + 58 * S)
    view = ReservoirView.attach(store.reservoir._m.obj.rig, "obs")
    try:
        stamps = [view.read(i).timestamp_ns for i in range(view.count())]
    finally:
        view.close()
    assert stamps == [98 * S, now] and store.counts("a").stored == 2


def test_the_window_cap_holds_per_source_and_frees_as_claims_age_out(store):
    now = 100 * S
    batch = [claim("a", now - i, arrival_ns=i) for i in range(10)]
    store.push(batch, now_ns=now, canonical_of_arrival=identity)
    c = store.counts("a")
    assert (c.stored, c.window_cap) == (6, 4) and store.in_window("a") == 6
    store.push([claim("b", now, arrival_ns=0)], now_ns=now, canonical_of_arrival=identity)
    assert store.counts("b").stored == 1  # "a" at its cap does not keep "b" out
    oldest = now - 5
    edge = oldest + WINDOW_NS  # the window starts exactly at "a"'s oldest claim: still in, still at the cap
    store.push([claim("a", edge, arrival_ns=3 * S)], now_ns=edge, canonical_of_arrival=identity)
    assert store.counts("a").window_cap == 5 and store.in_window("a") == 6
    store.push([claim("a", edge + 1, arrival_ns=4 * S)], now_ns=edge + 1, canonical_of_arrival=identity)
    assert store.counts("a").stored == 7 and store.in_window("a") == 6  # one ns later it left: room for one
    later = edge + WINDOW_NS + 2  # everything "a" stored has aged out
    store.push([claim("a", later, arrival_ns=100 * S)], now_ns=later, canonical_of_arrival=identity)
    assert store.counts("a").stored == 8 and store.in_window("a") == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claims=st.lists(st.tuples(st.sampled_from("abc"), st.integers(-10 * S, 20 * S), st.integers(0, 3 * S)),
                       max_size=200),
       steps=st.lists(st.integers(0, 2 * S), min_size=1, max_size=8))
def test_every_claim_ends_in_one_counter_and_the_store_never_evicts(rig, claims, steps):
    """Any claims from three sources, the rig's clock moving in steps: counts add up, nothing is evicted for
    capacity, nothing stored is after the now it was pushed at, each source stays within its cap."""
    limits = ClaimLimits(per_window=12)
    store = ClaimStore.create(rig, "obs", sources=3, limits=limits, window_ns=WINDOW_NS)
    try:
        now, arrival = 10 * S, 0
        chunk = max(1, len(claims) // len(steps))
        for i, step in enumerate(steps):
            now += step
            part = claims[i * chunk:(i + 1) * chunk] if i < len(steps) - 1 else claims[i * chunk:]
            batch = []
            for source, offset, gap in part:
                arrival += gap // 100
                batch.append(claim(source, now - offset, arrival))
            store.push(batch, now_ns=now, canonical_of_arrival=identity)
            status = store.reservoir.status()
            assert status.evicted_capacity == 0 and status.edge_ns == now
            assert all(store.in_window(s) <= limits.per_window for s in "abc")
        made = {s: sum(1 for c in claims if c[0] == s) for s in "abc"}
        assert {s: store.counts(s).total() for s in "abc"} == made
        assert store.reservoir.status().event_claim_count <= sum(store.counts(s).stored for s in "abc")
        assert store.counts("nobody") == ClaimCounts()
    finally:
        store.close()


def test_capacity_holds_every_sources_cap():
    limits = ClaimLimits(per_second=20, burst=64)
    assert limits.window_cap(5 * S) == 64 + 100
    assert ClaimStore.capacity_for(3, limits, 5 * S) == 3 * 164
    assert SampleKind.EVENT_CLAIM  # the kind stored
