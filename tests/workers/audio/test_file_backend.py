"""The file backend: WAV/FLAC replayed at real-time pace, the ring holding exactly the file's samples."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from mimir.descriptors import AudioBlockRecord
from ringbuf import RingReader
from ringbuf.layout import dtype_of
from workers.audio import AudioEngine, EngineConfig, EngineState, parse_channels
from workers.audio.errors import AudioConfigError
from workers.audio.signals import ramp_values

RATE = 48000


def run_file(rig: str, path, block: int, *, wait_s: float = 5.0, **kw):
    engine = AudioEngine(EngineConfig(backend="file", path=path, rig=rig, ring_seconds=4.0, **kw))
    info = engine.init(block_frames=block)
    reader = RingReader.attach("audio", rig=rig, descriptor=AudioBlockRecord)
    try:
        t0 = time.monotonic()
        engine.start()
        deadline = t0 + wait_s
        while not engine.ended() and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        state = engine.poll()
        engine.stop()
        descs, payloads = [], []
        while (item := reader.read()) is not None:
            descs.append(item.descriptor)
            payloads.append(item.payload[: item.descriptor[1]])
        assert reader.lost == 0
    finally:
        reader.close()
        engine.shutdown()
    return info, state, elapsed, np.array(descs, dtype=dtype_of(AudioBlockRecord)), payloads


def test_wav_replays_exactly_at_real_time_and_finishes(rig, tmp_path):
    frames = 14400  # 0.3 s: 56 blocks of 256 and a last block of 64
    data = ramp_values(0, frames, 2)
    path = tmp_path / "ramp.wav"
    sf.write(path, data, RATE, subtype="FLOAT")
    info, state, elapsed, d, payloads = run_file(rig, path, 256)
    assert state == EngineState.FINISHED
    assert info.plan.sample_rate_hz == RATE and info.plan.input_channels == (0, 1)
    assert len(d) == 57
    assert np.array_equal(d["start_sample"], np.arange(57, dtype=np.uint64) * 256)
    assert list(d["frame_count"][-2:]) == [256, 64]
    assert np.array_equal(np.concatenate(payloads), data)
    assert elapsed >= 0.27, f"replayed faster than real time ({elapsed:.3f} s for 0.3 s of audio)"
    # The device clock of a replay is nominal: ADC times step by exactly one block.
    assert np.abs(np.diff(d["adc_time_ns"][:-1].astype(np.int64)) - 256e9 / RATE).max() <= 1


def test_flac_channel_selection_converts_once_into_the_ring(rig, tmp_path):
    rng = np.random.default_rng(3)
    pcm = rng.integers(-32768, 32767, size=(9600, 3), dtype=np.int16)
    path = tmp_path / "three.flac"
    sf.write(path, pcm, RATE, subtype="PCM_16")
    info, state, _, d, payloads = run_file(rig, path, 128, channels=parse_channels("2,0"))
    assert state == EngineState.FINISHED and info.plan.input_channels == (2, 0)
    got = np.concatenate(payloads)
    want = pcm[:, [2, 0]].astype(np.float32) / 32768.0  # int16 -> float32 is exact
    assert got.shape == want.shape and np.array_equal(got, want)
    assert int(d["frame_count"].sum()) == 9600


def test_loop_wraps_sample_exactly(rig, tmp_path):
    data = ramp_values(0, 4800, 1)  # 0.1 s
    path = tmp_path / "short.wav"
    sf.write(path, data, RATE, subtype="FLOAT")
    engine = AudioEngine(EngineConfig(backend="file", path=path, rig=rig, loop=True, ring_seconds=2.0))
    engine.init(block_frames=256)
    reader = RingReader.attach("audio", rig=rig, descriptor=AudioBlockRecord)
    try:
        engine.start()
        time.sleep(0.35)
        engine.stop()
        assert engine.state == EngineState.STOPPED
        got = []
        while (item := reader.read()) is not None:
            assert item.descriptor[1] == 256
            got.append(item.payload)
    finally:
        reader.close()
        engine.shutdown()
    got = np.concatenate(got)[:, 0]
    assert len(got) > 9600
    assert np.array_equal(got, np.resize(data[:, 0], len(got)))


def test_bad_file_inputs_say_what_to_do(rig, tmp_path):
    with pytest.raises(AudioConfigError, match="no such file"):
        AudioEngine(EngineConfig(backend="file", path=tmp_path / "missing.wav", rig=rig)).init(block_frames=64)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio" * 10)
    with pytest.raises(AudioConfigError, match="WAV or FLAC"):
        AudioEngine(EngineConfig(backend="file", path=junk, rig=rig)).init(block_frames=64)
    ok = tmp_path / "ok.wav"
    sf.write(ok, np.zeros((100, 1), np.float32), 44100)
    with pytest.raises(AudioConfigError, match="44100 Hz but --rate 48000"):
        AudioEngine(EngineConfig(backend="file", path=ok, rig=rig)).init(48000, 64)
    with pytest.raises(AudioConfigError, match="needs --file"):
        AudioEngine(EngineConfig(backend="file", rig=rig)).init(block_frames=64)
    with pytest.raises(AudioConfigError, match="only 1 input channel"):
        AudioEngine(EngineConfig(backend="file", path=ok, rig=rig, channels=parse_channels("2"))).init(block_frames=64)
