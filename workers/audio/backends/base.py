"""What every backend provides to the engine, and what it reports back.

Lifecycle (driven by :class:`workers.audio.engine.AudioEngine`)::

    plan = backend.prepare()        # resolve device, validate rate/block/channels (raises AudioConfigError)
    info = backend.open(processor)  # open the stream (not running); processor is the shared hot path
    backend.start(); backend.stop() # any number of times
    backend.close()

A backend owns its device thread (PortAudio's, or its own pacer thread) and
calls the processor's ``claim``/``commit`` from it, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..callback import BlockProcessor

__all__ = ["Backend", "DevicePlan", "StreamInfo"]


@dataclass(frozen=True)
class DevicePlan:
    """The resolved stream geometry, decided before any ring exists."""

    backend: str
    device_label: str
    host_api: str | None
    device_index: int | None
    sample_rate_hz: int
    block_frames: int               # 0: host-native (frames vary)
    slot_frames: int                # rows per ring slot (>= every block)
    expected_frames: int            # typical frames per callback (sizes the rings)
    input_channels: tuple[int, ...]  # device input channels captured, in ring order
    output_channels: int            # 0: input-only stream
    sample_format: str              # device-side input format


@dataclass(frozen=True)
class StreamInfo:
    """The opened stream: the plan plus what the host reports."""

    plan: DevicePlan
    input_latency_s: float
    output_latency_s: float
    jack_client: str | None = None
    jack_input_ports: tuple[str, ...] = field(default_factory=tuple)
    jack_output_ports: tuple[str, ...] = field(default_factory=tuple)

    @property
    def reported_round_trip_frames(self) -> float:
        """Input + output latency the stream reports, in frames."""
        return (self.input_latency_s + self.output_latency_s) * self.plan.sample_rate_hz

    def as_dict(self) -> dict:
        p = self.plan
        return {
            "backend": p.backend, "device": p.device_label, "host_api": p.host_api, "device_index": p.device_index,
            "sample_rate_hz": p.sample_rate_hz, "block_frames": p.block_frames, "slot_frames": p.slot_frames,
            "channels": len(p.input_channels), "input_channels": list(p.input_channels),
            "output_channels": p.output_channels, "sample_format": p.sample_format,
            "input_latency_ms": self.input_latency_s * 1e3, "output_latency_ms": self.output_latency_s * 1e3,
            "reported_round_trip_frames": self.reported_round_trip_frames,
            "jack_client": self.jack_client, "jack_input_ports": list(self.jack_input_ports),
            "jack_output_ports": list(self.jack_output_ports),
        }


class Backend(Protocol):
    finished: bool          # the source ended (file without --loop)
    failed: str | None      # why the device thread stopped abnormally

    def prepare(self) -> DevicePlan: ...
    def open(self, processor: BlockProcessor) -> StreamInfo: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...
    def active(self) -> bool: ...
