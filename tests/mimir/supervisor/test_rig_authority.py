"""A remote canonical authority, selected then lost, on a real rig: supervisor, audio and sync workers, a real
`mimir receiver` process over CURVE on loopback, the time transfer between them.

The receiver plays a witness file rendered 100 s ahead of the rig's own canonical time, paced in real time, so
its timeline is ~100 s ahead of the local reference's. Invariants: the rig locks on its local reference first;
selecting the authority is an AUTHORITY segment whose measured step is that ~100 s; while it rules, status names
it; when the receiver stops, its fit ages past `network.max_fit_age_s` and the rig falls back to the local
reference, again an AUTHORITY segment with the step back, visible in status. No step is ever smoothed away.
"""
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mimir.net.keys import load_public_key
from mimir.supervisor.clock import SegmentReason
from mimir.supervisor.clock_board import read_clock
from mimir.sync.witness_output import DEFAULT_EPOCH_UNIX_S

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
AHEAD_S = 100.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _header(rig: str) -> dict:
    """The status header, or {} while no supervisor publishes one yet."""
    done = subprocess.run([str(BIN / "mimir"), "status", "--rig", rig, "--json"], capture_output=True, text=True)
    return json.loads(done.stdout)["header"] if done.returncode == 0 else {}


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def test_a_remote_authority_is_followed_while_it_holds_and_dropped_visibly_when_it_goes(rig, tmp_path):
    for name in ("server", "raven"):
        subprocess.run([str(BIN / "mimir"), "keys", "generate", "--out", str(tmp_path / name)], check=True,
                       capture_output=True)
    port = _free_port()
    config = tmp_path / "rig.toml"
    config.write_text(f'''
rig = "{rig}"
[sync]
authority = "raven"
[audio]
backend = "synthetic"
channels = 2
synthetic_signal = "room"
[network]
listen = "tcp://127.0.0.1:{port}"
server_key_file = "{tmp_path / 'server.key_secret'}"
max_fit_age_s = 3.0
[[network.sources]]
source_id = "raven"
public_key = "{load_public_key(tmp_path / 'raven.key')}"
trust = "canonical-authority"
''')
    start_s = time.time() - DEFAULT_EPOCH_UNIX_S + AHEAD_S + 5.0  # +5: the file starts playing a few s from now
    witness = tmp_path / "raven.wav"
    subprocess.run([str(BIN / "mimir"), "codebook", "render", str(witness), "--seconds", "25", "--rate", "48000",
                    "--start", f"{start_s:.3f}"], check=True, capture_output=True)
    sup = subprocess.Popen([str(BIN / "mimir-supervisor"), "start", "--config", str(config)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    receiver = None
    try:
        locked_local = _wait(lambda: (h := _header(rig)).get("clock_state") == 1
                             and h.get("clock_authority") == 0 and h, 60, "the local reference to lock")
        assert "not followed" in locked_local["clock_authority_why"]
        receiver = subprocess.Popen(
            [str(BIN / "mimir"), "receiver", "--source-id", "raven", "--connect", f"tcp://127.0.0.1:{port}",
             "--file", str(witness), "--key", str(tmp_path / "raven.key_secret"),
             "--server-key", str(tmp_path / "server.key"), "--approx-canonical-s", f"{start_s:.3f}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        following = _wait(lambda: (h := _header(rig)).get("clock_authority") == 1 and h, 40,
                          "the rig to follow the remote authority")
        assert "raven: followed" in following["clock_authority_why"] and following["clock_state"] == 1
        receiver.send_signal(signal.SIGINT)
        receiver.communicate(timeout=30)
        fallen = _wait(lambda: (h := _header(rig)).get("clock_authority") == 0
                       and "LOST" in h.get("clock_authority_why", "") and h, 30, "the fallback to the local reference")
        assert fallen["clock_state"] == 1  # back on the local reference's fit, locked
        clock = read_clock(rig)
        switches = [s for s in clock.segments if s.reason == SegmentReason.AUTHORITY]
        assert [s.authority for s in switches] == [1, 0], clock.segments
        to_remote, back = switches
        # the remote timeline is AHEAD_S ahead, less however late the receiver started playing (a few s at most)
        assert AHEAD_S - 10.0 < to_remote.step_ns / 1e9 < AHEAD_S + 1.0, to_remote
        assert abs(back.step_ns + to_remote.step_ns) < 0.5e9, (to_remote, back)  # the way back undoes it
    finally:
        if receiver is not None and receiver.poll() is None:
            receiver.kill()
            receiver.communicate()
        sup.send_signal(signal.SIGTERM)
        _, err = sup.communicate(timeout=60)
    assert sup.returncode == 0, err
