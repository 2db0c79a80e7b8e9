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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

import msgspec

# The receiver's own schemas, embedded as they are (mimir.sync below the worker module imports nothing of the rig).
from mimir.sync.calibration import BandLimits, PathCalibration
from mimir.sync.witness_output import DEFAULT_EPOCH_UNIX_S

__all__ = [
    "CameraFamilyConfig", "FeaturesConfig", "AudioConfig", "AudioChannelConfig", "ChannelRole", "SyncConfig", "SupervisionConfig", "ReservoirConfig",
    "NetworkConfig", "RemoteSourceConfig", "RecordConfig", "RigConfig", "ConfigError", "load_config", "parse_config",
    "default_rig", "EXAMPLE_TOML", "DEFAULT_EPOCH_UNIX_S", "RIG_NAME_PATTERN", "check_rig_name", "Limits", "LIMITS",
    "FAMILY_FORMATS", "PS3EYE_MODES", "check_fields",
]


class Limits(msgspec.Struct, frozen=True):
    """What any rig can run: the bounds every number in a config is checked against (one place).

    The config's Structs carry them as ``msgspec.Meta`` constraints (so NaN,
    infinities and absurd values are refused while parsing, naming the field);
    :mod:`mimir.validate` checks what needs two fields or the file system;
    the audio worker reads its block and rate limits from here too.
    """

    max_config_bytes: int = 1 << 20          # a config file is text; this refuses /dev/zero and friends
    min_frame_width: int = 32                # smaller frames cannot carry the synthetic stamp (192 bits)
    min_frame_height: int = 24
    max_frame_width: int = 7680              # 8K UHD
    max_frame_height: int = 4320
    max_fps: float = 1000.0
    min_fps: float = 0.5
    max_cameras_per_family: int = 6
    min_audio_rate_hz: int = 1000
    max_audio_rate_hz: int = 768_000
    min_block_frames: int = 16               # below this a Python callback cannot keep up at any common rate
    max_block_frames: int = 8192
    max_audio_channels: int = 64
    min_window_s: float = 0.1
    max_window_s: float = 3600.0
    max_capacity_margin: float = 10.0        # keeps the reservoir below 2**32 samples at every other maximum
    max_ring_capacity: int = 1 << 24
    min_heartbeat_timeout_s: float = 0.5     # shorter kills healthy workers at the first scheduling hiccup
    heartbeat_periods: int = 3               # and at least this many of a worker's slowest publish period
    max_seconds: float = 86_400.0            # any other duration in a config
    max_restarts: int = 1000
    max_remote_sources: int = 32
    max_epoch_unix_s: float = 4_102_444_800.0  # 2100-01-01


LIMITS = Limits()
RIG_NAME_PATTERN = r"^[A-Za-z0-9_.]{1,16}$"

# Pixel formats each camera family can put in a ring slot. MJPG has no fixed frame size, so no family
# does: ks decodes a camera's MJPG into BGR3. (The families in workers/camera enforce the same; the tests
# compare both tables.)
FAMILY_FORMATS: dict[str, tuple[str, ...]] = {
    "synthetic": ("YUYV", "BGR3", "GREY", "GRBG"),
    "file": ("BGR3",),
    "ks": ("YUYV", "BGR3", "GREY", "GRBG"),
    "ps3eye": ("GRBG",),
}
# The PS3 Eye's modes, (width, height) -> frame rates (workers/camera/ps3eye/registers.py programs them).
PS3EYE_MODES: dict[tuple[int, int], tuple[int, ...]] = {
    (640, 480): (15, 30, 40, 50, 60, 75),
    (320, 240): (30, 37, 40, 50, 60, 75, 90, 100, 125, 137, 150, 187),
}

L = LIMITS
RigName = Annotated[str, msgspec.Meta(pattern=RIG_NAME_PATTERN)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=L.max_seconds)]   # finite: NaN and inf fail the bounds
Path_ = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
TrustLevel = Literal["reject", "observe-only", "candidate-evidence", "trusted-evidence", "canonical-authority"]


class CameraFamilyConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One camera family: one worker process capturing ``count`` cameras of that family."""

    family: Literal["synthetic", "file", "ks", "ps3eye"]
    count: Annotated[int, msgspec.Meta(ge=1, le=L.max_cameras_per_family)] | None = None  # None: one per device/file
    width: Annotated[int, msgspec.Meta(ge=L.min_frame_width, le=L.max_frame_width)] = 640
    height: Annotated[int, msgspec.Meta(ge=L.min_frame_height, le=L.max_frame_height)] = 480
    fps: Annotated[float, msgspec.Meta(ge=L.min_fps, le=L.max_fps)] = 60.0
    format: Literal["YUYV", "BGR3", "GREY", "GRBG", "MJPG"] = "YUYV"
    # device names/indices (ks, ps3eye; synthetic: indices); empty = the first `count` found
    devices: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=256)]],
                       msgspec.Meta(max_length=L.max_cameras_per_family)] = []
    files: Annotated[list[Path_], msgspec.Meta(max_length=L.max_cameras_per_family)] = []  # video files (file family)
    # frames per camera ring; None: the reservoir window's worth
    ring_capacity: Annotated[int, msgspec.Meta(ge=1, le=L.max_ring_capacity)] | None = None


ChannelRole = Literal["reference", "microphone", "line", "unused"]


class AudioChannelConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One input of the audio interface: its 0-based index as the driver presents it, a name, a role.

    ``reference``: the electrical loopback that defines canonical time (at
    most one); ``microphone`` and ``line``: sources placed on that time;
    ``unused``: not captured.
    """

    index: Annotated[int, msgspec.Meta(ge=0, lt=L.max_audio_channels)]
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9 _.:+()/-]{1,32}$")]
    role: ChannelRole
    # a known acoustic path (speaker to this microphone): its fit then refers to the emission, not the arrival
    path: PathCalibration | None = None


class AudioConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The audio interface. Which inputs are captured, named and with which role, comes from (first wins):

    ``channel_map`` (one :class:`AudioChannelConfig` per input), ``preset`` (a
    layout from :mod:`mimir.interfaces`, by sample rate), or ``channels`` (the
    first N inputs, roles unknown: the reference is found, see
    :mod:`mimir.supervisor.reference`; 8 when none of the three is given).
    """

    backend: Literal["synthetic", "sounddevice", "file"] = "synthetic"
    host_api: Literal["asio", "coreaudio", "wasapi", "jack", "alsa"] | None = None
    device: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    rate_hz: Annotated[int, msgspec.Meta(ge=L.min_audio_rate_hz, le=L.max_audio_rate_hz)] = 48_000
    block_frames: Annotated[int, msgspec.Meta(ge=L.min_block_frames, le=L.max_block_frames)] = 64
    channels: Annotated[int, msgspec.Meta(ge=1, le=L.max_audio_channels)] | None = None  # None: the map's, or 8
    preset: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9-]{1,40}$")] | None = None  # mimir.interfaces.PRESETS
    channel_map: Annotated[list[AudioChannelConfig], msgspec.Meta(max_length=L.max_audio_channels)] = []
    output: Literal["passthrough", "witness", "silence"] = "witness"
    file: Path_ | None = None
    ring_seconds: Annotated[float, msgspec.Meta(gt=0, le=L.max_window_s)] | None = None  # None: the reservoir window
    band: BandLimits | None = None   # where the witness can arrive (Hz); checked against the codebook at start
    # synthetic backend: what the inputs hear, and which device input is the electrical loopback (the others are
    # microphones in a room: "room" pure delays, "reverb-room" an image-source studio, RT60 0.45 s)
    synthetic_signal: Literal["room", "reverb-room"] = "reverb-room"
    synthetic_loopback_input: Annotated[int, msgspec.Meta(ge=0, lt=L.max_audio_channels)] = 0




class SyncConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    codebook_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:+-]{1,64}$")] = "mimir-default"
    seed: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] = 0   # what the remote fit messages carry
    epoch_unix_s: Annotated[float, msgspec.Meta(ge=0, le=L.max_epoch_unix_s)] = DEFAULT_EPOCH_UNIX_S
    level_dbfs: Annotated[float, msgspec.Meta(ge=-120.0, le=0.0)] = -20.0
    # What defines canonical time: "local" (the local reference channel) or the source_id of one
    # [[network.sources]] entry with trust = "canonical-authority" (its time transfer; falls back to local)
    authority: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,40}$")] = "local"


class ReservoirConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    window_s: Annotated[float, msgspec.Meta(ge=L.min_window_s, le=L.max_window_s)] = 5.0
    capacity_margin: Annotated[float, msgspec.Meta(ge=1.0, le=L.max_capacity_margin)] = 1.5


class SupervisionConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    heartbeat_timeout_s: Annotated[float, msgspec.Meta(ge=L.min_heartbeat_timeout_s, le=L.max_seconds)] = 2.0
    restart_backoff_s: Seconds = 0.5
    restart_backoff_max_s: Seconds = 10.0
    max_restarts: Annotated[int, msgspec.Meta(ge=0, le=L.max_restarts)] = 5
    restart_window_s: Seconds = 60.0


class RemoteSourceConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One remote receiver: its CURVE public key (Z85, 40 characters) may report only as ``source_id``."""

    source_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]  # e.g. "phone-left"
    public_key: Annotated[str, msgspec.Meta(min_length=40, max_length=40)]
    trust: TrustLevel = "observe-only"


class FeaturesConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Camera features (:mod:`mimir.gpu.features`): a producer worker whose samples the supervisor indexes.

    The ``features`` worker reads the camera rings, computes motion features
    per frame (CPU NumPy or a CUDA kernel, the same definition) and publishes
    them through its own ring; the supervisor places each on its frame's
    canonical time (see docs/gpu.md, "The feature producer").
    """

    enabled: bool = False
    device: Literal["cpu", "cuda", "auto"] = "auto"  # auto: CUDA where CuPy finds a device, else the CPU
    cameras: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]],
                       msgspec.Meta(max_length=16)] = []  # camera sources ("cam.synthetic.0"); empty = every camera
    changed_threshold: Annotated[int, msgspec.Meta(ge=1, le=255)] = 16  # luma levels a pixel must change by


class RecordConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The rig records itself from its first frame (`mimir record --from-start`, docs/record.md).

    The supervisor starts the recorder before any worker and waits for it;
    one take folder per rig start, ``<out>/<rig>-YYYYmmdd-HHMMSS``.
    """

    out: Path_ = "takes"
    video: Literal["raw", "ffv1", "h264"] = "raw"
    split_seconds: Seconds | None = None


class NetworkConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The listener for remote receivers (``mimir.net.RemoteListener``); unknown keys are always refused."""

    listen: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None  # e.g. "tcp://0.0.0.0:5591"
    server_key_file: Path_ | None = None  # the rig's secret key (``mimir keys generate --out server``)
    influence_at: TrustLevel = "trusted-evidence"  # sources at or above this level influence canonical time
    # Per-source bounds (mimir.net): frames read a second (a receiver sends about 10), and event claims stored
    # a second (about 7: an anchor per witness event and two fits); over them is refused and counted.
    max_messages_per_s: Annotated[float, msgspec.Meta(gt=0, le=1e5)] = 200.0
    max_claims_per_s: Annotated[float, msgspec.Meta(gt=0, le=1e4)] = 20.0
    # A remote fit older than this (by the listener's clock) stops influencing canonical time: a selected
    # authority that falls silent this long is dropped and the local reference rules again.
    max_fit_age_s: Annotated[float, msgspec.Meta(ge=1.0, le=3600.0)] = 10.0
    time_probe_interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=60.0)] = 0.5  # time-transfer probes per source
    sources: Annotated[list[RemoteSourceConfig], msgspec.Meta(max_length=L.max_remote_sources)] = []


class RigConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rig: RigName = "default"
    cameras: Annotated[list[CameraFamilyConfig], msgspec.Meta(max_length=len(FAMILY_FORMATS))] = []  # one per family
    audio: AudioConfig | None = None
    reservoir: ReservoirConfig = msgspec.field(default_factory=ReservoirConfig)
    sync: SyncConfig = msgspec.field(default_factory=SyncConfig)
    supervision: SupervisionConfig = msgspec.field(default_factory=SupervisionConfig)
    network: NetworkConfig = msgspec.field(default_factory=NetworkConfig)
    features: FeaturesConfig = msgspec.field(default_factory=FeaturesConfig)
    record: RecordConfig | None = None  # a [record] section: the supervisor records the rig (docs/record.md)


class ConfigError(ValueError):
    """A config file is unreadable or invalid. The message names the field, what it expects and what it found."""


_PATH_RE = re.compile(r" - at `(\$[^`]*)`$")
_STEP_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _value_at(document: object, path: str) -> object:
    """The value at msgspec error ``path`` (``$.cameras[0].fps``) of ``document``, ``"<missing>"`` if none."""
    node = document
    for key, index in _STEP_RE.findall(path[1:]):
        if key and isinstance(node, Mapping) and key in node:
            node = node[key]
        elif not key and isinstance(node, Sequence) and int(index) < len(node):
            node = node[int(index)]
        else:
            return "<missing>"
    return node


def parse_config(text: str, *, source: str = "<config>") -> RigConfig:
    """Parse and validate TOML text; raise :class:`ConfigError` (one line, naming the field) on any problem.

    This checks each field on its own (types, bounds, names); :func:`mimir.validate.validate_rig`
    checks what needs several fields or the file system (``plan_rig`` runs it).
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {_one_line(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid TOML: nested too deeply") from None
    return _convert(document, source)


def check_fields(config: RigConfig, *, source: str = "<config>") -> RigConfig:
    """Check a config built in code against the same field bounds a parsed one meets; return it.

    (msgspec checks ``Meta`` constraints only while decoding, not when a Struct
    is constructed.) :class:`ConfigError`, one line naming the field.
    """
    _convert(msgspec.to_builtins(config), source)
    return config


def _convert(document: object, source: str) -> RigConfig:
    try:
        return msgspec.convert(document, RigConfig)
    except msgspec.ValidationError as exc:
        message = _one_line(exc)
        match = _PATH_RE.search(message)
        if not match:
            raise ConfigError(f"{source}: {message}") from None
        path = match.group(1)
        problem = message[: match.start()]
        field = path.removeprefix("$").lstrip(".") or "(top level)"
        found = _value_at(document, path)
        if problem.startswith("Object contains unknown field"):
            raise ConfigError(f"{source}: {problem} in `{field}`; `mimir config example` lists every option") from None
        hint = _HINTS.get(re.sub(r"\[\d+\]", "[]", field), "")
        raise ConfigError(f"{source}: field `{field}`: {problem}; found {_short(found)}{hint}") from None


_HINTS = {
    "cameras": " (one [[cameras]] entry per family; `count` sets how many cameras it has)",
    "rig": " (1-16 letters, digits, '_' and '.'; it names every shared-memory object)",
    "network.sources[].source_id": " (1-40 letters, digits, '_', '.' and '-')",
}


def load_config(path: str | Path) -> RigConfig:
    """Read and parse a config file: UTF-8 TOML of at most ``LIMITS.max_config_bytes``."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(L.max_config_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    if len(raw) > L.max_config_bytes:
        raise ConfigError(f"{path}: larger than {L.max_config_bytes // 1024} KiB; is it a rig config (TOML)?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); "
                          "save the config as UTF-8") from None
    return parse_config(text, source=str(path))


def check_rig_name(name: str) -> str:
    """``name`` if it is a valid rig name (1-16 letters, digits, ``_`` and ``.``); :class:`ConfigError` otherwise."""
    if not isinstance(name, str) or not re.match(RIG_NAME_PATTERN, name):
        raise ConfigError(f"rig name {_short(name)} is not valid: use 1-16 letters, digits, '_' and '.'")
    return name


def _one_line(value: object) -> str:
    """``str(value)`` (an exception's message, a repr) on one line: whitespace runs become one space."""
    return " ".join(str(value).split())


def _short(value: object, limit: int = 80) -> str:
    text = _one_line(repr(value)) if not isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
authority = "local"             # what defines canonical time: local (the reference channel) or a source_id
                                # of [[network.sources]] with trust = "canonical-authority" (falls back to local)

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
channels = 8                    # the first N inputs (roles unknown: the reference channel is found)
# preset = "scarlett-solo-4th"  # or an interface's layout by rate (mimir.interfaces; `mimir config presets`)
output = "witness"              # passthrough | witness | silence
# file = "take.wav"             # file backend
# ring_seconds = 5.0            # audio kept in the ring (default and minimum: the reservoir window)
# band = { low_hz = 400.0, high_hz = 7000.0 }  # where the witness can arrive; must hold 2 of its 8 sub-bands
synthetic_signal = "reverb-room" # synthetic backend: room (pure delays) | reverb-room (image-source studio)
synthetic_loopback_input = 0    # synthetic backend: the input wired to the output; the others are microphones
# [[audio.channel_map]]         # or each input: 0-based index, name, role; wins over preset and channels
# index = 2
# name = "Loopback 1"
# role = "reference"            # reference (at most one) | microphone | line | unused (not captured)
# path = { distance_m = 3.2 }   # a microphone's known path (also delay_s, speed_of_sound_m_s): fit at emission
#                                 and pulse = the JSON `mimir decode DRY.wav --measure-pulse` writes

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

[features]
enabled = false                 # camera motion features into the reservoir (a producer worker, see docs/gpu.md)
device = "auto"                 # cpu | cuda | auto (CUDA where CuPy finds a device)
cameras = []                    # camera sources, e.g. ["cam.synthetic.0"]; empty = every camera
changed_threshold = 16          # luma levels a pixel must change by to count as changed

# [record]                      # record the rig from its first frame (mimir record --from-start, docs/record.md)
# out = "takes"                 # one take folder per rig start: takes/<rig>-YYYYmmdd-HHMMSS
# video = "raw"                 # raw (lossless; keeps up with the default rig) | ffv1 (lossless, smaller) | h264
# split_seconds = 60.0          # roll every file over each N seconds of canonical time (default: no splitting)

[network]
# listen = "tcp://0.0.0.0:5591" # accept remote receivers (mimir receiver) here
# server_key_file = "server.key_secret"  # the rig's secret key: mimir keys generate --out server
influence_at = "trusted-evidence" # sources at or above this trust level influence canonical time
max_messages_per_s = 200.0      # per source: reports read a second (more are refused, counted, sent again)
max_claims_per_s = 20.0         # per source: anchors and fits stored a second (more are refused and counted)
max_fit_age_s = 10.0            # a remote fit older than this stops influencing time (an authority falls back)
time_probe_interval_s = 0.5     # time-transfer probes to each source (docs/net.md, section 3a)
# [[network.sources]]           # one per receiver; add with: mimir keys trust phone-left.key --source-id phone-left
# source_id = "phone-left"      # the only id this key may report as
# public_key = "..."            # 40-character Z85 key from the receiver's NAME.key; unknown keys are refused
# trust = "observe-only"        # reject | observe-only | candidate-evidence | trusted-evidence | canonical-authority
'''
