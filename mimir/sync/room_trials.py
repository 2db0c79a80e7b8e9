"""Rooms with geometry truth: one microphone's witness, decoded, against the direct path.

Shared by the room tests and the rooms section of ``mimir bench sync``
(``bench/sync_rooms.py``). :func:`room_trial` renders the witness from a
random canonical start, plays it through a simulated room
(:mod:`mimir.sync.rooms`; optionally through a speaker and a microphone),
resamples it by a clock error, adds white noise at an in-band SNR measured
at the microphone, and decodes it twice in the same run: with the receiver as
it is (direct path, :mod:`mimir.sync.channel`) and with channel estimation off
(the envelope-peak method before issue 13).

Truth: the local sample the direct path of canonical time ``t`` arrives at is
``((t - t0) * rate + distance / c * rate) * ratio`` (``ratio`` the exact
resampling factor); with a path calibration the receiver reports the
emission instead, ``(t - t0) * rate * ratio``. Errors are the worst over the
first and last second of the audio.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import msgspec
import numpy as np
from scipy.signal import fftconvolve

from . import impair
from .calibration import PathCalibration
from .codebook import Codebook
from .emitter import WitnessEmitter
from .path_measure import measure_pulse
from .receiver import ReceiverConfig, StreamingReceiver
from .report import PathProfile
from .rooms import MICROPHONE, SPEAKER, Room, Transducer, direct_delays_samples, reverberation_truth, \
    room_impulse_responses, transducer_filter
from .trials import LEVEL_DBFS, WITNESS_BAND_HZ

__all__ = ["RoomTrial", "room_trial", "render_through", "measure_transducer_path", "random_room",
           "WRONG_SAMPLES_AT_48K"]

WRONG_SAMPLES_AT_48K = 48.0  # "confidently wrong": more than 1 ms off (with a confidence above 0.5)


@dataclass
class RoomTrial:
    """One microphone of one room, decoded twice (direct path; envelope peak as the baseline), against geometry truth."""

    room: str
    model: str
    rt60_s: float
    distance_m: float
    snr_db: float
    error_samples: float | None  # direct path (or emission, when calibrated) vs truth; None: no fit
    rate_error_ppm: float | None
    confidence: float
    baseline_error_samples: float | None  # channel estimation off (envelope peak), same audio
    baseline_confidence: float
    x_realtime: float               # audio seconds per CPU second in feed(), the whole trial (acquisition included)
    baseline_x_realtime: float
    x_realtime_sustained: float     # the same over the trial's second half: a locked receiver, as a rig runs for hours
    baseline_x_realtime_sustained: float
    profile: PathProfile | None
    # the simulated response's own RT60 (by the method the receiver reported, T20 when it reported none) and DRR,
    # in the receiver's room-measurement band (mimir.sync.rooms.reverberation_truth)
    rt60_truth_s: float | None = None
    drr_truth_db: float | None = None


def render_through(room: Room, mic: int, rate_hz: int, seconds: float, t0: float, *, snr_db: float, ppm: float,
                   rng: np.random.Generator, transducers: tuple[Transducer, Transducer] | None = None,
                   impulse: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The witness from canonical ``t0`` as microphone ``mic`` records it; returns (float32 audio, resampling ratio)."""
    n = int(seconds * rate_hz)
    h = impulse if impulse is not None else room_impulse_responses(room, rate_hz)[mic]
    x = WitnessEmitter(Codebook(), rate_hz, t0, level_dbfs=LEVEL_DBFS).render(0, n + h.size // 2 + 4096)
    x = x.astype(np.float64)
    if transducers is not None:
        x = transducer_filter(x, rate_hz, transducers[0])
    y = fftconvolve(x, h)[: x.size]
    if transducers is not None:
        y = transducer_filter(y, rate_hz, transducers[1])
    y, ratio = impair.resample_ppm(y, ppm)
    y = y[:n]
    power = float(np.mean(y**2))
    y = impair.add_inband_noise(y, rate_hz, snr_db, WITNESS_BAND_HZ, power, rng)
    peak = float(np.max(np.abs(y)))
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32), float(ratio)


def _decode(audio: np.ndarray, rate_hz: int, config: ReceiverConfig | None,
            path: PathCalibration | None) -> tuple[StreamingReceiver, float, float]:
    """Feed ``audio`` in 1024-frame blocks (at 48 kHz); returns the receiver and its speed (x real time, CPU time)
    over the whole audio and over its second half."""
    rx = StreamingReceiver(Codebook(), rate_hz, "room", config=config, path=path)
    block = 1024 * rate_hz // 48000
    half = audio.size // 2 // block * block
    cpu0 = time.process_time()
    cpu_half = cpu0
    for k in range(0, audio.size, block):
        if k == half:
            cpu_half = time.process_time()
        rx.feed(audio[k : k + block])
    cpu1 = time.process_time()
    return (rx, audio.size / rate_hz / max(cpu1 - cpu0, 1e-9),
            (audio.size - half) / rate_hz / max(cpu1 - cpu_half, 1e-9))


def _error(rx: StreamingReceiver, truth_at: list[tuple[float, float]]) -> float | None:
    """The fit's signed error with the largest magnitude at the (canonical second, true local sample) pairs."""
    fit = rx.report().canonical_clock_fit
    if fit.rate_hz is None or fit.local_sample_at_epoch is None:
        return None
    errs = [fit.local_sample_at_epoch + t * fit.rate_hz - want for t, want in truth_at]
    return max(errs, key=abs)


def room_trial(room: Room, mic: int, *, rate_hz: int = 48000, seconds: float = 30.0, snr_db: float = 10.0,
               ppm: float = 80.0, seed: int = 0, transducers: tuple[Transducer, Transducer] | None = None,
               calibration: PathCalibration | None = None, baseline: bool = True) -> RoomTrial:
    """Decode microphone ``mic`` of ``room``; with ``calibration`` (the transducers' measured delay and pulse,
    :func:`measure_transducer_path`) calibrated to the emission."""
    rng = np.random.default_rng(seed)
    t0 = float(rng.uniform(20.0, 3000.0))
    h = room_impulse_responses(room, rate_hz)[mic]
    audio, ratio = render_through(room, mic, rate_hz, seconds, t0, snr_db=snr_db, ppm=ppm, rng=rng,
                                  transducers=transducers, impulse=h)
    distance = float(room.distances_m()[mic])
    direct = float(direct_delays_samples(room, rate_hz)[mic])
    path = None
    if calibration is not None:
        path = msgspec.structs.replace(calibration, distance_m=distance)
        direct = 0.0  # the receiver reports the emission
    truth_at: list[tuple[float, float]] = []
    for local in (float(rate_hz), float(audio.size - 1)):
        t = t0 + local / (rate_hz * ratio)
        truth_at.append((t, ((t - t0) * rate_hz + direct) * ratio))
    rx, speed, sustained = _decode(audio, rate_hz, None, path)
    err = _error(rx, truth_at)
    rep = rx.report()
    fit = rep.canonical_clock_fit
    rate_err = None if fit.rate_hz is None else (fit.rate_hz / (rate_hz * ratio) - 1) * 1e6
    base_err: float | None = None
    base_conf, base_speed, base_sustained = 0.0, math.nan, math.nan
    if baseline:
        brx, base_speed, base_sustained = _decode(audio, rate_hz, ReceiverConfig(channel_estimation=False), path)
        base_err = _error(brx, truth_at)
        base_conf = brx.confidence()
    measured = rx.reverberation()
    truth = (None, None) if measured is None else \
        reverberation_truth(h, rate_hz, measured.band_hz, measured.method or "T20")
    return RoomTrial(room=room.name, model=room.model, rt60_s=room.rt60_s, distance_m=distance, snr_db=snr_db,
                     error_samples=err, rate_error_ppm=rate_err, confidence=fit.confidence,
                     baseline_error_samples=base_err, baseline_confidence=base_conf, x_realtime=speed,
                     baseline_x_realtime=base_speed, x_realtime_sustained=sustained,
                     baseline_x_realtime_sustained=base_sustained, profile=rep.response_profile.path,
                     rt60_truth_s=truth[0], drr_truth_db=truth[1])


def measure_transducer_path(rate_hz: int = 48000, transducers: tuple[Transducer, Transducer] = (SPEAKER, MICROPHONE),
                            seed: int = 99, *, pulse: bool = True) -> PathCalibration:
    """The speaker + microphone path "measured once", with no room (30 dB SNR): their pulse
    (:func:`mimir.sync.path_measure.measure_pulse`), then their delay against the emission with the pulse in place
    (``pulse=False``: the delay alone, as the band's own pulse sees it)."""
    rng = np.random.default_rng(seed)
    t0 = 50.0
    x = WitnessEmitter(Codebook(), rate_hz, t0, level_dbfs=LEVEL_DBFS).render(0, 20 * rate_hz).astype(np.float64)
    y = transducer_filter(transducer_filter(x, rate_hz, transducers[0]), rate_hz, transducers[1])
    y = impair.add_inband_noise(y, rate_hz, 30.0, WITNESS_BAND_HZ, float(np.mean(y**2)), rng).astype(np.float32)
    path = PathCalibration(pulse=measure_pulse(y, rate_hz)) if pulse else None
    rx, _, _ = _decode(y, rate_hz, None, path)
    fit = rx.report().canonical_clock_fit
    if fit.local_sample_at_epoch is None or fit.rate_hz is None:
        raise RuntimeError("the dry transducer chain did not lock")
    delay_s = float(fit.local_sample_at_epoch + t0 * fit.rate_hz) / rate_hz
    return PathCalibration(delay_s=delay_s, pulse=None if path is None else path.pulse)


def random_room(rng: np.random.Generator, *, model: str, rt60_s: float, dims_m: tuple[float, float, float],
                n_mics: int, wall_m: float = 0.3, name: str = "") -> Room:
    """A shoebox with the speaker and microphones anywhere inside (some near walls or in corners), fractional distances.

    A third of the positions are ``wall_m`` from one wall, a sixth in a corner
    (``wall_m`` from two walls and the floor or ceiling); the rest uniform at
    least ``wall_m`` from every wall.
    """
    dims = np.asarray(dims_m)

    def position() -> tuple[float, float, float]:
        p = rng.uniform(wall_m, dims - wall_m)
        kind = rng.random()
        if kind < 1 / 3:
            axis = int(rng.integers(0, 3))
            p[axis] = wall_m if rng.random() < 0.5 else dims[axis] - wall_m
        elif kind < 0.5:
            for axis in (0, 1, 2):
                p[axis] = wall_m if rng.random() < 0.5 else dims[axis] - wall_m
        return float(p[0]), float(p[1]), float(p[2])

    source = position()
    mics: list[tuple[float, float, float]] = []
    while len(mics) < n_mics:  # 0.5 m at least from the speaker (the range starts there)
        p = position()
        if np.linalg.norm(np.asarray(p) - np.asarray(source)) >= 0.5:
            mics.append(p)
    return Room((float(dims[0]), float(dims[1]), float(dims[2])), rt60_s, source, tuple(mics), model=model,
                seed=int(rng.integers(1 << 31)), name=name)
