"""Two real paths: a close pair found exactly when it is one, and a band edge never taken for one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mimir.sync.channel import band_window
from mimir.sync.two_paths import fit_two_real_paths

RATE = 48000
BAND = (2000.0, 8000.0)
RESOLUTION = 0.5 * RATE / (BAND[1] - BAND[0])  # half the Rayleigh spacing: 4 samples
LAGS = np.arange(-16, 49).astype(float)


def columns(taus: np.ndarray, edge: tuple[float | None, float | None] = (None, None)) -> np.ndarray:
    """The band's Hann pulse (peak 1) at each delay over LAGS; ``edge``: seen through a zero-phase band limit."""
    n = 4096
    freqs = np.arange(n) * RATE / n
    spec = band_window(freqs, BAND, "hann")
    low, high = edge
    if high is not None:
        spec = spec / np.sqrt(1.0 + (freqs / high) ** 16)  # |Butterworth|^2, order 4, as filtfilt applies it
    if low is not None:
        spec = spec / np.sqrt(1.0 + (low / np.maximum(freqs, 1.0)) ** 16)
    keep = spec > 0
    x = LAGS[:, None] - np.asarray(taus, dtype=float)[None, :]
    out = np.exp(2j * np.pi * x[:, :, None] * freqs[keep][None, None, :] / RATE) @ spec[keep]
    return out / band_window(freqs, BAND, "hann").sum()


@pytest.mark.parametrize("gap, ratio", [(2.5, 0.9), (4.07, 0.78), (5.5, 1.0), (7.5, 0.5)])
def test_a_pair_of_real_paths_is_found_where_it_is(gap, ratio):
    """Invariant: two pure delays of the pulse (one phase, the later no stronger) are recovered to the grid's step."""
    phase = 0.7
    lobe = np.exp(1j * phase) * (columns(np.array([0.31, 0.31 + gap])) @ np.array([0.05, 0.05 * ratio]))
    pair = fit_two_real_paths(lobe, columns, around=0.9, resolution=RESOLUTION, others=np.zeros(0), ridge=0.0)
    assert pair.first == pytest.approx(0.31, abs=1 / 32) and pair.second == pytest.approx(0.31 + gap, abs=1 / 32)
    assert pair.first_gain == pytest.approx(0.05, rel=0.02) and pair.second_gain == pytest.approx(0.05 * ratio, rel=0.05)
    assert pair.phase_rad == pytest.approx(phase, abs=0.02) and pair.physical
    assert pair.residual < 1e-4 * float(np.sum(np.abs(lobe) ** 2))


def test_a_later_path_outside_the_pair_does_not_pull_it():
    """Invariant: the lobe's other paths (complex gains, projected out) leave the pair where it is."""
    lobe = columns(np.array([0.0, 4.2, 14.0])) @ np.array([0.05, 0.035, 0.06 * np.exp(2.0j)])
    pair = fit_two_real_paths(lobe, columns, around=0.5, resolution=RESOLUTION, others=np.array([14.0]), ridge=0.0)
    assert pair.first == pytest.approx(0.0, abs=1 / 32) and pair.second == pytest.approx(4.2, abs=1 / 32)


def test_a_stronger_later_path_is_not_a_physical_pair():
    """Invariant: a pair whose later path is the stronger is reported as such (not physical): a reflection only
    centimetres longer than the direct path cannot be stronger than it, a band edge's spread can."""
    lobe = columns(np.array([0.0, 4.0])) @ np.array([0.03, 0.05])
    pair = fit_two_real_paths(lobe, columns, around=0.0, resolution=RESOLUTION, others=np.zeros(0), ridge=0.0)
    assert pair.first == pytest.approx(0.0, abs=1 / 32) and not pair.physical


@pytest.mark.parametrize("edge", [(None, 3400.0), (None, 7000.0), (2600.0, None)])
def test_one_path_through_a_band_edge_is_not_a_physical_pair(edge):
    """Invariant: one arrival through a zero-phase band edge (a telephone's 3.4 kHz, a phone's 7 kHz, a high-pass)
    is never two real paths: its spread is symmetric (the later component as strong as the earlier) or its
    components turn in phase, so the best pair is not physical or explains it far worse than a free fit could."""
    lobe = columns(np.array([0.3]), edge)[:, 0] * 0.05
    pair = fit_two_real_paths(lobe, columns, around=-2.0, resolution=RESOLUTION, others=np.zeros(0), ridge=0.0)
    power = float(np.sum(np.abs(lobe) ** 2))
    assert not pair.physical or pair.residual > 1e-3 * power


def test_the_pair_is_searched_on_both_sides_of_the_guess():
    """Invariant: the first path may be up to one resolution either side of the free fit's first component."""
    for shift in (-3.5, 3.5):
        lobe = columns(np.array([shift, shift + 4.0])) @ np.array([0.05, 0.04])
        pair = fit_two_real_paths(lobe, columns, around=0.0, resolution=RESOLUTION, others=np.zeros(0), ridge=0.0)
        assert pair.first == pytest.approx(shift, abs=1 / 32), shift
        assert math.isfinite(pair.residual)
