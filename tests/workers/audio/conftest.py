"""Fixtures for the audio worker tests: a private JACK dummy server, worker subprocesses, JACK streams.

``jack_server`` starts ``jackd -d dummy -r 48000 -p 256`` under a unique
server name (``JACK_DEFAULT_SERVER``) so parallel runs never share a server,
points this process's PortAudio at it, and stops it by pid afterwards (also
when a test failed). Realtime scheduling is tried first, ``--no-realtime``
if that does not come up.
"""

from __future__ import annotations

import itertools
import os
import time

import pytest

from workers.audio import jack
from workers.audio.runner import WorkerProcess

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
        w.stop(timeout_s=5)


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
