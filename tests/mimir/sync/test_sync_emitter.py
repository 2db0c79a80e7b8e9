"""Emitter: sample-exact, block-invariant, allocation-free fill, in band, at the configured level."""

import math
import tracemalloc

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from mimir.sync.codebook import Codebook
from mimir.sync.emitter import WitnessEmitter
from mimir.sync.symbols import render_symbols

CB = Codebook.from_id("emitter-test", 3)


@settings(max_examples=40, deadline=None)
@given(
    rate=st.sampled_from([8000.0, 44100.0, 48000.0, 192000.0, 48001.3]),
    start=st.floats(min_value=0.0, max_value=7000.0),
    cuts=st.lists(st.integers(min_value=0, max_value=30000), min_size=1, max_size=6),
    offset=st.integers(min_value=-5000, max_value=10**6),
)
def test_rendering_in_blocks_equals_rendering_at_once(rate, start, cuts, offset):
    em = WitnessEmitter(CB, rate, start)
    total = 30000
    whole = em.render(offset, total)
    bounds = sorted(set([0, total] + cuts))
    parts = [em.render(offset + a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]
    assert np.array_equal(np.concatenate(parts), whole)


def test_samples_follow_the_canonical_mapping():
    """Local sample n is canonical start + n / rate: compare with the symbol rendered analytically."""
    for rate, start in ((48000.0, 12.3456789), (44100.0, 0.0), (48001.3, 3.3)):
        em = WitnessEmitter(CB, rate, start, level_dbfs=0.0)
        spec = CB.spec
        i = math.ceil(start / spec.event_period_s) + 3
        position = (i * spec.event_period_s - start) * rate  # where event i starts, in local samples
        first = math.floor(position) - 5
        got = em.render(first, 6000).astype(np.float64)
        want = render_symbols(
            [CB.symbol_at(i)], band_low_hz=spec.band_low_hz, band_high_hz=spec.band_high_hz,
            symbol_seconds=spec.symbol_seconds, taper_seconds=spec.taper_seconds,
            sample_rate_hz=rate, delay_samples=position - first, n_samples=6000,
        )[0]
        np.testing.assert_allclose(got, want, atol=2e-7)
        assert np.max(np.abs(got)) > 0.9


def test_fill_does_not_allocate_sample_memory():
    em = WitnessEmitter(CB, 48000.0, 0.0)
    buf = np.zeros(256, dtype=np.float32)
    em.fill(buf, 0)
    tracemalloc.start()
    try:
        for k in range(2000):
            em.fill(buf, k * 256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4096  # a block of samples alone would be 1 KiB; nothing close to that per call


def test_level_and_band():
    rate = 48000.0
    em = WitnessEmitter(CB, rate, 0.0, level_dbfs=-20.0)
    x = em.render(0, int(10 * rate)).astype(np.float64)
    assert abs(20 * np.log10(np.max(np.abs(x))) + 20.0) < 0.05
    f, p = signal.welch(x, rate, nperseg=4096)
    inside = (f >= CB.spec.band_low_hz - 300) & (f <= CB.spec.band_high_hz + 300)
    assert p[inside].sum() / p.sum() > 0.99
    # silence between symbols: half of every event period
    period = int(CB.spec.event_period_s * rate)
    quiet = x[: 20 * period].reshape(20, period)[:, int(0.11 * rate) : period - 10]
    assert np.max(np.abs(quiet)) == 0.0


def test_low_rate_skips_subbands_it_cannot_carry():
    em = WitnessEmitter(CB, 8000.0, 0.0, level_dbfs=0.0)
    x = em.render(0, 8000 * 4).astype(np.float64)
    f, p = signal.welch(x, 8000.0, nperseg=1024)
    assert np.max(np.abs(x)) > 0.5
    assert p[f > 3700].sum() / p.sum() < 0.01


def test_symbols_rendered_together_are_the_symbols_rendered_alone():
    """Invariant: a template bank (all 32 at once) and the emitter's slow path (one at a time) render the same."""
    spec = CB.spec
    kw = dict(band_low_hz=spec.band_low_hz, band_high_hz=spec.band_high_hz, symbol_seconds=spec.symbol_seconds,
              taper_seconds=spec.taper_seconds, sample_rate_hz=44100.0, delay_samples=0.37, n_samples=4500)
    together = render_symbols(range(32), **kw)
    for s in (0, 7, 31):
        assert np.array_equal(together[s], render_symbols([s], **kw)[0])
