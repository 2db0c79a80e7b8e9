"""Stand-in ``cupyx`` (see ``cupy/__init__.py``)."""

import numpy as np


def empty_pinned(shape, dtype):
    return np.empty(shape, dtype)
