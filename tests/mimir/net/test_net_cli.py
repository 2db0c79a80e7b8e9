"""Bad input gives a clear `error:` and exit code 2; bad [network] configs are refused with the field named."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from mimir.config import NetworkConfig, RemoteSourceConfig
from mimir.net import ListenerConfigError, RemoteListener
from mimir.net.__main__ import app
from mimir.net.audio_source import PcmRing
from mimir.net.keys import load_public_key, write_keypair

runner = CliRunner()


@pytest.fixture
def keys(tmp_path):
    for name in ("server", "raven"):
        write_keypair(tmp_path / name)
    (tmp_path / "w.wav").write_bytes(b"RIFF....not audio")
    return tmp_path


def _receiver(keys, *args):
    base = ["receiver", "--source-id", "raven", "--connect", "tcp://127.0.0.1:5999",
            "--key", str(keys / "raven.key_secret"), "--server-key", str(keys / "server.key")]
    return runner.invoke(app, base + [str(a) for a in args])


@pytest.mark.parametrize("args, message", [
    (["--file", "MISSING.wav"], "cannot read"),
    (["--file", "w.wav", "--input", "0"], "exactly one of"),
    ([], "exactly one of"),
    (["--file", "w.wav", "--speed", "0"], "--speed"),
    (["--file", "w.wav", "--backlog-messages", "100000"], "--backlog-messages"),
    (["--file", "w.wav", "--linger-s", "-1"], "--linger-s"),
])
def test_receiver_argument_errors_exit_2(keys, monkeypatch, args, message):
    monkeypatch.chdir(keys)
    r = _receiver(keys, *args)
    assert r.exit_code == 2 and "error:" in r.output and message in r.output, r.output


@pytest.mark.parametrize("args, message", [
    (["--band", "abc"], "LO-HI"),
    (["--band", "300-2500"], "holds 1 of the witness's 8 sub-bands"),  # cannot hold the codebook: refused
    (["--path-distance-m", "-2"], "path distance"),
])
def test_receiver_band_and_path_errors_exit_2(keys, monkeypatch, args, message):
    import soundfile as sf

    monkeypatch.chdir(keys)
    sf.write(keys / "real.wav", np.zeros(48000, np.float32), 48000)
    r = _receiver(keys, "--file", "real.wav", *args)
    assert r.exit_code == 2 and r.output.count("error:") == 1 and message in r.output, r.output


def test_receiver_endpoint_and_key_errors_exit_2(keys, monkeypatch):
    monkeypatch.chdir(keys)
    r = runner.invoke(app, ["receiver", "--source-id", "raven", "--connect", "127.0.0.1:5999", "--file", "w.wav"])
    assert r.exit_code == 2 and "tcp://HOST:PORT" in r.output
    r = runner.invoke(app, ["receiver", "--source-id", "raven", "--connect", "tcp://127.0.0.1:5999",
                            "--file", "w.wav"])  # default key names: raven.key_secret exists, server.key too
    assert r.exit_code == 2 and "cannot read" in r.output  # got as far as the (bad) audio file
    r = _receiver(keys, "--file", "w.wav", "--key", keys / "raven.key")
    assert r.exit_code == 2 and "public .key" in r.output
    r = runner.invoke(app, ["receiver", "--source-id", "bad id!", "--connect", "tcp://127.0.0.1:1", "--file", "w"])
    assert r.exit_code == 2 and "--source-id" in r.output


def test_listener_refuses_bad_network_configs(keys):
    key = load_public_key(keys / "raven.key")
    server = str(keys / "server.key_secret")

    def cfg(**kw):
        base = dict(listen="tcp://127.0.0.1:*", server_key_file=server,
                    sources=[RemoteSourceConfig(source_id="raven", public_key=key)])
        base.update(kw)
        return NetworkConfig(**base)

    cases = [
        (cfg(listen=None), "network.listen"),
        (cfg(server_key_file=None), "server_key_file"),
        (cfg(server_key_file=str(keys / "server.key")), "server_key_file"),
        (cfg(sources=[RemoteSourceConfig(source_id="a", public_key=key),
                      RemoteSourceConfig(source_id="b", public_key=key)]), "exactly one source id"),
        (cfg(sources=[RemoteSourceConfig(source_id="a", public_key=key),
                      RemoteSourceConfig(source_id="a", public_key=load_public_key(keys / "server.key"))]),
         "listed twice"),
        (cfg(sources=[RemoteSourceConfig(source_id="a", public_key="x" * 39 + '"')]), "Z85"),
        (cfg(sources=[RemoteSourceConfig(source_id="a", public_key=load_public_key(keys / "server.key"))]),
         "the rig's own server key"),
        (cfg(listen="5591"), "not an endpoint to listen on"),
        (cfg(listen="tcp://999.1.1.1:5"), "cannot listen"),
    ]
    for config, message in cases:
        with pytest.raises(ListenerConfigError, match=message):
            RemoteListener(config, "t-badcfg")
    with RemoteListener(cfg(), "t-goodcfg") as listener:  # and a good one binds, and closes cleanly
        assert listener.endpoint.startswith("tcp://127.0.0.1:")
        assert listener.poll() == 0
        assert listener.source("raven").decision.reason.endswith("no fit received")


def test_pcm_ring_keeps_the_newest_audio_by_local_index():
    ring = PcmRing(rate_hz=100.0, seconds=1.0)  # 100 samples
    x = np.arange(250, dtype=np.float32)
    for at in range(0, 250, 30):
        ring.write(at, x[at:at + 30])
    assert (ring.start, ring.end) == (150, 250)
    assert np.array_equal(ring.read(200, 50), x[200:250])
    assert ring.read(149, 10) is None and ring.read(245, 10) is None
    ring.write(400, x[:10])  # a gap: older audio is no longer contiguous with the new
    assert ring.start == 400 and np.array_equal(ring.read(400, 10), x[:10])


def test_without_the_zap_handler_nobody_gets_in(keys):
    """ZAP_ENFORCE_DOMAIN: if the authenticator thread is gone, even a listed key is refused (fail closed)."""
    import time

    import zmq

    from mimir.net.keys import load_secret_key

    cfg = NetworkConfig(listen="tcp://127.0.0.1:*", server_key_file=str(keys / "server.key_secret"),
                        sources=[RemoteSourceConfig(source_id="raven", public_key=load_public_key(keys / "raven.key"),
                                                    trust="trusted-evidence")])
    client = load_secret_key(keys / "raven.key_secret")
    with RemoteListener(cfg, "t-nozap") as listener:
        listener._auth.stop()
        ctx = zmq.Context()
        dealer = ctx.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.curve_secretkey, dealer.curve_publickey = client.secret_bytes, client.public_bytes
        dealer.curve_serverkey = load_public_key(keys / "server.key").encode()
        dealer.connect(listener.endpoint)
        dealer.send(b"anything")
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and listener.status().handshakes.failed_other == 0:
            listener.poll()
            time.sleep(0.01)
        st = listener.status()
        dealer.close()
        ctx.term()
    assert not st.authenticator_alive
    assert st.handshakes.succeeded == 0 and st.handshakes.failed_other >= 1
    assert listener.frames_received == 0
