"""Real receiver processes over loopback (127.0.0.1) against a RemoteListener in this process.

Witness files are rendered here with known truth (mimir.sync.trials' impairment chain); each test bounds
every wait. Goals are the sync analyzer's: <= 0.25 samples and <= 0.2 ppm at 0 dB in-band SNR with resampling,
<= 1 sample through a 64 kbps lossy codec.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from mimir.net import RemoteListener
from mimir.net.relay import LoopbackRelay
from mimir.sync.trials import Condition

pytestmark = pytest.mark.slow


def test_three_impaired_receivers_report_fits_matching_the_truth(net):
    files = {
        # a second PC: its own clock (+250 ppm), witness as loud as the noise in its band
        "raven": net.witness("raven", Condition("raven", "", ppm=250.0, snr_db=0.0, seconds=20.0), seed=81),
        # a laptop at 44.1 kHz, -120 ppm, 0 dB
        "laptop": net.witness("laptop", Condition("laptop", "", rate_hz=44100, ppm=-120.0, snr_db=0.0,
                                                  seconds=20.0), seed=82),
        # a phone: resampled (-173 ppm), band-limited mic, AGC, 10 dB SNR, 64 kbps AAC
        "phone": net.witness("phone", Condition("phone", "", ppm=-173.0, snr_db=10.0, band_hz=(200.0, 7000.0),
                                                agc=True, codec=("aac", 64), seconds=20.0), seed=83),
    }
    trust = {"raven": "trusted-evidence", "laptop": "candidate-evidence", "phone": "canonical-authority"}
    with RemoteListener(net.config(trust), "t-three", codebook=("mimir-default", 0)) as listener:
        for name, w in files.items():
            net.start(name, listener.endpoint, w.path, "--fast")
        assert net.pump(listener, 60.0, until=net.finished), "receivers did not finish in 60 s"
        claims = listener.drain_event_claims()
        status = {s.source_id: s for s in listener.sources()}
    for name, w in files.items():
        summary = net.summary(name)
        assert summary["exit_code"] == 0, net.stderr(name)
        assert summary["unacknowledged"] == 0 and summary["backlog_dropped_messages"] == 0
        s = status[name]
        c = s.counters
        assert c.accepted == summary["messages_total"] and c.lost == 0 and c.rejected.total() == 0
        fit = s.clock_fit
        assert fit is not None and fit.locked and fit.nominal_rate_hz == w.rate_hz
        offset = w.offset_error_samples(fit.local_sample_at_epoch, fit.rate_hz)
        rate_ppm = w.rate_error_ppm(fit.rate_hz)
        if name == "phone":
            assert offset <= 1.0, (name, offset)
        else:
            assert offset <= 0.25 and rate_ppm <= 0.2, (name, offset, rate_ppm)
        assert s.health is not None and s.health["state"] == "locked"
        assert s.response is not None and len(s.response["bands"]) == 8
        assert c.anchors >= 80  # 20 s at 5 events/s, minus the lock
    assert status["raven"].influences_canonical and status["phone"].decision.canonical_authority
    assert not status["laptop"].influences_canonical  # candidate evidence is below influence_at
    by_source = {name: [c for c in claims if c.source_id == name] for name in files}
    assert all(any(c.kind == "anchor" for c in v) for v in by_source.values())
    assert {c.evidence_class for c in by_source["laptop"] if c.kind == "anchor"} == {"candidate"}
    assert any(c.kind == "trust" and c.influences_canonical for c in by_source["raven"])


def test_unknown_key_trust_reject_and_wrong_source_id_are_refused(net):
    w = net.witness("w", Condition("w", "", ppm=50.0, snr_db=20.0, seconds=8.0), seed=84)
    cfg = net.config({"raven": "trusted-evidence", "laptop": "observe-only", "banned": "reject"})
    with RemoteListener(cfg, "t-refuse") as listener:
        net.start("stranger", listener.endpoint, w.path, "--fast", "--linger-s", 2.5)       # key not in the config
        net.start("banned", listener.endpoint, w.path, "--fast", "--linger-s", 2.5)         # trust = reject
        net.start("impostor", listener.endpoint, w.path, "--fast", "--linger-s", 2.5,       # raven's key, says phone
                  source_id="phone", key="raven")
        net.start("laptop", listener.endpoint, w.path, "--fast")                             # a legitimate one
        assert net.pump(listener, 30.0, until=net.finished)
        st = listener.status()
    stranger_key = (net.keydir / "stranger.key").read_text().split('public-key = "')[1][:40]
    for name in ("stranger", "banned", "impostor"):
        summary = net.summary(name)
        assert summary["exit_code"] == 3, (name, net.stderr(name))
        assert summary["acked_through"] == -1
    assert net.summary("stranger")["auth_failures"] >= 1
    assert "refused our key" in net.stderr("stranger")
    assert net.summary("impostor")["refusals"].get("wrong_source_id", 0) >= 1
    assert "wrong_source_id" in net.stderr("impostor")
    assert net.summary("laptop")["exit_code"] == 0
    sources = {s.source_id: s for s in st.sources}
    assert st.rejected_total.unknown_key >= 1 and [k.public_key for k in st.unknown_keys] == [stranger_key]
    assert sources["banned"].counters.rejected.refused_by_policy >= 1
    assert sources["banned"].session is None and sources["banned"].counters.accepted == 0
    raven = sources["raven"]  # the impostor's frames are counted against the key's owner, and nothing else
    assert raven.counters.rejected.wrong_source_id >= 1 and raven.counters.accepted == 0
    assert raven.session is None and raven.clock_fit is None and not raven.influences_canonical
    assert "phone" not in sources
    assert st.handshakes.failed_auth >= 2
    assert sources["laptop"].counters.accepted > 0 and sources["laptop"].clock_fit.locked


def test_listener_restart_receivers_reconnect_and_nothing_is_lost(net):
    w = net.witness("w", Condition("w", "", ppm=-90.0, snr_db=20.0, seconds=20.0), seed=85)
    cfg = net.config({"raven": "trusted-evidence"})
    first = RemoteListener(cfg, "t-restart")
    endpoint = first.endpoint
    try:
        net.start("raven", endpoint, w.path, "--speed", 2.5)
        assert net.pump(first, 15.0, until=lambda: first.source("raven").counters.accepted >= 10)
        accepted_first = first.source("raven").counters.accepted
    finally:
        first.close()
    time.sleep(1.5)  # the receiver keeps decoding and queueing with no listener
    assert net.running()
    second = RemoteListener(cfg.__class__(**{**{f: getattr(cfg, f) for f in cfg.__struct_fields__},
                                            "listen": endpoint}), "t-restart")
    with second:
        assert net.pump(second, 15.0, until=lambda: second.source("raven").clock_fit is not None
                        and second.source("raven").clock_fit.locked)
        # raw audio on request, from the reconnected receiver
        request = second.request_audio_window("raven", 0.25)
        assert net.pump(second, 10.0, until=lambda: second.audio_window("raven", request) is not None)
        window = second.audio_window("raven", request)
        assert net.pump(second, 30.0, until=net.finished)
        s = second.source("raven")
    summary = net.summary("raven")
    assert summary["exit_code"] == 0, net.stderr("raven")
    assert summary["connects"] >= 2 and summary["disconnects"] >= 1
    assert summary["backlog_dropped_messages"] == 0
    assert s.session == summary["session"] and s.counters.lost == 0 and s.counters.sessions == 1
    assert s.acked_through == summary["messages_total"] - 1
    assert accepted_first + s.counters.accepted >= summary["messages_total"]
    assert s.clock_fit.locked
    assert w.offset_error_samples(s.clock_fit.local_sample_at_epoch, s.clock_fit.rate_hz) <= 0.25
    assert window.status == "ok" and len(window.pcm_s16le) == 2 * round(0.25 * 48000)
    pcm = np.frombuffer(window.pcm_s16le, "<i2") * window.scale
    original = sf.read(str(w.path), dtype="float32")[0][window.local_start_sample:][: pcm.size]
    assert np.max(np.abs(pcm - original)) <= window.scale  # int16 quantisation only


def test_blackout_loses_only_what_the_bounded_backlog_cannot_hold(net):
    w = net.witness("w", Condition("w", "", ppm=120.0, snr_db=20.0, seconds=24.0), seed=86)
    cfg = net.config({"small": "trusted-evidence", "large": "trusted-evidence"})
    with RemoteListener(cfg, "t-blackout") as listener:
        port = int(listener.endpoint.rsplit(":", 1)[1])
        with LoopbackRelay(("127.0.0.1", port)) as relay:
            net.start("small", relay.endpoint, w.path, "--speed", 2.0, "--backlog-messages", 12)
            net.start("large", relay.endpoint, w.path, "--speed", 2.0)
            assert net.pump(listener, 15.0, until=lambda: all(
                listener.source(n).counters.accepted >= 5 for n in ("small", "large")))
            relay.blackout()
            net.pump(listener, 4.0)  # 4 s dark = 8 s of audio = ~60 reports per receiver
            during = {n: listener.source(n).counters.accepted for n in ("small", "large")}
            relay.restore()
            assert net.pump(listener, 40.0, until=net.finished)
            status = {n: listener.source(n) for n in ("small", "large")}
            assert relay.refused >= 1 or relay.connections >= 4
    for name in ("small", "large"):
        summary = net.summary(name)
        s = status[name]
        c = s.counters
        assert summary["connects"] >= 2, net.stderr(name)
        assert summary["unacknowledged"] == 0
        # every report was either accepted once, or dropped by the sender's backlog and counted as lost here
        assert c.accepted + c.lost == summary["messages_total"]
        assert c.lost <= summary["backlog_dropped_messages"]
        assert c.accepted > during[name]
        assert s.clock_fit.locked
    small, large = status["small"].counters, status["large"].counters
    assert large.lost == 0 and net.summary("large")["backlog_dropped_messages"] == 0
    assert net.summary("large")["exit_code"] == 0
    assert small.lost > 0 and net.summary("small")["exit_code"] == 1  # 1: some reports were dropped
