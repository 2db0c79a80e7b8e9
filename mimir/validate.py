"""Everything a rig config must satisfy before anything starts: the checks that need several fields or files.

Where validation lives (one answer)
    * :mod:`mimir.config`: each field on its own, while parsing. Types,
      names, and the bounds of :data:`mimir.config.LIMITS` as ``msgspec.Meta``
      constraints, so NaN, infinities and absurd numbers never get further.
    * here, :func:`validate_rig`: what needs two fields, the families' rules
      the contract knows (:data:`~mimir.config.FAMILY_FORMATS`,
      :data:`~mimir.config.PS3EYE_MODES`), and the files a rig opens (videos,
      WAV files, the server key). :func:`mimir.topology.plan_rig` runs it first,
      so ``mimir-supervisor start`` refuses a bad config before any process or
      shared-memory object exists.
    * :mod:`mimir.topology`: what the derivation itself finds (ring capacities
      below the window, cameras over :data:`~mimir.topology.MAX_CAMERAS`).
    * the workers: only what needs the device (is this camera plugged in?). A
      worker refusing its spec at start exits 2 with one line, and the
      supervisor gives up on it at once with that line (no restart loop).

Every problem is a :class:`~mimir.config.ConfigError` whose message is one
line naming the field, what it expects and what to change. The first problem
found is reported.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from mimir.config import (
    FAMILY_FORMATS, LIMITS, PS3EYE_MODES, AudioConfig, CameraFamilyConfig, ConfigError, RigConfig, check_fields,
)

__all__ = ["validate_rig", "ConfigError"]

_FPS_TOLERANCE = 0.005  # the camera worker's own tolerance between the fps asked for and a file's


def validate_rig(config: RigConfig) -> None:
    """Raise :class:`ConfigError` (one line) for the first thing in ``config`` that cannot run; see the module doc."""
    check_fields(config)  # a config built in code meets the same bounds as a parsed one
    for i, cam in enumerate(config.cameras):
        _camera(f"cameras[{i}]", cam)
    if config.audio is not None:
        _audio(config.audio)
        _witness_paths(config)
    _supervision(config)
    _network(config)


# ---- cameras ---------------------------------------------------------------------------------------------------
def _camera(where: str, cam: CameraFamilyConfig) -> None:
    where = f"{where} ({cam.family})"
    if cam.family == "file":  # the files decide the mode: check them first, the message says what to set
        if cam.devices:
            raise ConfigError(f"{where}.devices: the file family opens `files`, not devices")
        if cam.count is None or cam.count == len(cam.files):  # else the contract says "one file per camera"
            for j, name in enumerate(cam.files):
                _video_file(f"{where}.files[{j}]", name, cam)  # size, rate and format (BGR3): the file's own
        return
    formats = FAMILY_FORMATS[cam.family]
    if cam.format not in formats:
        why = ("MJPG frames have no fixed size, so they cannot land in a ring slot" if cam.format == "MJPG"
               else f"the {cam.family} family cannot deliver {cam.format}")
        extra = "; a ks camera's MJPG is decoded to BGR3" if cam.format == "MJPG" and cam.family == "ks" else ""
        raise ConfigError(f"{where}.format: {why}{extra}; use one of {', '.join(formats)}")
    if cam.format == "YUYV" and cam.width % 2:
        raise ConfigError(f"{where}.width: YUYV packs two pixels per 4 bytes, so the width must be even "
                          f"(got {cam.width})")
    if len(set(cam.devices)) != len(cam.devices):
        raise ConfigError(f"{where}.devices: a device is listed twice ({', '.join(cam.devices)})")
    if cam.family == "synthetic":
        bad = [d for d in cam.devices if not (d.isascii() and d.isdigit())]
        if bad:
            raise ConfigError(f"{where}.devices: synthetic devices are indices (0, 1, ...); got {bad[0]!r}")
    elif cam.family == "ps3eye":
        rates = PS3EYE_MODES.get((cam.width, cam.height))
        if rates is None or cam.fps not in rates:
            modes = "; ".join(f"{w}x{h} at {'/'.join(map(str, r))} fps" for (w, h), r in PS3EYE_MODES.items())
            raise ConfigError(f"{where}: the PS3 Eye has no mode {cam.width}x{cam.height} at {cam.fps:g} fps; "
                              f"its modes: {modes}")


def _readable_file(where: str, name: str) -> Path:
    path = Path(name)
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"{where}: {name}: {exc.strerror or 'cannot be read'}") from None
    if not path.is_file():
        raise ConfigError(f"{where}: {name} is not a regular file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{where}: {name} is not readable by this user")
    if st.st_size == 0:
        raise ConfigError(f"{where}: {name} is empty")
    return path


def _video_file(where: str, name: str, cam: CameraFamilyConfig) -> None:
    """The file family replays a video at its own size and rate (as BGR3): the config must ask for exactly that.

    Read the way the camera worker reads it (PyAV: the first video stream's codec size, its average rate or
    else FFmpeg's guess), so both agree on what the file is.
    """
    path = _readable_file(where, name)
    import av  # only rigs with video files pay for the import

    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise ConfigError(f"{where}: {name} has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 0.0
    except (OSError, av.error.FFmpegError) as exc:
        raise ConfigError(f"{where}: {name} is not a video FFmpeg can decode ({' '.join(str(exc).split())})") \
            from None
    if width <= 0 or height <= 0 or not (math.isfinite(fps) and fps > 0):
        raise ConfigError(f"{where}: {name} reports {width}x{height} at {fps:g} fps; it cannot be replayed")
    if (width, height) != (cam.width, cam.height) or abs(fps - cam.fps) > _FPS_TOLERANCE * cam.fps \
            or cam.format != "BGR3":
        raise ConfigError(f"{where}: {name} is {width}x{height} at {fps:g} fps and is replayed as it is; set "
                          f"width = {width}, height = {height}, fps = {fps:g}, format = \"BGR3\"")


# ---- audio -----------------------------------------------------------------------------------------------------
def _audio(a: AudioConfig) -> None:
    from mimir.interfaces import audio_inputs

    inputs = audio_inputs(a)  # the channel map, preset or count: one captured input each
    if a.host_api is not None and a.backend != "sounddevice":
        raise ConfigError(f"audio.host_api applies to backend = \"sounddevice\" only (backend is {a.backend!r})")
    if a.device is not None and a.backend != "sounddevice":
        raise ConfigError(f"audio.device applies to backend = \"sounddevice\" only (backend is {a.backend!r})")
    if a.backend != "file":
        if a.file is not None:
            raise ConfigError(f"audio.file applies to backend = \"file\" only (backend is {a.backend!r})")
        return
    if a.file is None:
        raise ConfigError("audio.file: backend = \"file\" needs file = \"PATH\" (a WAV or FLAC file)")
    path = _readable_file("audio.file", a.file)
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception as exc:  # noqa: BLE001 - libsndfile reports unreadable formats as several error types
        raise ConfigError(f"audio.file: {a.file} is not audio libsndfile can read ({' '.join(str(exc).split())}); "
                          "use a WAV or FLAC file") from None
    if int(info.samplerate) != a.rate_hz:
        raise ConfigError(f"audio.file: {a.file} is {int(info.samplerate)} Hz but audio.rate_hz = {a.rate_hz}; "
                          f"set rate_hz = {int(info.samplerate)} (files are played at their own rate)")
    highest = max(i.device_index for i in inputs)
    if highest >= int(info.channels) and not (a.channel_map or a.preset):
        raise ConfigError(f"audio.channels = {len(inputs)} but {a.file} has {int(info.channels)}; "
                          f"set channels = {int(info.channels)} or fewer")
    if highest >= int(info.channels):
        raise ConfigError(f"audio: input {highest} is captured but {a.file} has {int(info.channels)} channels "
                          f"(0..{int(info.channels) - 1}); capture {int(info.channels)} or fewer")


def _witness_paths(config: RigConfig) -> None:
    """Band limits that can hold the codebook, path calibrations within their bounds."""
    from mimir.sync.codebook import CodebookSpec

    a = config.audio
    assert a is not None
    if a.band is not None:
        try:
            a.band.validate(CodebookSpec(codebook_id=config.sync.codebook_id, seed=config.sync.seed), a.rate_hz)
        except ValueError as exc:
            raise ConfigError(f"audio.band: {exc}; widen it or remove it") from None
    for entry in a.channel_map:
        if entry.path is None:
            continue
        try:
            entry.path.validate()
            if entry.path.pulse is not None:
                entry.path.pulse.check_fits(CodebookSpec(codebook_id=config.sync.codebook_id, seed=config.sync.seed),
                                            a.rate_hz, a.band)
        except ValueError as exc:
            raise ConfigError(f"audio.channel_map (input {entry.index}, {entry.name!r}).path: {exc}") from None
        if entry.role == "reference":
            raise ConfigError(f"audio.channel_map (input {entry.index}, {entry.name!r}): the reference is the "
                              "electrical loopback and has no acoustic path; remove its path")


# ---- supervision -----------------------------------------------------------------------------------------------
def _supervision(config: RigConfig) -> None:
    s = config.supervision
    if s.restart_backoff_max_s < s.restart_backoff_s:
        raise ConfigError(f"supervision.restart_backoff_max_s = {s.restart_backoff_max_s:g} is below "
                          f"restart_backoff_s = {s.restart_backoff_s:g}; the backoff starts there and doubles up "
                          "to the maximum")
    # A worker's heartbeat is its rings' newest publish: the slowest stream sets how long silence is normal.
    periods = [(1.0 / c.fps, f"cameras ({c.family}) at {c.fps:g} fps") for c in config.cameras]
    if config.audio is not None:
        periods.append((config.audio.block_frames / config.audio.rate_hz, "audio blocks"))
    if not periods:
        return
    period_s, what = max(periods)
    need_s = LIMITS.heartbeat_periods * period_s
    if s.heartbeat_timeout_s < need_s:
        raise ConfigError(f"supervision.heartbeat_timeout_s = {s.heartbeat_timeout_s:g} s is shorter than "
                          f"{LIMITS.heartbeat_periods} publish periods of the {what} ({need_s:.3g} s): healthy "
                          f"workers would be killed; raise it to at least {need_s:.3g}")


# ---- network ---------------------------------------------------------------------------------------------------
def _network(config: RigConfig) -> None:
    net = config.network
    authority = config.sync.authority
    if authority != "local":
        source = next((s for s in net.sources if s.source_id == authority), None)
        if source is None:
            raise ConfigError(f"sync.authority = {authority!r} is not a [[network.sources]] source_id; name one, "
                              "or \"local\" for the local reference channel")
        if source.trust != "canonical-authority":
            raise ConfigError(f"sync.authority = {authority!r} has trust = {source.trust!r}; only a source with "
                              "trust = \"canonical-authority\" may define canonical time")
        if not net.listen:
            raise ConfigError(f"sync.authority = {authority!r} needs network.listen: the rig hears its sources there")
    if not net.listen and not net.sources:
        return
    from mimir.net.listener import check_network  # imports pyzmq: only rigs with a [network] pay for it

    check_network(net)
