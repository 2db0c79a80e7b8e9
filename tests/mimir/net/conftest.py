"""Helpers for the loopback tests: keys, witness files with known truth, receiver processes, a pump loop.

Only 127.0.0.1 is used; every wait is bounded; every process started here is
killed (by its own pid) if a test leaves it running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mimir.config import NetworkConfig, RemoteSourceConfig
from mimir.net import RemoteListener
from mimir.net.keys import load_public_key, write_keypair
from mimir.sync.trials import Condition, make_trial_audio


@dataclass
class Witness:
    path: Path
    rate_hz: int
    t0_s: float          # canonical time of local sample 0
    true_rate_hz: float  # effective rate after the impairment
    n_samples: int

    def offset_error_samples(self, a: float, rate: float) -> float:
        """Worst |fit - truth| (samples) at the first and last sample of the file."""
        errs = []
        for local in (0.0, float(self.n_samples)):
            t = self.t0_s + local / self.true_rate_hz
            errs.append(abs(a + t * rate - local))
        return max(errs)

    def rate_error_ppm(self, rate: float) -> float:
        return abs(rate / self.true_rate_hz - 1.0) * 1e6


def render_witness(path: Path, cond: Condition, seed: int) -> Witness:
    audio, (t0, true_rate, drops) = make_trial_audio(cond, np.random.default_rng(seed))
    assert not drops
    sf.write(str(path), audio.astype(np.float32), cond.rate_hz, subtype="FLOAT")
    return Witness(path, cond.rate_hz, t0, true_rate, audio.size)


@pytest.fixture(scope="module")
def keydir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for name in ("server", "raven", "laptop", "phone", "stranger", "banned", "small", "large"):
        write_keypair(d / name)
    return d


class Net:
    """One test's toolbox (the ``net`` fixture): configs, witness files, receiver processes, pumping."""

    def __init__(self, keydir: Path, logdir: Path) -> None:
        self.keydir = keydir
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen] = {}
        self._summaries: dict[str, dict] = {}

    def config(self, sources: dict[str, str], listen: str = "tcp://127.0.0.1:*", keys: dict[str, str] | None = None,
               **kw) -> NetworkConfig:
        """``sources``: source id -> trust; ``keys``: source id -> key file stem (default: the source id)."""
        keys = keys or {}
        return NetworkConfig(listen=listen, server_key_file=str(self.keydir / "server.key_secret"), sources=[
            RemoteSourceConfig(source_id=sid, public_key=load_public_key(self.keydir / f"{keys.get(sid, sid)}.key"),
                               trust=trust) for sid, trust in sources.items()], **kw)

    def witness(self, name: str, cond: Condition, seed: int) -> Witness:
        return render_witness(self.logdir / f"{name}.wav", cond, seed)

    def start(self, name: str, endpoint: str, file: Path, *extra: object, source_id: str | None = None,
              key: str | None = None) -> subprocess.Popen:
        argv = [sys.executable, "-m", "mimir.net", "receiver", "--source-id", source_id or name,
                "--connect", endpoint, "--file", str(file), "--key", str(self.keydir / f"{key or name}.key_secret"),
                "--server-key", str(self.keydir / "server.key"), "--json", *map(str, extra)]
        err = open(self.logdir / f"{name}.stderr", "w")
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        err.close()
        self.procs[name] = p
        return p

    def running(self) -> bool:
        return any(p.poll() is None for p in self.procs.values())

    def finished(self) -> bool:
        return not self.running()

    def summary(self, name: str) -> dict:
        """The receiver's exit summary (``--json``), read once and kept."""
        if name not in self._summaries:
            p = self.procs[name]
            p.wait(timeout=30)
            out = p.stdout.read()
            assert out.strip(), f"{name} printed no summary; stderr:\n{self.stderr(name)}"
            self._summaries[name] = json.loads(out)
        return self._summaries[name]

    def stderr(self, name: str) -> str:
        return (self.logdir / f"{name}.stderr").read_text()

    @staticmethod
    def pump(listener: RemoteListener, seconds: float, until=None) -> bool:
        """Poll ``listener`` for up to ``seconds``; stop early once ``until()`` holds. Returns whether it held."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            listener.poll()
            if until is not None and until():
                listener.poll()
                return True
            time.sleep(0.002)
        return until is None

    def kill_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
            if p.stdout:
                p.stdout.close()


@pytest.fixture
def net(keydir, tmp_path):
    n = Net(keydir, tmp_path)
    yield n
    n.kill_all()
