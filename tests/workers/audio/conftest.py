"""Fixtures for the audio worker tests: a private JACK dummy server, worker subprocesses, JACK streams.

``jack_server`` starts ``jackd -d dummy -r 48000 -p 256`` under a unique
server name (``JACK_DEFAULT_SERVER``) so parallel runs never share a server,
points this process's PortAudio at it, and stops it by pid afterwards (also
when a test failed). Realtime scheduling is tried first, ``--no-realtime``
if that does not come up.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workers.audio import jack
from workers.audio.runner import DONE_PREFIX, READY_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[3]
_names = itertools.count()


@pytest.fixture(scope="module")
def jack_server():
    missing = jack.jack_tools_available()
    if missing:
        pytest.skip(f"{missing} is not installed (apt-get install jackd2; scripts/setup.sh installs it), "
                    "so there is no JACK server to test against")
    from workers.audio.backends.portaudio import load_sounddevice, reinitialize_portaudio

    sd = load_sounddevice()
    server = jack.DummyServer(48000, 256, name=f"mimirtest{os.getpid()}x{next(_names)}")
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    try:
        server.start()
        os.environ.update(JACK_DEFAULT_SERVER=server.name, JACK_NO_START_SERVER="1")
        reinitialize_portaudio()
        if not any("jack" in api["name"].lower() for api in sd.query_hostapis()):
            pytest.fail("PortAudio does not see the JACK server: this libportaudio2 has no JACK support")
        yield server
    finally:
        try:
            sd._terminate()  # close PortAudio's JACK client before its server goes away
        finally:
            server.close()   # stops jackd by pid
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            sd._initialize()


class WorkerProcess:
    """``python -m workers.audio worker ...`` as a subprocess; stderr drained; stopped by pid."""

    def __init__(self, args: list[str], env: dict | None = None) -> None:
        full_env = dict(env if env is not None else os.environ)
        full_env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen([sys.executable, "-m", "workers.audio", "worker", *args], cwd=str(REPO_ROOT),
                                     env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.ready: dict | None = None
        self.done: dict | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if line.startswith(READY_PREFIX):
                self.ready = json.loads(line[len(READY_PREFIX):])
                self._ready.set()
            elif line.startswith(DONE_PREFIX):
                self.done = json.loads(line[len(DONE_PREFIX):])
        self._ready.set()

    def wait_ready(self, timeout_s: float = 20.0) -> dict:
        self._ready.wait(timeout_s)
        assert self.ready is not None, f"worker did not become ready (exit {self.proc.poll()}):\n" + "\n".join(self.lines)
        return self.ready

    def signal(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout_s)
        self._thread.join(timeout=2)
        return code

    def kill(self) -> None:
        """Stop by pid: SIGTERM (the worker unlinks its rings), SIGKILL if it does not exit within 5 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._thread.join(timeout=2)

    def stderr(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def start_worker():
    """Factory: start a worker subprocess; every one started is killed (by pid) at teardown if still running."""
    started: list[WorkerProcess] = []

    def factory(args: list[str], env: dict | None = None) -> WorkerProcess:
        w = WorkerProcess(args, env)
        started.append(w)
        return w

    yield factory
    for w in started:
        w.kill()


def _wait_until(predicate, timeout_s: float, what: str = "condition", interval_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


@pytest.fixture
def wait_until():
    """``wait_until(predicate, timeout_s, what)``: poll until true or fail naming what was awaited."""
    return _wait_until
