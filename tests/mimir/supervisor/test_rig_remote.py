"""The supervisor with a remote receiver: CURVE on loopback, status rows, event claims in the reservoir."""
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mimir.descriptors import SampleKind
from mimir.net.keys import load_public_key
from mimir.reservoir import ReservoirView
from mimir.topology import OBSERVED

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_trusted_remote_receiver_reports_into_the_running_rig(rig, tmp_path):
    for name in ("server", "raven"):
        subprocess.run([str(BIN / "mimir"), "keys", "generate", "--out", str(tmp_path / name)], check=True,
                       capture_output=True)
    port = free_port()
    config = tmp_path / "rig.toml"
    config.write_text(f'''
rig = "{rig}"
[[cameras]]
family = "synthetic"
count = 1
width = 160
height = 120
fps = 30.0
[network]
listen = "tcp://127.0.0.1:{port}"
server_key_file = "{tmp_path / 'server.key_secret'}"
[[network.sources]]
source_id = "raven"
public_key = "{load_public_key(tmp_path / 'raven.key')}"
trust = "trusted-evidence"
''')
    witness = tmp_path / "raven.wav"
    subprocess.run([str(BIN / "mimir"), "codebook", "render", str(witness), "--seconds", "12", "--rate", "48000",
                    "--start", "1000"], check=True, capture_output=True)
    sup = subprocess.Popen([str(BIN / "mimir-supervisor"), "start", "--config", str(config)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        recv = subprocess.run(
            [str(BIN / "mimir"), "receiver", "--source-id", "raven", "--connect", f"tcp://127.0.0.1:{port}",
             "--file", str(witness), "--key", str(tmp_path / "raven.key_secret"),
             "--server-key", str(tmp_path / "server.key"), "--fast", "--approx-canonical-s", "1000",
             "--linger-s", "5"], capture_output=True, text=True, timeout=90)
        assert recv.returncode == 0, recv.stderr[-2000:]
        deadline = time.monotonic() + 20
        remote = None
        while time.monotonic() < deadline:
            snap = json.loads(subprocess.run([str(BIN / "mimir"), "status", "--rig", rig, "--json"],
                                             capture_output=True, text=True, check=True).stdout)
            remote = next((s for s in snap["sources"] if s["name"] == "remote.raven"), None)
            if remote and remote["clock_locked"] and remote["indexed"] > 0:
                break
            time.sleep(0.5)
        assert remote is not None and remote["clock_locked"] == 1, remote
        assert abs(remote["clock_rate_hz"] - 48_000) < 0.01
        assert abs(remote["clock_local_sample_at_epoch"] - (-1000 * 48_000)) < 0.5  # local sample 0 = canonical 1000 s
        assert remote["trust_level"] == 4 and remote["influences_canonical"] == 1 and remote["rejected"] == 0
        view, observed = ReservoirView.attach(rig), ReservoirView.attach(rig, OBSERVED)
        try:
            assert view.view_count(SampleKind.EVENT_CLAIM) == 0  # never into the rig's own reservoir
            assert observed.view_count(SampleKind.EVENT_CLAIM) > 0  # its trust decisions, on the canonical timeline
        finally:
            observed.close()
            view.close()
        # the file's anchors and fits are about canonical 1000-1012 s, long before the rig's now: refused, counted
        assert remote["claims_refused_past"] > 0 and remote["claims_stored"] > 0 and remote["connections"] == 1
        text = subprocess.run([str(BIN / "mimir"), "status", "--rig", rig], capture_output=True, text=True).stdout
        assert "remote.raven" in text and "trust trusted-evidence, influences canonical time" in text
    finally:
        sup.send_signal(signal.SIGTERM)
        out, err = sup.communicate(timeout=60)
    assert sup.returncode == 0, err[-2000:]
