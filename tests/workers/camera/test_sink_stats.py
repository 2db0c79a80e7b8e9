"""RingFrameSink (descriptor per frame, slot views, errors), FrameStats (percentiles, status), no per-frame allocation."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from mimir.descriptors import CameraFrameDescriptor, PixelFormat
from ringbuf import Ring, RingError, RingReader
from workers.camera.family import CameraMode, FrameSink
from workers.camera.sink import RingFrameSink, shaped_claim
from workers.camera.stats import CameraStatus, FrameStats, init_status
from workers.camera.synthetic import SyntheticPattern

MODE = CameraMode(64, 48, 30.0, PixelFormat.BGR3)


def _ring(rig: str, mode: CameraMode = MODE, capacity: int = 4) -> Ring:
    return Ring.create("cam.test.0", rig=rig, descriptor=CameraFrameDescriptor, capacity=capacity,
                       payload_shape=mode.payload_shape, status=CameraStatus)


def test_sink_publishes_one_descriptor_per_frame(rig):
    with _ring(rig) as ring, RingReader.attach("cam.test.0", rig=rig, descriptor=CameraFrameDescriptor) as reader:
        sink = RingFrameSink(ring, source_hash=7, mode=MODE, stats=FrameStats())
        assert isinstance(sink, FrameSink)
        for n in range(6):
            flat = sink.claim()
            assert flat.dtype == np.uint8 and flat.ndim == 1 and flat.flags.c_contiguous and flat.flags.writeable
            assert flat.size == MODE.byte_length
            assert np.shares_memory(flat, sink.claim_image()) and np.shares_memory(flat, sink.claim_rows())
            assert sink.claim() is flat  # same slot until publish
            flat[:] = n
            assert sink.publish(device_time_ns=1000 + n, host_time_ns=2000 + n, byte_length=MODE.byte_length) == n
        items = []
        while (item := reader.read()) is not None:
            items.append(item)
        assert reader.lost == 2  # capacity 4: the reader was 6 behind
        for seq, d, pixels in items:
            assert d == (7, seq, 1000 + seq, 2000 + seq, 64, 48, int(PixelFormat.BGR3), 192,
                         64 * 48 * 3, ring.handle(seq))
            assert (pixels == seq).all()


def test_sink_errors(rig):
    with _ring(rig) as ring:
        sink = RingFrameSink(ring, source_hash=7, mode=MODE, stats=FrameStats())
        with pytest.raises(RingError, match="without claim"):
            sink.publish(device_time_ns=0, host_time_ns=0, byte_length=0)
        sink.claim()
        with pytest.raises(RingError, match="exceeds the slot"):
            sink.publish(device_time_ns=0, host_time_ns=0, byte_length=MODE.byte_length + 1)
        with pytest.raises(RingError, match="does not hold mode"):
            RingFrameSink(ring, source_hash=7, mode=CameraMode(64, 48, 30.0, PixelFormat.YUYV), stats=FrameStats())


def test_shaped_claim_uses_cached_views_or_reshapes(rig):
    with _ring(rig) as ring:
        sink = RingFrameSink(ring, source_hash=7, mode=MODE, stats=FrameStats())
        assert shaped_claim(sink, (48, 64, 3)) == sink.claim_image
        assert shaped_claim(sink, (48, 192)) == sink.claim_rows

        class Plain:
            def claim(self):
                return sink.claim()

            def publish(self, **kw):
                return sink.publish(**kw)

        view = shaped_claim(Plain(), (48, 192))()
        assert view.shape == (48, 192) and np.shares_memory(view, sink.claim())


def test_interval_percentiles_match_numpy():
    stats = FrameStats(window=512)
    rng = np.random.default_rng(3)
    intervals = rng.integers(15_000_000, 19_000_000, 700)
    t = 1_000_000_000
    stats.on_frame(t, 0, 10)
    for dt in intervals:
        t += int(dt)
        stats.on_frame(t, 0, 10)
    window = intervals[-512:]
    p50, p95, p99 = stats.percentiles_ns()
    for got, q in ((p50, 50), (p95, 95), (p99, 99)):
        assert got == int(np.percentile(window, q, method="nearest"))
    assert stats.frames == 701


def test_break_interval_skips_the_reconnect_gap():
    stats = FrameStats(window=8)
    stats.on_frame(1_000, 0, 1)
    stats.on_frame(2_000, 0, 1)
    stats.break_interval()
    stats.on_frame(10_000_000, 0, 1)
    stats.on_frame(10_001_000, 0, 1)
    assert stats.percentiles_ns() == (1_000, 1_000, 1_000)


def test_flush_writes_the_status_record(rig):
    with _ring(rig) as ring:
        init_status(ring.status, mode=MODE, source_id_hash=7)
        stats = FrameStats()
        t0 = time.monotonic_ns()
        for n in range(30):
            stats.on_frame(t0 + n * 33_333_333, n, 5_000)
        cpu_before_ns = time.process_time_ns()
        stats.flush(ring.status, now_ns=stats._flushed_at_ns + 1_000_000_000, lost_to_overrun=3,
                    dropped_by_device=2, discarded_corrupt=1)
        cpu_after_ns = time.process_time_ns()
        with RingReader.attach("cam.test.0", rig=rig, register=False) as reader:
            s = reader.status
            assert int(s["frames_delivered"]) == 30
            assert float(s["delivered_fps"]) == pytest.approx(30.0)
            assert int(s["interval_p50_ns"]) == 33_333_333
            assert (int(s["lost_to_overrun"]), int(s["dropped_by_device"]), int(s["discarded_corrupt"])) == (3, 2, 1)
            assert int(s["fill_ns"]) == 5_000
            assert cpu_before_ns <= int(s["process_cpu_ns"]) <= cpu_after_ns  # this process's clock, at the flush
            assert (int(s["width"]), int(s["height"]), int(s["source_id_hash"])) == (64, 48, 7)
            assert float(s["negotiated_fps"]) == pytest.approx(30.0)


def test_hot_path_allocates_no_buffers(rig):
    """claim + render + publish + stats for 600 frames: no buffer allocated, nothing retained (after a warm-up lap)."""
    mode = CameraMode(320, 240, 60.0, PixelFormat.YUYV)
    pattern = SyntheticPattern(mode)
    with _ring(rig, mode, capacity=8) as ring:
        sink = RingFrameSink(ring, source_hash=7, mode=mode, stats=FrameStats())

        def frames(start: int, count: int) -> None:
            for n in range(start, start + count):
                pattern.render_into(sink.claim_rows(), n, n * 1000)
                sink.publish(device_time_ns=n * 1000, host_time_ns=time.monotonic_ns(), byte_length=mode.byte_length)

        frames(0, 16)  # builds the per-slot views
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            frames(16, 600)
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert current - before < 4096, f"hot path retained {current - before} B over 600 frames"
        # A frame is 153600 B: any per-frame buffer, even freed at once, would show in the peak.
        assert peak - before < 16384, f"hot path peaked {peak - before} B above its start"
