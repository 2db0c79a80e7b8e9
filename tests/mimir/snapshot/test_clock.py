"""Clock steps found in indexed timestamps, exactly as the supervisor's clock makes them (mimir.supervisor.clock)."""

from __future__ import annotations

import numpy as np
import pytest

from mimir.snapshot.clock import STEP_NS, Split, audio_segment_states, audio_splits, camera_splits
from mimir.supervisor.clock import DeviceToCanonical

RATE = 48_000
BLOCK = 64
EPOCH_OFFSET_NS = 29_000_000_000_000_000  # provisional: canonical = host + this
# What the synthetic rig's sync fit looks like: rate a few ppm off, the device counter from its own start.
FIT = DeviceToCanonical(local_sample_at_epoch=-1_392_000_123_456.25, rate_hz=48_000.37)


def audio_blocks(n_provisional: int, n_locked: int, *, refine_at: int | None = None):
    """(canonical, host, start_sample) of blocks: provisional, then locked to FIT (as CanonicalClock computes)."""
    start = np.arange(n_provisional + n_locked, dtype=np.int64) * BLOCK + 5_000
    t_lock_host = 1_000_000_000_000
    host = t_lock_host + ((start - start[n_provisional]) * 1e9 / RATE).astype(np.int64) + 70_000  # callback delay
    host += np.random.default_rng(0).integers(0, 80_000, len(host))  # scheduling jitter of the callbacks
    canonical = host + EPOCH_OFFSET_NS
    fit = FIT
    for i in range(n_provisional, len(start)):
        if refine_at is not None and i == refine_at:  # a refinement: moves canonical time by a few microseconds
            fit = DeviceToCanonical(fit.local_sample_at_epoch + 0.2, fit.rate_hz)
        canonical[i] = int(fit.canonical_s(int(start[i])) * 1e9)
    return canonical, host, start


def test_the_lock_is_one_step_and_a_refinement_is_none():
    canonical, host, start = audio_blocks(300, 500, refine_at=600)
    splits = audio_splits(canonical, host, start, RATE)
    assert len(splits) == 1 and splits[0].index == 300
    # Measured against the provisional mapping (host-exact) of the segment before it.
    assert splits[0].step_ns == (canonical[300] - canonical[299]) - (host[300] - host[299])
    now = (FIT.local_sample_at_epoch + 0.2, FIT.rate_hz, 0.97)  # the status board's fit: after the refinement
    segments = audio_segment_states(canonical, host, splits, witness="codebook w seed 0", fit_now=now)
    assert [s.state for s in segments] == ["provisional", "locked"]
    assert segments[1].step_ns == splits[0].step_ns and segments[0].step_ns is None
    assert (segments[1].local_sample_at_epoch, segments[1].rate_hz, segments[1].confidence) == now
    assert segments[1].witness == "codebook w seed 0" and segments[0].witness is None
    # Still provisional on the board (it has not locked yet): the segment is provisional, with no fit.
    assert audio_segment_states(canonical[:300], host[:300], [], witness="w", fit_now=None)[0].state == "provisional"


def test_a_relock_between_two_locked_segments_is_measured_against_the_device_rate():
    canonical, host, start = audio_blocks(0, 600)
    canonical[400:] -= 3_000_000  # the witness fit moved canonical time back by 3 ms
    splits = audio_splits(canonical, host, start, RATE)
    assert splits == [Split(400, pytest.approx(-3_000_000, abs=50))]
    segments = audio_segment_states(canonical, host, splits, witness="w", fit_now=(FIT.local_sample_at_epoch - 144,
                                                                                  FIT.rate_hz, 0.9))
    assert [s.state for s in segments] == ["locked", "locked"] and segments[0].step_ns is None
    assert segments[0].rate_hz is None  # an earlier fit: the rig does not publish its history
    assert segments[1].rate_hz == FIT.rate_hz


def test_unknown_host_times_fall_back_on_the_device_counter():
    canonical, host, start = audio_blocks(0, 200)
    host[50:60] = 0  # ring records overwritten before the snapshot read them
    assert audio_splits(canonical, host, start, RATE) == []


def test_camera_steps_against_host_time():
    host = 1_000_000_000_000 + np.arange(200, dtype=np.int64) * 16_666_667 + np.random.default_rng(1).integers(
        0, 2_000_000, 200)
    canonical = host + EPOCH_OFFSET_NS
    canonical[120:] += -180_838_000  # the lock, as measured on the synthetic rig
    canonical[150:] += 40_000  # a refinement: 40 us, inside the segment
    assert camera_splits(canonical, host) == [Split(120, -180_838_000)]
    long_gap = np.array([0, 100_000_000_000], np.int64)  # a camera silent for 100 s: rate error is not a step
    assert camera_splits(long_gap + EPOCH_OFFSET_NS + 3_000_000, long_gap) == []
    assert camera_splits(long_gap + EPOCH_OFFSET_NS + np.array([0, STEP_NS * 20]), long_gap) == [Split(1, STEP_NS * 20)]
