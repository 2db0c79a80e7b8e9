"""Coherent fine timing of one witness event against the symbol templates.

Given a stretch of local audio that contains (or should contain) the start of a
symbol somewhere in the first ``2 * halfwidth`` samples, find the sub-sample lag
that maximises the *envelope* of the analytic cross-correlation with the
expected symbol's template, then score all 32 symbols at that lag.

Why the envelope: it is the maximum-likelihood delay when the channel adds an
unknown phase rotation (a polarity flip, a speaker/mic phase response, a codec),
and its main lobe is about ``rate / bandwidth`` samples wide (8 samples for the
default 6 kHz band at 48 kHz), so a few Newton steps on the band-limited
interpolant ``|c(tau)|^2`` give an unbiased sub-sample peak without any
up-sampling.

Templates are rendered at the receiver's current *effective* sample rate: a
chirp received 300 ppm slow and matched against a nominal-rate template would
show a constant delay bias of most of a sample (range-Doppler coupling).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from .codebook import Codebook
from .stats import median_along
from .symbols import N_SUBBANDS, N_SYMBOLS, render_symbols

__all__ = ["TemplateBank", "EventMeasurement", "measure_event", "retime"]

# Measured once (see tests/mimir/sync/test_timing.py::test_predicted_sigma_is_calibrated):
# the Newton peak's scatter relative to the matched-filter bound below.
_SIGMA_CALIBRATION = 0.72
# lambda = 0.1 % of a template's mean power per bin: the dips at the sub-band edges stay flat (sidelobes < -55 dB)
_DECONV_REGULARISATION = 0.001


@dataclass
class EventMeasurement:
    """Outcome of :func:`measure_event`.

    ``lag_samples``: symbol start relative to the segment start (sub-sample).
    ``z``: the expected symbol's score, in robust standard deviations above the
    median of all 32 symbols at that lag. ``snr``: matched-filter output SNR
    (power ratio). ``sigma_samples``: predicted 1-sigma timing error.
    """

    lag_samples: float
    z: float
    snr: float
    sigma_samples: float
    top_symbol: int
    band_gain: np.ndarray  # (N_SUBBANDS,) received/template amplitude ratio per sub-band
    band_delay_samples: np.ndarray  # (N_SUBBANDS,) sub-band peak minus wide-band peak
    band_snr: np.ndarray  # (N_SUBBANDS,)
    received: np.ndarray | None = None  # (nb,) received spectrum on bank.bins (segment FFT), for the channel estimate


class TemplateBank:
    """Band-limited spectra of the 32 symbol templates at one rate and FFT size.

    A segment is ``pre + 2 * halfwidth + 1 + post + template_len`` samples: the
    timing reference is searched at lags ``[pre, pre + 2 * halfwidth]`` from its
    start, and around the reference the correlation stays linear (no circular
    wrap) over ``[-pre, +post]`` lags, the window the channel estimate
    (:mod:`mimir.sync.channel`) reads the room's impulse response from. The FFT
    size is at least ``segment_len``.

    ``band_hz`` (optional) narrows the bins used to a receiver's band limits;
    it must overlap the codebook's band. ``waves`` (optional) are the 32
    templates already rendered at this rate (:attr:`waves` of another bank
    at the same rate: the wide search's bank shares the timing bank's).
    """

    def __init__(self, codebook: Codebook, rate_hz: float, halfwidth_samples: int, *, pre_samples: int = 0,
                 post_samples: int = 0, band_hz: tuple[float, float] | None = None,
                 waves: np.ndarray | None = None) -> None:
        spec = codebook.spec
        self.rate_hz = float(rate_hz)
        self.halfwidth = int(halfwidth_samples)
        self.pre = int(pre_samples)
        self.post = int(post_samples)
        self.template_len = int(np.ceil(spec.symbol_seconds * rate_hz)) + 1
        self.segment_len = self.pre + self.template_len + 2 * self.halfwidth + 1 + self.post
        # The coarse lag search looks at every D-th lag, folding the band into n_fft / D bins: D is the largest of
        # 4, 2, 1 the band (with its margins) fits, and n_fft a multiple of it.
        margin = 0.05 * (spec.band_high_hz - spec.band_low_hz)
        width = (min(spec.band_high_hz + margin, 0.5 * rate_hz) - (spec.band_low_hz - margin)) / rate_hz
        self.search_decimation = next(d for d in (4, 2, 1) if width * d < 0.95)
        d = self.search_decimation
        self.n_fft = d * sfft.next_fast_len(-(-self.segment_len // d))
        if waves is None or waves.shape != (N_SYMBOLS, self.template_len):
            waves = render_symbols(range(N_SYMBOLS), band_low_hz=spec.band_low_hz, band_high_hz=spec.band_high_hz,
                                   symbol_seconds=spec.symbol_seconds, taper_seconds=spec.taper_seconds,
                                   sample_rate_hz=rate_hz, n_samples=self.template_len)
        self.waves = waves  # (32, template_len) float64, never written after
        spectrum = sfft.rfft(waves, self.n_fft, axis=1)
        freqs = np.arange(spectrum.shape[1]) * (rate_hz / self.n_fft)
        low, high = spec.band_low_hz - margin, min(spec.band_high_hz + margin, 0.5 * rate_hz)
        if band_hz is not None:
            low, high = max(low, band_hz[0]), min(high, band_hz[1])
        self.band_hz = (max(low, spec.band_low_hz), min(high, spec.band_high_hz))
        keep = (freqs >= low) & (freqs <= high)
        self.bins = np.nonzero(keep)[0]
        self.search_len = self.n_fft // d
        if self.bins.size > self.search_len:
            raise ValueError("the witness band is too wide for the coarse lag search at this rate")
        self.search_fold = self.bins % self.search_len  # bin k -> k mod (n_fft / D): distinct (contiguous band)
        self.templates = spectrum[:, self.bins]  # (32, nb)
        self.templates_conj = np.ascontiguousarray(np.conj(self.templates))
        self.power = np.ascontiguousarray(np.abs(self.templates) ** 2)  # (32, nb)
        self.energy = self.power.sum(axis=1)  # (32,)
        self.omega = 2.0 * np.pi * self.bins / self.n_fft  # radians per sample
        # sub-band membership of every kept bin, for the response profile
        sub_bw = (spec.band_high_hz - spec.band_low_hz) / N_SUBBANDS
        band_of_bin = np.floor((freqs[self.bins] - spec.band_low_hz) / sub_bw).astype(np.int64)
        self.band_of_bin = np.clip(band_of_bin, 0, N_SUBBANDS - 1)
        # bins are sorted by frequency, so each sub-band is one contiguous run
        self.band_starts = np.searchsorted(self.band_of_bin, np.arange(N_SUBBANDS))
        self._bands_contiguous = bool(np.all(np.diff(np.append(self.band_starts, self.bins.size)) > 0))
        self.band_energy = np.stack(
            [np.bincount(self.band_of_bin, weights=np.abs(t) ** 2, minlength=N_SUBBANDS) for t in self.templates]
        )  # (32, N_SUBBANDS)
        # RMS bandwidth about the centroid (Hz), for the timing-error prediction
        power = np.abs(self.templates[0]) ** 2
        f = freqs[self.bins]
        centroid = np.sum(power * f) / np.sum(power)
        self.rms_bandwidth_hz = float(np.sqrt(np.sum(power * (f - centroid) ** 2) / np.sum(power)))
        self._energy_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # energy_through()

    # The channel estimate's filters (mimir.sync.channel) are built on first use: a bank that only times events
    # (the wide search's, most of the time) never needs them.
    @functools.cached_property
    def deconv_filters(self) -> np.ndarray:
        """(32, nb) deconvolution filters: each symbol minus the alphabet's mean, over the mean power (regularised).

        The 32 symbols share a mean waveform (every slot sweeps the same cells
        across the alphabet) that repeats every event: a filter built on it
        would pick up earlier events' reverberation coherently (measured: -27
        dB "arrivals" 20-30 ms before the direct path in an RT60 0.6 s room,
        and a biased direct path). So each event is correlated with its symbol
        minus the mean waveform, which averages that pick-up to zero over
        events, and divided by the alphabet's mean power of those zero-mean
        templates (regularised): ``E_s[T_s * F_s] = D / (D + lambda) ~ 1`` in
        every bin, unbiased on average over symbols.
        """
        zero_mean = self.templates - self.templates.mean(axis=0)
        power0 = np.mean(np.abs(zero_mean) ** 2, axis=0)
        return np.conj(zero_mean) / (power0 + _DECONV_REGULARISATION * float(power0.mean()))

    @functools.cached_property
    def self_error(self) -> np.ndarray:
        """(32, nb): one event's estimate through :attr:`deconv_filters` is the channel times ``1 + self_error[s]``.

        Known exactly per symbol, so the channel estimate divides out the mean
        over the events it holds.
        """
        return self.templates * self.deconv_filters - 1.0

    @functools.cached_property
    def inverse_filters(self) -> np.ndarray:
        """(32, nb) exact per-symbol inverses (regularised).

        No self-noise (a clean path comes out exact), but they carry the
        coherent pick-up :attr:`deconv_filters` avoids. The channel estimate
        times and rakes with them, and detects with the others.
        """
        lam = _DECONV_REGULARISATION * self.power.mean(axis=1, keepdims=True)
        return self.templates_conj / (self.power + lam)

    def energy_through(self, channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(|channel|^2, (32,) energy of each symbol through the room) for a channel response on :attr:`bins`.

        Cached for the last channel object (so a channel array must never be
        changed in place: :meth:`ChannelEstimate.spectrum` makes a new one per
        rake): a receiver's rake changes a few times, its events are timed
        through it hundreds of times.
        """
        cached = self._energy_cache
        if cached is not None and cached[0] is channel:
            return cached[1], cached[2]
        gain2 = channel.real**2 + channel.imag**2
        energy = np.einsum("sk,k->s", self.power, gain2)
        self._energy_cache = (channel, gain2, energy)
        return gain2, energy

    def per_band_sums(self, values: np.ndarray) -> np.ndarray:
        """Sum (..., nb) values over the bins of each sub-band -> (..., 8)."""
        if self._bands_contiguous:
            return np.add.reduceat(values, self.band_starts, axis=-1)
        out = np.zeros(values.shape[:-1] + (N_SUBBANDS,), dtype=values.dtype)
        for b in range(N_SUBBANDS):
            out[..., b] = values[..., self.band_of_bin == b].sum(axis=-1)
        return out


def phasors(omega: np.ndarray, tau: float) -> np.ndarray:
    """``exp(i * omega * tau)`` for the bins ``omega`` (radians per sample, ascending FFT bins).

    When the bins are contiguous (``omega`` an arithmetic progression, as
    every band here is) the phasors come from one complex step by a running
    product, not one complex exponential per bin: three times cheaper on a
    1408-bin band, and within 1e-11 of the exponentials at the delays of a
    wide search (2e4 samples; 1e-11 radian is under 1e-10 sample on any
    band here).
    """
    n = omega.size
    step = (omega[-1] - omega[0]) / (n - 1) if n > 2 else 0.0  # the mean spacing: rounded once, not per bin
    if n > 2 and abs(omega[1] - omega[0] - step) < 1e-12:
        e = np.full(n, np.exp(1j * step * tau))
        e[0] = np.exp(1j * omega[0] * tau)
        return np.cumprod(e, out=e)
    return np.exp(1j * omega * tau)


def _newton_peak(c_spec: np.ndarray, omega: np.ndarray, tau0: float, iterations: int = 3, max_step: float = 0.5) -> float:
    """Refine the maximum of |sum_k c_spec[k] exp(i omega_k tau)|^2 near tau0.

    ``omega`` is the band's bins in radians per sample (phasors by
    :func:`phasors`). The envelope's first two derivatives come from three
    complex dot products per step with ``c_spec * omega`` and
    ``c_spec * omega**2``, formed once.
    """
    tau = tau0
    c_w = c_spec * omega
    c_w2 = c_w * omega
    for _ in range(iterations):
        e = phasors(omega, tau)
        c0 = complex(np.dot(c_spec, e))
        c1 = 1j * complex(np.dot(c_w, e))
        c2 = -complex(np.dot(c_w2, e))
        d1 = 2.0 * (c0.conjugate() * c1).real
        d2 = 2.0 * ((c1.conjugate() * c1).real + (c0.conjugate() * c2).real)
        if d2 >= 0.0:  # not at a maximum: keep the grid peak
            break
        step = min(max(-d1 / d2, -max_step), max_step)
        tau += step
        if abs(step) < 1e-6:
            break
    return tau


def measure_event(segment: np.ndarray, bank: TemplateBank, expected_symbol: int, with_bands: bool = False,
                  channel: np.ndarray | None = None) -> EventMeasurement:
    """Time the expected symbol inside ``segment`` (length ``bank.segment_len``).

    ``channel`` (optional): the room's frequency response on ``bank.bins``
    relative to the timing reference (:meth:`mimir.sync.channel.ChannelEstimate.spectrum`).
    With it the matched filter is the template *as the room delivers it*
    (a rake over every path), so the lag found is that of the channel's
    reference point, which stays put when the strongest single path changes.
    Without it the lag is the envelope peak of the plain template's correlation.
    Only lags ``[bank.pre, bank.pre + 2 * bank.halfwidth]`` are searched.
    """
    # single precision for the big transform (the PCM is float32 anyway; rounding ~1e-7 of the peak), double after
    x = sfft.rfft(segment.astype(np.float32, copy=False), bank.n_fft)[bank.bins].astype(np.complex128)
    t_exp = bank.templates[expected_symbol]
    cross_plain = x * np.conj(t_exp)
    if channel is not None:
        cross = cross_plain * np.conj(channel)
        gain2, energy = bank.energy_through(channel)
        x_match = x * np.conj(channel)
    else:
        cross = cross_plain
        energy = bank.energy
        x_match = x
    # Coarse search on every D-th lag: the band folded into n_fft / D bins gives corr[D u] with a D-times
    # smaller inverse FFT (the envelope is smooth on that scale), then Newton on the exact band-limited envelope.
    d = bank.search_decimation
    small = np.zeros(bank.search_len, dtype=np.complex64)  # the coarse search only ranks lags
    small[bank.search_fold] = cross
    corr = sfft.ifft(small) * bank.search_len  # corr[u] = sum_k cross_k exp(i omega_k D u)
    lo, hi = -(-bank.pre // d), (bank.pre + 2 * bank.halfwidth) // d
    power = corr[lo : hi + 1].real ** 2 + corr[lo : hi + 1].imag ** 2
    grid_peak = int(np.argmax(power))
    start = float(grid_peak)
    if 0 < grid_peak < power.size - 1:  # parabola through the coarse peak
        a, b, c = power[grid_peak - 1], power[grid_peak], power[grid_peak + 1]
        denom = a - 2.0 * b + c
        if denom < 0:
            start += float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5))
    coarse = d * (lo + grid_peak)
    tau = _newton_peak(cross, bank.omega, d * (lo + start), iterations=4, max_step=0.5 * d)
    tau = float(np.clip(tau, coarse - d, coarse + d))
    rot = phasors(bank.omega, tau)
    steer = x_match * rot
    # (32,) complex correlation at tau; elementwise + sum rather than a BLAS matmul,
    # which would wake BLAS threads for a tiny product (one core is the budget)
    c_all = np.einsum("sk,k->s", bank.templates_conj, steer)
    amp = np.abs(c_all) / np.sqrt(energy)
    median = float(median_along(amp)[0])
    mad = float(median_along(np.abs(amp - median))[0]) * 1.4826 + 1e-30
    z = (amp[expected_symbol] - median) / mad
    # matched-filter SNR: signal energy |c|^2/E_T against the residual band energy per bin
    energy_x = float(np.sum(np.abs(x_match) ** 2)) if channel is None else float(np.sum(np.abs(x) ** 2 * gain2))
    c_exp = c_all[expected_symbol]
    fitted = float(np.abs(c_exp) ** 2 / energy[expected_symbol])
    residual = max(energy_x - fitted, 1e-30 * max(energy_x, 1e-300))
    noise_per_bin = residual / (x.shape[0] * bank.segment_len / bank.n_fft)
    snr = fitted / max(noise_per_bin * bank.segment_len / bank.n_fft, 1e-300)
    sigma = _SIGMA_CALIBRATION * bank.rate_hz / (2.0 * np.pi * bank.rms_bandwidth_hz * np.sqrt(max(snr, 1e-12)))
    if with_bands:
        v = np.conj(t_exp) * x * rot
        w = bank.omega
        stacked = np.stack([v, 1j * w * v, -(w**2) * v])  # (3, nb)
        sums = bank.per_band_sums(stacked)  # (3, 8): c, c', c'' per sub-band
        c_b, c1, c2 = sums[0], sums[1], sums[2]
        e_b = bank.band_energy[expected_symbol]
        total = np.sum(c_b)
        total_gain = np.abs(total) / bank.energy[expected_symbol]
        band_gain = np.abs(c_b) / np.maximum(e_b, 1e-30) / max(total_gain, 1e-30)
        d1 = 2.0 * (np.conj(c_b) * c1).real
        d2 = 2.0 * ((np.conj(c1) * c1).real + (np.conj(c_b) * c2).real)
        with np.errstate(divide="ignore", invalid="ignore"):
            band_delay = np.where(d2 < 0, np.clip(-d1 / d2, -8.0, 8.0), 0.0)
        band_noise = residual / (x.shape[0] * bank.segment_len / bank.n_fft) * bank.segment_len / bank.n_fft
        if channel is not None:  # the residual above was weighted by |G|^2; the band check uses the plain template
            band_noise /= max(float(np.mean(gain2)), 1e-30)
        band_snr = (np.abs(c_b) ** 2 / np.maximum(e_b, 1e-30)) / max(band_noise, 1e-300)
    else:
        band_gain = band_delay = band_snr = np.zeros(0)
    return EventMeasurement(
        lag_samples=tau,
        z=float(z),
        snr=float(snr),
        sigma_samples=float(sigma),
        top_symbol=int(np.argmax(amp)),
        band_gain=band_gain,
        band_delay_samples=band_delay,
        band_snr=band_snr,
        received=x,
    )


def retime(received: np.ndarray, bank: TemplateBank, symbol: int, channel: np.ndarray | None, lag: float) -> float:
    """The lag (near ``lag``) where an already measured event peaks when timed through ``channel`` (or none)."""
    cross = received * bank.templates_conj[symbol]
    if channel is not None:
        cross = cross * np.conj(channel)
    return _newton_peak(cross, bank.omega, float(lag), iterations=6)
