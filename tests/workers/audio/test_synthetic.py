"""The engine with the synthetic backend: the ring is sample-exact, counted, clocked; health and metrics move."""

from __future__ import annotations

import gc
import time
import tracemalloc

import numpy as np
import pytest

from mimir.descriptors import AudioBlockRecord, SampleFormat
from ringbuf import Ring, RingReader
from ringbuf.layout import dtype_of
from ringbuf.segment import list_segments
from workers.audio import AudioEngine, EngineConfig, EngineState, Health, channel_layout_hash, engine as engine_mod
from workers.audio import parse_channels
from workers.audio.callback import BlockProcessor
from workers.audio.errors import AudioConfigError, EngineStateError
from workers.audio.outputs import PassthroughOutput
from workers.audio.records import (
    FLAG_DEADLINE_MISS, AudioStatus, CallbackMetric, metrics_ring_name,
)
from workers.audio.signals import ramp_values

RATE = 48000
BLOCK = 64


def read_all(reader: RingReader) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every item still unread: descriptors as a structured array, payloads as copies."""
    descs, payloads = [], []
    while (item := reader.read()) is not None:
        descs.append(item.descriptor)
        payloads.append(item.payload)
    return np.array(descs, dtype=dtype_of(AudioBlockRecord)), payloads


def synthetic(rig: str, **kw) -> EngineConfig:
    return EngineConfig(backend="synthetic", rig=rig, **kw)


def test_ramp_reaches_the_ring_sample_exact_and_counted(rig):
    engine = AudioEngine(synthetic(rig, channels=parse_channels("3"), ring_seconds=4.0))
    info = engine.init(RATE, BLOCK)
    reader = RingReader.attach("audio", rig=rig, descriptor=AudioBlockRecord)
    try:
        engine.start()
        time.sleep(0.5)
        engine.stop()
        status = engine.status()
        d, payloads = read_all(reader)
        assert reader.lost == 0
        n = len(d)
        assert n == status["callbacks"] >= int(0.4 * RATE / BLOCK)
        # Sample-counted: block k starts at frame k * BLOCK, every block full, nothing skipped.
        assert np.array_equal(d["start_sample"], np.arange(n, dtype=np.uint64) * BLOCK)
        assert (d["frame_count"] == BLOCK).all() and status["frames"] == n * BLOCK
        # Sample-exact: every sample is the ramp value of its interleaved index.
        got = np.concatenate(payloads)
        assert got.shape == (n * BLOCK, 3)
        assert np.array_equal(got, ramp_values(0, n * BLOCK, 3))
        # The descriptor: upstream fields, handles, layout hash, format, timing.
        assert (d["channel_count"] == 3).all() and (d["sample_rate_hz"] == RATE).all()
        assert (d["sample_format"] == int(SampleFormat.F32_INTERLEAVED)).all()
        assert (d["channel_layout_hash"] == channel_layout_hash(info.plan.device_label, (0, 1, 2))).all()
        assert [int(h) & (2**48 - 1) for h in d["data_handle"]] == list(range(n))
        assert len({int(h) >> 48 for h in d["data_handle"]}) == 1
        adc = d["adc_time_ns"].astype(np.int64)
        step = np.diff(adc)
        assert np.abs(step - BLOCK * 1e9 / RATE).max() <= 1  # exact nominal clock, rounding only
        assert (d["host_time_ns"].astype(np.int64) >= adc).all()  # a block is handled after it was sampled
        assert (d["callback_ns"] > 0).all()
    finally:
        reader.close()
        engine.shutdown()


def test_ppm_error_moves_the_device_clock_against_the_host(rig):
    ppm = 10000.0  # +1 %: the device delivers 1 % more frames per host second
    engine = AudioEngine(synthetic(rig, ppm=ppm, ring_seconds=4.0))
    engine.init(RATE, 256)
    reader = RingReader.attach("audio", rig=rig, descriptor=AudioBlockRecord)
    try:
        engine.start()
        time.sleep(1.2)
        engine.stop()
        d, _ = read_all(reader)
    finally:
        reader.close()
        engine.shutdown()
    frames = d["start_sample"].astype(np.float64)
    adc = d["adc_time_ns"].astype(np.float64)
    host = d["host_time_ns"].astype(np.float64)
    ns_per_frame = 1e9 / (RATE * (1 + ppm * 1e-6))
    # ADC time is the device clock: exact.
    assert np.polyfit(frames, adc, 1)[0] == pytest.approx(ns_per_frame, rel=1e-9)
    # Host arrival follows it (least squares over every block; jitter averages out).
    rate_seen = 1e9 / np.polyfit(frames, host, 1)[0]
    assert rate_seen == pytest.approx(RATE * 1.01, rel=0.003), rate_seen
    assert abs(rate_seen - RATE) > RATE * 0.006  # clearly not the nominal rate


def test_slow_callback_misses_deadlines_and_health_goes_red_then_green(rig, wait_until):
    engine = AudioEngine(synthetic(rig, health_window_s=0.3, output="silence"))
    engine.init(RATE, 256)
    period_ns = 256 * 10**9 // RATE
    metrics = RingReader.attach(metrics_ring_name("audio"), rig=rig, descriptor=CallbackMetric, start="latest")
    try:
        engine.start()
        wait_until(lambda: engine.status()["health"] == Health.GREEN, 3.0, "health GREEN while healthy")
        assert engine.status()["deadline_misses"] == 0
        engine.processor.simulate_load_ns = 2 * period_ns
        wait_until(lambda: engine.status()["deadline_misses"] >= 3, 3.0, "deadline misses")
        st = engine.status()
        assert st["health"] == Health.RED
        assert st["max_callback_ns"] > period_ns
        engine.processor.simulate_load_ns = 0
        out = np.zeros(4096, dtype=dtype_of(CallbackMetric))
        n = metrics.read_batch(out)
        missed = out[:n][(out[:n]["flags"] & FLAG_DEADLINE_MISS) != 0]
        assert len(missed) >= 3 and (missed["duration_ns"] > period_ns).all()
        assert (out[:n][(out[:n]["flags"] & FLAG_DEADLINE_MISS) == 0]["duration_ns"] <= period_ns).all()
        wait_until(lambda: engine.status()["health"] == Health.GREEN, 3.0, "health GREEN again after the window")
    finally:
        metrics.close()
        engine.shutdown()


def test_a_slow_reader_never_stalls_the_callback(rig):
    engine = AudioEngine(synthetic(rig, ring_seconds=0.05))  # 37 blocks of 64 frames
    engine.init(RATE, BLOCK)
    reader = RingReader.attach("audio", rig=rig, descriptor=AudioBlockRecord)
    try:
        engine.start()
        time.sleep(0.6)  # the reader does not read at all
        item = reader.read()
        engine.stop()
        assert reader.lost > 100, "overrun must be counted"  # the writer lapped a reader that read nothing
        assert item is not None and item.sequence == reader.lost  # resumed at the oldest item still there
        # Every block the writer published is accounted for: lost, read, or still in the ring.
        assert reader.published == reader.lost + 1 + reader.available()
        assert engine.status()["frames"] == reader.published * BLOCK
    finally:
        reader.close()
        engine.shutdown()


def test_lifecycle_mirrors_the_c_abi_and_order_is_enforced(rig):
    engine = AudioEngine(synthetic(rig))
    with pytest.raises(EngineStateError, match="init"):
        engine.start()
    engine.init(RATE, BLOCK)
    try:
        with pytest.raises(EngineStateError, match="shutdown"):
            engine.init(RATE, BLOCK)
        reader = RingReader.attach("audio", rig=rig, descriptor=AudioBlockRecord)
        engine.start()
        time.sleep(0.1)
        engine.stop()
        assert engine.state == EngineState.STOPPED
        first = engine.status()["frames"]
        engine.start()  # resumes; the device frame counter continues
        time.sleep(0.1)
        engine.stop()
        d, _ = read_all(reader)
        reader.close()
        assert engine.status()["frames"] > first
        assert np.array_equal(d["start_sample"], np.arange(len(d), dtype=np.uint64) * BLOCK)
    finally:
        engine.shutdown()
        engine.shutdown()  # idempotent
    assert engine.state == EngineState.CLOSED


def test_module_level_functions_drive_one_engine(rig):
    engine_mod._default = None
    info = engine_mod.init(RATE, 128, backend="synthetic", rig=rig)
    try:
        assert info.plan.block_frames == 128
        engine_mod.start()
        time.sleep(0.1)
        engine_mod.stop()
        assert engine_mod.default_engine().status()["callbacks"] > 0
    finally:
        engine_mod.shutdown()
        engine_mod._default = None


def test_gc_is_frozen_and_disabled_only_while_running(rig):
    assert gc.isenabled()
    engine = AudioEngine(synthetic(rig, freeze_gc=True))
    engine.init(RATE, BLOCK)
    try:
        engine.start()
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        engine.stop()
        assert gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        engine.shutdown()
    assert gc.isenabled()


def test_the_hot_path_allocates_no_sample_memory(rig):
    frames, channels = 2048, 8  # 64 KiB per block: any per-block copy would show in the peak
    ring = Ring.create("alloc", rig=rig, descriptor=AudioBlockRecord, capacity=16, payload_shape=(frames, channels),
                       payload_dtype=np.float32, status=AudioStatus)
    metrics = Ring.create("alloc.metrics", rig=rig, descriptor=CallbackMetric, capacity=64)
    try:
        for stage, n_out in ((PassthroughOutput(channels, channels), channels),
                             (PassthroughOutput(channels, 2, source_channel=3), 2)):
            proc = BlockProcessor(ring=ring, metrics=metrics, sample_rate_hz=RATE, block_frames=frames,
                                  slot_frames=frames, channels=channels, output=stage, output_channels=n_out,
                                  channel_layout_hash=7)
            src = np.random.default_rng(1).random((frames, channels), dtype=np.float32)
            for _ in range(40):  # warm-up: the first lap of the ring prepares slot views
                slot = proc.claim()
                np.copyto(slot, src)
                proc.commit(slot, frames, 0, time.monotonic_ns(), 0)
            tracemalloc.start()
            base, _ = tracemalloc.get_traced_memory()
            for _ in range(200):
                slot = proc.claim()
                np.copyto(slot, src)
                out = proc.commit(slot, frames, 0, time.monotonic_ns(), 0)
            current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert peak - base < 8 * 1024, f"{type(stage).__name__}: {peak - base} B allocated per block"
            assert np.array_equal(out, src if stage.source_channel is None else np.repeat(src[:, 3:4], 2, axis=1))
    finally:
        metrics.close()
        ring.close()


def test_bad_synthetic_configs_say_what_is_supported(rig):
    with pytest.raises(AudioConfigError, match=r"16\.\.8192"):
        AudioEngine(synthetic(rig)).init(RATE, 3)
    with pytest.raises(AudioConfigError, match="1000"):
        AudioEngine(synthetic(rig)).init(10, 64)
    with pytest.raises(AudioConfigError, match="needs a device"):
        AudioEngine(synthetic(rig)).init(RATE, 0)
    with pytest.raises(AudioConfigError, match="--signal"):
        AudioEngine(synthetic(rig, signal="pink")).init(RATE, 64)
    with pytest.raises(AudioConfigError, match="--through-channel 5"):
        AudioEngine(synthetic(rig, through_channel=5, output_channels=1)).init(RATE, 64)
    with pytest.raises(AudioConfigError, match="1:1"):
        AudioEngine(synthetic(rig, output_channels=1)).init(RATE, 64)


def test_soak_measures_a_worker_process_and_draws_the_figure(rig, tmp_path):
    from workers.audio.soak import format_soak, plot_soak, run_soak

    cfg = EngineConfig(backend="synthetic", rig=rig, ring="soak", block_frames=256)
    result = run_soak(cfg, 0.05, progress_s=100)  # 3 s against a real worker subprocess
    doc = result.as_dict()
    assert result.worker_exit_code == 0
    assert doc["callbacks"] > 0 and doc["callbacks_expected"] > 0 and doc["metrics_lost"] == 0
    # Xruns and misses depend on the machine's load (the worker's pacer is a thread); they must be counted
    # consistently, and the loop must stay sample-exact regardless.
    assert doc["xruns"] == sum(b["xruns"] for b in result.per_second)
    assert doc["deadline_misses"] == sum(b["misses"] for b in result.per_second)
    rt = doc["round_trip"]
    # The synthetic loop returns each impulse exactly its reported latency later, and none is lost.
    assert rt["impulses_expected"] >= 2 and rt["impulses_found"] == rt["impulses_expected"]
    assert rt["frames_min"] == rt["frames_max"] == rt["reported_frames"] == 512
    assert sum(doc["callback_histogram"]["counts"]) == doc["callbacks"]
    assert "callbacks" in format_soak(doc)
    png = tmp_path / "soak.png"
    plot_soak(result, png)
    assert png.stat().st_size > 20_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list_segments(rig)


def test_the_sync_witness_plays_through_the_output_stage(rig):
    """The engine's witness output reaches the loopback input as the configured witness: a receiver of that
    codebook locks on what the ring captured, at the stream's own rate."""
    from mimir.sync import Codebook, StreamingReceiver

    engine = AudioEngine(synthetic(rig, signal="loopback", output="witness", channels=parse_channels("1"),
                                  ring_seconds=8.0))
    engine.init(RATE, 256)
    reader = RingReader.attach("audio", rig=rig, descriptor=AudioBlockRecord)
    try:
        engine.start()
        time.sleep(3.5)  # the receiver locks after about ten events (2 s)
        engine.stop()
        _, payloads = read_all(reader)
    finally:
        reader.close()
        engine.shutdown()
    looped = np.concatenate(payloads)[:, 0]
    assert np.abs(looped).max() <= 1.0
    witness = engine.config.witness
    rx = StreamingReceiver(Codebook.from_id(witness.codebook_id, witness.seed), float(RATE), "loopback",
                           approx_canonical_seconds=time.time() - witness.epoch_unix_s)
    rx.feed(looped)
    assert rx.locked, "the captured loopback does not decode as the configured witness"
    assert abs(rx.report().canonical_clock_fit.rate_hz - RATE) < 1.0