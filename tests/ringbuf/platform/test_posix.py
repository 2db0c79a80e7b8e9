"""The POSIX pieces of the seam (Linux and macOS): FIFO doorbells and flock locks, with real processes."""
import multiprocessing as mp
import os
import select
import signal
import time

import pytest

from ringbuf.platform import LockTimeout, SegmentMissing
from ringbuf.platform.base import bell_name, parse_bell_name
from ringbuf.platform.posix import FifoListener, FifoSender, FlockLock

FORK = mp.get_context("fork")


def test_bell_names_carry_the_listeners_pid():
    name = bell_name("rig1", (4242 << 16) | 7)
    assert name == "mimir-rig1-#bell.4242.7" and parse_bell_name(name) == 4242
    assert parse_bell_name("mimir-rig1-c0") is None and parse_bell_name("mimir-rig1-#bell.x") is None


def test_fifo_doorbell_waits_wakes_drains_and_is_removed_by_its_listener(tmp_path):
    listener = FifoListener(tmp_path, "rig1")
    sender = FifoSender(tmp_path, "rig1")
    try:
        assert listener.path.exists() and (listener.bell_id >> 16) == os.getpid()
        assert listener.wait(0.02) is False
        for _ in range(3):
            sender.ring(listener.bell_id)
        assert select.select([listener.fileno()], [], [], 1.0)[0]
        assert listener.wait(0) is True and listener.wait(0) is False  # one wait drains every ring
    finally:
        listener.close()
        listener.close()
    assert not listener.path.exists()
    sender.ring(listener.bell_id)  # the listener is gone: silently nothing
    sender.close()


def test_a_sender_forgets_a_listener_that_closed(tmp_path):
    listener = FifoListener(tmp_path, "rig1")
    sender = FifoSender(tmp_path, "rig1")
    sender.ring(listener.bell_id)
    listener.close()
    sender.ring(listener.bell_id)  # EPIPE on the kept write end: forgotten, no exception
    assert listener.bell_id not in sender._fds
    sender.close()


def _hold(path, held, release) -> None:
    lock = FlockLock(path)
    lock.acquire(1.0)
    held.set()
    release.wait(30)


def test_flock_times_out_on_a_live_holder_and_is_released_by_its_death(tmp_path):
    path = tmp_path / "obj#lock"
    path.touch()
    held, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(path, held, release))
    holder.start()
    lock = FlockLock(path)
    try:
        assert held.wait(10)
        with pytest.raises(LockTimeout, match="held by a live process"):
            lock.acquire(0.05)
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        started = time.monotonic()
        lock.acquire(5.0)  # the kernel released the dead holder's lock
        assert time.monotonic() - started < 5.0
        lock.release()
    finally:
        lock.close()
        if holder.is_alive():
            holder.kill()
            holder.join()


def test_a_missing_lock_file_means_the_object_is_gone(tmp_path):
    with pytest.raises(SegmentMissing, match="its object was closed"):
        FlockLock(tmp_path / "gone#lock")
