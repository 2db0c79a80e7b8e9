"""Coherent timing of one event: sub-sample accurate, polarity-blind, with an honest error prediction."""

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from mimir.sync.codebook import Codebook
from mimir.sync.emitter import WitnessEmitter
from mimir.sync.timing import TemplateBank, measure_event

CB = Codebook()
RATE = 48000.0
BANK = TemplateBank(CB, RATE, 300)


def _event(rng, sign=1.0):
    """A segment holding event i at a random sub-sample lag; returns (segment, true lag, symbol)."""
    start = rng.uniform(0.0, 500.0)
    em = WitnessEmitter(CB, RATE, start, level_dbfs=0.0)
    i = int(np.ceil(start / 0.2)) + 1
    position = (i * 0.2 - start) * RATE
    first = int(np.floor(position)) - int(rng.integers(50, 550))
    seg = sign * em.render(first, BANK.segment_len).astype(np.float64)
    return seg, position - first, CB.symbol_at(i)


def test_clean_timing_is_sub_sample_exact():
    rng = np.random.default_rng(1)
    for _ in range(30):
        seg, lag, sym = _event(rng)
        m = measure_event(seg, BANK, sym)
        assert abs(m.lag_samples - lag) < 0.01
        assert m.top_symbol == sym and m.z > 10


def test_polarity_flip_does_not_move_the_estimate():
    rng = np.random.default_rng(2)
    seg, lag, sym = _event(rng, sign=-1.0)
    assert abs(measure_event(seg, BANK, sym).lag_samples - lag) < 0.01


def test_predicted_sigma_is_calibrated():
    """At 0 dB in-band SNR the scatter matches the predicted sigma within a factor 1.5."""
    rng = np.random.default_rng(3)
    sos = butter(8, [2000, 8000], btype="band", fs=RATE, output="sos")
    errors, predicted = [], []
    for _ in range(120):
        seg, lag, sym = _event(rng)
        noise = sosfiltfilt(sos, rng.standard_normal(seg.size + 2000))[1000:-1000]
        noise *= np.sqrt(0.23 / np.mean(noise**2))  # witness mean power at 0 dBFS peak is ~0.23
        m = measure_event(seg + noise, BANK, sym)
        errors.append(m.lag_samples - lag)
        predicted.append(m.sigma_samples)
    ratio = np.std(errors) / np.median(predicted)
    assert 0.67 < ratio < 1.5, ratio
    assert abs(np.mean(errors)) < 0.05


def test_the_newton_peak_is_the_same_with_running_phasors():
    """Invariant: on contiguous bins the running-product phasors find the peak the per-bin exponentials find."""
    from mimir.sync.timing import _newton_peak

    rng = np.random.default_rng(3)
    omega = 2 * np.pi * (np.arange(1347) + 400) / 9800
    spectrum = (np.abs(rng.standard_normal(omega.size)) + 0.5) * np.exp(-1j * omega * 3.3)
    shuffled = rng.permutation(omega.size)  # not contiguous: the per-bin exponentials
    fast = _newton_peak(spectrum, omega, 3.0, iterations=4)
    slow = _newton_peak(spectrum[shuffled], omega[shuffled], 3.0, iterations=4)
    assert fast == pytest.approx(3.3, abs=1e-9) and fast == pytest.approx(slow, abs=1e-9)


def test_running_phasors_match_the_exponentials():
    """Invariant: phasors() on contiguous bins is exp(i omega tau) to 1e-11 at delays of a wide search; others exact."""
    from mimir.sync.timing import phasors

    omega = BANK.omega
    for tau in (0.0, 2.37, 2220.3, 19000.7):
        np.testing.assert_allclose(phasors(omega, tau), np.exp(1j * omega * tau), rtol=0, atol=1e-11)
    scattered = omega[np.random.default_rng(4).permutation(omega.size)]
    assert np.array_equal(phasors(scattered, 2220.3), np.exp(1j * scattered * 2220.3))


def test_a_bank_from_shared_waves_is_the_bank_rendered_afresh():
    """Invariant: the wide search's bank, built from the timing bank's rendered waves, is the one a fresh render gives."""
    shared = TemplateBank(CB, RATE, 4800, pre_samples=64, post_samples=64, waves=BANK.waves)
    fresh = TemplateBank(CB, RATE, 4800, pre_samples=64, post_samples=64)
    assert shared.waves is BANK.waves and shared.n_fft != BANK.n_fft
    for name in ("templates", "deconv_filters", "self_error", "inverse_filters", "band_energy"):
        assert np.array_equal(getattr(shared, name), getattr(fresh, name)), name
    other_rate = TemplateBank(CB, 44100.0, 300, waves=BANK.waves)  # waves of another length are not used
    assert other_rate.waves is not BANK.waves and other_rate.waves.shape[1] == other_rate.template_len
