"""Response / confusion accumulator: what the path from emitter to receiver does.

Fed with every locked event check. Bounded: fixed-size sums per sub-band and
per symbol plus a 32 x 32 confusion matrix.
"""

from __future__ import annotations

import math

import numpy as np

from .codebook import CodebookSpec
from .report import BandResponse, ResponseProfile, SymbolResponse
from .symbols import N_SUBBANDS, N_SYMBOLS
from .timing import EventMeasurement

__all__ = ["ResponseAccumulator"]

_BAND_RELIABLE_SNR = 4.0


class ResponseAccumulator:
    def __init__(self, spec: CodebookSpec) -> None:
        self.spec = spec
        self.confusion = np.zeros((N_SYMBOLS, N_SYMBOLS), dtype=np.int64)
        self.band_n = 0
        self.band_power = np.zeros(N_SUBBANDS)
        self.band_reliable = np.zeros(N_SUBBANDS)
        self.band_delay = np.zeros(N_SUBBANDS)
        self.symbol_anchors = np.zeros(N_SYMBOLS, dtype=np.int64)
        self.symbol_z = np.zeros(N_SYMBOLS)
        self.symbol_residual = np.zeros(N_SYMBOLS)

    def checked(self, expected: int, measured: EventMeasurement) -> None:
        """Every event looked at while locked (detected or not)."""
        self.confusion[expected, measured.top_symbol] += 1

    def anchored(self, expected: int, measured: EventMeasurement, residual_samples: float) -> None:
        """An accepted anchor: accumulate band response and symbol statistics."""
        if measured.band_gain.size == N_SUBBANDS:
            self.band_n += 1
            self.band_power += measured.band_gain**2
            self.band_reliable += measured.band_snr >= _BAND_RELIABLE_SNR
            self.band_delay += measured.band_delay_samples
        self.symbol_anchors[expected] += 1
        self.symbol_z[expected] += measured.z
        self.symbol_residual[expected] += residual_samples

    def profile(self) -> ResponseProfile:
        sub_bw = (self.spec.band_high_hz - self.spec.band_low_hz) / N_SUBBANDS
        bands = []
        for b in range(N_SUBBANDS):
            lo = self.spec.band_low_hz + b * sub_bw
            if self.band_n:
                p = self.band_power[b] / self.band_n
                bands.append(
                    BandResponse(
                        low_hz=lo,
                        high_hz=lo + sub_bw,
                        gain_db=10.0 * math.log10(p) if p > 0 else None,
                        reliability=float(self.band_reliable[b] / self.band_n),
                        timing_residual_samples=float(self.band_delay[b] / self.band_n),
                    )
                )
            else:
                bands.append(BandResponse(low_hz=lo, high_hz=lo + sub_bw))
        symbols = []
        checked = self.confusion.sum(axis=1)
        for s in range(N_SYMBOLS):
            n = int(self.symbol_anchors[s])
            symbols.append(
                SymbolResponse(
                    symbol=s,
                    count=int(checked[s]),
                    reliability=float(self.confusion[s, s] / checked[s]) if checked[s] else None,
                    mean_score=float(self.symbol_z[s] / n) if n else None,
                    timing_residual_samples=float(self.symbol_residual[s] / n) if n else None,
                )
            )
        total = int(checked.sum())
        wrong = total - int(np.trace(self.confusion))
        return ResponseProfile(
            bands=bands,
            symbols=symbols,
            events_checked=total,
            confusion_rate=(wrong / total) if total else None,
        )
