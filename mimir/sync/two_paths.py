"""Two real paths: the physical reading of a first arrival's lobe that the free path fit could not resolve.

A floor or a wall a few centimetres of path behind the direct path adds a
copy of the direct path's pulse 2-8 samples later (at 48 kHz over the 6 kHz
analysis band: half to two half-Rayleigh spacings). The channel estimate's
free path fit (:meth:`mimir.sync.channel.ChannelEstimate._resolve_first`,
complex gains) has so many ways to split such a lobe that noise picks one:
in one simulated room it placed the pair 5.8 samples apart with their phases
75 degrees apart, where the truth was 4.07 samples, in phase. A band edge
inside the band splits one arrival into components too, so the merge rule
there cannot take every close pair for two paths.

This module asks the narrower question the physics allows: do two *real*
paths (pure delays of the band's pulse, so one common phase; both of the
same sign; the later one no stronger, as a reflection only centimetres
longer than the direct path is) explain the lobe as well as the free fit
does, within the noise? It searches every such pair on a grid (closed form
per pair: for fixed delays the best common phase is the top eigenvector of
a 2x2 form, the gains a 2x2 solve), the lobe's other paths projected out,
then refines on a finer grid. A zero-phase band edge spreads an arrival
*both* ways (a weaker component before a stronger one) and a colouration
turns the components' phases; neither passes.

Pure functions of the lobe; nothing is kept between calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["TwoPaths", "fit_two_real_paths"]

_COARSE_PER_RESOLUTION = 8  # grid steps per half-Rayleigh spacing (0.5 sample over the 6 kHz band at 48 kHz)
_REFINE_RATIO = 1.25  # a coarse best whose later gain is over 1.25x the first (or of the other sign) is not refined
_FINE_STEP_SAMPLES = 1.0 / 64.0  # the path kernel table's own step
_MIN_GAP_RESOLUTIONS = 0.5  # closer than this, two paths of one sign are one broadened pulse
_MAX_GAP_RESOLUTIONS = 2.0  # further apart, the free fit resolves them itself


@dataclass(frozen=True)
class TwoPaths:
    """The best pair of real paths for a lobe: delays (samples, lags of the view), gains (real, first > 0)."""

    first: float
    second: float
    first_gain: float
    second_gain: float
    phase_rad: float  # the pair's common phase
    residual: float   # ||lobe - model||^2 with the other paths' best complex gains, same units as the lobe's power

    @property
    def physical(self) -> bool:
        """Both of one sign and the later no stronger: a direct path and its reflection."""
        return 0.0 < self.second_gain <= self.first_gain


def _pair_scores(first: np.ndarray, second: np.ndarray, y: np.ndarray,
                 ridge2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every pair (column i of ``first``, column j of ``second``), arrays [i, j]: the power the pair
    explains, its common phase and its two real gains.

    Element-wise sums (einsum), no matrix products: at these sizes a threaded
    BLAS wakes its threads, and their spinning costs more CPU than the sums.
    """
    g11 = (first.real**2 + first.imag**2).sum(axis=0)[:, None] + ridge2
    g22 = (second.real**2 + second.imag**2).sum(axis=0)[None, :] + ridge2
    g12 = np.einsum("li,lj->ij", first.conj(), second).real
    det = g11 * g22 - g12 * g12
    det = np.where(det > 0.0, det, np.inf)  # one path twice (masked by the caller): explains nothing
    b1 = (first.conj() * y[:, None]).sum(axis=0)[:, None]
    b2 = (second.conj() * y[:, None]).sum(axis=0)[None, :]
    ui, uj, vi, vj = b1.real, b2.real, b1.imag, b2.imag

    def form(xi: np.ndarray, xj: np.ndarray, zi: np.ndarray, zj: np.ndarray) -> np.ndarray:  # x^T G^-1 z
        return (g22 * xi * zi - g12 * (xi * zj + xj * zi) + g11 * xj * zj) / det

    q11, q22, q12 = form(ui, uj, ui, uj), form(vi, vj, vi, vj), form(ui, uj, vi, vj)
    lam = 0.5 * (q11 + q22) + np.sqrt(0.25 * (q11 - q22) ** 2 + q12 * q12)
    phase = np.arctan2(lam - q11, q12)  # (cos, sin) along the top eigenvector (q12, lam - q11)
    cos, sin = np.cos(phase), np.sin(phase)
    ri, rj = cos * ui + sin * vi, cos * uj + sin * vj
    a1 = (g22 * ri - g12 * rj) / det
    a2 = (g11 * rj - g12 * ri) / det
    return lam, phase, a1, a2


def fit_two_real_paths(observed: np.ndarray, columns: Callable[[np.ndarray], np.ndarray], around: float,
                       resolution: float, others: np.ndarray, ridge: float,
                       acceptable_residual: float = math.inf) -> TwoPaths:
    """The pair of real paths that best explains ``observed``, the first within ``resolution`` of ``around``.

    ``columns(taus)`` gives one kernel column (a path of gain 1 at each
    delay) over the lobe's lags; ``others`` are the delays of the lobe's
    other paths, whose complex gains are fitted too (projected out).
    ``ridge`` is the free fit's ridge on the gains, so residuals compare.
    ``acceptable_residual``: the most the caller would take; a coarse best
    (0.5 sample grid) far from physical, or off by more than a tenth of the
    lobe's power beyond it, is returned unrefined (the grid's own misfit is
    ~3 % of the lobe), which saves two thirds of the cost on a band edge.
    """
    basis: list[np.ndarray] = []  # orthonormal over the other paths' columns (Gram-Schmidt: at most a few)
    for col in columns(others).T if others.size else ():
        for q in basis:
            col = col - q * np.vdot(q, col)
        norm = float(np.linalg.norm(col))
        if norm > 1e-12:
            basis.append(col / norm)

    def projected(taus: np.ndarray) -> np.ndarray:  # kernel columns less their part in the other paths' span
        m = columns(taus)
        for q in basis:
            m = m - np.multiply.outer(q, np.einsum("l,l...->...", q.conj(), m))
        return m

    y = observed
    for q in basis:
        y = y - q * np.vdot(q, y)
    ridge2 = ridge * ridge
    # coarse: the first path within one resolution of the guess, the second 0.5-2 resolutions after it
    step = resolution / _COARSE_PER_RESOLUTION
    firsts = around + step * np.arange(-_COARSE_PER_RESOLUTION, _COARSE_PER_RESOLUTION + 1)
    lo_gap = int(math.ceil(_MIN_GAP_RESOLUTIONS * _COARSE_PER_RESOLUTION))
    seconds = firsts[0] + step * np.arange(lo_gap, firsts.size + int(_MAX_GAP_RESOLUTIONS * _COARSE_PER_RESOLUTION))
    lam, _, _, _ = _pair_scores(projected(firsts), projected(seconds), y, ridge2)
    gaps = seconds[None, :] - firsts[:, None]
    lam = np.where((gaps >= _MIN_GAP_RESOLUTIONS * resolution - 1e-9) &
                   (gaps <= _MAX_GAP_RESOLUTIONS * resolution + 1e-9), lam, -np.inf)
    i, j = np.unravel_index(int(np.argmax(lam)), lam.shape)
    t1, t2 = float(firsts[i]), float(seconds[j])

    def pair_at(t1: float, t2: float) -> TwoPaths:
        cols = projected(np.array([t1, t2]))
        _, phase, a1, a2 = _pair_scores(cols[:, :1], cols[:, 1:], y, ridge2)
        g1, g2, ph = float(a1[0, 0]), float(a2[0, 0]), float(phase[0, 0])
        residual = y - np.exp(1j * ph) * (g1 * cols[:, 0] + g2 * cols[:, 1])  # without the ridge, as the free fit's
        if g1 < 0.0:  # the same pair with the phase turned by pi
            g1, g2, ph = -g1, -g2, ph + math.pi
        return TwoPaths(first=t1, second=t2, first_gain=g1, second_gain=g2,
                        phase_rad=math.remainder(ph, 2.0 * math.pi), residual=float(np.sum(np.abs(residual) ** 2)))

    coarse = pair_at(t1, t2)
    if not 0.0 < coarse.second_gain <= _REFINE_RATIO * coarse.first_gain or \
            coarse.residual > acceptable_residual + 0.1 * float(np.sum(np.abs(y) ** 2)):
        return coarse  # far from a direct path and its reflection: refining cannot make it one (a band edge's)
    # refine: each path within two steps of the best, on a grid four times finer, down to the kernel table's step
    while step > _FINE_STEP_SAMPLES:
        step = max(step / 4.0, _FINE_STEP_SAMPLES)
        offsets = step * np.arange(-8, 9)
        lam, _, _, _ = _pair_scores(projected(t1 + offsets), projected(t2 + offsets), y, ridge2)
        i, j = np.unravel_index(int(np.argmax(lam)), lam.shape)
        t1, t2 = t1 + float(offsets[i]), t2 + float(offsets[j])
    return pair_at(t1, t2)
