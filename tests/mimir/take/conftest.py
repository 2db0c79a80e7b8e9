"""Fixtures of the take tests: a fresh take folder and stamped synthetic camera frames.

Frames come from the synthetic camera's own pattern (``workers.camera.synthetic``):
every byte is a function of the frame's sequence number, the top band carries
a stamp (sequence, timestamp, check word), and ``verify`` checks every byte,
so a frame that comes back from a file proves by itself which frame it is
and that it is bit-exact.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mimir.descriptors import PixelFormat
from workers.camera.family import CameraMode
from workers.camera.synthetic import SyntheticPattern

T0_NS = 31_536_000_123_456_789  # one year after the 2026 epoch, odd nanoseconds on purpose


@pytest.fixture
def take_dir(tmp_path):
    return tmp_path / "take"


def pattern(pixel_format: str, width: int = 32, height: int = 24, fps: float = 60.0) -> SyntheticPattern:
    return SyntheticPattern(CameraMode(width, height, fps, PixelFormat[pixel_format]))


def noise_frame(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Uniform random bytes: nothing for a codec to exploit, every bit matters."""
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def synth() -> SimpleNamespace:
    """``synth.pattern(fmt, w, h)``, ``synth.noise(shape, seed)``, ``synth.T0_NS``."""
    return SimpleNamespace(pattern=pattern, noise=noise_frame, T0_NS=T0_NS)
