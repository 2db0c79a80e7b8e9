"""Time transfer, the rig's side: a line from rig host time to one remote source's canonical time. Pure, no I/O.

Each :class:`TimeSample` says: at rig host time ``host_ns`` (``time.monotonic_ns()``
here) the remote's canonical time was ``canonical_ns``, to within
``uncertainty_ns``. A sample comes from one probe/echo exchange
(:mod:`mimir.net.probes`): the probe left at t1, the echo arrived at t4, the
receiver held it from t2 to t3 (its clock) and stamped canonical time at t3.
With the round trip ``d = (t4 - t1) - (t3 - t2)``, the moment t3 happened
somewhere in ``[t1 + (t3 - t2), t4]`` of rig time, an interval of width ``d``;
the sample puts it in the middle, ``t4 - d/2``, so its error is at most
``d/2`` whatever the split of the delay between the two directions (NTP's
bound). An asymmetric path biases a sample by half the asymmetry, which no
exchange of timestamps can see; the bound still holds.

:class:`TimeTransferEstimator` keeps a bounded window of samples and fits
``canonical_ns = origin_canonical_ns + scale * (host_ns - origin_host_ns)``:

* ``|scale - 1|`` must be at most ``max_scale_error_ppm`` (canonical time is an
  audio clock; it runs within a few hundred ppm of any host clock), so two
  true samples differ by their host times' difference within that scale
  limit plus both their bounds: a pair that does not cannot both be true,
  and the sample in most such conflicts is dropped until none is left (true
  samples are never dropped; fewer than ``min_samples`` left: no line);
* the lower envelope of delay: only the least-delayed half of the rest (at
  least ``min_samples``) is fitted, as NTP's clock filter prefers the
  least-delayed sample, so queueing and scheduling delays do not enter;
  among equal delays the newest, which bound the line near its origin;
* weighted least squares (weights ``1 / uncertainty**2``);
* a new sample farther from the current line than its own bound plus the
  line's is an *outlier*: refused, it never moves the line; after
  ``outliers_to_reset`` consecutive outliers the remote's timeline has
  moved (a step the remote did not announce as a new fit segment), and the
  estimator starts again from those outliers (counted in :attr:`resets`).

Uncertainty (honest, not statistical): each fitted sample ``i`` bounds the
truth at its own host time by ``u_i`` (so the line, by ``u_i + |r_i|`` with
``r_i`` its residual); between samples the truth and the line can diverge
at most by the scale uncertainty ``ds`` times the distance. Any two fitted
samples bound it: the truth's scale is within ``(u_i + u_j) / |h_j - h_i|``
of the pair's, which is within ``(|r_i| + |r_j|) / |h_j - h_i|`` of the
line's, so ``ds`` is the smallest ``(b_i + b_j) / |h_j - h_i|`` over all
pairs, with ``b = u + |r|``. The line's uncertainty at host
time ``h`` is ``min_i (u_i + |r_i| + ds * |h - h_i|)``: at least the best
sample's half round trip, growing by ``ds`` per second away from the samples
(plus 1 ns for rounding).
This bounds the transfer only; the remote's own fit error (its
``offset_sigma_samples``) comes on top.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, NamedTuple

import msgspec
import numpy as np

__all__ = ["MAX_SCALE_ERROR_PPM", "TimeSample", "TimeTransferEstimator", "TransferLine"]

MAX_SCALE_ERROR_PPM = 500.0   # canonical (an audio clock) against the rig's host clock: crystals are within ~100 ppm
SLACK_NS = 20_000             # tolerance for the remote's own fit moving between samples (about one sample at 48 kHz)


class TimeSample(NamedTuple):
    """Canonical time ``canonical_ns`` at rig host time ``host_ns``, within ``uncertainty_ns``; ``delay_ns``: round trip."""

    host_ns: int
    canonical_ns: int
    delay_ns: int
    uncertainty_ns: int


class TransferLine(msgspec.Struct, frozen=True, kw_only=True):
    """``canonical_ns = origin_canonical_ns + scale * (host_ns - origin_host_ns)`` on the rig's monotonic clock.

    ``uncertainty_ns`` holds at ``origin_host_ns`` (the newest sample's host
    time); away from it the bound grows by ``scale_uncertainty_ppm`` ns per ms
    (:meth:`uncertainty_ns_at`).
    """

    origin_host_ns: int
    origin_canonical_ns: int
    scale: float
    uncertainty_ns: int
    scale_uncertainty_ppm: float
    samples_used: int

    def canonical_ns_at(self, host_ns: int) -> int:
        return self.origin_canonical_ns + round(self.scale * (host_ns - self.origin_host_ns))

    def uncertainty_ns_at(self, host_ns: int) -> int:
        return self.uncertainty_ns + math.ceil(self.scale_uncertainty_ppm * 1e-6 * abs(host_ns - self.origin_host_ns))


class TimeTransferEstimator:
    """One source's host -> canonical line from time samples. Owned by one thread (the listener's).

    Holds at most ``window`` samples (and ``outliers_to_reset`` pending
    outliers); each :meth:`add` refits (numpy; ``O(window**2)`` for the scale bound's pairs, about 0.1 ms at 64).
    """

    def __init__(self, *, window: int = 64, min_samples: int = 8, max_scale_error_ppm: float = MAX_SCALE_ERROR_PPM,
                 outliers_to_reset: int = 8, slack_ns: int = SLACK_NS) -> None:
        if min_samples < 3 or window < min_samples or outliers_to_reset < 1:
            raise ValueError("need window >= min_samples >= 3 and outliers_to_reset >= 1")
        self.window = window
        self.min_samples = min_samples
        self.max_scale_error = max_scale_error_ppm * 1e-6
        self.outliers_to_reset = outliers_to_reset
        self.slack_ns = slack_ns
        self._ring = np.zeros((window, 4), dtype=np.int64)   # host, canonical, delay, uncertainty
        self._n = 0                                          # samples held (<= window)
        self._next = 0                                       # ring slot of the next sample
        self._newest: TimeSample | None = None
        self._kept = np.zeros(window, dtype=bool)            # per slot: in no conflict (see _refit)
        self._full_check = True                              # next refit: check every pair, not just the newest
        self._outliers: deque[TimeSample] = deque(maxlen=outliers_to_reset)
        self.line: TransferLine | None = None
        self.reason = "no samples"
        self.resets = 0        # restarts after outliers_to_reset consecutive outliers

    def reset(self) -> None:
        """Forget every sample (a new remote session or fit segment: never mix two timelines)."""
        self._n = self._next = 0
        self._newest = None
        self._full_check = True
        self._outliers.clear()
        self.line = None
        self.reason = "no samples"

    def __len__(self) -> int:
        return self._n

    @property
    def newest_host_ns(self) -> int | None:
        return None if self._newest is None else self._newest.host_ns

    def _append(self, s: TimeSample) -> None:
        self._ring[self._next] = s
        self._kept[self._next] = False  # not judged yet
        self._next = (self._next + 1) % self.window
        self._n = min(self._n + 1, self.window)
        self._newest = s

    def add(self, s: TimeSample) -> Literal["used", "outlier"]:
        """Offer one sample: ``used`` (in the window, line refitted) or ``outlier`` (refused, line unchanged)."""
        line = self.line
        if line is not None:
            miss = abs(s.canonical_ns - line.canonical_ns_at(s.host_ns))
            if miss > s.uncertainty_ns + line.uncertainty_ns_at(s.host_ns) + self.slack_ns:
                self._outliers.append(s)
                if len(self._outliers) >= self.outliers_to_reset:  # the remote's timeline stepped: follow it
                    seeds = list(self._outliers)
                    self.reset()
                    for seed in seeds:
                        self._append(seed)
                    self.resets += 1
                    self._refit()  # (a full check: reset asked for one)
                return "outlier"
        self._outliers.clear()
        self._append(s)
        self._refit()
        return "used"

    def _refit(self) -> None:
        self.line = None
        n = self._n
        if n < self.min_samples or self._newest is None:
            self.reason = f"{n} of {self.min_samples} samples"
            return
        ref_h, ref_c = self._newest.host_ns, self._newest.canonical_ns
        a = self._ring[:n]
        x = (a[:, 0] - ref_h).astype(np.float64)
        y = (a[:, 1] - ref_c).astype(np.float64)
        u = np.maximum(a[:, 3], 1).astype(np.float64)
        d = a[:, 2]
        # Two true samples differ by (h_i - h_j) within the scale limit, plus both bounds: pairs that do not
        # cannot both be true. Drop the sample in most such conflicts until none is left. When every other
        # sample was kept, only the newest one's pairs can be new conflicts: check those alone (O(n)).
        kept = self._kept[:n]
        newest = (self._next - 1) % self.window
        if not self._full_check and kept.sum() == n - 1:
            dx = x - x[newest]
            clash = np.abs((y - y[newest]) - dx) > u + u[newest] + self.max_scale_error * np.abs(dx) + self.slack_ns
            clash[newest] = False
            self._full_check = bool(clash.any())
        else:
            self._full_check = True
        if self._full_check:
            dx = x[:, None] - x[None, :]
            conflict = (np.abs((y[:, None] - y[None, :]) - dx)
                        > u[:, None] + u[None, :] + self.max_scale_error * np.abs(dx) + self.slack_ns)
            kept[:] = True
            while True:
                counts = (conflict & kept[None, :]).sum(axis=1) * kept
                worst = int(np.argmax(counts + u / (2.0 * u.max())))  # most conflicts; the larger bound breaks ties
                if counts[worst] == 0:
                    break
                kept[worst] = False
            self._full_check = False
        else:
            kept[newest] = True
        keep = kept.copy()
        agree = int(keep.sum())
        if agree < self.min_samples:
            keep[:] = True  # say why: one scale for all of them, or no agreement at all
        idx = np.flatnonzero(keep)
        # the lower envelope of delay; among equal delays the newer samples, which bound the line near its origin
        idx = idx[np.lexsort((-x[idx], d[idx]))[: max(self.min_samples, (idx.size + 1) // 2)]]
        x, y, u = x[idx], y[idx], u[idx]
        w = 1.0 / (u * u)
        sw = w.sum()
        mx, my = float(w @ x) / sw, float(w @ y) / sw
        cx = x - mx
        sxx = float(w @ (cx * cx))
        if not sxx > 0:
            self.reason = "samples at one host time"
            return
        slope = float(w @ (cx * (y - my))) / sxx
        if abs(slope - 1.0) > self.max_scale_error:
            self.reason = (f"scale {slope:.6f}: {(slope - 1.0) * 1e6:+.0f} ppm off 1 (limit "
                           f"{self.max_scale_error * 1e6:.0f} ppm)")
            return
        if agree < self.min_samples:
            self.reason = f"samples disagree beyond their bounds (at most {agree} agree)"
            return
        at_ref = my - slope * mx
        b = u + np.abs(y - (at_ref + slope * x))   # each sample's bound on the line at its own host time
        span = np.abs(x[:, None] - x[None, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            pair = np.where(span > 0, (b[:, None] + b[None, :]) / span, np.inf)
        ds = float(pair.min())  # every pair bounds the scale error by (b_i + b_j) / |h_j - h_i|: the tightest
        if not math.isfinite(ds):
            self.reason = "samples at one host time"
            return
        unc = float(np.min(b + ds * np.abs(x)))  # at the origin, ref_h (x = 0)
        self.line = TransferLine(origin_host_ns=ref_h, origin_canonical_ns=ref_c + round(at_ref), scale=slope,
                                 uncertainty_ns=math.ceil(unc) + 1, scale_uncertainty_ppm=ds * 1e6,
                                 samples_used=int(idx.size))
        self.reason = "ready"
