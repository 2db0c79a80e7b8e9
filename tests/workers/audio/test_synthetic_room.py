"""The synthetic ``reverb-room``: rendered ahead by FFT convolution, exact against a direct convolution, truth from geometry."""

from __future__ import annotations

import numpy as np
import pytest

from workers.audio.backends.synthetic import (
    REVERB_ROOM_MICS_M, REVERB_ROOM_SOURCE_M, RoomRenderer, SyntheticBackend, reverb_room_path, room_chunk_frames,
    room_path,
)
from workers.audio.config import EngineConfig
from workers.audio.errors import AudioConfigError


def _run_like_the_paced_loop(renderer: RoomRenderer, played: np.ndarray, block: int, first_frame: int) -> np.ndarray:
    """Read input, then hand over the output of the same block: the order of PacedBackend._pace."""
    got = np.zeros((played.size, renderer.channels), np.float32)
    slot = np.zeros((block, renderer.channels), np.float32)
    for at in range(0, played.size, block):
        renderer.read(slot, first_frame + at, block)
        got[at:at + block] = slot
        renderer.write(played[at:at + block], first_frame + at)
    return got


@pytest.mark.parametrize("first_frame", [0, 1000, 4096 * 7 + 13])
def test_renderer_is_the_convolution_of_what_was_played_latency_frames_later(first_frame):
    rng = np.random.default_rng(first_frame)
    impulses = [np.ones(1), rng.standard_normal(3000) * np.exp(-np.arange(3000) / 500.0), rng.standard_normal(700)]
    block, chunk = 64, 512
    latency = chunk + (len(impulses) + 2) * block
    played = rng.standard_normal(300 * block).astype(np.float32)
    got = _run_like_the_paced_loop(RoomRenderer(impulses, latency, chunk, block), played, block, first_frame)
    for c, h in enumerate(impulses):
        want = np.zeros(played.size)
        want[latency:] = np.convolve(played.astype(np.float64), h)[: played.size - latency]
        assert np.max(np.abs(got[:, c] - want)) < 1e-4 * np.max(np.abs(want)), c


def test_renderer_refuses_a_latency_it_cannot_render_ahead_of():
    with pytest.raises(ValueError):
        RoomRenderer([np.ones(1), np.ones(10)], latency=512, chunk=512, max_frames=64)


def test_reverb_room_truth_is_geometry_at_fractional_samples():
    src = np.asarray(REVERB_ROOM_SOURCE_M)
    delays = [reverb_room_path(c) for c in range(len(REVERB_ROOM_MICS_M) + 1)]
    assert delays[0] == 0.0
    for c, mic in enumerate(REVERB_ROOM_MICS_M, start=1):
        assert delays[c] == pytest.approx(np.linalg.norm(np.asarray(mic) - src) / 343.0, rel=1e-12)
    samples = np.array(delays[1:]) * 48_000
    assert np.all(np.abs(samples - np.round(samples)) > 0.01), "the distances are meant to be fractional"
    assert reverb_room_path(len(REVERB_ROOM_MICS_M) + 1) == delays[1]  # channels wrap around the microphones
    # the pure-delay room keeps its exact whole-sample truth (the fault and retention tests rely on it)
    assert room_path(0, 48_000) == (0, 1.0) and room_path(3, 48_000) == (238, pytest.approx(0.5 / 1.7))


def test_the_backend_renders_the_room_and_refuses_a_short_latency(rig):
    cfg = EngineConfig(backend="synthetic", signal="reverb-room", rig=rig, sample_rate_hz=48_000, block_frames=64)
    backend = SyntheticBackend(cfg)
    plan = backend.prepare()
    minimum = room_chunk_frames(48_000) + (len(plan.input_channels) + 2) * 64
    assert backend._latency_frames == minimum
    _, out_latency_s = backend._latencies_s()
    assert out_latency_s == pytest.approx((minimum - 64) / 48_000)  # reported latency = the real loop's
    with pytest.raises(AudioConfigError, match="reverb-room latency"):
        SyntheticBackend(cfg.with_(loopback_latency_frames=1024)).prepare()
