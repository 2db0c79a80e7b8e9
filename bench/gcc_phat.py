"""The sync benchmark's peer, what users do today: GCC-PHAT cross-correlation of the whole file against the
rendered reference (``mimir bench sync`` reports the receiver's errors beside this one's, on the same audio).

Offset only (one lag for the whole file, nominal rate assumed). PHAT weighting
is applied inside the witness band only, which makes the baseline stronger
than the textbook full-band version at low SNR.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

__all__ = ["gcc_phat_lag"]


def gcc_phat_lag(recording: np.ndarray, reference: np.ndarray, rate_hz: float, band_hz: tuple[float, float]) -> float:
    """Sub-sample lag ``L`` such that ``recording[n] ~ reference[n + L]``.

    ``reference`` should start before and end after the recording (it covers
    the coarse uncertainty); the lag is searched over all of it.
    """
    n = sfft.next_fast_len(recording.size + reference.size, real=True)
    x = sfft.rfft(recording.astype(np.float64), n)
    r = sfft.rfft(reference.astype(np.float64), n)
    cross = r * np.conj(x)
    freqs = np.arange(cross.size) * rate_hz / n
    inside = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
    weight = np.where(inside, 1.0 / np.maximum(np.abs(cross), 1e-30), 0.0)
    corr = sfft.irfft(cross * weight, n)
    lags = np.concatenate([np.arange(0, reference.size), np.arange(-recording.size + 1, 0)])
    values = np.concatenate([corr[: reference.size], corr[n - recording.size + 1 :]])
    k = int(np.argmax(values))
    lag = float(lags[k])
    if 0 < k < values.size - 1:
        a, b, c = values[k - 1], values[k], values[k + 1]
        denom = a - 2 * b + c
        if denom < 0:
            lag += float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5))
    return lag
