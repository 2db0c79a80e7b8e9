"""Command functions for ``mimir codebook render`` and ``mimir decode`` (``mimir bench sync`` is in :mod:`bench.cli`).

Wire them into the top-level app::

    app.add_typer(codebook_app, name="codebook")
    app.command("decode")(decode)

Exit codes: 0 on success, including "no witness found" and odd-but-readable
input (empty, short, silent, clipped, NaN/inf: a message on stderr and in the
report's warnings); 2 for unreadable input or invalid arguments.
With ``--json`` stdout holds only the JSON document.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import msgspec
import numpy as np
import soundfile as sf
import typer

from .audio_io import UnreadableAudio, inspect_audio, read_audio
from .calibration import SPEED_OF_SOUND_M_S, BandLimits, PathCalibration, parse_band, path_from_options
from .codebook import Codebook, CodebookSpec
from .emitter import WitnessEmitter
from .path_measure import pulse_of
from .receiver import StreamingReceiver
from .report import SyncReport, encode_report

__all__ = ["codebook_app", "render", "decode", "BandOption", "PathDistanceOption", "PathDelayOption",
           "SpeedOfSoundOption", "PathPulseOption", "receiver_inputs"]

codebook_app = typer.Typer(help="Active-witness codebook tools.", no_args_is_help=True)

_BLOCK_SECONDS = 1.0


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


# The optional receiver inputs of seed 003, shared by `mimir decode` and `mimir receiver`.
BandOption = Annotated[Optional[str], typer.Option(
    "--band", help="Band limits LO-HI (Hz) the witness can arrive in, e.g. 300-3400: only the witness sub-bands "
                   "inside are searched.")]
PathDistanceOption = Annotated[Optional[float], typer.Option(
    "--path-distance-m", help="Known distance from the witness speaker (m): the fit then refers to the emission.")]
PathDelayOption = Annotated[Optional[float], typer.Option(
    "--path-delay-ms", help="A fixed path delay measured once (ms; transducers, converters), added to the distance's.")]
SpeedOfSoundOption = Annotated[float, typer.Option("--speed-of-sound", help="Speed of sound (m/s) for --path-distance-m.")]
PathPulseOption = Annotated[Optional[Path], typer.Option(
    "--path-pulse", help="The speaker + microphone pulse measured once with --measure-pulse (JSON): every path is "
                         "fitted as this pulse delayed. Measure --path-delay-ms with it in place.")]


def receiver_inputs(band: str | None, distance_m: float | None, delay_ms: float | None, speed_m_s: float,
                    pulse_file: Path | None = None) -> tuple[BandLimits | None, PathCalibration | None]:
    """Parse the shared options (ValueError with one line when one is malformed)."""
    limits = parse_band(band) if band is not None else None
    return limits, path_from_options(distance_m, delay_ms, speed_m_s, None if pulse_file is None else str(pulse_file))


def _codebook(codebook_id: str, seed: int) -> Codebook:
    try:
        return Codebook(CodebookSpec(codebook_id=codebook_id, seed=seed))
    except ValueError as exc:
        raise _fail(f"invalid codebook: {exc}") from exc


@codebook_app.command("render")
def render(
    out: Annotated[Path, typer.Argument(help="Output audio file (.wav: float32; .flac: 24-bit).")],
    seconds: Annotated[float, typer.Option("--seconds", help="Length in seconds.")],
    rate: Annotated[int, typer.Option("--rate", help="Sample rate in Hz.")],
    start: Annotated[float, typer.Option("--start", help="Canonical time of the first sample (s).")] = 0.0,
    codebook_id: Annotated[str, typer.Option("--codebook-id", help="Codebook id.")] = "mimir-default",
    seed: Annotated[int, typer.Option("--seed", help="Codebook seed.")] = 0,
    level_dbfs: Annotated[float, typer.Option("--level-dbfs", help="Peak level of the witness.")] = -20.0,
) -> None:
    """Write the witness from canonical time START for SECONDS, mono: sample n is START + n / RATE."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise _fail("--seconds must be a positive number")
    if rate <= 0:
        raise _fail("--rate must be a positive integer")
    if not math.isfinite(start):
        raise _fail("--start must be finite")
    emitter = WitnessEmitter(_codebook(codebook_id, seed), rate, start, level_dbfs=level_dbfs)
    total = int(round(seconds * rate))
    subtype = "FLOAT" if out.suffix.lower() in (".wav", ".w64", ".caf", ".aiff", ".aif") else "PCM_24"
    block = np.zeros(max(1, int(_BLOCK_SECONDS * rate)), dtype=np.float32)
    try:
        with sf.SoundFile(str(out), "w", samplerate=rate, channels=1, subtype=subtype) as f:
            for at in range(0, total, block.size):
                view = block[: min(block.size, total - at)]
                emitter.fill(view, at)
                f.write(view)
    except (RuntimeError, OSError, sf.LibsndfileError) as exc:
        raise _fail(f"cannot write {out}: {exc}") from exc
    typer.echo(f"wrote {out}: {total} samples at {rate} Hz, canonical {start:g} .. {start + total / rate:g} s", err=True)


def _describe(report: SyncReport) -> str:
    fit = report.canonical_clock_fit
    h = report.health
    lines = [f"source {report.source_id!r}, codebook {report.codebook_id!r} (seed {report.seed}), "
             f"{report.nominal_rate_hz:g} Hz: {report.status}"]
    if fit.rate_hz is not None:
        ppm = (fit.rate_hz / report.nominal_rate_hz - 1.0) * 1e6
        lines.append(
            f"  local_sample = {fit.local_sample_at_epoch:.3f} + canonical_s * {fit.rate_hz:.6f}"
            f"  ({ppm:+.3f} ppm)"
        )
        lines.append(
            f"  confidence {fit.confidence:.3f}, mean |residual| {fit.mae_samples:.3f} samples, "
            f"{fit.anchor_count} anchors over canonical {fit.first_canonical_s:.1f} .. {fit.last_canonical_s:.1f} s"
        )
        path = report.response_profile.path
        if path is not None and path.first_arrival_offset_samples is not None:
            rate = report.nominal_rate_hz
            drr = "-" if path.direct_to_reverberant_db is None else f"{path.direct_to_reverberant_db:.1f} dB"
            rt60 = "-" if path.rt60_s is None else f"{path.rt60_s:.2f} s ({path.rt60_method})"
            lines.append(
                f"  path: timed on the direct path (first arrival, {path.first_arrival_snr_db:.0f} dB above the floor); "
                f"strongest path {path.strongest_minus_direct_samples:.1f} samples "
                f"({path.strongest_minus_direct_ms:.2f} ms) later, {path.direct_to_strongest_db:+.1f} dB; "
                f"DRR {drr}, RT60 {rt60}; {path.events} events"
            )
        if fit.path_delay_s:
            lines.append(f"  path calibration: {fit.path_delay_s * 1e3:.3f} ms "
                         f"({fit.path_delay_s * report.nominal_rate_hz:.2f} samples) taken out: the fit "
                         "maps canonical time to the emission")
    else:
        lines.append("  no clock fit (confidence 0)")
    lines.append(
        f"  health: {h.samples_consumed} samples, {h.proposals} proposals, {h.anchors_accepted} anchors accepted, "
        f"{h.anchors_rejected} rejected, {h.locks} lock(s), {h.relocks} relock(s), {h.discontinuities} discontinuity(ies)"
    )
    for d in report.discontinuities:
        jump = "" if d.jump_samples is None else f", jump {d.jump_samples:+.1f} samples"
        lines.append(f"  discontinuity ({d.kind}) near local sample {d.local_sample:.0f}{jump}")
    return "\n".join(lines)


def decode(
    path: Annotated[Path, typer.Argument(help="Audio file to decode (any rate; any channel count).")],
    codebook_id: Annotated[str, typer.Option("--codebook-id", help="Codebook id.")] = "mimir-default",
    seed: Annotated[int, typer.Option("--seed", help="Codebook seed.")] = 0,
    channel: Annotated[int, typer.Option("--channel", help="Channel to decode (0-based).")] = 0,
    source_id: Annotated[Optional[str], typer.Option("--source-id", help="Name for the report.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print only the JSON report on stdout.")] = False,
    band: BandOption = None,
    path_distance_m: PathDistanceOption = None,
    path_delay_ms: PathDelayOption = None,
    speed_of_sound: SpeedOfSoundOption = SPEED_OF_SOUND_M_S,
    path_pulse: PathPulseOption = None,
    measure_pulse: Annotated[Optional[Path], typer.Option(
        "--measure-pulse", help="Write the arrival's pulse (JSON, for --path-pulse): decode a recording with the "
                                "microphone at the speaker.")] = None,
) -> None:
    """Decode the witness in an audio file and print the canonical clock fit report."""
    codebook = _codebook(codebook_id, seed)
    try:
        limits, calibration = receiver_inputs(band, path_distance_m, path_delay_ms, speed_of_sound, path_pulse)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    try:
        audio = read_audio(str(path), channel)
    except UnreadableAudio as exc:
        raise _fail(f"cannot read {path}: {exc}") from exc
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    notes = inspect_audio(audio.samples, audio.rate_hz)
    try:
        receiver = StreamingReceiver(codebook, audio.rate_hz, source_id if source_id is not None else path.stem,
                                     path=calibration, band=limits)
    except ValueError as exc:  # a band that cannot hold the codebook at this rate
        raise _fail(str(exc)) from exc
    block = max(1, int(audio.rate_hz * _BLOCK_SECONDS))
    for at in range(0, audio.samples.size, block):
        receiver.feed(audio.samples[at : at + block])
    report = receiver.report()
    if measure_pulse is not None:
        try:
            pulse = pulse_of(receiver)
        except ValueError as exc:
            raise _fail(f"--measure-pulse: {exc}") from exc
        try:
            measure_pulse.write_bytes(msgspec.json.format(msgspec.json.encode(pulse)) + b"\n")
        except OSError as exc:
            raise _fail(f"cannot write {measure_pulse}: {exc.strerror or exc}") from exc
        typer.echo(f"wrote {measure_pulse}: the pulse at {pulse.rate_hz:g} Hz over {pulse.band_hz[0]:g}-"
                   f"{pulse.band_hz[1]:g} Hz", err=True)
    if not report.locked and not report.segments:
        notes.append("no witness of this codebook was found: no lock, no anchors")
    report.warnings = notes + report.warnings
    for note in report.warnings:
        typer.echo(f"note: {note}", err=True)
    if json_out:
        sys.stdout.write(encode_report(report).decode() + "\n")
    else:
        typer.echo(_describe(report))
