"""Witness audio with known truth: what a phone or a second PC would record, made here, for tests and benchmarks.

A :class:`Condition` names the impairments; :func:`make_trial_audio` renders
the witness from a random canonical start ``t0`` (random sub-sample phase),
passes it through the impairment chain (:mod:`mimir.sync.impair`, in the
order a real path applies them) and returns the audio with its truth:
``(t0, true_rate_hz, drops)``. :func:`truth_local_sample` maps a canonical
second to the local sample the truth puts it at.

Everything is deterministic given the ``rng`` passed in. Scoring a receiver
against the truth (lock, error, speed) is the caller's: the tests assert it,
``mimir bench sync`` (``bench/sync.py``) tabulates it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import impair
from .codebook import Codebook
from .emitter import WitnessEmitter

__all__ = ["Condition", "make_trial_audio", "truth_local_sample", "LEVEL_DBFS", "WITNESS_BAND_HZ"]

LEVEL_DBFS = -10.0  # the witness's peak level in every trial
WITNESS_BAND_HZ = (2000.0, 8000.0)  # the default codebook's band: where in-band SNR is measured


@dataclass(frozen=True)
class Condition:
    """One trial's impairments, applied in this order: resampling, reverb, interferer, band limit, noise, AGC,
    noise suppression, codec, dropped blocks."""

    name: str
    description: str
    rate_hz: int = 48000
    ppm: float = 0.0
    snr_db: float | None = 30.0  # in-band (WITNESS_BAND_HZ) white noise; None: none
    band_hz: tuple[float | None, float | None] | None = None  # zero-phase band limit (None: that side open)
    agc: bool = False
    noise_suppression: bool = False
    reverb: tuple[float, float] | None = None  # (rt60 s, direct-to-reverberant dB)
    interferer: tuple[str, float] | None = None  # ("speech"|"music"|"mix", SIR dB, broadband)
    drops: int = 0  # blocks of 256-2048 samples removed, at least 4 s apart
    codec: tuple[str, int] | None = None  # ("opus"|"aac", kbps), through ffmpeg
    witness: str = "own"  # "own" | "none" | "wrong" (another codebook's witness)
    rx_band: tuple[float, float] | None = None  # the receiver's --band (issue 14): where the witness can arrive
    seconds: float = 30.0


def make_trial_audio(cond: Condition, rng: np.random.Generator
                     ) -> tuple[np.ndarray, tuple[float, float, list[tuple[int, int]]]]:
    """One trial's float32 audio and its truth ``(t0, true_rate_hz, drops)``.

    ``t0``: the canonical second of local sample 0 before any drop;
    ``true_rate_hz``: the exact rate after resampling; ``drops``: (local
    sample, samples removed) per dropped block, in order.
    """
    rate = cond.rate_hz
    n_out = int(cond.seconds * rate)
    t0 = float(rng.uniform(5.0, 6000.0))
    if cond.witness == "none":
        x = np.zeros(n_out + 16)
        power = 10.0 ** (LEVEL_DBFS / 10.0) * 0.23
    else:
        cb = Codebook() if cond.witness == "own" else Codebook.from_id("someone-else", seed=99)
        emitter = WitnessEmitter(cb, rate, t0, level_dbfs=LEVEL_DBFS)
        x = emitter.render(0, int(n_out * (1 + 1e-3)) + 4096).astype(np.float64)
        power = float(np.mean(x**2))
    y, ratio = impair.resample_ppm(x, cond.ppm)
    extra = 0
    if cond.drops:
        extra = 8 * 256 * cond.drops
    y = y[: n_out + extra]
    if cond.reverb:
        y = impair.reverb(y, rate, cond.reverb[0], cond.reverb[1], rng)
    if cond.interferer:
        kind, sir = cond.interferer
        if kind == "mix":
            y = impair.mix_at_sir(y, impair.speech_like(y.size, rate, rng), sir, power)
            y = impair.mix_at_sir(y, impair.music_like(y.size, rate, rng), sir, power)
        else:
            gen = impair.speech_like if kind == "speech" else impair.music_like
            y = impair.mix_at_sir(y, gen(y.size, rate, rng), sir, power)
    if cond.band_hz:
        y = impair.band_limit(y, rate, cond.band_hz[0], cond.band_hz[1])
    if cond.snr_db is not None:
        y = impair.add_inband_noise(y, rate, cond.snr_db, WITNESS_BAND_HZ, power, rng)
    if cond.agc:
        y = impair.agc(y, rate)
    if cond.noise_suppression:
        y = impair.noise_suppression(y, rate)
    if cond.codec:
        y = impair.codec_roundtrip(y, rate, cond.codec[0], cond.codec[1])
    drops: list[tuple[int, int]] = []
    if cond.drops:
        y, drops = impair.drop_blocks(y, 256, cond.drops, rng, min_gap=int(4 * rate))
    y = y[:n_out]
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 0.99:
        y = y * (0.99 / peak)  # a real capture would clip; keep the test about timing
    return y.astype(np.float32), (t0, rate * float(ratio), drops)


def truth_local_sample(t: float, t0: float, true_rate: float, removed: int) -> float:
    """The local sample canonical second ``t`` lands on, after ``removed`` samples were dropped before it."""
    return (t - t0) * true_rate - removed
