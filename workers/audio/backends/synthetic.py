"""The synthetic backend: a clocked generator at the exact nominal rate (optionally off by ``ppm``).

Signals: ``ramp`` (sample counter, see :mod:`workers.audio.signals`),
``sine``, ``noise``, ``impulse``, ``silence``, and ``loopback``: the input is
the output stage's signal ``L`` frames later (``L`` =
``loopback_latency_frames``, default two blocks), a perfect digital loop
whose reported latency (one block in, ``L - B`` out) equals its real one.
"""

from __future__ import annotations

import numpy as np

from ..config import EngineConfig
from ..errors import AudioConfigError
from ..signals import SignalGenerator
from .base import DevicePlan
from .paced import PacedBackend

__all__ = ["SyntheticBackend"]


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
        if cfg.signal == "loopback":
            latency = cfg.loopback_latency_frames if cfg.loopback_latency_frames is not None else 2 * block
            if latency < block:
                raise AudioConfigError(
                    f"synthetic loopback latency {latency} frames is shorter than one block ({block}); "
                    "a duplex device cannot return a block before it has played it"
                )
            self._latency_frames = latency
            self._hist = np.zeros((2 * (latency + block), n_in), dtype=np.float32)
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
