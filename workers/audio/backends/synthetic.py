"""The synthetic backend: a clocked generator at the exact nominal rate (optionally off by ``ppm``).

Signals: ``ramp`` (sample counter, see :mod:`workers.audio.signals`),
``sine``, ``noise``, ``impulse``, ``silence``, and ``loopback``: the input is
the output stage's signal ``L`` frames later (``L`` =
``loopback_latency_frames``, default two blocks), a perfect digital loop
whose reported latency (one block in, ``L - B`` out) equals its real one;
``room``: the same loop, but input channel ``k`` hears output channel 0
through a simulated acoustic path: channel 0 is the electrical loopback (the
rig's reference), channel ``k >= 1`` a microphone ``ROOM_DISTANCES_M[k]``
away (delay ``distance / 343 m/s``, whole samples; gain ``0.5 / distance``).
"""

from __future__ import annotations

import numpy as np

from ..config import EngineConfig
from ..errors import AudioConfigError
from ..signals import SignalGenerator
from .base import DevicePlan
from .paced import PacedBackend

__all__ = ["SyntheticBackend", "ROOM_DISTANCES_M", "room_path"]

SPEED_OF_SOUND_M_S = 343.0
ROOM_DISTANCES_M = (0.0, 0.6, 1.1, 1.7, 2.2, 2.9, 3.4, 4.1)


def room_path(channel: int, rate_hz: int) -> tuple[int, float]:
    """(extra delay in frames, gain) of input ``channel`` in the ``room`` signal."""
    distance_m = ROOM_DISTANCES_M[channel % len(ROOM_DISTANCES_M)]
    if distance_m == 0.0:
        return 0, 1.0
    return round(distance_m / SPEED_OF_SOUND_M_S * rate_hz), 0.5 / distance_m


class SyntheticBackend(PacedBackend):
    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._gen: SignalGenerator | None = None
        self._hist: np.ndarray | None = None
        self._latency_frames = 0

    def prepare(self) -> DevicePlan:
        cfg = self.config
        rate = cfg.rate_or_default()
        block = cfg.block_frames
        spec = cfg.channels
        available = (max(spec.selectors) + 1) if spec.selectors is not None else (spec.count or 2)
        selected = spec.resolve(available)
        n_in = len(selected)
        n_out = cfg.output_channels if cfg.output_channels is not None else n_in
        self.plan = DevicePlan(
            backend="synthetic", device_label=f"synthetic {cfg.signal} ({cfg.ppm:+g} ppm)", host_api=None,
            device_index=None, sample_rate_hz=rate, block_frames=block, slot_frames=block, expected_frames=block,
            input_channels=selected, output_channels=n_out, sample_format="float32",
        )
        self._gen = SignalGenerator(
            cfg.signal, n_in, block, rate, sine_hz=cfg.sine_hz, seed=cfg.seed,
            impulse_period_frames=cfg.impulse_period_frames,
        )
        self._paths = None
        if cfg.signal == "room":
            self._paths = [room_path(c, rate) for c in range(n_in)]
        if cfg.signal in ("loopback", "room"):
            latency = cfg.loopback_latency_frames if cfg.loopback_latency_frames is not None else 2 * block
            if latency < block:
                raise AudioConfigError(
                    f"synthetic loopback latency {latency} frames is shorter than one block ({block}); "
                    "a duplex device cannot return a block before it has played it"
                )
            self._latency_frames = latency
            longest = max((d for d, _ in self._paths), default=0) if self._paths else 0
            self._hist = np.zeros((2 * (latency + block + longest), n_in), dtype=np.float32)
        return self.plan

    def _latencies_s(self) -> tuple[float, float]:
        rate = self.plan.sample_rate_hz
        block = self.plan.block_frames
        if self._hist is not None:
            return block / rate, (self._latency_frames - block) / rate
        return block / rate, block / rate

    def _produce(self, slot: np.ndarray, start_frame: int, frames: int) -> int:
        if self._hist is None:
            self._gen.fill(slot, start_frame, frames)
            return frames
        hist = self._hist
        size = hist.shape[0]
        if self._paths is not None:
            # Every microphone hears output channel 0, later and quieter the farther it is.
            for c, (delay, gain) in enumerate(self._paths):
                pos = (start_frame - self._latency_frames - delay) % size
                head = min(frames, size - pos)
                np.multiply(hist[pos:pos + head, 0], gain, out=slot[:head, c])
                if head < frames:
                    np.multiply(hist[: frames - head, 0], gain, out=slot[head:frames, c])
            return frames
        pos = (start_frame - self._latency_frames) % size
        head = min(frames, size - pos)
        slot[:head] = hist[pos:pos + head]
        if head < frames:
            slot[head:frames] = hist[: frames - head]
        return frames

    def _consume_output(self, out: np.ndarray, start_frame: int, frames: int) -> None:
        hist = self._hist
        if hist is None:
            return
        size = hist.shape[0]
        n = min(out.shape[1], hist.shape[1])
        pos = start_frame % size
        head = min(frames, size - pos)
        hist[pos:pos + head, :n] = out[:head, :n]
        if head < frames:
            hist[: frames - head, :n] = out[head:frames, :n]
