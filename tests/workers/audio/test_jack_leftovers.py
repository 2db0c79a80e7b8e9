"""What a killed run left of a private JACK server is removed by the next start (promise 4: nothing leaks).

Invariants: a server whose starting process is gone is stopped and its client semaphores removed; a live
process's server and semaphores are never touched; names that are not Mimir's are left alone.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from ringbuf.platform import PLATFORM
from workers.audio import jack


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _semaphore(name: str) -> str:
    PLATFORM.shm_create(name, 16).close()
    return name


def test_client_semaphores_of_a_dead_starter_are_removed_and_others_kept():
    dead, live = _dead_pid(), psutil.Process().pid
    stale = _semaphore(f"jack_sem.0_mimirtest{dead}x0_PortAudio")
    kept = [_semaphore(f"jack_sem.0_mimirtest{live}x7_PortAudio"), _semaphore(f"jack_sem.0_studio{dead}x0_PortAudio")]
    try:
        assert stale in jack.remove_leftovers()
        listed = PLATFORM.list_objects("jack_sem.")
        assert stale not in listed and all(k in listed for k in kept)
    finally:
        for name in [stale, *kept]:
            PLATFORM.remove_object(name)


@pytest.mark.slow
def test_the_jackd_of_a_killed_starter_is_stopped_by_the_next_start():
    missing = jack.jack_tools_available()
    if missing:
        pytest.skip(f"{missing} is not installed (scripts/setup.sh installs jackd2)")
    starter = subprocess.Popen([sys.executable, "-c", (
        "import time; from workers.audio.jack import DummyServer\n"
        "s = DummyServer(48000, 256, realtime=False).start(); print(s.proc.pid, flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    jackd = psutil.Process(int(starter.stdout.readline()))
    starter.kill()  # a SIGKILLed run: its server keeps running in a session of its own
    starter.wait()
    assert jackd.is_running()
    assert any(item.startswith(f"jackd {jackd.pid} ") for item in jack.remove_leftovers())
    deadline = time.monotonic() + 10
    while jackd.is_running() and jackd.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not jackd.is_running() or jackd.status() == psutil.STATUS_ZOMBIE
