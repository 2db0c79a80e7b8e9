"""The room measurement (``mimir.sync.room_response``): the witness's response over 4 s blocks, its RT60 and DRR.

Truth is the simulated impulse response's own figure in the measurement's
band, by the same method (:func:`mimir.sync.rooms.reverberation_truth`, as
the benchmark's).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import fftconvolve

from mimir.sync.codebook import Codebook
from mimir.sync.emitter import WitnessEmitter
from mimir.sync.room_response import RoomResponse, decimation_for
from mimir.sync.rooms import reverberation_truth

RATE = 48000
PERIOD_S = Codebook().spec.event_period_s


def exponential_room(rt60_s: float, drr_db: float, delay_samples: int, seed: int) -> np.ndarray:
    """A direct path at ``delay_samples`` and a diffuse tail under an exponential decay from 2 ms after it."""
    rng = np.random.default_rng(seed)
    n = int(1.3 * rt60_s * RATE)
    h = np.zeros(delay_samples + n)
    h[delay_samples] = 1.0
    t = np.arange(n - 96) / RATE
    tail = rng.standard_normal(t.size) * 10.0 ** (-3.0 * t / rt60_s)
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / float(np.sum(tail**2)))
    h[delay_samples + 96 :] = tail
    return h


def measure(h: np.ndarray, snr_db: float, seconds: float, seed: int, room: RoomResponse | None = None) -> RoomResponse:
    """The witness through ``h`` with white noise ``snr_db`` under it (in-band, gaps included), fed block by block
    with the exact event positions (event ``i`` starts at local sample ``i * period``) to ``room`` (a new one by
    default)."""
    n = int(seconds * RATE)
    played = WitnessEmitter(Codebook(), RATE, 0.0, level_dbfs=-20.0).render(0, n).astype(np.float64)
    heard = fftconvolve(played, h)[:n]
    power = float(np.mean(heard**2))
    rng = np.random.default_rng(seed)
    heard += rng.standard_normal(n) * math.sqrt(power / 10 ** (snr_db / 10) / ((8000 - 2000) / (RATE / 2)))
    room = room if room is not None else RoomResponse(Codebook(), RATE, (2000.0, 8000.0))
    per_event = int(PERIOD_S * RATE)
    start = 0
    while start + room.block_samples <= n:
        events = [(i, float(i * per_event - start)) for i in range(start // per_event - 1,
                                                                    (start + room.block_samples) // per_event + 1)]
        room.add(heard[start : start + room.block_samples].astype(np.float32), events)
        start += room.block_samples
    return room


@pytest.mark.parametrize("rt60_s, drr_db, delay", [(0.3, 0.0, 150), (0.8, -6.0, 700), (1.5, -10.0, 1400)])
def test_rt60_and_drr_match_the_response_at_20_db(rt60_s, drr_db, delay):
    """Invariant: at 20 dB, T20 within 5 % and DRR within 1 dB of the simulated response's own figures."""
    h = exponential_room(rt60_s, drr_db, delay, seed=int(rt60_s * 10))
    room = measure(h, 20.0, 30.0, seed=1)
    t20, drr = reverberation_truth(h, RATE, room.band_hz)
    got = room.reverberation()
    assert got.method == "T20" and got.blocks == 7
    assert got.rt60_s == pytest.approx(t20, rel=0.05)
    assert got.drr_db == pytest.approx(drr, abs=1.0)
    assert got.dynamic_range_db > 30


def test_a_floor_too_high_for_t20_falls_back_to_edt_or_none_never_a_wrong_t20():
    """Invariant: the slope is only read over a range the measured decay passes before the noise floor."""
    h = exponential_room(1.5, -10.0, 1400, seed=5)
    room = measure(h, -5.0, 12.0, seed=2)
    got = room.reverberation()
    edt, _ = reverberation_truth(h, RATE, room.band_hz, "EDT")
    assert got.method != "T20"
    if got.method == "EDT":
        assert got.rt60_s == pytest.approx(edt, rel=0.3)
    else:
        assert got.rt60_s is None


def test_nothing_is_claimed_before_the_first_block_and_a_wrong_block_is_refused():
    room = RoomResponse(Codebook(), RATE, (2000.0, 8000.0))
    got = room.reverberation()
    assert got.blocks == 0 and got.rt60_s is None and got.drr_db is None
    with pytest.raises(ValueError, match="a block is"):
        room.add(np.zeros(100, np.float32), [])


@pytest.mark.parametrize("rate, factor", [(44100, 2), (48000, 2), (96000, 5), (192000, 10), (16000, 1)])
def test_the_reduced_rate_keeps_the_band_under_its_top_fraction(rate, factor):
    assert decimation_for(rate, 8000.0) == factor
    assert rate / factor * 0.42 >= 8000.0 or factor == 1


def test_the_receiver_reports_the_room_once_a_block_is_in_and_keeps_it_across_a_clock_reset():
    """Invariant: the path profile's RT60/DRR come from blocks its fit placed; none before the first (4 s after
    the rake froze, about 12 s after lock); after a clock reset the blocks go on inside the new segment and the
    figures stay right."""
    from mimir.sync import StreamingReceiver

    h = exponential_room(0.5, -3.0, 300, seed=7)
    n = 40 * RATE
    played = WitnessEmitter(Codebook(), RATE, 50.0, level_dbfs=-20.0).render(0, n).astype(np.float64)
    heard = (fftconvolve(played, h)[:n] + np.random.default_rng(3).standard_normal(n) * 1e-4).astype(np.float32)
    rx = StreamingReceiver(Codebook(), RATE, "room")
    rx.feed(heard[: 8 * RATE])
    assert rx.locked and rx.report().response_profile.path.rt60_s is None  # locked, no block yet
    rx.feed(heard[8 * RATE : 24 * RATE])
    blocks = rx.reverberation().blocks
    t20, drr = reverberation_truth(h, RATE, rx.reverberation().band_hz)
    path = rx.report().response_profile.path
    assert blocks >= 2 and path.rt60_method == "T20"
    assert path.rt60_s == pytest.approx(t20, rel=0.1) and path.direct_to_reverberant_db == pytest.approx(drr, abs=1.5)
    rx.feed(heard[16 * RATE : 40 * RATE], start_sample=0)  # the local clock was reset: a new segment
    assert rx.report().discontinuities and rx.reverberation().blocks > blocks
    assert rx.report().response_profile.path.rt60_s == pytest.approx(t20, rel=0.1)


def test_a_changed_room_shows_within_the_memory_and_the_old_one_fades():
    """Invariant: the spectra forget (memory 8 blocks): 41 blocks after the room changes (RT60 1.2 s to 0.3 s,
    the direct path where it was) the figures are the new room's; a plain running sum still carries the old
    room's long tail (1.16 s measured), memory 16 a trace of it (+16 %)."""
    before = exponential_room(1.2, -6.0, 700, seed=9)
    after = exponential_room(0.3, 0.0, 700, seed=10)
    room = measure(before, 20.0, 100.0, seed=3)  # 25 blocks of 4 s of the old room
    measure(after, 20.0, 165.0, seed=4, room=room)  # then 41 of the new one
    t20, drr = reverberation_truth(after, RATE, room.band_hz)
    got = room.reverberation()
    assert got.blocks == 66
    assert got.rt60_s == pytest.approx(t20, rel=0.1) and got.drr_db == pytest.approx(drr, abs=1.5)
