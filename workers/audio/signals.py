"""Test signals the synthetic backend writes straight into ring slots (no per-block allocation).

``ramp`` is the sample counter used for sample-exact tests: the value of
interleaved sample ``k`` (frame ``n``, channel ``c``, ``k = n * channels + c``)
is ``((k mod (2**24 - 1)) + 1) / 2**24``: never zero, exactly representable in
float32, so any copy, drop, duplicate or reorder is visible bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["RAMP_MODULUS", "ramp_values", "ramp_index", "SignalGenerator"]

RAMP_MODULUS = 2**24 - 1
_RAMP_SCALE = 2.0**-24


def ramp_values(first_frame: int, frames: int, channels: int) -> np.ndarray:
    """The ramp's ``(frames, channels)`` float32 block starting at frame ``first_frame`` (allocates; for checks)."""
    k = np.arange(first_frame * channels, (first_frame + frames) * channels, dtype=np.int64)
    return (((k % RAMP_MODULUS) + 1) * _RAMP_SCALE).astype(np.float32).reshape(frames, channels)


def ramp_index(values: np.ndarray) -> np.ndarray:
    """Inverse of the ramp: the interleaved sample index (mod 2**24 - 1) each value encodes; -1 for non-ramp values."""
    scaled = values.astype(np.float64) * 2.0**24
    k = np.rint(scaled).astype(np.int64) - 1
    ok = (scaled == np.rint(scaled)) & (k >= 0) & (k < RAMP_MODULUS)
    return np.where(ok, k, -1)


class SignalGenerator:
    """Writes ``kind`` into ``(frames, channels)`` float32 blocks given the device frame counter.

    Every kind except ``noise`` is a pure function of the frame counter.
    Buffers are sized for ``max_frames`` once; ``fill`` with ``frames ==
    max_frames`` allocates nothing.
    """

    def __init__(self, kind: str, channels: int, max_frames: int, sample_rate_hz: int, *,
                 sine_hz: float = 1000.0, amplitude: float = 0.5, impulse_period_frames: int | None = None,
                 seed: int = 1) -> None:
        self.kind = kind
        self.channels = channels
        self.max_frames = max_frames
        self.amplitude = float(amplitude)
        self.impulse_period_frames = int(impulse_period_frames or sample_rate_hz // 4)
        self._flat = np.arange(max_frames * channels, dtype=np.int64).reshape(max_frames, channels)
        self._tmp = np.empty((max_frames, channels), dtype=np.int64)
        self._frames_f64 = np.arange(max_frames, dtype=np.float64).reshape(max_frames, 1)
        self._phase = np.empty((max_frames, 1), dtype=np.float64)
        self._omega = 2.0 * math.pi * sine_hz / sample_rate_hz
        self._rng = np.random.default_rng(seed)

    def fill(self, block: np.ndarray, start_frame: int, frames: int) -> None:
        """Write frames ``[start_frame, start_frame + frames)`` into ``block[:frames]``."""
        full = frames == self.max_frames and block.shape[0] == frames
        out = block if full else block[:frames]
        kind = self.kind
        if kind == "ramp":
            tmp = self._tmp if full else self._tmp[:frames]
            np.add(self._flat if full else self._flat[:frames], start_frame * self.channels, out=tmp)
            np.remainder(tmp, RAMP_MODULUS, out=tmp)
            np.add(tmp, 1, out=tmp)
            np.multiply(tmp, _RAMP_SCALE, out=out, casting="unsafe")
        elif kind == "sine":
            phase = self._phase if full else self._phase[:frames]
            np.add(self._frames_f64 if full else self._frames_f64[:frames], float(start_frame), out=phase)
            np.multiply(phase, self._omega, out=phase)
            np.sin(phase, out=phase)
            np.multiply(phase, self.amplitude, out=out, casting="unsafe")
        elif kind == "noise":
            self._rng.standard_normal(dtype=np.float32, out=out)
            np.multiply(out, np.float32(self.amplitude * 0.2), out=out)
        elif kind == "impulse":
            out.fill(0.0)
            period = self.impulse_period_frames
            i = (-start_frame) % period
            while i < frames:
                out[i] = self.amplitude
                i += period
        else:  # silence (and loopback before any output exists)
            out.fill(0.0)
