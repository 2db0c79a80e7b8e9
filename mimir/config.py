"""The rig configuration: msgspec Structs, read from TOML, validated with errors that name the field.

A config file describes one rig: its camera families, its audio device, the
reservoir window, the sync codebook, supervision policy and the LAN listener.
Every option has a default, so an empty file (or no file: :func:`default_rig`)
is a valid rig. ``mimir config example`` prints an annotated file covering
every option (:data:`EXAMPLE_TOML`, checked against these Structs by the tests).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

__all__ = [
    "CameraFamilyConfig", "AudioConfig", "SyncConfig", "SupervisionConfig", "ReservoirConfig",
    "NetworkConfig", "RemoteSourceConfig", "RigConfig", "ConfigError", "load_config", "parse_config",
    "default_rig", "EXAMPLE_TOML", "DEFAULT_EPOCH_UNIX_S",
]

RigName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.]+$", min_length=1, max_length=16)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
TrustLevel = Literal["reject", "observe-only", "candidate-evidence", "trusted-evidence", "canonical-authority"]


class CameraFamilyConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One camera family: one worker process capturing ``count`` cameras of that family."""

    family: Literal["synthetic", "file", "ks", "ps3eye"]
    count: Annotated[int, msgspec.Meta(ge=1, le=6)] | None = None  # None: one per device/file listed, else 1
    width: PositiveInt = 640
    height: PositiveInt = 480
    fps: PositiveFloat = 60.0
    format: Literal["YUYV", "BGR3", "GREY", "GRBG", "MJPG"] = "YUYV"
    devices: list[str] = []          # device names/indices (ks, ps3eye); empty = the first `count` found
    files: list[str] = []            # video files (file family)
    ring_capacity: PositiveInt | None = None  # frames per camera ring; None: the reservoir window's worth


class AudioConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    backend: Literal["synthetic", "sounddevice", "file"] = "synthetic"
    host_api: Literal["asio", "coreaudio", "wasapi", "jack", "alsa"] | None = None
    device: str | None = None
    rate_hz: PositiveInt = 48_000
    block_frames: PositiveInt = 64
    channels: PositiveInt = 8
    output: Literal["passthrough", "witness", "silence"] = "witness"
    file: str | None = None
    ring_seconds: PositiveFloat | None = None  # audio kept in the ring; None: the reservoir window


DEFAULT_EPOCH_UNIX_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z: keeps canonical seconds small enough for float64


class SyncConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    codebook_id: str = "mimir-default"
    seed: int = 0
    epoch_unix_s: float = DEFAULT_EPOCH_UNIX_S
    level_dbfs: float = -20.0


class ReservoirConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    window_s: PositiveFloat = 5.0
    capacity_margin: Annotated[float, msgspec.Meta(ge=1.0)] = 1.5


class SupervisionConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    heartbeat_timeout_s: PositiveFloat = 2.0
    restart_backoff_s: PositiveFloat = 0.5
    restart_backoff_max_s: PositiveFloat = 10.0
    max_restarts: Annotated[int, msgspec.Meta(ge=0)] = 5
    restart_window_s: PositiveFloat = 60.0


class RemoteSourceConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One remote receiver: its CURVE public key (Z85, 40 characters) may report only as ``source_id``."""

    source_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$", max_length=40)]  # e.g. "phone-left"
    public_key: Annotated[str, msgspec.Meta(min_length=40, max_length=40)]
    trust: TrustLevel = "observe-only"


class NetworkConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The listener for remote receivers (``mimir.net.RemoteListener``); unknown keys are always refused."""

    listen: str | None = None  # e.g. "tcp://0.0.0.0:5591"; None: no remote receivers
    server_key_file: str | None = None  # the rig's secret key (``mimir keys generate --out server``)
    influence_at: TrustLevel = "trusted-evidence"  # sources at or above this level influence canonical time
    sources: list[RemoteSourceConfig] = []


class RigConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rig: RigName = "default"
    cameras: list[CameraFamilyConfig] = []
    audio: AudioConfig | None = None
    reservoir: ReservoirConfig = msgspec.field(default_factory=ReservoirConfig)
    sync: SyncConfig = msgspec.field(default_factory=SyncConfig)
    supervision: SupervisionConfig = msgspec.field(default_factory=SupervisionConfig)
    network: NetworkConfig = msgspec.field(default_factory=NetworkConfig)


class ConfigError(ValueError):
    """A config file is unreadable or invalid. The message names the field, what it expects and what it found."""


_PATH_RE = re.compile(r" - at `(\$[^`]*)`$")
_STEP_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _value_at(document: object, path: str) -> object:
    node = document
    for key, index in _STEP_RE.findall(path[1:]):
        try:
            node = node[key] if key else node[int(index)]
        except (KeyError, IndexError, TypeError):
            return "<missing>"
    return node


def parse_config(text: str, *, source: str = "<config>") -> RigConfig:
    """Parse and validate TOML text; raise :class:`ConfigError` naming the field on any problem."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        return msgspec.convert(document, RigConfig)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH_RE.search(message)
        if not match:
            raise ConfigError(f"{source}: {message}") from None
        path = match.group(1)
        problem = message[: match.start()]
        field = path.removeprefix("$").lstrip(".") or "(top level)"
        found = _value_at(document, path)
        if problem.startswith("Object contains unknown field"):
            raise ConfigError(f"{source}: {problem} in `{field}`; `mimir config example` lists every option") from None
        raise ConfigError(f"{source}: field `{field}`: {problem}; found {found!r}") from None


def load_config(path: str | Path) -> RigConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    return parse_config(text, source=str(path))


def default_rig() -> RigConfig:
    """The embedded default: six synthetic 640x480@60 cameras and 8-channel 48 kHz synthetic audio with the witness."""
    return RigConfig(
        cameras=[CameraFamilyConfig(family="synthetic", count=6, width=640, height=480, fps=60.0)],
        audio=AudioConfig(backend="synthetic", rate_hz=48_000, channels=8, output="witness"),
    )


EXAMPLE_TOML = '''\
# Mimir rig configuration. Every option is shown with its default.
# Start the rig with:  mimir-supervisor start --config this-file.toml

rig = "default"                 # names every shared-memory object: mimir-<rig>-... (1-16 letters, digits, _ .)

[reservoir]
window_s = 5.0                  # the rolling window every kind shares
capacity_margin = 1.5           # capacity = configured rates x window x margin

[sync]
codebook_id = "mimir-default"   # the active witness codebook (must match remote receivers)
seed = 0
epoch_unix_s = 1767225600.0     # canonical time zero (2026-01-01T00:00:00Z)
level_dbfs = -20.0              # witness emission level

[supervision]
heartbeat_timeout_s = 2.0       # a worker silent this long is restarted
restart_backoff_s = 0.5         # first restart delay, doubled per crash ...
restart_backoff_max_s = 10.0    # ... up to this
max_restarts = 5                # crashes within restart_window_s before giving up
restart_window_s = 60.0

[audio]
backend = "synthetic"           # synthetic | sounddevice | file
# host_api = "jack"             # asio | coreaudio | wasapi | jack | alsa (sounddevice backend)
# device = "Focusrite USB ASIO" # name or index (sounddevice backend)
rate_hz = 48000
block_frames = 64
channels = 8
output = "witness"              # passthrough | witness | silence
# file = "take.wav"             # file backend
# ring_seconds = 5.0            # audio kept in the ring (default and minimum: the reservoir window)

[[cameras]]
family = "synthetic"            # synthetic | file | ks | ps3eye
count = 6                       # cameras of this family (one worker process per family; default: one per device/file)
width = 640
height = 480
fps = 60.0
format = "YUYV"                 # YUYV | BGR3 | GREY | GRBG | MJPG
devices = []                    # ks / ps3eye: device names or indices
files = []                      # file family: video files
# ring_capacity = 330           # frames per camera ring (default and minimum: the window's frames + 0.5 s)

[network]
# listen = "tcp://0.0.0.0:5591" # accept remote receivers (mimir receiver) here
# server_key_file = "server.key_secret"  # the rig's secret key: mimir keys generate --out server
influence_at = "trusted-evidence" # sources at or above this trust level influence canonical time
# [[network.sources]]           # one per receiver; add with: mimir keys trust phone-left.key --source-id phone-left
# source_id = "phone-left"      # the only id this key may report as
# public_key = "..."            # 40-character Z85 key from the receiver's NAME.key; unknown keys are refused
# trust = "observe-only"        # reject | observe-only | candidate-evidence | trusted-evidence | canonical-authority
'''
