"""The supervisor refuses clearly, and never becomes a restart loop that looks like success.

* a worker that refuses its spec at start (exit 2: a device that is not there) stops the rig at once with
  that worker's own line, and `mimir-supervisor start` exits 2;
* a file squatting on the board's name is never taken for a running supervisor (exit 2, left alone);
* hostile remote anchors (1e6 s ahead, at 9.99e14 s, an hour back) sent to a running supervisor neither crash
  it nor move its reservoir's edge; each refusal shows in `mimir status` by cause.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from mimir.net.keys import load_public_key, load_secret_key, write_keypair
from mimir.net.messages import Anchor, AnchorBatch, Envelope, encode
from ringbuf import list_segments
from ringbuf.platform import PLATFORM

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def start(config: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mimir-supervisor"), "start", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_a_worker_refusing_its_spec_at_start_stops_the_rig_with_its_line_and_exit_2(rig, tmp_path):
    config = tmp_path / "rig.toml"
    config.write_text(f'rig = "{rig}"\n[[cameras]]\nfamily = "ps3eye"\nformat = "GRBG"\ncount = 1\n')
    t0 = time.monotonic()
    r = start(config, "--duration", "60")
    assert r.returncode == 2, r.stderr[-3000:]
    assert time.monotonic() - t0 < 30  # at once: not after the duration, not after restarts
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mimir-supervisor: rig {rig!r} stopped: worker camera.ps3eye refused to start: "
                           "mimir-worker camera: error: ps3eye:"), last
    assert last.endswith("not restarting")
    assert "Traceback" not in r.stderr and not list_segments(rig)


@pytest.mark.skipif(PLATFORM.name != "linux", reason="squats the board's name as a file in /dev/shm")
def test_a_squatter_on_the_boards_name_is_not_a_running_supervisor(rig, tmp_path):
    squatter = Path("/dev/shm") / f"mimir-{rig}-sw"
    squatter.write_bytes(b"not ours" * 512)
    try:
        config = tmp_path / "rig.toml"
        config.write_text(f'rig = "{rig}"\n')
        r = start(config, "--duration", "1")
        lines = r.stderr.splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert "already supervised" not in lines[0] and "is not a Mimir object of this version" in lines[0]
        assert squatter.read_bytes() == b"not ours" * 512
    finally:
        squatter.unlink(missing_ok=True)
        for name in list_segments(rig):
            PLATFORM.remove_object(name)


def test_hostile_anchors_neither_crash_the_supervisor_nor_move_its_reservoir(rig, tmp_path):
    for name in ("server", "mallory"):
        write_keypair(tmp_path / name)
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "rig.toml"
    config.write_text(f'''rig = "{rig}"
[[cameras]]
family = "synthetic"
count = 1
width = 32
height = 24
fps = 30.0
[network]
listen = "tcp://127.0.0.1:{port}"
server_key_file = "{tmp_path / 'server.key_secret'}"
[[network.sources]]
source_id = "mallory"
public_key = "{load_public_key(tmp_path / 'mallory.key')}"
trust = "candidate-evidence"
''')
    sup = subprocess.Popen([str(BIN / "mimir-supervisor"), "start", "--config", str(config)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ctx = zmq.Context()

    def status() -> dict:
        r = subprocess.run([str(BIN / "mimir"), "status", "--rig", rig, "--json"], capture_output=True, text=True)
        return json.loads(r.stdout) if r.returncode == 0 else {}

    def mallory(snap: dict) -> dict:
        return next((s for s in snap.get("sources", []) if s["name"] == "remote.mallory"), {})

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not status().get("header", {}).get("indexed_total"):
            time.sleep(0.3)
        edge_before = status()["header"]["reservoir_edge_ns"]
        pair = load_secret_key(tmp_path / "mallory.key_secret")
        sock = ctx.socket(zmq.DEALER)
        sock.curve_serverkey = load_public_key(tmp_path / "server.key").encode()
        sock.curve_publickey, sock.curve_secretkey = pair.public_bytes, pair.secret_bytes
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{port}")
        now_s = edge_before / 1e9
        for seq, t in enumerate([now_s + 1e6, 9.99e14, now_s - 3600]):
            body = AnchorBatch(segment=0, decoded_unix_ns=1, anchors=[
                Anchor(event_index=seq * 10 + k, canonical_s=t, local_sample=0.0, confidence=0.9) for k in range(3)])
            sock.send(encode(Envelope(v=1, source_id="mallory", session=1, seq=seq, low_water=0, sent_unix_ns=1,
                                      body=body)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and mallory(status()).get("claims_refused_past", 0) < 3:
            time.sleep(0.3)
        snap = status()
        row = mallory(snap)
        assert (row["claims_refused_future"], row["claims_refused_past"]) == (6, 3), row
        assert sup.poll() is None  # alive (the absurd anchor stopped it before)
        edge = snap["header"]["reservoir_edge_ns"]
        assert edge_before <= edge < edge_before + 30 * 10**9  # moved with the camera, never 1e6 s ahead
        assert snap["reservoir"]["event_claim_count"] == 0
        text = subprocess.run([str(BIN / "mimir"), "status", "--rig", rig], capture_output=True, text=True).stdout
        assert "claims stored" in text and "refused: future 6, past 3" in text and "network: handshakes" in text
    finally:
        ctx.destroy(linger=0)
        sup.send_signal(signal.SIGTERM)
        out, err = sup.communicate(timeout=60)
    assert sup.returncode == 0, err[-2000:]
