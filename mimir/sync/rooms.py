"""Simulated rooms with geometry truth, for the tests, ``mimir bench sync`` and the synthetic rig.

Two room models, so the detector is not fitted to one simulator:

``image``
    The image-source method on a shoebox (pyroomacoustics): every
    reflection up to the order that reaches the room's RT60 (Sabine
    absorption from :func:`pyroomacoustics.inverse_sabine`), each at its
    exact fractional delay (windowed-sinc fractional delay filters).
``stochastic``
    A different model built here: the direct path and the six first-order
    wall reflections at their exact (geometric) delays with random
    absorption, then a diffuse tail of Gaussian noise under an exponential
    decay (RT60) from the mixing time on, scaled so the direct-to-reverberant
    ratio follows the diffuse-field theory ``DRR = (r_c / r)**2`` with the
    critical distance ``r_c = 0.057 sqrt(V / RT60)``.

Transducers (:func:`transducer_filter`): a speaker and a microphone are
causal, minimum-phase filters (band limits, roll-off) with a pure delay (the
acoustic centre / converter latency of a real transducer). Their delay is
not part of the geometry: it is what path calibration removes.

Truth: the direct path of microphone ``k`` arrives ``distance / c * rate``
samples after emission (fractional), plus the transducers' delay.
:func:`room_impulse_responses` returns impulse responses whose index 0 is the
emission instant (the fractional-delay filters' lead is removed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import bilinear, butter, fftconvolve, lfilter, sosfilt, sosfiltfilt

__all__ = [
    "Room", "Transducer", "SPEAKER", "MICROPHONE", "room_impulse_responses", "direct_delays_samples",
    "transducer_filter", "fractional_delay", "reverberation_truth", "SPEED_OF_SOUND_M_S",
]

SPEED_OF_SOUND_M_S = 343.0


@dataclass(frozen=True)
class Room:
    """A shoebox room, one speaker and some microphones (metres; the origin is a corner)."""

    dims_m: tuple[float, float, float]
    rt60_s: float
    source_m: tuple[float, float, float]
    mics_m: tuple[tuple[float, float, float], ...]
    model: str = "image"  # "image" | "stochastic"
    seed: int = 0
    name: str = ""

    def distances_m(self) -> np.ndarray:
        src = np.asarray(self.source_m)
        return np.array([float(np.linalg.norm(np.asarray(m) - src)) for m in self.mics_m])

    def validate(self) -> None:
        for p in (self.source_m, *self.mics_m):
            if not all(0.0 < c < d for c, d in zip(p, self.dims_m)):
                raise ValueError(f"{p} is not inside the room {self.dims_m}")
        if np.any(self.distances_m() < 0.05):
            raise ValueError("a microphone sits on the speaker")
        if self.model not in ("image", "stochastic"):
            raise ValueError(f"unknown room model {self.model!r}")


@dataclass(frozen=True)
class Transducer:
    """A causal minimum-phase transducer: Butterworth high-pass and low-pass plus a pure delay."""

    highpass_hz: float | None = None
    highpass_order: int = 2
    lowpass_hz: float | None = None
    lowpass_order: int = 2
    delay_s: float = 0.0
    resonance: tuple[float, float, float] | None = field(default=None)  # (Hz, Q, gain dB): a peaking bump


# A small active speaker and a measurement-grade-ish condenser microphone.
SPEAKER = Transducer(highpass_hz=180.0, highpass_order=2, lowpass_hz=11000.0, lowpass_order=2, delay_s=0.00021,
                     resonance=(3200.0, 2.0, 4.0))
MICROPHONE = Transducer(highpass_hz=40.0, highpass_order=1, lowpass_hz=15000.0, lowpass_order=1, delay_s=0.00004)


def direct_delays_samples(room: Room, rate_hz: float, speed_m_s: float = SPEED_OF_SOUND_M_S) -> np.ndarray:
    """Geometry truth: each microphone's direct-path delay after emission, in (fractional) samples."""
    return room.distances_m() / speed_m_s * rate_hz


def fractional_delay(delay_samples: float, length: int, half_width: int = 40) -> np.ndarray:
    """A unit impulse delayed by ``delay_samples`` (Hann-windowed sinc, ``2 * half_width + 1`` taps)."""
    out = np.zeros(length)
    centre = int(math.floor(delay_samples))
    n = np.arange(centre - half_width, centre + half_width + 2)
    keep = (n >= 0) & (n < length)
    x = n - delay_samples
    w = 0.5 + 0.5 * np.cos(np.pi * np.clip(x / (half_width + 1), -1.0, 1.0))
    out[n[keep]] = (np.sinc(x) * w)[keep]
    return out


def _image_source(room: Room, rate_hz: float) -> list[np.ndarray]:
    import pyroomacoustics as pra

    absorption, max_order = pra.inverse_sabine(room.rt60_s, list(room.dims_m))
    shoebox = pra.ShoeBox(list(room.dims_m), fs=int(rate_hz), materials=pra.Material(absorption),
                          max_order=max_order, air_absorption=False, use_rand_ism=False)
    shoebox.add_source(list(room.source_m))
    shoebox.add_microphone_array(np.array(room.mics_m, dtype=np.float64).T)
    shoebox.compute_rir()
    lead = pra.constants.get("frac_delay_length") // 2  # the fractional-delay filters are centred this late
    out = []
    for k in range(len(room.mics_m)):
        h = np.asarray(shoebox.rir[k][0], dtype=np.float64)
        out.append(h[lead:].copy())
    return out


def _stochastic(room: Room, rate_hz: float) -> list[np.ndarray]:
    rng = np.random.default_rng(room.seed)
    dims = np.asarray(room.dims_m)
    src = np.asarray(room.source_m)
    volume = float(np.prod(dims))
    r_c = 0.057 * math.sqrt(volume / room.rt60_s)
    length = int((room.rt60_s * 1.2 + dims.max() * 3 / SPEED_OF_SOUND_M_S) * rate_hz) + 256
    mixing_s = 0.002 * math.sqrt(volume)  # about 2 ms per sqrt(m^3): where the tail becomes diffuse
    out = []
    for mic_m in room.mics_m:
        mic = np.asarray(mic_m)
        r = float(np.linalg.norm(mic - src))
        h = fractional_delay(r / SPEED_OF_SOUND_M_S * rate_hz, length) / r
        # first-order images: mirror the source in each wall
        for axis in range(3):
            for wall in (0.0, dims[axis]):
                img = src.copy()
                img[axis] = 2.0 * wall - src[axis]
                ri = float(np.linalg.norm(mic - img))
                gain = math.sqrt(1.0 - rng.uniform(0.1, 0.6)) / ri
                h += gain * fractional_delay(ri / SPEED_OF_SOUND_M_S * rate_hz, length)
        t0 = r / SPEED_OF_SOUND_M_S + mixing_s
        n0 = int(t0 * rate_hz)
        t = (np.arange(length - n0)) / rate_hz
        tail = rng.standard_normal(length - n0) * 10.0 ** (-3.0 * t / room.rt60_s)
        onset = np.minimum(1.0, t / max(mixing_s, 1e-3))  # the tail builds up over the mixing time
        tail *= onset
        direct_energy = 1.0 / r**2
        reverb_energy = direct_energy * (r / r_c) ** 2
        tail *= math.sqrt(reverb_energy / max(float(np.sum(tail**2)), 1e-300))
        h[n0:] += tail
        out.append(h)
    return out


def room_impulse_responses(room: Room, rate_hz: float) -> list[np.ndarray]:
    """One impulse response per microphone; index 0 is the emission instant."""
    room.validate()
    if room.model == "image":
        return _image_source(room, rate_hz)
    return _stochastic(room, rate_hz)


def reverberation_truth(h: np.ndarray, rate_hz: float, band_hz: tuple[float, float],
                        method: str = "T20") -> tuple[float, float]:
    """(RT60 s, DRR dB) of impulse response ``h`` in ``band_hz``: what a room measurement of it should report.

    ``h`` is band-passed (6th-order Butterworth, zero phase); from its
    strongest sample (the direct path) on, the Schroeder integral's slope from
    -5 to -25 dB (``"T20"``) or from 0 to -10 dB (``"EDT"``) gives RT60, and the
    energy within +-2.5 ms of that sample against the rest gives DRR.
    """
    hb = sosfiltfilt(butter(6, band_hz, "band", fs=rate_hz, output="sos"), np.asarray(h, dtype=np.float64))
    energy = hb**2
    j = int(np.argmax(energy))
    edc = np.cumsum(energy[j:][::-1])[::-1]
    edc_db = 10.0 * np.log10(np.maximum(edc / edc[0], 1e-30))
    t = np.arange(edc.size) / rate_hz
    hi, lo = (-5.0, -25.0) if method == "T20" else (0.0, -10.0)
    use = (edc_db <= hi) & (edc_db >= lo)
    rt60 = -60.0 / float(np.polyfit(t[use], edc_db[use], 1)[0])
    w = int(round(0.0025 * rate_hz))
    drr = 10.0 * math.log10(float(energy[max(0, j - w) : j + w + 1].sum()) / float(energy[j + w + 1 :].sum()))
    return rt60, drr


def transducer_filter(x: np.ndarray, rate_hz: float, t: Transducer) -> np.ndarray:
    """Apply a transducer (causal, minimum phase, then its pure delay) to ``x``."""
    y = np.asarray(x, dtype=np.float64)
    nyq = 0.5 * rate_hz
    if t.highpass_hz:
        y = sosfilt(butter(t.highpass_order, t.highpass_hz, "highpass", fs=rate_hz, output="sos"), y)
    if t.lowpass_hz and t.lowpass_hz < 0.95 * nyq:
        y = sosfilt(butter(t.lowpass_order, t.lowpass_hz, "lowpass", fs=rate_hz, output="sos"), y)
    if t.resonance is not None:
        f0, q, gain_db = t.resonance
        a = 10.0 ** (gain_db / 40.0)
        w0 = 2.0 * math.pi * f0
        # analogue peaking EQ (RBJ) -> bilinear; minimum phase for gain > 0
        b_s = [1.0 / w0**2, a / (q * w0), 1.0]
        a_s = [1.0 / w0**2, 1.0 / (a * q * w0), 1.0]
        b, a_z = bilinear(b_s, a_s, fs=rate_hz)
        y = lfilter(b, a_z, y)
    if t.delay_s:
        d = fractional_delay(t.delay_s * rate_hz, int(t.delay_s * rate_hz) + 48)
        y = fftconvolve(y, d)[: y.size]
    return y
