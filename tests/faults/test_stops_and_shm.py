"""Stopped workers, a killed supervisor with a stopped worker, and a /dev/shm too small for the rig.

Invariants (see tests/faults/conftest.py): a SIGSTOPped worker is noticed (heartbeat) and restarted, and a
SIGCONTed one either resumes or is replaced, with every item accounted; after a SIGKILL of the supervisor
while a worker is stopped, the next start of the rig deals with the leftover (reaps the orphan) and runs;
a shared memory too small for the rig is refused with one clear line and exit 2 before anything starts, and
a /dev/shm that fills up while the rig starts fails cleanly, naming the bytes needed, leaving nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from .conftest import (
    BIN, SMALL_RIG, RigRun, assert_every_item_accounted, assert_final_accounting_exact, assert_nothing_left,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_a_stopped_worker_is_restarted_and_a_continued_one_does_not_double_count(rig_run, rng):
    run = rig_run.start()
    run.wait_running()
    for victim in rng.sample(["camera.synthetic", "audio", "sync"], 3):
        pid = run.worker_pid(victim)
        before = next(w for w in run.status()["workers"] if w["name"] == victim)["restarts"]
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: next(w for w in run.status()["workers"] if w["name"] == victim)["restarts"] > before, 30,
                 f"the stopped {victim} to be replaced (heartbeat timeout)")
        os.kill(pid, signal.SIGCONT) if psutil.pid_exists(pid) else None  # killed by the supervisor already
        after = run.wait_running()
        assert run.alive()
        assert_every_item_accounted(after)
    code, err = run.stop()
    assert code == 0, err
    assert_final_accounting_exact(run.final)
    assert_nothing_left(run.rig)


def test_after_a_supervisor_sigkill_with_a_stopped_worker_the_next_start_reaps_it(rig, tmp_path):
    first = RigRun(rig, tmp_path).start()
    try:
        first.wait_running()
        camera = first.worker_pid("camera.synthetic")
        os.kill(camera, signal.SIGSTOP)  # its parent-death SIGTERM will stay pending
        first.kill()
        time.sleep(1.0)
        assert psutil.Process(camera).status() == psutil.STATUS_STOPPED  # the orphan still holds its rings
        second = RigRun(rig, tmp_path).start("--duration", "8")
        code, out, err = second.wait(90)
        assert code == 0, err
        assert not psutil.pid_exists(camera) or psutil.Process(camera).status() == psutil.STATUS_ZOMBIE
        assert "cam.synthetic.0" in out and "stopped" in err
    finally:
        if psutil.pid_exists(camera):
            os.kill(camera, signal.SIGKILL)
    assert_nothing_left(rig)


def _in_private_shm(size: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``argv`` in a private mount namespace whose /dev/shm is a fresh tmpfs of ``size``."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to give the rig a private, small /dev/shm")
    script = f"mount -t tmpfs -o size={size} tmpfs /dev/shm && exec \"$@\""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv],
                          capture_output=True, text=True, timeout=timeout)


def test_a_rig_that_does_not_fit_in_shared_memory_is_refused_before_anything_starts(rig, tmp_path):
    config = tmp_path / "rig.toml"
    config.write_text(SMALL_RIG.format(rig=rig))
    done = _in_private_shm("2m", str(BIN / "mimir-supervisor"), "start", "--config", str(config), "--duration", "5")
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "needs" in lines[0] and "MiB of shared memory" in lines[0] and "largest:" in lines[0]
    assert "Traceback" not in done.stderr


def test_a_segment_that_cannot_be_backed_fails_cleanly_with_the_numbers_and_leaves_nothing():
    """Reservation at creation: on a full tmpfs the creator gets an error naming bytes needed and free, never a
    SIGBUS later; nothing of the half-made object stays (a child process does it inside a 1 MiB /dev/shm)."""
    code = (
        "import msgspec, sys\n"
        "from ringbuf import Ring, U64, OutOfSharedMemory, list_segments\n"
        "class D(msgspec.Struct):\n    v: U64\n"
        "try:\n"
        "    Ring.create('big', rig='full', descriptor=D, capacity=64, payload_shape=(65536,))\n"
        "except OutOfSharedMemory as exc:\n"
        "    print('REFUSED', exc); print('LEFT', list_segments('full')); sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    done = _in_private_shm("1m", sys.executable, "-c", code)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "REFUSED cannot reserve 4.0 MiB of shared memory" in done.stdout and "/dev/shm has" in done.stdout
    assert "LEFT []" in done.stdout
