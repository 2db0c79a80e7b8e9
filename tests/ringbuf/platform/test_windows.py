"""WindowsPlatform's logic against a fake Windows kernel (tests/ringbuf/platform/conftest.py), and the ring above it.

The real kernel32/_winapi binding (ringbuf/platform/win32.py) never runs
here; everything above it does: exclusive creation, commit failures, the
last-handle lifetime of mappings, mutex takeover, the marker registry, and
the real Ring and SharedObject code on top with UDP doorbells.
"""
import threading
import time

import msgspec
import numpy as np
import pytest

from ringbuf import U64, Ring, RingReader, SegmentExists, SegmentMissing, remove_stale, scan
from ringbuf.platform import LockTimeout, OutOfSharedMemory, SegmentError
from ringbuf.platform import windows as win
from ringbuf.platform.udp import UdpListener, UdpSender
from ringbuf.segment import list_segments


class Stamp(msgspec.Struct):
    sequence: U64


def test_create_commits_attach_maps_the_same_memory_and_readonly_is_readonly(fake_kernel, tmp_path):
    platform = win.WindowsPlatform(kernel=fake_kernel, objects_dir=tmp_path)
    buf = platform.shm_create("mimir-x-a", 8192)
    assert fake_kernel.committed_bytes == 8192 and fake_kernel.exists("Local\\mimir-x-a")
    assert platform.list_objects("mimir-x-") == ["mimir-x-a"]
    buf[:5] = b"hello"
    reader = platform.shm_attach("mimir-x-a", readonly=True)
    assert len(reader) == 8192 and reader[:5] == b"hello"
    with pytest.raises(TypeError):
        reader[0] = 1
    writer2 = platform.shm_attach("mimir-x-a", readonly=False)
    writer2[5:6] = b"!"
    assert buf[:6] == b"hello!"
    for view in (reader, writer2, buf):
        view.close()
    assert not fake_kernel.exists("Local\\mimir-x-a")  # the last view closed: the mapping is gone
    assert platform.shm_unlink("mimir-x-a") is True  # only the marker was left
    assert platform.list_objects("mimir-x-") == []


def test_a_taken_name_is_refused_with_the_windows_reason(fake_kernel, tmp_path):
    platform = win.WindowsPlatform(kernel=fake_kernel, objects_dir=tmp_path)
    buf = platform.shm_create("mimir-x-a", 4096)
    with pytest.raises(SegmentExists, match="lives until the last process that opened it closes it"):
        platform.shm_create("mimir-x-a", 4096)
    buf.close()
    platform.shm_unlink("mimir-x-a")


def test_a_commit_failure_is_out_of_shared_memory_with_the_numbers_and_leaves_nothing(fake_kernel, tmp_path):
    fake_kernel.commit_limit_bytes = 3 * 2**20
    platform = win.WindowsPlatform(kernel=fake_kernel, objects_dir=tmp_path)
    with pytest.raises(OutOfSharedMemory, match=r"cannot commit 4\.0 MiB .* 3\.0 MiB can still be committed"):
        platform.shm_create("mimir-x-big", 4 * 2**20)
    assert fake_kernel.objects == {} and platform.list_objects("mimir-") == []
    assert platform.shm_available_bytes() <= 3 * 2**20


def test_attaching_a_missing_object_says_so(fake_kernel, tmp_path):
    platform = win.WindowsPlatform(kernel=fake_kernel, objects_dir=tmp_path)
    with pytest.raises(SegmentMissing, match="is its writer running"):
        platform.shm_attach("mimir-x-none", readonly=True)


def test_nothing_is_unlinked_a_mapping_lives_while_any_view_does(fake_kernel, tmp_path):
    platform = win.WindowsPlatform(kernel=fake_kernel, objects_dir=tmp_path)
    assert platform.unlinks is False
    buf = platform.shm_create("mimir-x-a", 4096)
    view = platform.shm_attach("mimir-x-a", readonly=True)
    buf.close()
    platform.shm_unlink("mimir-x-a")  # the writer is done; a reader still maps it
    assert fake_kernel.exists("Local\\mimir-x-a") and platform.list_objects("mimir-") == []
    with pytest.raises(SegmentExists):  # no new incarnation while the old one is mapped
        platform.shm_create("mimir-x-a", 4096)
    view.close()
    again = platform.shm_create("mimir-x-a", 4096)  # the last handle closed: the name is free
    assert again[:8] == b"\0" * 8
    again.close()
    platform.shm_unlink("mimir-x-a")


def test_lock_waits_times_out_on_a_live_holder_and_takes_over_from_a_dead_one(fake_kernel, tmp_path):
    platform = win.WindowsPlatform(kernel=fake_kernel, objects_dir=tmp_path)
    platform.create_lock("mimir-x-a")
    lock = platform.open_lock("mimir-x-a")
    held, release = threading.Event(), threading.Event()

    def holder(exit_holding: bool) -> None:
        other = platform.open_lock("mimir-x-a")
        other.acquire(1.0)
        held.set()
        if not exit_holding:
            release.wait(10)
            other.release()
        other.close()  # a thread that ends while holding the mutex abandons it

    t = threading.Thread(target=holder, args=(False,))
    t.start()
    assert held.wait(5)
    started = time.monotonic()
    with pytest.raises(LockTimeout, match="held by a live process"):
        lock.acquire(0.05)
    assert time.monotonic() - started >= 0.04
    release.set()
    t.join()
    lock.acquire(1.0)
    assert lock.took_over is False
    lock.release()

    held.clear()
    t = threading.Thread(target=holder, args=(True,))
    t.start()
    t.join()
    assert held.is_set()
    lock.acquire(1.0)  # the holder died holding it: the kernel hands it over
    assert lock.took_over is True
    lock.release()
    lock.close()
    lock.close()
    platform.remove_lock("mimir-x-a")
    with pytest.raises(SegmentMissing, match="its object was closed"):
        platform.open_lock("mimir-x-a")


def test_an_unexpected_wait_result_is_an_error_not_a_lock(fake_kernel, tmp_path, monkeypatch):
    platform = win.WindowsPlatform(kernel=fake_kernel, objects_dir=tmp_path)
    platform.create_lock("mimir-x-a")
    lock = platform.open_lock("mimir-x-a")
    monkeypatch.setattr(fake_kernel, "wait", lambda handle, ms: 0x1234)
    with pytest.raises(SegmentError, match="returned 0x1234"):
        lock.acquire(0.1)
    lock.close()
    platform.remove_lock("mimir-x-a")


def test_doorbells_are_udp_and_the_barrier_is_the_kernels(fake_kernel, tmp_path):
    platform = win.WindowsPlatform(kernel=fake_kernel, objects_dir=tmp_path)
    listener, sender = platform.doorbell_listener("x"), platform.doorbell_sender("x")
    assert isinstance(listener, UdpListener) and isinstance(sender, UdpSender)
    listener.close()
    sender.close()
    platform.full_barrier()()
    assert fake_kernel.barriers == 1
    assert set(platform.limits()) >= {"names", "shared memory", "cleanup", "discovery", "doorbells", "locks"}


# ---- the real ring code on the Windows platform -----------------------------------------------------------------
def test_a_ring_runs_on_windows_rules_end_to_end(windows_platform, fake_kernel, rig):
    ring = Ring.create("r", rig=rig, descriptor=Stamp, capacity=8, payload_shape=(32,))
    reader = RingReader.attach("r", rig=rig, descriptor=Stamp)  # registers under the named mutex
    assert list_segments(rig) == [f"mimir-{rig}-r"]  # a marker; the lock is a mutex, not a file
    assert fake_kernel.exists(f"Local\\mimir-{rig}-r#lock")

    def write() -> None:
        for n in range(50):
            ring.write(np.full(32, n % 256, np.uint8), n)
            time.sleep(0.001)

    t = threading.Thread(target=write)
    t.start()
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 50 and time.monotonic() < deadline:
        if reader.wait(1.0):  # sleeps on a UDP doorbell the writer rings
            item = reader.read()
            assert (item.payload == item.sequence % 256).all()
            got.append(item.sequence)
    t.join()
    assert got == list(range(50)) and reader.lost == 0
    assert reader.writer_alive()
    reader.close()
    ring.close()
    assert fake_kernel.objects == {} and list_segments(rig) == []


def test_a_new_writer_waits_for_the_old_incarnations_readers_to_let_go(windows_platform, fake_kernel, rig):
    ring = Ring.create("r", rig=rig, descriptor=Stamp, capacity=4)
    reader = RingReader.attach("r", rig=rig, descriptor=Stamp)
    ring.close()  # closed and "unlinked": on Windows the reader's view keeps the mapping
    assert reader.read() is None and not reader.writer_alive()
    with pytest.raises(SegmentExists, match="on Windows a mapping lives until"):
        Ring.create("r", rig=rig, descriptor=Stamp, capacity=4)
    assert list_segments(rig) == []  # the failed attempt left nothing registered
    reader.close()
    again = Ring.create("r", rig=rig, descriptor=Stamp, capacity=4)
    again.publish(7)
    with RingReader.attach("r", rig=rig, descriptor=Stamp) as fresh:
        assert fresh.read().descriptor == (7,)
    again.close()


def test_a_crashed_writer_leaves_only_a_marker_which_scan_calls_stale(windows_platform, fake_kernel, rig):
    Ring.create("r", rig=rig, descriptor=Stamp, capacity=4)  # never closed: the process dies with it
    fake_kernel.process_exit()
    windows_platform._lock_handles.clear()  # (the process that held them is gone)
    info = {i.name: i for i in scan(rig)}[f"mimir-{rig}-r"]
    assert info.stale and info.why == "registered but gone"  # nothing behind the marker: nothing to unlink
    assert remove_stale(rig) == [f"mimir-{rig}-r"]
    assert list_segments(rig) == []
    again = Ring.create("r", rig=rig, descriptor=Stamp, capacity=4)  # the name is simply free
    again.close()


def test_closing_a_ring_closes_the_creators_lock_handle(windows_platform, fake_kernel, rig):
    ring = Ring.create("r", rig=rig, descriptor=Stamp, capacity=4)
    assert fake_kernel.exists(f"Local\\mimir-{rig}-r#lock")
    ring.close()
    assert fake_kernel.objects == {}
