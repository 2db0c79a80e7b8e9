"""GpuFrameCopier: the seqlock around the copy, the pool, DLPack; real rings, the device faked at the copy function.

``HostBackend(copy=...)`` is the seam: the copier's logic (pre-check, pool,
wait, fence, post-check, counters, leases) is the production code; only the
bytes move with a Python function instead of a DMA engine, which lets a test
overwrite the slot in the middle of the "DMA", deterministically or from a
real writer process.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import time

import numpy as np
import pytest

from mimir.descriptors import CameraFrameDescriptor, PixelFormat
from mimir.gpu.copy import FrameReleased, GpuFrameCopier, HostBackend, PoolExhausted
from ringbuf import Ring, RingReader
from ringbuf.ring import StaleItem

SHAPE = (48, 64, 2)
CAPACITY = 4


def _publish(ring: Ring, value: int) -> int:
    """Publish a frame whose every byte is ``value`` (a frame mixing two values is torn)."""
    ring.claim()[...] = value
    n = ring.published
    return ring.publish(1, n, 0, 0, SHAPE[1], SHAPE[0], int(PixelFormat.YUYV), SHAPE[1] * 2, SHAPE[0] * SHAPE[1] * 2,
                        ring.handle(n))


@pytest.fixture
def ring(rig):
    with Ring.create("cam.copy.0", descriptor=CameraFrameDescriptor, capacity=CAPACITY, payload_shape=SHAPE,
                     rig=rig) as writer:
        with RingReader.attach("cam.copy.0", rig=rig, register=False) as reader:
            yield writer, reader


class CountingCopy:
    """np.copyto, counting calls; ``midway`` runs between the two halves of the copy (a writer acting mid-DMA)."""

    def __init__(self, midway=None) -> None:
        self.calls = 0
        self.midway = midway

    def __call__(self, dst: np.ndarray, src: np.ndarray) -> None:
        self.calls += 1
        half = dst.shape[0] // 2
        np.copyto(dst[:half], src[:half])
        if self.midway is not None:
            self.midway()
        np.copyto(dst[half:], src[half:])


def _invariant(c: GpuFrameCopier) -> None:
    assert c.started == c.handed_out + c.torn_dropped + c.stale_before_copy + c.in_flight


def test_an_untouched_slot_is_handed_out_intact(ring):
    writer, reader = ring
    seq = _publish(writer, 7)
    copy = CountingCopy()
    copier = GpuFrameCopier(SHAPE, pool_size=2, backend=HostBackend(copy))
    frame = copier.copy(reader.payload_view(seq), functools.partial(reader.valid, seq))
    assert frame is not None and copy.calls == 1
    assert np.array_equal(frame.array, reader.payload_view(seq)) and not np.shares_memory(frame.array, reader.payload_view(seq))
    assert (copier.started, copier.handed_out, copier.torn_dropped, copier.stale_before_copy) == (1, 1, 0, 0)
    assert copier.leased == 1
    _invariant(copier)
    via_dlpack = np.from_dlpack(frame)  # the DLPack protocol, no copy
    assert np.shares_memory(via_dlpack, frame.array) and via_dlpack.shape == SHAPE
    frame.release()
    assert copier.leased == 0
    with pytest.raises(FrameReleased):
        frame.array
    with pytest.raises(FrameReleased):
        frame.release()


def test_a_slot_overwritten_before_the_copy_is_not_copied(ring):
    writer, reader = ring
    seq = _publish(writer, 1)
    view = reader.payload_view(seq)
    for v in range(CAPACITY):  # the writer laps the ring: item seq's slot now holds a newer item
        _publish(writer, 10 + v)
    copy = CountingCopy()
    copier = GpuFrameCopier(SHAPE, pool_size=1, backend=HostBackend(copy))
    assert copier.copy(view, functools.partial(reader.valid, seq)) is None
    assert copy.calls == 0
    assert (copier.started, copier.stale_before_copy, copier.torn_dropped, copier.handed_out) == (1, 1, 0, 0)
    _invariant(copier)


def test_a_slot_overwritten_during_the_copy_is_dropped_and_counted(ring):
    writer, reader = ring
    seq = _publish(writer, 1)
    for v in range(CAPACITY - 1):
        _publish(writer, 2 + v)  # slot of seq is next to be claimed

    copy = CountingCopy(midway=lambda: _publish(writer, 99))  # the writer rewrites that slot mid-copy
    copier = GpuFrameCopier(SHAPE, pool_size=1, backend=HostBackend(copy))
    pending = copier.start(reader.payload_view(seq), functools.partial(reader.valid, seq))
    torn = copier.backend.buffers[0]
    assert set(np.unique(torn)) == {1, 99}  # the buffer really holds a torn frame
    assert pending.result() is None
    assert (copier.torn_dropped, copier.handed_out, copier.in_flight) == (1, 0, 0)
    _invariant(copier)
    # The buffer went back to the pool (pool_size=1): the next copy succeeds.
    copy.midway = None
    newest = writer.published - 1
    frame = copier.copy(reader.payload_view(newest), functools.partial(reader.valid, newest))
    assert frame is not None and np.all(frame.array == 99)


def test_writing_another_slot_during_the_copy_keeps_the_frame(ring):
    writer, reader = ring
    seq = _publish(writer, 5)
    copier = GpuFrameCopier(SHAPE, pool_size=1, backend=HostBackend(CountingCopy(midway=lambda: _publish(writer, 6))))
    frame = copier.copy(reader.payload_view(seq), functools.partial(reader.valid, seq))
    assert frame is not None and np.all(frame.array == 5)


def test_pool_exhaustion_is_an_error_until_a_frame_is_released(ring):
    writer, reader = ring
    seqs = [_publish(writer, v) for v in (1, 2, 3)]
    copier = GpuFrameCopier(SHAPE, pool_size=2, backend=HostBackend())
    frames = [copier.copy(reader.payload_view(s), functools.partial(reader.valid, s)) for s in seqs[:2]]
    assert copier.leased == 2
    with pytest.raises(PoolExhausted, match="release"):
        copier.start(reader.payload_view(seqs[2]), functools.partial(reader.valid, seqs[2]))
    assert copier.started == 2  # the refused start is not counted
    _invariant(copier)
    with frames[0]:  # a context manager releases on exit
        pass
    third = copier.copy(reader.payload_view(seqs[2]), functools.partial(reader.valid, seqs[2]))
    assert np.all(third.array == 3) and np.all(frames[1].array == 2)  # the reused buffer, the other untouched


def test_copies_started_together_resolve_in_any_order(ring):
    writer, reader = ring
    seqs = [_publish(writer, v) for v in (11, 12, 13)]
    copier = GpuFrameCopier(SHAPE, pool_size=3, backend=HostBackend())
    pending = [copier.start(reader.payload_view(s), functools.partial(reader.valid, s)) for s in seqs]
    assert copier.in_flight == 3
    _invariant(copier)
    frames = [p.result() for p in reversed(pending)]
    assert [int(f.array[0, 0, 0]) for f in frames] == [13, 12, 11]
    with pytest.raises(FrameReleased):
        pending[0].result()
    _invariant(copier)


def test_a_slot_of_another_shape_is_refused(ring):
    copier = GpuFrameCopier(SHAPE, backend=HostBackend())
    with pytest.raises(ValueError, match="C-contiguous"):
        copier.start(np.zeros((48, 64, 3), np.uint8), lambda: True)
    with pytest.raises(ValueError, match="C-contiguous"):
        copier.start(np.zeros((64, 48, 2), np.uint8).transpose(1, 0, 2), lambda: True)
    assert copier.started == 0
    with pytest.raises(ValueError, match="pool_size"):
        GpuFrameCopier(SHAPE, pool_size=0, backend=HostBackend())


def _slow_copy(dst: np.ndarray, src: np.ndarray) -> None:
    """A 'DMA' in 8 chunks with pauses: long enough for a live writer to overwrite the slot meanwhile."""
    rows = dst.shape[0]
    step = -(-rows // 8)
    for r in range(0, rows, step):
        np.copyto(dst[r:r + step], src[r:r + step])
        time.sleep(0.0002)


@pytest.mark.slow
def test_a_live_writer_process_never_gets_a_torn_frame_through(rig):
    """A writer process renders verifiable frames while the copier copies the newest and the next-overwritten slot."""
    from bench.gpu import synthetic_writer
    from workers.camera.family import CameraMode
    from workers.camera.synthetic import FrameMismatch, verify_frame

    h, w, capacity = 120, 160, 16
    mode = CameraMode(w, h, 60.0, PixelFormat.YUYV)
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    written = ctx.Array("Q", 1, lock=False)
    # paced at 2 kHz: the oldest slot is rewritten within ~0.5 ms, the newest survives ~8 ms; the copy takes ~2 ms
    proc = ctx.Process(target=synthetic_writer, args=(rig, ["cam.live.0"], h, w, capacity, 2000.0, 120.0, ready, stop,
                                                      written), daemon=True)
    proc.start()
    try:
        assert ready.wait(60), "the writer process did not create its ring"
        reader = RingReader.attach("cam.live.0", rig=rig, descriptor=CameraFrameDescriptor, register=False)
        copier = GpuFrameCopier(mode.payload_shape, pool_size=1, backend=HostBackend(_slow_copy))
        verified = torn_handed_out = 0
        deadline = time.monotonic() + 60
        n = 0
        while time.monotonic() < deadline and (verified < 20 or copier.torn_dropped < 20):
            published = reader.published
            if published < capacity:
                time.sleep(0.001)
                continue
            seq = published - 1 if n % 2 else published - capacity
            n += 1
            try:
                view = reader.payload_view(seq)
            except StaleItem:
                continue
            frame = copier.copy(view, functools.partial(reader.valid, seq))
            if frame is None:
                continue
            try:
                stamped, _ = verify_frame(frame.array, mode)
                verified += stamped == seq
                torn_handed_out += stamped != seq
            except FrameMismatch:
                torn_handed_out += 1
            frame.release()
        reader.close()
    finally:
        stop.set()
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0
    assert torn_handed_out == 0
    assert verified >= 20, f"only {verified} frames handed out in 60 s"
    assert copier.torn_dropped >= 20, f"the writer overwrote only {copier.torn_dropped} slots during a copy"
    assert copier.handed_out == verified
    _invariant(copier)


def test_cupy_backend_copies_from_a_registered_ring_arena(ring, cupy_device):
    from bench.gpu import ring_arena
    from mimir.gpu.arena import RegisteredArena

    cp = cupy_device
    writer, reader = ring
    seqs = [_publish(writer, v) for v in (21, 22)]
    with RegisteredArena(ring_arena(reader)) as arena:
        assert arena.registered, arena.fallback_reason
        copier = GpuFrameCopier(SHAPE, pool_size=2)
        frames = [copier.copy(reader.payload_view(s), functools.partial(reader.valid, s)) for s in seqs]
        for f, v in zip(frames, (21, 22)):
            assert isinstance(f.array, cp.ndarray)
            assert bool((cp.from_dlpack(f) == v).all())
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            frames[0].array.sum()  # work on another stream; release records the fence there
        frames[0].release(stream=stream.ptr)
        frames[1].release()
        again = copier.copy(reader.payload_view(seqs[0]), functools.partial(reader.valid, seqs[0]))
        assert bool((again.array == 21).all())
        again.release()
