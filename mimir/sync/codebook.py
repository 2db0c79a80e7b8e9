"""The active-witness codebook: who plays which symbol when.

A codebook is a :class:`CodebookSpec` (``codebook_id``, ``seed``, ``epoch`` and
the band/timing parameters). Canonical seconds are seconds since the epoch.

Schedule
    Event ``i`` (any integer, negative before the epoch) starts at canonical
    second ``i * event_period_s`` and plays symbol ``schedule[i mod N]`` where
    ``schedule`` is a seeded cyclic de Bruijn sequence B(32, 3): N = 32**3 =
    32768 events, so with the default 0.2 s period the schedule repeats every
    6553.6 s (1 h 49 min) and any 3 consecutive symbols identify ``i mod N``.
    The seed of the sequence is SHA-256 of (codebook_id, seed), so different ids
    or seeds give different schedules.

Why 0.2 s
    0.2 s times any common sample rate (8 k, 11.025 k, 16 k, 22.05 k, 32 k,
    44.1 k, 48 k, 88.2 k, 96 k, 176.4 k, 192 k) is a whole number of samples, so
    every event of a stream starts at the same sub-sample phase and the emitter
    can precompute its 32 waveforms once per rate.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import msgspec
import numpy as np

from .debruijn import seeded_de_bruijn, window_codes
from .symbols import N_SYMBOLS, SymbolAlphabet, design_alphabet

__all__ = ["CodebookSpec", "Codebook", "CODE_ORDER", "MIN_REPEAT_SECONDS"]

CODE_ORDER = 3
MIN_REPEAT_SECONDS = 3600.0


class CodebookSpec(msgspec.Struct, frozen=True, rename="camel"):
    """Everything that defines a witness schedule and its sound.

    ``epoch_unix_ns`` is metadata (the wall-clock instant of canonical second 0);
    the schedule itself only depends on ``codebook_id`` and ``seed``.
    """

    codebook_id: str = "mimir-default"
    seed: int = 0
    epoch_unix_ns: int = 0
    band_low_hz: float = 2000.0
    band_high_hz: float = 8000.0
    event_period_s: float = 0.2
    symbol_seconds: float = 0.1
    taper_seconds: float = 0.001

    def validate(self) -> None:
        """Raise ValueError when the parameters cannot make a working codebook."""
        if not self.codebook_id:
            raise ValueError("codebook_id must not be empty")
        if not (0.0 < self.band_low_hz < self.band_high_hz):
            raise ValueError("need 0 < band_low_hz < band_high_hz")
        if not (0.0 < self.symbol_seconds < self.event_period_s):
            raise ValueError("need 0 < symbol_seconds < event_period_s")
        slot = self.symbol_seconds / 8
        if not (0.0 < self.taper_seconds <= slot / 4):
            raise ValueError("taper_seconds must be in (0, slot/4]")
        if N_SYMBOLS**CODE_ORDER * self.event_period_s < MIN_REPEAT_SECONDS:
            raise ValueError("schedule would repeat in less than an hour; raise event_period_s")


@lru_cache(maxsize=16)
def _schedule_for(codebook_id: str, seed: int) -> np.ndarray:
    digest = hashlib.sha256(f"mimir-sync/v1\0{codebook_id}\0{seed}".encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]
    sequence = seeded_de_bruijn(N_SYMBOLS, CODE_ORDER, np.random.default_rng(words))
    sequence.flags.writeable = False
    return sequence


class Codebook:
    """A ready-to-use codebook: the spec, its schedule and the triple index.

    Invariants: ``symbol_at(i) == schedule[i % period_events]``;
    ``index_of_triple(symbol_at(i), symbol_at(i+1), symbol_at(i+2)) == i % period_events``.
    """

    def __init__(self, spec: CodebookSpec | None = None) -> None:
        self.spec = spec if spec is not None else CodebookSpec()
        self.spec.validate()
        self.schedule: np.ndarray = _schedule_for(self.spec.codebook_id, int(self.spec.seed))
        self.period_events: int = int(self.schedule.shape[0])
        codes = window_codes(self.schedule, N_SYMBOLS, CODE_ORDER)
        lookup = np.empty(self.period_events, dtype=np.int64)
        lookup[codes] = np.arange(self.period_events)
        self._triple_index = lookup
        self.triple_lookup = lookup  # code (a*32 + b)*32 + c -> schedule position of a
        self._schedule_i64 = self.schedule.astype(np.int64)
        self.alphabet: SymbolAlphabet = design_alphabet()

    @classmethod
    def from_id(cls, codebook_id: str = "mimir-default", seed: int = 0, **kwargs: float) -> "Codebook":
        return cls(CodebookSpec(codebook_id=codebook_id, seed=seed, **kwargs))  # type: ignore[arg-type]

    @property
    def period_seconds(self) -> float:
        return self.period_events * self.spec.event_period_s

    def symbol_at(self, event_index: int) -> int:
        return int(self.schedule[event_index % self.period_events])

    def symbols_at(self, event_indices: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`symbol_at` (int64 result)."""
        return self._schedule_i64[np.mod(event_indices, self.period_events)]

    def index_of_triple(self, a: int, b: int, c: int) -> int:
        """Schedule position (mod period) of the event that starts the run a, b, c."""
        return int(self._triple_index[(a * N_SYMBOLS + b) * N_SYMBOLS + c])

    def indices_of_triples(self, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        return self._triple_index[(a * N_SYMBOLS + b) * N_SYMBOLS + c]

    def event_seconds(self, event_index: int) -> float:
        """Canonical start time of event ``event_index``."""
        return event_index * self.spec.event_period_s

    def unwrap_index(self, index_mod_period: int, near_canonical_seconds: float) -> int:
        """Absolute event index congruent to ``index_mod_period`` nearest a canonical time."""
        near = near_canonical_seconds / self.spec.event_period_s
        cycles = round((near - index_mod_period) / self.period_events)
        return int(index_mod_period + cycles * self.period_events)
