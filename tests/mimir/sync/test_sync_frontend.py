"""The front end's whitened sub-band powers: the same sums whichever way the bands are added up."""

import numpy as np
import pytest

from mimir.sync import Codebook
from mimir.sync.frontend import FrameGrid


def _grid(rate_hz: float) -> FrameGrid:
    return FrameGrid(Codebook().spec, rate_hz)


@pytest.mark.parametrize("rate_hz", [48000.0, 44100.0, 192000.0])
def test_one_reduceat_sums_the_bands_the_cumulative_sum_does(rate_hz):
    """Invariant: contiguous bands summed by one reduceat give the cumulative sum's powers (to rounding)."""
    fast, slow = _grid(rate_hz), _grid(rate_hz)
    assert fast._bands_contiguous
    slow._bands_contiguous = False  # the general path: a cumulative sum, differences at the edges
    rng = np.random.default_rng(7)
    for _ in range(5):  # several calls: the running floors must stay the same too
        frames = rng.standard_normal((fast.frames_per_event, fast.frame_len)).astype(np.float32)
        np.testing.assert_allclose(fast.whitened(frames), slow.whitened(frames), rtol=1e-12)


def test_bands_above_nyquist_are_empty_and_zero():
    """At 8 kHz the top sub-bands have no bins: the general path, and they whiten to 0."""
    grid = _grid(8000.0)
    assert not grid._bands_contiguous
    frames = np.random.default_rng(8).standard_normal((grid.frames_per_event, grid.frame_len)).astype(np.float32)
    white = grid.whitened(frames)
    assert np.all(white[:, ~grid.usable] == 0.0) and np.all(white[:, grid.usable] > 0.0)
