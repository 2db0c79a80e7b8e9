"""The audio engine's configuration: one frozen dataclass, validated once, shared by CLI and Python callers.

Validation here covers what needs no device (value ranges, option names,
channel specs). Device-dependent checks (does the device exist, does it
support this rate) happen in the backend, which knows the device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mimir.config import DEFAULT_EPOCH_UNIX_S, LIMITS
from mimir.topology import AudioWorkerSpec, WitnessSpec

from .errors import AudioConfigError

__all__ = [
    "EngineConfig", "ChannelSpec", "parse_channels", "BACKENDS", "HOST_APIS", "OUTPUTS", "SIGNALS",
    "SAMPLE_FORMATS", "DEFAULT_RATE_HZ", "MIN_BLOCK_FRAMES", "MAX_BLOCK_FRAMES",
]

BACKENDS = ("sounddevice", "synthetic", "file")
HOST_APIS = ("asio", "coreaudio", "wasapi", "jack", "alsa")
OUTPUTS = ("passthrough", "silence", "witness", "impulse", "mls")
SIGNALS = ("ramp", "sine", "noise", "impulse", "silence", "loopback", "room", "reverb-room")
SAMPLE_FORMATS = ("float32", "int32", "int16")
DEFAULT_RATE_HZ = 48000
MIN_BLOCK_FRAMES = LIMITS.min_block_frames   # the rig config's bounds (mimir.config.Limits): one place
MAX_BLOCK_FRAMES = LIMITS.max_block_frames
MIN_RATE_HZ = LIMITS.min_audio_rate_hz
MAX_RATE_HZ = LIMITS.max_audio_rate_hz
_NAME_RE = re.compile(r"^[A-Za-z0-9_.]+$")
DEFAULT_WITNESS = WitnessSpec(codebook_id="mimir-default", seed=0, epoch_unix_s=DEFAULT_EPOCH_UNIX_S, level_dbfs=-20.0)


@dataclass(frozen=True)
class ChannelSpec:
    """Which input channels to capture: the first ``count``, or explicit 0-based ``selectors``.

    Invariant: exactly one of the two forms; ``selectors`` are unique and >= 0.
    """

    count: int | None = None
    selectors: tuple[int, ...] | None = None

    @property
    def n_channels(self) -> int | None:
        """How many channels end up in the ring (None: decided by the device, up to 2)."""
        if self.selectors is not None:
            return len(self.selectors)
        return self.count

    def resolve(self, available: int) -> tuple[int, ...]:
        """The 0-based device channels to capture from a device with ``available`` inputs."""
        if self.selectors is not None:
            bad = [c for c in self.selectors if c >= available]
            if bad:
                raise AudioConfigError(
                    f"--channels asks for input channel(s) {', '.join(map(str, bad))}, but the device has "
                    f"{available} input channel(s) (0..{available - 1})"
                )
            return self.selectors
        count = self.count if self.count is not None else min(2, available)
        if count > available:
            raise AudioConfigError(
                f"--channels {count}: the device has only {available} input channel(s); "
                f"use --channels {available} or fewer"
            )
        if count < 1:
            raise AudioConfigError("the device has no input channels; pick an input device with --device")
        return tuple(range(count))

    def __str__(self) -> str:
        if self.selectors is not None:
            return ",".join(map(str, self.selectors))
        return "auto" if self.count is None else str(self.count)


def _channel_spec(spec: AudioWorkerSpec) -> ChannelSpec:
    """The contract's inputs as the engine's channel selection (the first N when they are 0..N-1)."""
    indices = tuple(i.device_index for i in spec.inputs)
    return ChannelSpec(count=len(indices)) if indices == tuple(range(len(indices))) else ChannelSpec(selectors=indices)


def parse_channels(text: str | int | None) -> ChannelSpec:
    """Parse ``--channels``: ``N`` (the first N inputs), ``a,b,...`` or ``a-b`` (0-based input indices)."""
    if text is None or text == "" or text == "auto":
        return ChannelSpec()
    if isinstance(text, int):
        text = str(text)
    text = text.strip()
    try:
        if "," not in text and "-" not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return ChannelSpec(count=count)
        selectors: list[int] = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo < 0 or hi < lo:
                    raise ValueError
                selectors.extend(range(lo, hi + 1))
            else:
                idx = int(part)
                if idx < 0:
                    raise ValueError
                selectors.append(idx)
    except ValueError:
        raise AudioConfigError(
            f"--channels {text!r} is not understood: give a count (2), or 0-based input channels "
            "as a list (0,2) or range (0-3)"
        ) from None
    if not selectors or len(set(selectors)) != len(selectors):
        raise AudioConfigError(f"--channels {text!r}: list each input channel once")
    return ChannelSpec(selectors=tuple(selectors))


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine needs. Immutable; derive variants with :meth:`with_`.

    ``sample_rate_hz=None`` means 48000 for devices and the file's own rate
    for the file backend. ``block_frames=0`` means the host's own block size
    (PortAudio ``paFramesPerBufferUnspecified``: no extra buffering latency,
    frames may vary per callback).
    """

    backend: str = "sounddevice"
    host_api: str | None = None
    device: str | int | None = None
    sample_rate_hz: int | None = None
    block_frames: int = 64
    channels: ChannelSpec = field(default_factory=ChannelSpec)
    output: str = "passthrough"
    through_channel: int | None = None      # passthrough: copy this input (ring channel index) to every output
    output_channels: int | None = None      # default: as many as input channels
    sample_format: str = "float32"          # the device-side input format, converted once into the float32 ring
    rig: str = "default"
    ring: str = "audio"
    ring_seconds: float = 2.0
    metrics_seconds: float = 10.0
    ring_capacity: int | None = None        # blocks in the audio ring (the rig contract's); overrides ring_seconds
    metrics_capacity: int | None = None     # callback records in the metrics ring; overrides metrics_seconds
    source: str = "audio"                   # the source name (ring labels, logs)
    witness: WitnessSpec = DEFAULT_WITNESS  # --output witness: codebook, seed, epoch and level to play
    health_window_s: float = 3.0
    freeze_gc: bool = False                 # the worker CLI sets True
    realtime_threads: bool = False          # best-effort SCHED_FIFO: paced device thread 10, helpers 1 (worker CLI: True)
    latency: str | float = "low"            # PortAudio suggested latency
    jack_client_name: str | None = None
    # synthetic backend
    signal: str = "ramp"
    ppm: float = 0.0
    sine_hz: float = 1000.0
    loopback_latency_frames: int | None = None   # synthetic "loopback": input = output this many frames later
    loopback_input: int = 0                 # synthetic room / reverb-room: the device input that is the loopback
    seed: int = 1
    # file backend
    path: Path | None = None
    loop: bool = False
    speed: float = 1.0                      # paced backends: 1.0 = real time
    # probes (output impulse / mls)
    impulse_period_frames: int | None = None
    probe_channel: int = 0
    mls_order: int = 14
    # test and diagnosis hooks: busy-wait this long in every callback; invoke callbacks up to this late
    simulate_load_us: float = 0.0
    callback_jitter_us: float = 0.0

    @classmethod
    def from_spec(cls, spec: AudioWorkerSpec, **more: Any) -> "EngineConfig":
        """The engine of the rig contract's audio worker (:func:`mimir.topology.audio_worker_spec`).

        ``more``: further fields, as for the constructor (``Any`` as in :func:`dataclasses.replace`:
        each value is one field's type).
        """
        device: str | int | None = spec.device
        if isinstance(device, str) and device.strip().isdigit():
            device = int(device)
        return cls(
            backend=spec.backend, host_api=spec.host_api, device=device, sample_rate_hz=spec.rate_hz,
            block_frames=spec.block_frames, channels=_channel_spec(spec), output=spec.output,
            rig=spec.rig, ring=spec.ring.object_id, ring_capacity=spec.ring.capacity,
            metrics_capacity=spec.metrics_ring.capacity, source=spec.source, witness=spec.witness,
            path=Path(spec.file) if spec.file else None, signal=spec.signal, loopback_input=spec.loopback_input,
            **more,
        ).validate()

    def with_(self, **changes: Any) -> "EngineConfig":
        """A copy with ``changes`` (field name -> value of that field's type), like :func:`dataclasses.replace`."""
        return replace(self, **changes)

    def rate_or_default(self) -> int:
        return self.sample_rate_hz if self.sample_rate_hz is not None else DEFAULT_RATE_HZ

    def validate(self) -> "EngineConfig":
        """Check everything that does not need a device; return self or raise :class:`AudioConfigError`."""
        _one_of("--backend", self.backend, BACKENDS)
        if self.host_api is not None:
            _one_of("--host-api", self.host_api, HOST_APIS)
            if self.backend != "sounddevice":
                raise AudioConfigError(f"--host-api applies to --backend sounddevice only, not {self.backend}")
        _one_of("--output", self.output, OUTPUTS)
        _one_of("--signal", self.signal, SIGNALS)
        _one_of("--sample-format", self.sample_format, SAMPLE_FORMATS)
        if self.sample_rate_hz is not None and not (MIN_RATE_HZ <= self.sample_rate_hz <= MAX_RATE_HZ):
            raise AudioConfigError(
                f"--rate {self.sample_rate_hz} Hz is not supported: use {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz "
                "(common: 44100, 48000, 96000, 192000)"
            )
        block = self.block_frames
        if block != 0 and not (MIN_BLOCK_FRAMES <= block <= MAX_BLOCK_FRAMES):
            raise AudioConfigError(
                f"--block {block} frames is not supported: use 0 (the host's own size) or "
                f"{MIN_BLOCK_FRAMES}..{MAX_BLOCK_FRAMES} frames (common: 64, 128, 256)"
            )
        if block == 0 and self.backend != "sounddevice":
            raise AudioConfigError(
                f"--block 0 (the host's own size) needs a device; the {self.backend} backend needs a fixed "
                f"block of {MIN_BLOCK_FRAMES}..{MAX_BLOCK_FRAMES} frames"
            )
        for name, value in (("--rig", self.rig), ("--ring", self.ring)):
            if not value or not _NAME_RE.match(value):
                raise AudioConfigError(f"{name} {value!r}: use letters, digits, '_' and '.' only")
        if not self.ring_seconds > 0 or not self.metrics_seconds > 0:
            raise AudioConfigError("ring and metrics seconds must be positive")
        for what, capacity in (("ring capacity", self.ring_capacity), ("metrics capacity", self.metrics_capacity)):
            if capacity is not None and capacity < 8:
                raise AudioConfigError(f"{what} {capacity}: at least 8 blocks")
        if not self.health_window_s > 0:
            raise AudioConfigError("--health-window must be positive seconds")
        if self.backend == "file":
            if self.path is None:
                raise AudioConfigError("--backend file needs --file PATH (a WAV or FLAC file)")
            if not Path(self.path).is_file():
                raise AudioConfigError(f"--file {self.path}: no such file")
        if not self.speed > 0:
            raise AudioConfigError(f"speed must be positive, got {self.speed}")
        if abs(self.ppm) > 10000:
            raise AudioConfigError(f"--ppm {self.ppm}: clock error must be within +-10000 ppm")
        if self.through_channel is not None and self.through_channel < 0:
            raise AudioConfigError("--through-channel is a 0-based index into the captured channels")
        if self.output_channels is not None and self.output_channels < 0:
            raise AudioConfigError("--output-channels must be >= 0")
        if self.simulate_load_us < 0 or self.callback_jitter_us < 0:
            raise AudioConfigError("simulate_load_us and callback_jitter_us must be >= 0")
        if self.impulse_period_frames is not None and self.impulse_period_frames < 2:
            raise AudioConfigError("--impulse-period must be at least 2 frames")
        if not (4 <= self.mls_order <= 20):
            raise AudioConfigError("MLS order must be 4..20")
        if self.jack_client_name is not None and not re.match(r"^[A-Za-z0-9_.\-]{1,60}$", self.jack_client_name):
            raise AudioConfigError("--jack-name: letters, digits, '_', '.', '-' only, at most 60 characters")
        return self


def _one_of(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise AudioConfigError(f"{option} {value!r} is not one of: {', '.join(allowed)}")
