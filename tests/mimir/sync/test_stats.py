"""median_along is np.median (keepdims) for the shapes the decoder uses: odd and even counts, either axis."""
import numpy as np
import pytest

from mimir.sync.stats import median_along


@pytest.mark.parametrize("shape, axis", [((32,), -1), ((7, 32), 1), ((33, 5), 0), ((64, 8), 0), ((1, 3), 0), ((5,), 0)])
def test_median_along_is_numpys_median(shape, axis):
    values = np.random.default_rng(sum(shape)).normal(size=shape)
    assert np.array_equal(median_along(values, axis), np.median(values, axis=axis, keepdims=True))
