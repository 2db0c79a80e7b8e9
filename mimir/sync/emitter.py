"""Render the witness for any canonical span at any sample rate, block by block.

Mapping: local sample ``n`` of the rendered stream is canonical time
``start_canonical_seconds + n / sample_rate_hz``. The value of every sample is a
pure function of ``n`` (the symbols are analytic functions of time), so
rendering ``[a, b)`` then ``[b, c)`` gives exactly the samples of ``[a, c)``:
the emitter has no per-block state.

Realtime use: :meth:`WitnessEmitter.fill` writes into a caller-provided
float32 buffer and allocates no sample memory. When ``event_period_s x rate`` is
a whole number of samples (true for every common rate, see ``codebook``), every
event starts at the same sub-sample phase, so the 32 waveforms are rendered once
in the constructor and ``fill`` only copies slices. At any other rate ``fill``
falls back to evaluating the symbols per event (correct, but it allocates).
"""

from __future__ import annotations

from collections.abc import Sequence

import math

import numpy as np

from .codebook import Codebook
from .symbols import N_SYMBOLS, render_symbols

__all__ = ["WitnessEmitter"]


class WitnessEmitter:
    """The witness of one codebook at one sample rate.

    ``level_dbfs`` is the peak level of every symbol (0 dBFS = full scale 1.0).
    """

    def __init__(
        self,
        codebook: Codebook,
        sample_rate_hz: float,
        start_canonical_seconds: float = 0.0,
        level_dbfs: float = -20.0,
    ) -> None:
        if not sample_rate_hz > 0:
            raise ValueError("sample_rate_hz must be positive")
        self.codebook = codebook
        self.sample_rate_hz = float(sample_rate_hz)
        self.start_canonical_seconds = float(start_canonical_seconds)
        self.level_dbfs = float(level_dbfs)
        self.gain = 10.0 ** (self.level_dbfs / 20.0)
        spec = codebook.spec
        period = spec.event_period_s * self.sample_rate_hz
        # Position of event i in local samples: i * period - start_offset.
        self._start_offset = self.start_canonical_seconds * self.sample_rate_hz
        self._period_int = int(round(period)) if abs(period - round(period)) < 1e-9 else None
        self._symbol_len = int(math.ceil(spec.symbol_seconds * self.sample_rate_hz)) + 2
        self._tables: np.ndarray | None = None
        if self._period_int is not None:
            base = math.ceil(self._start_offset)
            self._base_shift = base  # event i's table starts at local sample i*P - base
            phase = base - self._start_offset  # in [0, 1): sub-sample delay of every event
            self._tables = self._render(range(N_SYMBOLS), phase, self._symbol_len).astype(np.float32)

    def _render(self, symbols: Sequence[int], delay_samples: float, n_samples: int) -> np.ndarray:
        spec = self.codebook.spec
        return self.gain * render_symbols(
            symbols,
            band_low_hz=spec.band_low_hz,
            band_high_hz=spec.band_high_hz,
            symbol_seconds=spec.symbol_seconds,
            taper_seconds=spec.taper_seconds,
            sample_rate_hz=self.sample_rate_hz,
            delay_samples=delay_samples,
            n_samples=n_samples,
        )

    def fill(self, out: np.ndarray, start_sample: int) -> None:
        """Write local samples ``[start_sample, start_sample + len(out))`` into ``out``.

        ``out`` must be a 1-D float32 array (a view is fine). No sample memory is
        allocated when the rate gives whole-sample event spacing.
        """
        n = out.shape[0]
        out.fill(0.0)
        if n == 0:
            return
        start = int(start_sample)
        length = self._symbol_len
        p = self._period_int
        if self._tables is not None and p is not None:  # set together: whole-sample event spacing
            base = self._base_shift
            first = (start + base - length) // p + 1
            last = (start + n - 1 + base) // p
            schedule = self.codebook.schedule
            period_events = self.codebook.period_events
            for i in range(first, last + 1):
                at = i * p - base
                a = max(at, start)
                b = min(at + length, start + n)
                if a < b:
                    table = self._tables[schedule[i % period_events]]
                    out[a - start : b - start] = table[a - at : b - at]
            return
        period = self.codebook.spec.event_period_s * self.sample_rate_hz
        first = math.floor((start + self._start_offset - length) / period)
        last = math.floor((start + n - 1 + self._start_offset) / period) + 1
        for i in range(first, last + 1):
            position = i * period - self._start_offset
            at = math.ceil(position)
            a = max(at, start)
            b = min(at + length, start + n)
            if a < b:
                wave = self._render([self.codebook.symbol_at(i)], position - at, length)[0]
                out[a - start : b - start] = wave[a - at : b - at]

    def render(self, start_sample: int, n_samples: int) -> np.ndarray:
        """Allocate and return local samples ``[start_sample, start_sample + n_samples)`` (float32)."""
        out = np.zeros(int(n_samples), dtype=np.float32)
        self.fill(out, start_sample)
        return out
