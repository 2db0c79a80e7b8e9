"""The witness symbol alphabet: frequency-hopped chirp symbols.

Design (see docs/sync.md for the reasoning)
    A symbol lasts ``symbol_seconds`` and is cut into ``N_SLOTS`` equal slots.
    The witness band ``[band_low_hz, band_high_hz)`` is cut into ``N_SUBBANDS``
    equal sub-bands. In each slot the symbol plays one linear chirp that sweeps
    one whole sub-band, up or down. Each symbol visits every sub-band exactly
    once (its slot->sub-band map is a permutation), so every symbol has the same
    energy in every sub-band and the same wide-band autocorrelation, and losing a
    sub-band (a speaker roll-off, a codec low-pass) costs every symbol the same
    1/8 of its energy. Each sub-chirp starts and ends with a short raised-cosine
    taper so the hop does not click or splatter outside the band.

    The 32 (permutation, direction) patterns are chosen once, deterministically,
    like a set of Costas arrays: any two symbols share at most one
    (slot, sub-band, direction) cell when aligned and at most two at any whole-slot
    shift. So the wrong symbol's matched filter sees at most 1/8 of the right
    one's energy, and a symbol's time-frequency pattern says where it starts.

Invariants
    * ``render_symbols`` is a pure function of its arguments (no state), so the
      emitter and the receiver's templates agree sample for sample at any rate.
    * Sub-bands whose top edge is above 0.45 x the sample rate are not rendered
      (they would alias); the rest of the symbol is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["N_SYMBOLS", "N_SLOTS", "N_SUBBANDS", "SymbolAlphabet", "design_alphabet", "render_symbols"]

N_SYMBOLS = 32
N_SLOTS = 8
N_SUBBANDS = 8
_DESIGN_SEED = 0x5EED_C0DE  # fixed: the alphabet is part of the protocol, not of a codebook
_NYQUIST_GUARD = 0.45


@dataclass(frozen=True)
class SymbolAlphabet:
    """Time-frequency patterns of the symbols.

    ``subband[s, j]`` is the sub-band (0 = lowest) symbol ``s`` sweeps in slot
    ``j``; ``direction[s, j]`` is +1 for an up-sweep and -1 for a down-sweep.
    """

    subband: np.ndarray  # (N_SYMBOLS, N_SLOTS) int
    direction: np.ndarray  # (N_SYMBOLS, N_SLOTS) int, +-1


def _max_hits(candidate: np.ndarray, accepted: np.ndarray) -> tuple[int, int]:
    """(aligned, any-shift) maximum count of shared cells between a candidate and accepted patterns.

    Patterns are given as cell ids per slot (``2 * sub-band + (direction > 0)``).
    """
    if accepted.shape[0] == 0:
        return 0, 0
    n = candidate.shape[0]
    aligned = int((accepted == candidate).sum(axis=1).max())
    worst = aligned
    for d in range(1, n):
        worst = max(worst, int((accepted[:, d:] == candidate[: n - d]).sum(axis=1).max()))
        worst = max(worst, int((accepted[:, : n - d] == candidate[d:]).sum(axis=1).max()))
    return aligned, worst


@lru_cache(maxsize=1)
def design_alphabet() -> SymbolAlphabet:
    """Greedy Costas-like selection of the 32 patterns from a fixed-seed stream.

    Accept a random (permutation, directions) candidate if, against every symbol
    accepted so far, it shares <= 1 cell when aligned and <= 2 cells at any
    whole-slot shift. Deterministic: same result on every machine.
    """
    rng = np.random.default_rng(_DESIGN_SEED)
    accepted = np.zeros((0, N_SLOTS), dtype=np.int64)
    bands: list[np.ndarray] = []
    dirs: list[np.ndarray] = []
    while len(bands) < N_SYMBOLS:
        b = rng.permutation(N_SUBBANDS)
        d = rng.choice(np.array([-1, 1]), N_SLOTS)
        cells = 2 * b + (d > 0)
        aligned, worst = _max_hits(cells, accepted)
        if aligned <= 1 and worst <= 2:
            bands.append(b)
            dirs.append(d)
            accepted = np.vstack([accepted, cells[None, :]])
    return SymbolAlphabet(subband=np.array(bands), direction=np.array(dirs))


def render_symbols(
    symbols: Sequence[int],
    *,
    band_low_hz: float,
    band_high_hz: float,
    symbol_seconds: float,
    taper_seconds: float,
    sample_rate_hz: float,
    delay_samples: float = 0.0,
    n_samples: int | None = None,
) -> np.ndarray:
    """Samples ``y[k] = w_s((k - delay_samples) / sample_rate_hz)`` of each symbol ``s``: ``(len(symbols), n_samples)``.

    ``w_s(tau)`` is zero outside ``[0, symbol_seconds)`` and has peak amplitude 1.
    Default length covers the whole symbol: ``ceil(symbol_seconds * rate + delay) + 1``.
    Returns float64. The time grid, the slots and the taper are computed once
    for all the symbols (a template bank renders all 32 at every rate update).
    """
    alphabet = design_alphabet()
    rate = float(sample_rate_hz)
    if n_samples is None:
        n_samples = int(np.ceil(symbol_seconds * rate + delay_samples)) + 1
    tau = (np.arange(n_samples, dtype=np.float64) - delay_samples) / rate
    slot_seconds = symbol_seconds / N_SLOTS
    sub_bw_hz = (band_high_hz - band_low_hz) / N_SUBBANDS
    inside = (tau >= 0.0) & (tau < symbol_seconds)
    slot = np.clip(np.floor(tau / slot_seconds).astype(np.int64), 0, N_SLOTS - 1)
    u = tau - slot * slot_seconds
    # raised-cosine taper at both ends of every slot
    ramp = np.clip(np.minimum(u, slot_seconds - u) / taper_seconds, 0.0, 1.0)
    envelope = np.sin(0.5 * np.pi * ramp) ** 2
    out = np.empty((len(symbols), n_samples))
    for row, symbol in enumerate(symbols):
        sub = alphabet.subband[symbol][slot]
        direction = alphabet.direction[symbol][slot]
        f_low = band_low_hz + sub * sub_bw_hz
        f_start = np.where(direction > 0, f_low, f_low + sub_bw_hz)
        sweep_rate = direction * sub_bw_hz / slot_seconds  # Hz per second
        phase = 2.0 * np.pi * (f_start * u + 0.5 * sweep_rate * u * u)
        audible = (f_low + sub_bw_hz) <= _NYQUIST_GUARD * rate
        out[row] = np.where(inside & audible, envelope * np.sin(phase), 0.0)
    return out


def usable_subbands(band_low_hz: float, band_high_hz: float, sample_rate_hz: float,
                    band_hz: tuple[float, float] | None = None) -> np.ndarray:
    """Boolean mask of the sub-bands that can be rendered at this rate (and, given ``band_hz``, at least half inside it)."""
    sub_bw_hz = (band_high_hz - band_low_hz) / N_SUBBANDS
    lows = band_low_hz + np.arange(N_SUBBANDS) * sub_bw_hz
    tops = lows + sub_bw_hz
    usable = tops <= _NYQUIST_GUARD * sample_rate_hz
    if band_hz is not None:
        inside = np.clip(np.minimum(tops, band_hz[1]) - np.maximum(lows, band_hz[0]), 0.0, None)
        usable &= inside >= 0.5 * sub_bw_hz
    return usable
