"""Time-frequency front end: whitened sub-band energies on a fixed frame grid.

Frame ``m`` covers local samples ``[round(m * hop), round(m * hop) + frame_len)``
where ``frame_len`` is one symbol slot and ``hop`` a quarter slot (both from the
nominal rate). The grid is absolute (it depends on the local sample index
only), so the frames, and everything computed from them, do not depend on how
the audio was chunked.

Each frame is Hann-windowed, transformed, and its power summed over each of the
8 witness sub-bands. Each sub-band is divided by a running noise floor (the
median over the last ``floor_frames`` frames divided by the median-to-mean
ratio is irrelevant: only ratios matter) and capped, which whitens coloured
noise, rides out AGC, and keeps one loud burst from dominating a score.

:class:`FrameRing` keeps the last ``capacity`` whitened frames and answers the
two questions acquisition asks: how much in-band energy starts at frame m
(energy proposals), and how well each symbol's time-frequency pattern fits at
frame m (symbol scores).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy.signal import get_window

from .codebook import CodebookSpec
from .stats import median_along
from .symbols import N_SLOTS, N_SUBBANDS, SymbolAlphabet, usable_subbands

__all__ = ["FrameGrid", "FrameRing", "FRAMES_PER_SLOT"]

FRAMES_PER_SLOT = 4


class FrameGrid:
    """Frame geometry and the per-frame sub-band power transform at one nominal rate."""

    def __init__(self, spec: CodebookSpec, rate_hz: float, floor_frames: int = 320, cap: float = 30.0,
                 band_hz: tuple[float, float] | None = None) -> None:
        slot_seconds = spec.symbol_seconds / N_SLOTS
        self.rate_hz = float(rate_hz)
        self.hop = slot_seconds / FRAMES_PER_SLOT * rate_hz
        self.frame_len = int(round(slot_seconds * rate_hz))
        self.n_fft = sfft.next_fast_len(self.frame_len, real=True)
        ratio = spec.event_period_s / (slot_seconds / FRAMES_PER_SLOT)
        if abs(ratio - round(ratio)) > 1e-9:
            raise ValueError("event period must be a whole number of quarter slots")
        self.frames_per_event = int(round(ratio))
        self.window = get_window("hann", self.frame_len).astype(np.float32)
        freqs = np.arange(self.n_fft // 2 + 1) * rate_hz / self.n_fft
        sub_bw = (spec.band_high_hz - spec.band_low_hz) / N_SUBBANDS
        self.band_edges = [
            (int(np.searchsorted(freqs, spec.band_low_hz + b * sub_bw)), int(np.searchsorted(freqs, spec.band_low_hz + (b + 1) * sub_bw)))
            for b in range(N_SUBBANDS)
        ]
        self.usable = usable_subbands(spec.band_low_hz, spec.band_high_hz, rate_hz, band_hz)  # others read as 0
        self.cap = float(cap)
        self.floor_fraction_of_mean = 0.05
        self._floor_history = np.zeros((floor_frames, N_SUBBANDS))
        self._floor_count = 0
        n_bins = freqs.size
        self.band_edges = [(min(a, n_bins), min(b, n_bins)) for a, b in self.band_edges]
        lo = self.band_edges[0][0]
        hi = max(self.band_edges[-1][1], lo + 1)
        self._lo, self._hi = lo, min(hi, n_bins)
        # band b is bins [edge_lo[b], edge_hi[b]) relative to _lo. When every band is non-empty and starts where
        # the last ended (every rate from 16 kHz up), one reduceat sums them at a quarter of the cost; else a
        # cumulative sum, so that empty bands (above Nyquist at low rates) are simply 0
        self._edge_lo = np.array([a - lo for a, _ in self.band_edges], dtype=np.int64)
        self._edge_hi = np.array([b - lo for _, b in self.band_edges], dtype=np.int64)
        self._bands_contiguous = bool(np.all(self._edge_hi > self._edge_lo)
                                      and np.all(self._edge_lo[1:] == self._edge_hi[:-1])
                                      and self._edge_hi[-1] == self._hi - self._lo)

    def frame_starts(self, first_frame: int, count: int) -> np.ndarray:
        return np.round((first_frame + np.arange(count)) * self.hop).astype(np.int64)

    def first_frame_at_or_after(self, sample: int) -> int:
        m = int(np.floor(sample / self.hop))
        while int(np.round(m * self.hop)) < sample:
            m += 1
        return m

    def whitened(self, frames: np.ndarray) -> np.ndarray:
        """(count, frame_len) PCM -> (count, 8) whitened, capped sub-band powers.

        Updates the running floor with these frames first (so the result depends
        only on the frame sequence, never on the chunking).
        """
        spec = sfft.rfft(frames * self.window, self.n_fft, axis=1)[:, self._lo : self._hi]
        power = spec.real**2 + spec.imag**2
        if self._bands_contiguous:
            band_power = np.add.reduceat(power, self._edge_lo, axis=1, dtype=np.float64)
        else:
            csum = np.zeros((power.shape[0], power.shape[1] + 1))
            np.cumsum(power, axis=1, out=csum[:, 1:])
            band_power = csum[:, self._edge_hi] - csum[:, self._edge_lo]
        n = band_power.shape[0]
        cap_rows = self._floor_history.shape[0]
        for start in range(0, n, cap_rows):
            chunk = band_power[start : start + cap_rows]
            k = chunk.shape[0]
            pos = self._floor_count % cap_rows
            first = min(k, cap_rows - pos)
            self._floor_history[pos : pos + first] = chunk[:first]
            self._floor_history[: k - first] = chunk[first:]
            self._floor_count += k
        filled = min(self._floor_count, cap_rows)
        history = self._floor_history[:filled]
        # The median is the noise floor when there is noise. Without noise (a
        # digital loopback, a rendered file) it is ~0 and would turn spectral
        # leakage into "signal": never whiten below a fraction of the mean.
        floor = np.maximum(median_along(history, axis=0)[0], self.floor_fraction_of_mean * history.mean(axis=0))
        floor = np.maximum(floor, 1e-30)
        white = np.minimum(band_power / floor, self.cap)
        white[:, ~self.usable] = 0.0
        return white


class FrameRing:
    """The last ``capacity`` whitened frames, addressed by absolute frame index.

    Valid frames are ``[oldest, newest_plus_one)``.
    """

    def __init__(self, capacity: int, alphabet: SymbolAlphabet) -> None:
        self.capacity = int(capacity)
        self._g = np.zeros((self.capacity, N_SUBBANDS))
        self._total = np.zeros(self.capacity)
        self.oldest = 0
        self.end = 0  # one past the newest frame
        # offsets of symbol s's slot j relative to its first frame, and its sub-band
        self._slot_offsets = np.arange(N_SLOTS, dtype=np.int64) * FRAMES_PER_SLOT  # (8,)
        self._subband = alphabet.subband.astype(np.int64)  # (32, 8)
        self.span_frames = N_SLOTS * FRAMES_PER_SLOT  # frames covered by one symbol

    def reset(self, first_frame: int) -> None:
        self.oldest = self.end = int(first_frame)

    def append(self, first_frame: int, white: np.ndarray) -> None:
        if first_frame != self.end:
            raise ValueError("frames must be appended contiguously")
        n = white.shape[0]
        idx = (first_frame + np.arange(n)) % self.capacity
        self._g[idx] = white
        self._total[idx] = white.sum(axis=1)
        self.end = first_frame + n
        self.oldest = max(self.oldest, self.end - self.capacity)

    def scorable(self, frame: int) -> bool:
        """True when every frame a symbol starting at ``frame`` covers is in the ring."""
        return frame >= self.oldest and frame + self.span_frames - FRAMES_PER_SLOT < self.end

    def last_scorable(self) -> int:
        return self.end - 1 - (self.span_frames - FRAMES_PER_SLOT)

    def symbol_scores(self, frames: np.ndarray) -> np.ndarray:
        """(M,) start frames -> (M, 32) sum of whitened energy over each symbol's 8 cells."""
        rows = (np.asarray(frames, dtype=np.int64)[:, None] + self._slot_offsets[None, :]) % self.capacity  # (M, 8)
        cells = self._g[rows[:, None, :], self._subband[None, :, :]]  # (M, 32, 8)
        return cells.sum(axis=2)

    def event_energy(self, frames: np.ndarray) -> np.ndarray:
        """(M,) start frames -> (M,) total whitened in-band energy over one symbol span."""
        rows = (np.asarray(frames, dtype=np.int64)[:, None] + self._slot_offsets[None, :]) % self.capacity
        return self._total[rows].sum(axis=1)
