"""Codebook: the schedule identifies events from any 3 symbols, repeats no sooner than hourly, differs per id/seed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimir.sync.codebook import Codebook, CodebookSpec, MIN_REPEAT_SECONDS
from mimir.sync.debruijn import seeded_de_bruijn, window_codes
from mimir.sync.symbols import N_SLOTS, N_SUBBANDS, N_SYMBOLS, design_alphabet


def test_every_cyclic_triple_is_unique_and_period_is_over_an_hour():
    cb = Codebook()
    codes = window_codes(cb.schedule, N_SYMBOLS, 3)
    assert cb.period_events == N_SYMBOLS**3
    assert np.unique(codes).size == cb.period_events
    assert cb.period_seconds >= MIN_REPEAT_SECONDS


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-10**7, max_value=10**7))
def test_three_consecutive_symbols_identify_the_event(i):
    cb = Codebook()
    a, b, c = cb.symbol_at(i), cb.symbol_at(i + 1), cb.symbol_at(i + 2)
    assert cb.index_of_triple(a, b, c) == i % cb.period_events
    near = cb.event_seconds(i) + 100.0
    assert cb.unwrap_index(i % cb.period_events, near) == i


def test_schedules_differ_between_ids_and_seeds_and_are_deterministic():
    base = Codebook.from_id("room-a", 1).schedule
    assert np.array_equal(base, Codebook.from_id("room-a", 1).schedule)
    for other in (Codebook.from_id("room-a", 2), Codebook.from_id("room-b", 1)):
        # unrelated sequences agree on about 1/32 of positions; no long shared runs
        assert np.mean(base == other.schedule) < 0.06


def test_small_de_bruijn_is_exhaustive():
    for k, n in ((2, 3), (3, 3), (4, 2), (5, 3)):
        seq = seeded_de_bruijn(k, n, np.random.default_rng(7))
        assert seq.size == k**n
        assert np.unique(window_codes(seq, k, n)).size == k**n


@pytest.mark.parametrize(
    "kwargs",
    [
        {"codebook_id": ""},
        {"band_low_hz": 9000.0, "band_high_hz": 8000.0},
        {"symbol_seconds": 0.3},
        {"event_period_s": 0.05, "symbol_seconds": 0.02, "taper_seconds": 0.0005},  # repeats too soon
    ],
)
def test_invalid_specs_are_refused(kwargs):
    with pytest.raises(ValueError):
        Codebook(CodebookSpec(**kwargs))


def test_alphabet_is_costas_like():
    a = design_alphabet()
    assert a.subband.shape == (N_SYMBOLS, N_SLOTS)
    for s in range(N_SYMBOLS):
        assert sorted(a.subband[s]) == list(range(N_SUBBANDS))  # every sub-band once
    cells = 2 * a.subband + (a.direction > 0)
    assert len({tuple(c) for c in cells}) == N_SYMBOLS
    for s in range(N_SYMBOLS):
        for r in range(s + 1, N_SYMBOLS):
            assert (cells[s] == cells[r]).sum() <= 1
            for d in range(1, N_SLOTS):
                assert (cells[s][d:] == cells[r][:-d]).sum() <= 2
                assert (cells[s][:-d] == cells[r][d:]).sum() <= 2
