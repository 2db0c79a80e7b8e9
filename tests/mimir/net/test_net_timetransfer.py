"""Time transfer over real sockets on 127.0.0.1: real receiver processes, and scripted CURVE clients.

Both ends run on this machine and share its monotonic clock, so the truth is known: a real receiver prints the
canonical-at-host line it answered probes with (its exit summary), and a scripted client answers with an exact,
known line. The listener waits on its socket with a zmq.Poller, as the supervisor does.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import soundfile as sf
import zmq

from mimir.net import RemoteListener
from mimir.net.keys import load_public_key, load_secret_key
from mimir.net.messages import (
    SCHEMA_VERSION,
    ClockFitSummary,
    Envelope,
    TimeEcho,
    TimeProbe,
    decode_downlink,
    encode,
)
from mimir.net.relay import LoopbackRelay
from mimir.sync.trials import Condition

pytestmark = pytest.mark.slow

MS = 1_000_000
S = 1_000_000_000


def pump(listener: RemoteListener, seconds: float, until=None, clients=()) -> bool:
    """Wait on the listener's socket (and the clients') and poll; clients answer their probes. True once
    ``until()`` holds (or, without ``until``, after ``seconds``)."""
    poller = zmq.Poller()
    poller.register(listener.socket, zmq.POLLIN)
    for c in clients:
        poller.register(c.sock, zmq.POLLIN)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        poller.poll(5)
        listener.poll(1000)
        for c in clients:
            c.serve()
        if until is not None and until():
            return True
    return until is None


# ------------------------------------------------------------------------------------------ real receivers
def _spliced(net, name: str, seconds: float, cut_at_s: float, cut_s: float, seed: int) -> Path:
    w = net.witness(name, Condition(name, "", ppm=80.0, snr_db=20.0, seconds=seconds), seed=seed)
    audio, rate = sf.read(str(w.path), dtype="float32")
    a, b = int(cut_at_s * rate), int((cut_at_s + cut_s) * rate)
    sf.write(str(w.path), np.concatenate([audio[:a], audio[b:]]), rate, subtype="FLOAT")
    return w.path


def _line_error_ns(line: tuple[int, int, float, int], host_line: dict) -> float:
    """The listener's line minus the receiver's own canonical-at-host line, at the listener's origin."""
    origin_host, origin_canonical, _, _ = line
    own = host_line["origin_canonical_ns"] + host_line["scale"] * (origin_host - host_line["origin_host_ns"])
    return origin_canonical - own


def test_a_receivers_canonical_time_reaches_the_rig_within_the_bound_and_a_relock_restarts_it(net):
    """A real receiver decodes a paced file in which 0.3 s of witness is missing at 4.5 s: it relocks on a
    new fit segment. The rig's line follows the first segment, starts again at the relock (never mixing the
    two timelines, 0.3 s apart), and at the end agrees with the receiver's own canonical-at-host line within
    its reported uncertainty, which is below 1 ms on loopback."""
    path = _spliced(net, "raven", 14.0, 4.5, 0.3, seed=91)
    cfg = net.config({"raven": "canonical-authority"})
    with RemoteListener(cfg, "t-tt", codebook=("mimir-default", 0), time_probe_interval_s=0.1) as listener:
        net.start("raven", listener.endpoint, path)
        ready_in = set()

        def watch() -> bool:
            tt = listener.source("raven").time_transfer
            if tt.ready:
                ready_in.add(tt.segment)
            return net.finished()

        assert pump(listener, 60.0, until=watch), "the receiver did not finish in 60 s"
        line = listener.authority_line("raven")
        src = listener.source("raven")
    summary = net.summary("raven")
    assert summary["exit_code"] == 0, net.stderr("raven")
    tt = src.time_transfer
    host_line = summary["host_line"]
    assert summary["host_clock"] == "pacing" and tt.remote_clock == "pacing"
    assert host_line is not None and host_line["segment"] == 1 == tt.segment
    assert ready_in == {0, 1}                      # a line on each segment ...
    assert tt.resets.relock == 1 and tt.resets.session == 0 and tt.resets.outliers == 0  # ... restarted once
    assert line is not None and tt.ready and src.decision.canonical_authority
    assert abs(_line_error_ns(line, host_line)) <= line[3] < 1 * MS
    assert abs(line[2] - host_line["scale"]) * 1e6 <= tt.scale_uncertainty_ppm
    # every echo read ends in one counter; before a lock (and while relocking) echoes carry no canonical time
    assert src.counters.time_echoes == tt.used + tt.refused.total() <= summary["time_echoes"]
    assert tt.refused.total() == tt.refused.unlocked > 0
    assert summary["time_echoes"] == summary["time_probes"] <= tt.probes_sent
    assert src.counters.accepted == summary["messages_total"]  # echoes are not reports


def test_an_asymmetric_path_shows_as_a_bias_bounded_by_the_reported_uncertainty(net):
    """The receiver's echoes (the whole uplink) are held 20 ms in a relay; the downlink is not.

    No exchange of timestamps can see asymmetry (NTP cannot): each sample places the receiver's send time in
    the middle of the round trip, here 10 ms after it really happened, so the line runs 10 ms late. What it
    can do is bound it: the uncertainty, at least half the best round trip, covers the bias.
    """
    w = net.witness("phone", Condition("phone", "", ppm=-60.0, snr_db=20.0, seconds=10.0), seed=92)
    cfg = net.config({"phone": "canonical-authority"})
    with RemoteListener(cfg, "t-tt-asym", codebook=("mimir-default", 0), time_probe_interval_s=0.1) as listener:
        port = int(listener.endpoint.rsplit(":", 1)[1])
        with LoopbackRelay(("127.0.0.1", port), delay_up_s=0.020) as relay:
            net.start("phone", relay.endpoint, w.path)
            assert pump(listener, 60.0, until=net.finished), "the receiver did not finish in 60 s"
            line = listener.authority_line("phone")
            tt = listener.source("phone").time_transfer
    summary = net.summary("phone")
    assert summary["exit_code"] == 0, net.stderr("phone")
    assert line is not None and tt.round_trip_us_min >= 20_000
    bias = _line_error_ns(line, summary["host_line"])
    assert abs(bias) <= line[3]        # bounded by what it reports ...
    assert bias < -5 * MS              # ... and really there: about -10 ms (half the asymmetry), late


# ------------------------------------------------------------------------------------------ scripted clients
class EchoClient:
    """A scripted receiver on a real CURVE connection: it reports a locked fit of the rig's codebook and answers
    each probe with canonical time by an exact line on this machine's monotonic clock (``honest``), or keeps
    the probes (``probes``: (t1, t2)) for the test to answer as it likes."""

    def __init__(self, ctx: zmq.Context, listener: RemoteListener, keydir: Path, source_id: str, *,
                 c0_ns: int = 600 * S, scale: float = 1.0 + 20e-6, segment: int = 0) -> None:
        pair = load_secret_key(keydir / f"{source_id}.key_secret")
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.curve_secretkey = pair.secret_bytes
        self.sock.curve_publickey = pair.public_bytes
        self.sock.curve_serverkey = load_public_key(keydir / "server.key").encode("ascii")
        self.sock.connect(listener.endpoint)
        self.source_id = source_id
        self.session = 1
        self.seq = 0
        self.segment = segment
        self.h0 = time.monotonic_ns()
        self.c0 = c0_ns
        self.scale = scale
        self.honest = True
        self.probes: list[tuple[int, int]] = []
        self.last_echo: bytes | None = None

    def truth(self, host_ns: int) -> int:
        return self.c0 + round(self.scale * (host_ns - self.h0))

    def frame(self, body, *, session: int | None = None) -> bytes:
        env = Envelope(v=SCHEMA_VERSION, source_id=self.source_id, session=session or self.session, seq=self.seq,
                       low_water=self.seq, sent_unix_ns=time.time_ns(), body=body)
        return encode(env)

    def fit(self, locked: bool = True) -> None:
        self.sock.send(self.frame(ClockFitSummary(
            codebook_id="mimir-default", seed=0, nominal_rate_hz=48000.0, locked=locked, segment=self.segment,
            stream_sample=480_000, local_sample_at_epoch=-4_800_000.0 if locked else None,
            rate_hz=48000.0 if locked else None, confidence=0.97 if locked else 0.0, anchor_count=40)))
        self.seq += 1

    def echo(self, t1: int, t2: int, t3: int | None = None, *, canonical: int | None | str = "truth",
             segment: int | None = None, session: int | None = None) -> bytes:
        t3 = time.monotonic_ns() if t3 is None else t3
        value = self.truth(t3) if canonical == "truth" else canonical
        assert not isinstance(value, str)
        data = self.frame(TimeEcho(probe_sent_ns=t1, received_ns=t2, sent_ns=t3, canonical_ns=value,
                                   segment=self.segment if segment is None else segment, clock="adc"),
                          session=session)
        self.sock.send(data)
        return data

    def serve(self) -> None:
        while True:
            try:
                raw = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            t2 = time.monotonic_ns()
            body = decode_downlink(raw).body
            if isinstance(body, TimeProbe):
                if self.honest:
                    self.last_echo = self.echo(body.sent_ns, t2)
                else:
                    self.probes.append((body.sent_ns, t2))


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _ready(listener: RemoteListener, source_id: str) -> bool:
    return listener.source(source_id).time_transfer.ready


def test_only_a_canonical_authority_gets_an_authority_line(net, zctx):
    cfg = net.config({"raven": "canonical-authority", "laptop": "trusted-evidence", "phone": "observe-only"})
    with RemoteListener(cfg, "t-tt-trust", codebook=("mimir-default", 0), time_probe_interval_s=0.05) as listener:
        clients = [EchoClient(zctx, listener, net.keydir, sid) for sid in ("raven", "laptop", "phone")]
        for c in clients:
            c.fit()
        assert pump(listener, 20.0, clients=clients,  # 40 echoes over 2 s: a span to bound the scale by
                    until=lambda: all(_ready(listener, c.source_id) for c in clients)
                    and listener.source("raven").time_transfer.used >= 40)
        line = listener.authority_line("raven")
        assert line is not None
        assert listener.authority_line("laptop") is None and listener.authority_line("phone") is None
        status = {s.source_id: s for s in listener.sources()}
        assert all(s.time_transfer.ready for s in status.values())  # every level gets a line in its status
        raven = clients[0]
        origin_host, origin_canonical, scale, uncertainty = line
        assert abs(origin_canonical - raven.truth(origin_host)) <= uncertainty
        assert abs(scale - raven.scale) * 1e6 <= status["raven"].time_transfer.scale_uncertainty_ppm
        raven.fit(locked=False)  # the authority loses lock: its trust decision no longer makes it the authority
        assert pump(listener, 10.0, clients=clients, until=lambda: listener.authority_line("raven") is None)
        assert listener.source("raven").time_transfer.ready
        with pytest.raises(KeyError):
            listener.authority_line("nobody")


def test_hostile_echoes_are_refused_counted_and_never_move_the_line(net, zctx):
    cfg = net.config({"raven": "canonical-authority"})
    with RemoteListener(cfg, "t-tt-hostile", codebook=("mimir-default", 0), time_probe_interval_s=0.05) as listener:
        mallory = EchoClient(zctx, listener, net.keydir, "raven", segment=3)
        mallory.fit()
        assert pump(listener, 20.0, clients=[mallory], until=lambda: _ready(listener, "raven"))
        mallory.honest = False                                      # from now on the test answers the probes
        pump(listener, 0.3, clients=[mallory])                      # (the last honest echoes are read)
        line = listener.authority_line("raven")
        assert line is not None
        before = listener.source("raven")
        used = before.time_transfer.used
        replay = mallory.last_echo
        assert replay is not None
        sent: dict[str, int] = {}

        def probe() -> tuple[int, int]:
            """A fresh probe: (t1, t2)."""
            mallory.probes.clear()
            assert pump(listener, 5.0, clients=[mallory], until=lambda: bool(mallory.probes))
            return mallory.probes[-1]

        def hostile(cause: str) -> None:
            sent[cause] = sent.get(cause, 0) + 1

        mallory.echo(424242, 1, 2)                                  # a probe never sent
        hostile("unknown_probe")
        mallory.sock.send(replay)                                   # an echo already used
        hostile("unknown_probe")
        t1, t2 = probe()
        mallory.echo(t1, t2, t2 - 1)                                # sent before it was received
        hostile("disordered")
        t1, t2 = probe()
        mallory.echo(t1, 0, 2**62, canonical=0)                     # huge values: held longer than any round trip
        hostile("negative_delay")
        t1, t2 = probe()
        mallory.echo(t1, t2, canonical=None)                        # not locked
        hostile("unlocked")
        t1, t2 = probe()
        mallory.echo(t1, t2, segment=2)                             # an older fit segment
        hostile("old_segment")
        t1, t2 = probe()
        mallory.echo(t1, t2, canonical=2**62)                       # absurd canonical time
        hostile("outlier")
        t1, t2 = probe()
        mallory.echo(t1, t2, canonical=mallory.truth(time.monotonic_ns()) + 3 * MS)  # 3 ms off
        hostile("outlier")
        t1, t2 = probe()
        mallory.echo(t1, t2, session=mallory.session + 1)           # another session: never starts one
        hostile("wrong_session")
        t1, t2 = probe()
        time.sleep(0.3)                                             # hold 0.3 s and say so
        mallory.echo(t1, t2, t2 + 300 * MS)
        hostile("long_hold")
        t1, t2 = probe()
        time.sleep(0.6)                                             # answer 0.6 s late, claiming no hold
        mallory.echo(t1, t2, t2)
        hostile("slow_round_trip")
        beyond = msgspec.msgpack.decode(mallory.frame(TimeEcho(probe_sent_ns=t1, received_ns=1, sent_ns=2,
                                                               canonical_ns=0, segment=3, clock="adc")))
        beyond[-1][4] = 2**63                                       # past the wire's bound: not even decoded
        mallory.sock.send(msgspec.msgpack.encode(beyond))
        n_hostile = sum(sent.values())
        assert pump(listener, 10.0, until=lambda: listener.source("raven").counters.time_echoes
                    - before.counters.time_echoes == n_hostile)
        assert pump(listener, 10.0, until=lambda: listener.source("raven").counters.rejected.malformed == 1)
        after = listener.source("raven")
        tt = after.time_transfer
        refused = {c: getattr(tt.refused, c) - getattr(before.time_transfer.refused, c) for c in sent}
        assert refused == sent and tt.used == used
        assert listener.authority_line("raven") == line   # not moved by a single ns
        assert after.counters.sessions == 1 and tt.resets.session == tt.resets.relock == tt.resets.outliers == 0

        # a flood of forged echoes: rate-limited before decoding, the rest refused; the line does not move
        mallory.fit()  # (keeps its trust decision fresh: a fit within 10 s)
        assert pump(listener, 10.0, until=lambda: listener.source("raven").counters.clock_fits == 2)
        after = listener.source("raven")
        read_before = after.counters.time_echoes + after.counters.rejected.total()
        flood = 3000
        for k in range(flood):
            mallory.echo(10**9 + k, 1, 2)
        assert pump(listener, 30.0, until=lambda: listener.source("raven").counters.time_echoes
                    + listener.source("raven").counters.rejected.total() - read_before == flood)
        final = listener.source("raven")
        assert final.counters.rejected.rate_limited > 0
        assert final.time_transfer.refused.unknown_probe - tt.refused.unknown_probe \
            == final.counters.time_echoes - after.counters.time_echoes
        assert final.time_transfer.used == used and listener.authority_line("raven") == line


def test_a_scripted_relock_and_a_new_session_each_restart_the_line(net, zctx):
    cfg = net.config({"raven": "canonical-authority"})
    with RemoteListener(cfg, "t-tt-relock", codebook=("mimir-default", 0), time_probe_interval_s=0.05) as listener:
        rx = EchoClient(zctx, listener, net.keydir, "raven")
        rx.fit()
        assert pump(listener, 20.0, clients=[rx], until=lambda: _ready(listener, "raven"))
        first = listener.authority_line("raven")
        assert first is not None
        rx.segment, rx.c0 = 1, rx.c0 + 250 * MS          # relocked onto a timeline 250 ms away
        rx.fit()
        assert pump(listener, 10.0, clients=[rx], until=lambda: listener.source("raven").time_transfer.segment == 1)
        tt = listener.source("raven").time_transfer
        assert tt.resets.relock == 1 and tt.samples < 8 and not tt.ready
        assert listener.authority_line("raven") is None
        assert pump(listener, 20.0, clients=[rx], until=lambda: _ready(listener, "raven"))
        second = listener.authority_line("raven")
        assert second is not None and abs(second[1] - rx.truth(second[0])) <= second[3]
        assert listener.source("raven").time_transfer.refused.outlier == 0  # nothing of segment 0 was mixed in
        rx.session, rx.seq = 2, 0                        # the receiver restarted
        rx.fit()
        assert pump(listener, 10.0, clients=[rx], until=lambda: listener.source("raven").session == 2)
        tt = listener.source("raven").time_transfer
        assert tt.resets.session == 1 and not tt.ready and listener.authority_line("raven") is None
        assert pump(listener, 20.0, clients=[rx], until=lambda: _ready(listener, "raven"))
