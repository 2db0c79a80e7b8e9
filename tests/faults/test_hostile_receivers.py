"""Hostile remote receivers against the rig's listener, its observed claim store and its reservoir.

Real CURVE clients (ZeroMQ DEALER sockets with their own key pairs) talk to a real RemoteListener on
127.0.0.1 and send what an attacker with a listed key (or without one) would: anchors 1e6 s in the future,
at 9.99e14 s, an hour in the past and before the epoch; a flood of 20,000 messages; frames over the message
limit and over the connection limit; replays; another source's id; an unknown key. Meanwhile a legitimate
receiver reports and the rig keeps indexing local samples at its own canonical time.

The pump is what the supervisor runs: ``listener.poll()``, then ``ClaimStore.push(drain_event_claims(),
now_ns=<the rig's canonical now>)``.

Invariants, checked against a twin reservoir that gets the local samples only:

* local data is never evicted and canonical time never moves: the rig's reservoir ends exactly like the
  twin (edge, window start, every count and eviction counter, every visible sample);
* the observed store's edge is the rig's canonical now, never a claim's; nothing in it is evicted for
  capacity; the legitimate receiver's claims are all stored;
* every frame the listener read ends in exactly one counter, every claim in exactly one claim counter, and
  each refusal is counted by its cause (after_now, before_window, rate_limited, window_cap, oversized,
  duplicate, wrong_source_id, unknown key at the handshake, dropped connections).
"""

from __future__ import annotations

import time

import pytest
import zmq

from mimir.config import NetworkConfig, RemoteSourceConfig
from mimir.descriptors import SampleKind
from mimir.net import RemoteListener
from mimir.net.claims import ClaimLimits, ClaimStore
from mimir.net.keys import load_public_key, load_secret_key, write_keypair
from mimir.net.listener import HARD_MAX_FRAME_BYTES
from mimir.net.messages import MAX_MESSAGE_BYTES, Anchor, AnchorBatch, Envelope, encode
from mimir.reservoir import Reservoir

pytestmark = pytest.mark.slow

S = 1_000_000_000
WINDOW_NS = 5 * S
BASE_NS = 1000 * S          # the rig's canonical time when the test starts


class Rig:
    """The parts of a rig the remote path touches, pumped the way the supervisor pumps them."""

    def __init__(self, rig: str, network: NetworkConfig) -> None:
        self.t0 = time.monotonic_ns()
        self.reservoir = Reservoir.create(rig, name="res", capacity=4096, duration_ns=WINDOW_NS)
        self.twin = Reservoir.create(rig, name="twin", capacity=4096, duration_ns=WINDOW_NS)
        self.local = self.reservoir.producer(SampleKind.CAMERA_FRAME, "cam.synthetic.0")
        self.local_twin = self.twin.producer(SampleKind.CAMERA_FRAME, "cam.synthetic.0")
        self.store = ClaimStore.create(rig, "obs", sources=len(network.sources),
                                       limits=ClaimLimits(per_second=network.max_claims_per_s), window_ns=WINDOW_NS)
        self.listener = RemoteListener(network, rig, codebook=("mimir-default", 0))
        self.last_local_ns = 0

    def canonical_ns(self, host_ns: int | None = None) -> int:
        return BASE_NS + ((time.monotonic_ns() if host_ns is None else host_ns) - self.t0)

    def pump(self, seconds: float, until=None) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            now = self.canonical_ns()
            if now - self.last_local_ns >= 10_000_000:  # a 100 Hz local source, in order on the rig's clock
                self.last_local_ns = now
                self.local.push(now, now)
                self.local_twin.push(now, now)
            self.listener.poll(1000)
            self.store.push(self.listener.drain_event_claims(), now_ns=self.canonical_ns(),
                            canonical_of_arrival=self.canonical_ns)
            assert self.store.reservoir.status().edge_ns <= self.canonical_ns()
            if until is not None and until():
                return True
            time.sleep(0.001)
        return until is None

    def close(self) -> None:
        self.listener.close()
        self.store.close()
        self.twin.close()
        self.reservoir.close()


class Client:
    """A CURVE DEALER with its own key pair, sending hand-made envelopes."""

    def __init__(self, ctx: zmq.Context, endpoint: str, server_public: str, secret_file, source_id: str) -> None:
        pair = load_secret_key(secret_file)
        sock = ctx.socket(zmq.DEALER)
        sock.curve_serverkey = server_public.encode()
        sock.curve_publickey, sock.curve_secretkey = pair.public_bytes, pair.secret_bytes
        sock.linger = 0
        sock.sndhwm = 100_000
        sock.connect(endpoint)
        self.sock, self.source_id, self.seq, self.public_key = sock, source_id, 0, pair.public

    def envelope(self, body, *, seq: int | None = None, source_id: str | None = None) -> bytes:
        if seq is None:
            seq, self.seq = self.seq, self.seq + 1
        return encode(Envelope(v=1, source_id=source_id or self.source_id, session=1, seq=seq, low_water=0,
                               sent_unix_ns=time.time_ns(), body=body))

    def send(self, body, **kw) -> None:
        self.sock.send(self.envelope(body, **kw))

    def anchors(self, *canonical_s: float, first_event: int = 0) -> None:
        self.send(AnchorBatch(segment=0, decoded_unix_ns=time.time_ns(), anchors=[
            Anchor(event_index=first_event + i, canonical_s=t, local_sample=float(i), confidence=0.9)
            for i, t in enumerate(canonical_s)]))


@pytest.fixture
def scene(rig, tmp_path):
    for name in ("server", "raven", "mallory", "stranger"):
        write_keypair(tmp_path / name)
    network = NetworkConfig(listen="tcp://127.0.0.1:*", server_key_file=str(tmp_path / "server.key_secret"), sources=[
        RemoteSourceConfig(source_id="raven", public_key=load_public_key(tmp_path / "raven.key"),
                           trust="trusted-evidence"),
        RemoteSourceConfig(source_id="mallory", public_key=load_public_key(tmp_path / "mallory.key"),
                           trust="candidate-evidence"),
    ])
    r = Rig(rig, network)
    ctx = zmq.Context()
    server_public = load_public_key(tmp_path / "server.key")

    def client(name: str, source_id: str | None = None) -> Client:
        return Client(ctx, r.listener.endpoint, server_public, tmp_path / f"{name}.key_secret", source_id or name)

    try:
        yield r, client
    finally:
        ctx.destroy(linger=0)
        r.close()


def source(r: Rig, source_id: str):
    return r.listener.source(source_id)


def read(r: Rig, source_id: str) -> int:
    c = source(r, source_id).counters
    return c.accepted + c.rejected.total()


def test_hostile_receivers_never_move_canonical_time_nor_evict_local_data(scene):
    r, client = scene
    raven, mallory = client("raven"), client("mallory")
    now_s = lambda: r.canonical_ns() / S  # noqa: E731

    # a legitimate receiver: anchors decoded 0.2 s after their event, all through the test
    sent_raven = 0

    def raven_reports(n: int) -> None:
        nonlocal sent_raven
        for _ in range(n):
            raven.anchors(now_s() - 0.2, first_event=sent_raven)
            sent_raven += 1

    raven_reports(3)
    assert r.pump(20, until=lambda: read(r, "raven") == 3), "the legitimate receiver was not heard"

    # 1. the future, the absurd, the past, before the epoch (one batch each)
    mallory.anchors(now_s() + 1e6)
    mallory.anchors(9.99e14, first_event=1)
    mallory.anchors(now_s() - 3600, first_event=2)
    mallory.anchors(-5.0, first_event=3)
    raven_reports(2)
    assert r.pump(20, until=lambda: read(r, "mallory") == 4 and read(r, "raven") == 5)
    claims = r.store.counts("mallory")
    assert (claims.after_now, claims.before_window, claims.stored) == (2, 2, 0)

    # 2. replays of an accepted message, and another source's id
    replay = mallory.envelope(AnchorBatch(segment=0, decoded_unix_ns=1, anchors=[]))
    for _ in range(3):
        mallory.sock.send(replay)
    mallory.send(AnchorBatch(segment=0, decoded_unix_ns=1, anchors=[]), source_id="raven")
    assert r.pump(20, until=lambda: read(r, "mallory") == 8)
    rejected = source(r, "mallory").counters.rejected
    assert (rejected.duplicate, rejected.wrong_source_id) == (2, 1)

    # 3. over the message limit (read and refused), then over the connection limit (libzmq drops the connection)
    mallory.sock.send(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert r.pump(20, until=lambda: source(r, "mallory").counters.rejected.oversized == 1)
    drops_before = r.listener.status().handshakes.disconnected
    mallory.sock.send(b"\x00" * (HARD_MAX_FRAME_BYTES + 1))
    assert r.pump(30, until=lambda: r.listener.status().handshakes.disconnected > drops_before)
    for event in range(20, 80):  # the DEALER reconnects by itself: a report gets through on the new connection
        mallory.anchors(now_s() - 1.0, first_event=event)
        if r.pump(0.5, until=lambda: r.store.counts("mallory").stored == 1):
            break
    assert r.store.counts("mallory").stored == 1
    assert source(r, "mallory").counters.connections == 2

    # 4. an unknown key never gets past the handshake, and is listed
    stranger = client("stranger", "raven")
    stranger.anchors(now_s())
    assert r.pump(20, until=lambda: r.listener.status().rejected_total.unknown_key >= 1)
    assert [k.public_key for k in r.listener.status().unknown_keys] == [stranger.public_key]

    # 5. a flood: 20,000 messages of 64 anchors each, at the rig's now, as fast as the socket takes them
    before = read(r, "mallory")
    made_before = source(r, "mallory").counters.event_claims
    flood_start = time.monotonic()
    base = now_s()
    for i in range(20_000):
        mallory.anchors(*(base + k * 1e-6 for k in range(64)), first_event=1000 + 64 * i)
    raven_reports(2)
    assert r.pump(120, until=lambda: read(r, "mallory") == before + 20_000 and read(r, "raven") == sent_raven), \
        f"read {read(r, 'mallory') - before} of the flood"
    flood_s = time.monotonic() - flood_start
    c = source(r, "mallory").counters
    accepted_in_flood = 20_000 - c.rejected.rate_limited - c.rejected.out_of_window
    assert c.rejected.rate_limited > 0
    assert accepted_in_flood <= 1024 + 200 * flood_s + 1  # the burst plus the rate over the flood's span
    cap = r.store.cap
    assert r.store.in_window("mallory") <= cap
    made = c.event_claims - made_before
    assert c.claims_rate_limited > 0 and made <= 64 + 20 * flood_s + 1  # the claim burst plus the claim rate

    # Invariants.
    r.pump(0.2)
    raven_claims = r.store.counts("raven")
    assert raven_claims.stored == sent_raven and raven_claims.refused() == 0
    obs = r.store.reservoir.status()
    assert obs.evicted_capacity == 0 and obs.edge_ns <= r.canonical_ns()
    for sid in ("raven", "mallory"):
        s = source(r, sid)
        assert s.counters.event_claims == r.store.counts(sid).total()  # every claim made ends in one counter
    assert r.listener.status().event_claims_dropped == 0
    mine, twin = r.reservoir.status(), r.twin.status()
    assert msgspec_fields(mine, "generation") == msgspec_fields(twin, "generation")
    assert [r.reservoir.read(i).timestamp_ns for i in range(r.reservoir.count())] == \
        [r.twin.read(i).timestamp_ns for i in range(r.twin.count())]
    assert mine.evicted_capacity == mine.evicted_disorder == mine.late == mine.rejected == 0
    assert mine.edge_ns == r.last_local_ns  # canonical time: the rig's own, never a claim's


def msgspec_fields(status, *without: str) -> dict:
    import msgspec

    return {k: v for k, v in msgspec.structs.asdict(status).items() if k not in without}
