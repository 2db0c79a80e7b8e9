"""Known impairments for tests and the benchmark: what a phone or a second PC does to audio.

Every function is deterministic given its ``rng`` and documents how it moves the
truth (the map from canonical time to local sample):

* :func:`resample_ppm` changes the rate by an exact rational factor (returned);
* :func:`drop_blocks` removes samples (returns where and how many);
* everything else is zero-phase or starts with the direct path at lag 0, so
  it leaves the truth unchanged (a causal filter's group delay would be a fixed
  offset, indistinguishable from path latency, and is not what is measured here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from fractions import Fraction

import numpy as np
import soundfile as sf
from scipy.signal import butter, fftconvolve, istft, resample_poly, sawtooth, sosfilt, sosfiltfilt, stft

__all__ = [
    "resample_ppm", "band_limit", "add_inband_noise", "agc", "noise_suppression", "reverb",
    "speech_like", "music_like", "mix_at_sir", "drop_blocks", "codec_roundtrip", "codec_available",
]


def resample_ppm(x: np.ndarray, ppm: float, max_denominator: int = 20000) -> tuple[np.ndarray, Fraction]:
    """Resample by ``up/down ~= 1 + ppm * 1e-6`` (exact rational). Returns (y, up/down).

    Output sample ``n`` is input position ``n * down / up``: a receiver sees the
    effective rate ``nominal * up / down``.
    """
    ratio = Fraction(1.0 + ppm * 1e-6).limit_denominator(max_denominator)
    if ratio == 1:
        return x.astype(np.float64, copy=True), ratio
    y = resample_poly(x.astype(np.float64), ratio.numerator, ratio.denominator)
    return y, ratio


def band_limit(x: np.ndarray, rate_hz: float, low_hz: float | None, high_hz: float | None, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth high/low/band-pass (applied forward and backward)."""
    if low_hz and high_hz:
        sos = butter(order, [low_hz, high_hz], btype="bandpass", fs=rate_hz, output="sos")
    elif low_hz:
        sos = butter(order, low_hz, btype="highpass", fs=rate_hz, output="sos")
    elif high_hz:
        sos = butter(order, high_hz, btype="lowpass", fs=rate_hz, output="sos")
    else:
        return x.copy()
    return sosfiltfilt(sos, x)


def add_inband_noise(
    x: np.ndarray, rate_hz: float, snr_db: float, band: tuple[float, float], signal_power: float, rng: np.random.Generator
) -> np.ndarray:
    """Add white noise whose power inside ``band`` is ``signal_power / 10**(snr_db/10)``.

    ``signal_power`` is the witness's mean power over the file (gaps included),
    so "0 dB in-band" means as much noise in the witness band as witness.
    """
    in_band_fraction = (band[1] - band[0]) / (0.5 * rate_hz)
    total = signal_power / 10.0 ** (snr_db / 10.0) / in_band_fraction
    return x + rng.standard_normal(x.size) * np.sqrt(total)


def agc(x: np.ndarray, rate_hz: float, target_rms: float = 0.1, attack_s: float = 0.01, release_s: float = 0.4,
        max_gain_db: float = 30.0, block_s: float = 0.005) -> np.ndarray:
    """Automatic gain control: fast attack, slow release, on 5 ms block RMS.

    The gain pumps down on every loud event (each witness symbol, each speech
    burst) and recovers slowly, like a phone's capture AGC.
    """
    block = max(1, int(block_s * rate_hz))
    n_blocks = int(np.ceil(x.size / block))
    padded = np.zeros(n_blocks * block)
    padded[: x.size] = x
    rms = np.sqrt(np.mean(padded.reshape(n_blocks, block) ** 2, axis=1) + 1e-20)
    a_att = np.exp(-block_s / attack_s)
    a_rel = np.exp(-block_s / release_s)
    env = np.empty(n_blocks)
    level = rms[0]
    for i, r in enumerate(rms.tolist()):
        a = a_att if r > level else a_rel
        level = a * level + (1.0 - a) * r
        env[i] = level
    gain = np.minimum(target_rms / np.maximum(env, 1e-12), 10.0 ** (max_gain_db / 20.0))
    centers = (np.arange(n_blocks) + 0.5) * block
    return x * np.interp(np.arange(x.size), centers, gain)


def noise_suppression(x: np.ndarray, rate_hz: float, strength: float = 1.5, floor_db: float = -20.0) -> np.ndarray:
    """Spectral-subtraction noise suppressor (per-bin floor = time median), zero-phase STFT."""
    nper = int(2 ** np.ceil(np.log2(0.02 * rate_hz)))
    _, _, z = stft(x, fs=rate_hz, nperseg=nper)
    power = np.abs(z) ** 2
    noise = np.median(power, axis=1, keepdims=True)
    gain = np.maximum(1.0 - strength * noise / np.maximum(power, 1e-30), 10.0 ** (floor_db / 10.0))
    _, y = istft(z * np.sqrt(gain), fs=rate_hz, nperseg=nper)
    out = np.zeros_like(x)
    n = min(x.size, y.size)
    out[:n] = y[:n]
    return out


def reverb(x: np.ndarray, rate_hz: float, rt60_s: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Room reverberation: direct path (gain 1, lag 0) plus an exponentially decaying diffuse tail.

    The tail starts 1.5 ms after the direct path, decays 60 dB in ``rt60_s``,
    and carries ``drr_db`` less energy than the direct path.
    """
    n = int(rt60_s * rate_hz)
    t = np.arange(n) / rate_hz
    tail = rng.standard_normal(n) * 10.0 ** (-3.0 * t / rt60_s)
    tail[: int(0.0015 * rate_hz)] = 0.0
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
    tail[0] = 1.0
    return fftconvolve(x, tail)[: x.size]


def speech_like(n_samples: int, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Babble-like voice: glottal pulses through moving formants, syllables, pauses, fricatives."""
    out = np.zeros(n_samples)
    t = 0
    while t < n_samples:
        syllable = int(rng.uniform(0.12, 0.3) * rate_hz)
        end = min(n_samples, t + syllable)
        m = end - t
        if rng.random() < 0.2:  # pause
            t = end + int(rng.uniform(0.05, 0.3) * rate_hz)
            continue
        if rng.random() < 0.3:  # fricative: 3-9 kHz noise
            sos = butter(4, [3000.0, min(9000.0, 0.45 * rate_hz)], btype="bandpass", fs=rate_hz, output="sos")
            seg = sosfilt(sos, rng.standard_normal(m)) * 0.5
        else:  # voiced: pulse train at F0 through three formant resonators
            f0 = rng.uniform(90.0, 230.0)
            pulses = np.zeros(m)
            pulses[:: max(1, int(rate_hz / f0))] = 1.0
            seg = np.zeros(m)
            for lo, hi in ((300.0, 900.0), (900.0, 2500.0), (2200.0, 3500.0)):
                fc = rng.uniform(lo, hi)
                sos = butter(2, [fc * 0.9, fc * 1.1], btype="bandpass", fs=rate_hz, output="sos")
                seg += sosfilt(sos, pulses) * rng.uniform(0.3, 1.0)
        envelope = np.sin(np.pi * np.arange(m) / m) ** 0.5
        out[t:end] += seg * envelope
        t = end
    return out / (np.sqrt(np.mean(out**2)) + 1e-20)


def music_like(n_samples: int, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Pop-like music: harmonic chords changing every beat, kick, snare and hi-hats at 128 BPM."""
    out = np.zeros(n_samples)
    beat = int(60.0 / 128.0 * rate_hz)
    for start in range(0, n_samples, beat):
        m = min(beat, n_samples - start)
        tt = np.arange(m) / rate_hz
        env = np.exp(-tt / 0.25)
        for _ in range(3):  # a chord: sawtooth notes, harmonics falling as 1/k like bowed or brass tones
            f = 110.0 * 2.0 ** (rng.integers(0, 36) / 12.0)
            out[start : start + m] += env * sawtooth(2 * np.pi * f * tt + rng.uniform(0, 2 * np.pi))
        kick = np.sin(2 * np.pi * (50.0 + 100.0 * np.exp(-tt / 0.03)) * tt) * np.exp(-tt / 0.1)
        out[start : start + m] += 2.0 * kick
        for offset, (lo, hi, decay, gain) in enumerate(((1000.0, 8000.0, 0.08, 1.5), (6000.0, 12000.0, 0.03, 0.8))):
            sos = butter(2, [lo, min(hi, 0.45 * rate_hz)], btype="bandpass", fs=rate_hz, output="sos")
            burst = sosfilt(sos, rng.standard_normal(m)) * np.exp(-tt / decay) * gain
            at = (offset * beat) // 2
            if at < m:
                out[start + at : start + m] += burst[: m - at]
    return out / (np.sqrt(np.mean(out**2)) + 1e-20)


def mix_at_sir(x: np.ndarray, interferer: np.ndarray, sir_db: float, signal_power: float) -> np.ndarray:
    """Add ``interferer`` scaled to ``signal_power / 10**(sir_db/10)`` (broadband mean power)."""
    p = np.mean(interferer**2) + 1e-30
    return x + interferer[: x.size] * np.sqrt(signal_power / 10.0 ** (sir_db / 10.0) / p)


def drop_blocks(
    x: np.ndarray, block: int, n_drops: int, rng: np.random.Generator, min_gap: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Remove ``n_drops`` runs of ``block * k`` samples (k in 1..8) at random places.

    Returns (y, drops) with drops as (output index where samples went missing,
    samples removed), in order. Output sample n after drops d1..dj is input
    sample ``n + sum(removed)``.
    """
    positions = np.sort(rng.choice(np.arange(min_gap, x.size - min_gap, min_gap), size=n_drops, replace=False))
    pieces = []
    drops = []
    cursor = 0
    removed = 0
    for p in positions.tolist():
        size = block * int(rng.integers(1, 9))
        pieces.append(x[cursor:p])
        drops.append((p - removed, size))
        removed += size
        cursor = p + size
    pieces.append(x[cursor:])
    return np.concatenate(pieces), drops


def codec_available(codec: str) -> bool:
    if shutil.which("ffmpeg") is None:
        return False
    try:
        out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    name = {"opus": "libopus", "aac": " aac "}[codec]
    return name in out


def codec_roundtrip(x: np.ndarray, rate_hz: int, codec: str, bitrate_kbps: int) -> np.ndarray:
    """Encode with ffmpeg (``opus`` in Ogg, ``aac`` in MP4) and decode back to float at ``rate_hz``.

    The containers carry the encoder delay (Opus pre-skip, AAC edit list), which
    ffmpeg trims on decode; any delay left over shows up as offset error.
    """
    ext, args = {"opus": (".ogg", ["-c:a", "libopus"]), "aac": (".m4a", ["-c:a", "aac"])}[codec]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.wav")
        enc = os.path.join(tmp, "enc" + ext)
        dst = os.path.join(tmp, "out.wav")
        sf.write(src, x.astype(np.float32), int(rate_hz), subtype="FLOAT")
        common = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
        subprocess.run(common + ["-i", src, *args, "-b:a", f"{bitrate_kbps}k", "-ac", "1", enc], check=True, timeout=300)
        subprocess.run(common + ["-i", enc, "-ar", str(int(rate_hz)), "-c:a", "pcm_f32le", dst], check=True, timeout=300)
        y, _ = sf.read(dst, dtype="float64")
    if y.ndim > 1:
        y = y[:, 0]
    out = np.zeros(x.size)
    n = min(x.size, y.size)
    out[:n] = y[:n]
    return out
