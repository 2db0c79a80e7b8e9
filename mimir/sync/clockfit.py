"""Robust straight-line fit of local samples against canonical seconds.

Model: ``local_sample = n_ref + (canonical_seconds - t_ref) * rate``. The fit is
centred (``t_ref``/``n_ref`` are the weighted means), so the offset and the rate
are uncorrelated and well conditioned however far the epoch is.
``local_sample_at_epoch = n_ref - t_ref * rate``.

Weights are ``1 / sigma**2`` from each anchor's predicted timing error, made
robust by a few Huber re-weighting passes; an optional rate prior (the rate of
the previous segment, a few ppm wide) keeps a fresh segment's rate sensible
after a discontinuity until it has anchors of its own.

Memory is bounded: the fit keeps the last ``max_anchors`` anchors.
"""

from __future__ import annotations

import math

import numpy as np

from .stats import median_along

__all__ = ["ClockFit"]

_SIGMA_FLOOR = 0.02  # samples: no anchor is trusted beyond this
_HUBER_K = 2.5


class ClockFit:
    """One segment's line fit. Add anchors, call :meth:`refit`, then predict."""

    def __init__(self, nominal_rate_hz: float, max_anchors: int = 600) -> None:
        self.nominal_rate_hz = float(nominal_rate_hz)
        self.max_anchors = int(max_anchors)
        self._t = np.zeros(self.max_anchors)
        self._n = np.zeros(self.max_anchors)
        self._s = np.zeros(self.max_anchors)
        self._count = 0  # total ever added
        self.rate_prior: float | None = None
        self.rate_prior_sigma: float = math.inf
        self.t_ref = 0.0
        self.n_ref = 0.0
        self.rate = self.nominal_rate_hz
        self.var_offset = math.inf
        self.var_rate = math.inf
        self.mean_abs_residual = math.nan
        self.reduced_chi2 = math.nan
        self.first_t = math.nan
        self.last_t = math.nan
        self.first_n = math.nan
        self.last_n = math.nan

    @property
    def anchor_count(self) -> int:
        return min(self._count, self.max_anchors)

    @property
    def fitted(self) -> bool:
        return math.isfinite(self.var_offset)

    def set_rate_prior(self, rate: float, sigma: float) -> None:
        self.rate_prior = float(rate)
        self.rate_prior_sigma = float(sigma)

    def add(self, canonical_seconds: float, local_sample: float, sigma_samples: float) -> None:
        i = self._count % self.max_anchors
        self._t[i] = canonical_seconds
        self._n[i] = local_sample
        self._s[i] = sigma_samples
        self._count += 1
        if self._count == 1:
            self.first_t, self.first_n = canonical_seconds, local_sample
        self.last_t, self.last_n = canonical_seconds, local_sample

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = self.anchor_count
        return self._t[:k], self._n[:k], self._s[:k]

    def _solve(self, t: np.ndarray, n: np.ndarray, w: np.ndarray) -> tuple[float, float, float, float, float]:
        sw = float(w.sum())
        t_ref = float((w * t).sum() / sw)
        n_ref = float((w * n).sum() / sw)
        dt = t - t_ref
        dn = n - n_ref
        sxx = float((w * dt * dt).sum())
        sxy = float((w * dt * dn).sum())
        prior_w = 0.0 if self.rate_prior is None else 1.0 / self.rate_prior_sigma**2
        prior = 0.0 if self.rate_prior is None else self.rate_prior
        denom = sxx + prior_w
        rate = (sxy + prior_w * prior) / denom if denom > 0 else self.nominal_rate_hz
        return t_ref, n_ref, rate, 1.0 / sw, (1.0 / denom if denom > 0 else math.inf)

    def refit(self) -> None:
        t, n, s = self.arrays()
        if t.size == 0:
            return
        w0 = 1.0 / (s * s + _SIGMA_FLOOR**2)
        w = w0.copy()
        for _ in range(2):
            t_ref, n_ref, rate, var_off, var_rate = self._solve(t, n, w)
            r = n - (n_ref + (t - t_ref) * rate)
            u = np.abs(r) * np.sqrt(w0)
            scale = max(1.0, 1.4826 * float(median_along(u)[0])) if u.size >= 5 else 1.0
            u = u / scale
            w = w0 * np.where(u <= _HUBER_K, 1.0, _HUBER_K / np.maximum(u, 1e-12))
        t_ref, n_ref, rate, var_off, var_rate = self._solve(t, n, w)
        r = n - (n_ref + (t - t_ref) * rate)
        dof = max(t.size - (1 if self.rate_prior is not None else 2), 1)
        chi2 = float((w * r * r).sum()) / dof
        inflate = max(1.0, chi2)
        self.t_ref, self.n_ref, self.rate = t_ref, n_ref, rate
        self.var_offset = var_off * inflate
        self.var_rate = var_rate * inflate if t.size >= 2 or self.rate_prior is not None else math.inf
        self.mean_abs_residual = float(np.mean(np.abs(r)))
        self.reduced_chi2 = chi2

    def shift(self, delta_samples: float) -> None:
        """Move every anchor (and the line) by ``delta_samples``: the timing reference moved, the clock did not."""
        k = self.anchor_count
        self._n[:k] += delta_samples
        self.n_ref += delta_samples
        self.first_n += delta_samples
        self.last_n += delta_samples

    def predict(self, canonical_seconds: float) -> float:
        return self.n_ref + (canonical_seconds - self.t_ref) * self.rate

    def inverse(self, local_sample: float) -> float:
        return self.t_ref + (local_sample - self.n_ref) / self.rate

    def residual(self, canonical_seconds: float, local_sample: float) -> float:
        return local_sample - self.predict(canonical_seconds)

    def sigma_at(self, canonical_seconds: float) -> float:
        """Predicted 1-sigma error (samples) of :meth:`predict` at a canonical time."""
        d = canonical_seconds - self.t_ref
        return math.sqrt(self.var_offset + d * d * self.var_rate)

    @property
    def local_sample_at_epoch(self) -> float:
        return self.n_ref - self.t_ref * self.rate
