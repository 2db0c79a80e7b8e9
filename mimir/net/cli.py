"""Command functions for ``mimir receiver`` and ``mimir keys generate|trust`` (wired in :mod:`mimir_cli.app`).

``python -m mimir.net receiver|keys ...`` runs the same functions without the rest of Mimir's CLI.

Exit codes: 0 success; 1 (receiver) reports left unacknowledged or dropped;
2 bad arguments, unreadable input or key files (``error:`` on stderr);
3 (receiver) the listener refused us.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
import threading
from pathlib import Path
from typing import Annotated

import typer

from mimir.signals import stop_on_signals
from mimir.sync.calibration import SPEED_OF_SOUND_M_S
from mimir.sync.cli import (BandOption, PathDelayOption, PathDistanceOption, PathPulseOption, SpeedOfSoundOption,
                            receiver_inputs)

__all__ = ["keys_app", "keys_generate", "keys_trust", "receiver"]

keys_app = typer.Typer(help="CURVE key pairs for remote receivers and the rig.", no_args_is_help=True)

_ENDPOINT = re.compile(r"^tcp://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_SOURCE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _default_key(explicit: Path | None, fallback: str, what: str, hint: str) -> Path:
    path = explicit if explicit is not None else Path(fallback)
    if not path.exists():
        raise _fail(f"{what} {path} does not exist; {hint}")
    return path


def receiver(
    source_id: Annotated[str, typer.Option("--source-id", help="This receiver's name (as listed in the rig config).")],
    connect: Annotated[str, typer.Option("--connect", help="The rig's listener, tcp://HOST:PORT.")],
    input_device: Annotated[str | None, typer.Option("--input", help="Audio input device (name or index).")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Decode this audio file instead of a device.")] = None,
    codebook_id: Annotated[str, typer.Option("--codebook-id", help="Witness codebook id (the rig's).")] = "mimir-default",
    seed: Annotated[int, typer.Option("--seed", help="Codebook seed.")] = 0,
    key: Annotated[Path | None, typer.Option("--key", help="Our secret key [default: SOURCE_ID.key_secret].")] = None,
    server_key: Annotated[Path | None, typer.Option("--server-key", help="The rig's public key file [default: server.key].")] = None,
    channel: Annotated[int, typer.Option("--channel", help="Input channel to decode (0-based).")] = 0,
    rate: Annotated[int | None, typer.Option("--rate", help="Device sample rate (Hz) [default: the device's].")] = None,
    block_frames: Annotated[int, typer.Option("--block-frames", help="Frames per audio block.")] = 1024,
    fast: Annotated[bool, typer.Option("--fast", help="File: decode as fast as possible (no real-time pacing).")] = False,
    speed: Annotated[float, typer.Option("--speed", help="File: pace at SPEED x real time.")] = 1.0,
    approx_canonical_s: Annotated[float | None, typer.Option(
        "--approx-canonical-s", help="Rough canonical time of the first sample (picks the schedule repetition). "
                                     "Default: from the wall clock for --input, none for --file.")] = None,
    epoch_unix_s: Annotated[float | None, typer.Option("--epoch-unix-s", help="Canonical epoch (Unix s) for --input.")] = None,
    backlog_messages: Annotated[int, typer.Option("--backlog-messages", help="Messages kept while disconnected.")] = 1024,
    backlog_bytes: Annotated[int, typer.Option("--backlog-bytes", help="Bytes kept while disconnected.")] = 4 * 1024 * 1024,
    linger_s: Annotated[float, typer.Option("--linger-s", help="At the end, wait this long for acknowledgements.")] = 5.0,
    duration_s: Annotated[float | None, typer.Option("--duration-s", help="Stop after this many seconds.")] = None,
    fit_period_s: Annotated[float, typer.Option("--fit-period-s", help="Clock-fit report period (audio s).")] = 0.5,
    health_period_s: Annotated[float, typer.Option("--health-period-s", help="Health report period (audio s).")] = 2.0,
    response_period_s: Annotated[float, typer.Option("--response-period-s", help="Response report period (audio s).")] = 10.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the exit summary as JSON on stdout.")] = False,
    band: BandOption = None,
    path_distance_m: PathDistanceOption = None,
    path_delay_ms: PathDelayOption = None,
    speed_of_sound: SpeedOfSoundOption = SPEED_OF_SOUND_M_S,
    path_pulse: PathPulseOption = None,
) -> None:
    """Decode the witness on local audio and send authenticated timing reports to the rig (CURVE over TCP)."""
    import msgspec

    from mimir.sync.audio_io import UnreadableAudio
    from mimir.sync.witness_output import DEFAULT_EPOCH_UNIX_S

    from .audio_source import DeviceAudio, FileAudio
    from .keys import KeyFileError, load_public_key, load_secret_key
    from .receiver import ReceiverOptions, RemoteReceiver
    from .reports import ReportSchedule

    if not _SOURCE_ID.match(source_id):
        raise _fail("--source-id: 1-40 characters of letters, digits, '.', '_' or '-'")
    endpoint = _ENDPOINT.match(connect)
    if endpoint is None or not 0 < int(endpoint.group(2)) < 65536:
        raise _fail(f"--connect: expected tcp://HOST:PORT, got {connect!r}")
    if (input_device is None) == (file is None):
        raise _fail("give exactly one of --input DEVICE or --file IN.wav")
    for name, value in (("--speed", speed), ("--fit-period-s", fit_period_s), ("--health-period-s", health_period_s),
                        ("--response-period-s", response_period_s)):
        if not (math.isfinite(value) and value > 0):
            raise _fail(f"{name} must be a positive number")
    if not (math.isfinite(linger_s) and linger_s >= 0):
        raise _fail("--linger-s must be >= 0")
    if not 1 <= backlog_messages <= 4096:
        raise _fail("--backlog-messages must be in 1..4096 (the listener's receive window is 8192)")
    if backlog_bytes < 64 * 1024:
        raise _fail("--backlog-bytes must be >= 65536")
    if block_frames < 16 or channel < 0:
        raise _fail("--block-frames must be >= 16 and --channel >= 0")
    try:
        limits, calibration = receiver_inputs(band, path_distance_m, path_delay_ms, speed_of_sound, path_pulse)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    key_path = _default_key(key, f"{source_id}.key_secret", "key file",
                            f"create one with `mimir keys generate --out {source_id}` (or pass --key)")
    server_path = _default_key(server_key, "server.key", "server key file",
                               "copy the rig's server.key here (or pass --server-key)")
    try:
        client = load_secret_key(key_path)
        server_public = load_public_key(server_path)
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    audio: FileAudio | DeviceAudio
    try:
        if file is not None:
            audio = FileAudio(str(file), channel=channel, block_frames=block_frames, speed=speed, fast=fast)
        else:
            assert input_device is not None  # exactly one of --input and --file, checked above
            audio = DeviceAudio(input_device, channel=channel, rate_hz=rate, block_frames=block_frames)
            if approx_canonical_s is None:
                import time

                approx_canonical_s = time.time() - (epoch_unix_s if epoch_unix_s is not None else DEFAULT_EPOCH_UNIX_S)
    except UnreadableAudio as exc:
        raise _fail(f"cannot read {file}: {exc}") from None
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - PortAudio raises its own error types
        raise _fail(f"cannot open input {input_device!r}: {exc}") from None
    options = ReceiverOptions(
        source_id=source_id, connect=connect, codebook_id=codebook_id, seed=seed,
        approx_canonical_s=approx_canonical_s, path=calibration, band=limits,
        schedule=ReportSchedule(fit_period_s=fit_period_s, health_period_s=health_period_s,
                                response_period_s=response_period_s),
        backlog_messages=backlog_messages, backlog_bytes=backlog_bytes, linger_s=linger_s, duration_s=duration_s,
    )
    try:
        rx = RemoteReceiver(options, audio, client, server_public)
    except ValueError as exc:
        audio.close()
        raise _fail(str(exc)) from None
    with stop_on_signals(threading.Event()) as stop:
        summary = rx.run(stop)
    fit = summary.final_fit
    fit_text = (f"fit {fit['local_sample_at_epoch']:.3f} + t * {fit['rate_hz']:.6f} "
                f"(confidence {fit['confidence']:.2f})"
                if fit is not None and fit["rate_hz"] is not None else "no fit")
    typer.echo(
        f"receiver {source_id}: {summary.exit_reason}; {summary.audio_seconds:.1f} s of audio, {fit_text}; "
        f"{summary.messages_total} reports, {summary.unacknowledged} unacknowledged, "
        f"{summary.backlog_dropped_messages} dropped by the backlog, {summary.retransmits} retransmitted, "
        f"{summary.connects} connection(s), {summary.auth_failures} refused handshake(s)"
        + (f", refusals {summary.refusals}" if summary.refusals else ""), err=True)
    if json_out:
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
        sys.stdout.flush()
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


@keys_app.callback()
def _keys_group() -> None:
    """CURVE key pairs for remote receivers and the rig."""


@keys_app.command("generate")
def keys_generate(
    out: Annotated[Path, typer.Option("--out", help="Writes OUT.key_secret (mode 0600) and OUT.key.")],
    force: Annotated[bool, typer.Option("--force", help="Replace existing key files.")] = False,
) -> None:
    """Create a CURVE key pair: keep OUT.key_secret on this machine, give OUT.key to the rig."""
    from .keys import KeyFileError, load_public_key, write_keypair

    try:
        public_path, secret_path = write_keypair(out, overwrite=force)
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wrote {secret_path} (secret, mode 600) and {public_path} (public)", err=True)
    typer.echo(load_public_key(public_path))


def _toml_entry(source_id: str, public_key: str, trust: str) -> str:
    return (f'\n[[network.sources]]\nsource_id = "{source_id}"\npublic_key = "{public_key}"\n'
            f'trust = "{trust}"\n')


@keys_app.command("trust")
def keys_trust(
    public_key_file: Annotated[Path, typer.Argument(help="The receiver's public key file (NAME.key).")],
    source_id: Annotated[str, typer.Option("--source-id", help="The only source id this key may report as.")],
    trust: Annotated[str, typer.Option("--trust", help="reject | observe-only | candidate-evidence | "
                                                       "trusted-evidence | canonical-authority")] = "observe-only",
    config: Annotated[Path | None, typer.Option("--config", help="Append the entry to this rig config.")] = None,
) -> None:
    """Print (or append to --config) the [[network.sources]] entry that trusts a receiver's key."""
    from mimir.config import ConfigError, parse_config

    from .keys import KeyFileError, load_public_key
    from .trust import TRUST_LEVELS

    if trust not in TRUST_LEVELS:
        raise _fail(f"--trust: {trust!r} is not one of {', '.join(TRUST_LEVELS)}")
    if not _SOURCE_ID.match(source_id):
        raise _fail("--source-id: 1-40 characters of letters, digits, '.', '_' or '-'")
    try:
        public_key = load_public_key(public_key_file)
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    entry = _toml_entry(source_id, public_key, trust)
    if config is None:
        sys.stdout.write(entry.lstrip("\n"))
        return
    try:
        text = config.read_text()
    except OSError as exc:
        raise _fail(f"cannot read {config}: {exc.strerror}") from None
    try:
        current = parse_config(text, source=str(config))
    except ConfigError as exc:
        raise _fail(f"{exc} (fix it before adding sources)") from None
    for s in current.network.sources:
        if s.source_id == source_id:
            raise _fail(f"{config} already lists source {source_id!r}; edit its entry instead")
        if s.public_key == public_key:
            raise _fail(f"{config} already trusts this key as {s.source_id!r}; a key maps to one source id")
    new_text = text + ("" if text.endswith("\n") or not text else "\n") + entry
    try:
        parse_config(new_text, source=str(config))
    except ConfigError as exc:
        raise _fail(f"appending would make {config} invalid ({exc}); add the entry by hand:\n{entry}") from None
    mode = config.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(dir=str(config.parent), prefix=f".{config.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(new_text)
        os.chmod(tmp, mode)
        os.replace(tmp, config)
    except OSError as exc:
        os.unlink(tmp)
        raise _fail(f"cannot write {config}: {exc.strerror}") from None
    typer.echo(f"{config}: added source {source_id!r} (trust {trust}); restart the supervisor to apply", err=True)
