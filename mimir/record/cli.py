"""``mimir record``: the command function (wired into the ``mimir`` CLI by ``mimir_cli.app``)."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["record"]

_PLAIN_PROGRESS_S = 10.0  # without a terminal (a log file, a service), one progress line this often


def record(
    rig: Annotated[str, typer.Option("--rig", help="The running rig to record.")] = "default",
    out: Annotated[Path | None, typer.Option(
        "--out", help="Take folder to create; must not exist or be empty (default: ./record-RIG-YYYYmmdd-HHMMSS)."
    )] = None,
    duration: Annotated[float | None, typer.Option(
        "--duration", help="Seconds to record (default: until Ctrl-C, SIGTERM or the rig stops).")] = None,
    split_seconds: Annotated[float | None, typer.Option(
        "--split-seconds", help="Roll every file over each S seconds of canonical time (no item lost or doubled)."
    )] = None,
    video: Annotated[str, typer.Option(
        "--video", help="Video encoding: raw (lossless; keeps up with the default rig here), ffv1 (lossless, "
                        "0.4x the size, ~9 ms CPU per VGA frame: does not keep up with six VGA cameras on 2 cores), "
                        "h264 (lossy, small).")] = "raw",
    pre_roll: Annotated[float, typer.Option(
        "--pre-roll", help="Also record the S seconds before the command, from the reservoir (at most its window)."
    )] = 0.0,
    from_start: Annotated[bool, typer.Option(
        "--from-start", help="Record the rig from its first frame: everything its reservoir still holds, and count "
                             "what it no longer holds (how the supervisor starts a recorder with the rig).")] = False,
    repair_dir: Annotated[Path | None, typer.Option(
        "--repair", help="Do not record: rebuild the manifest of the take in DIR that a killed recorder left.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document at the end.")] = False,
) -> None:
    """Record every camera and audio source of a running rig into a take folder until stopped.

    Capture never waits for the recorder. Every frame and block the rig
    publishes is written (bit-exact, at its canonical time) or counted as
    skipped with its cause; video is dropped before audio when the disk or
    the encoder falls behind. Exit 2 for bad input (one line), 1 when the
    disk fills or a write fails (the take is closed, readable, marked
    incomplete; the rig is not affected).
    """
    if repair_dir is not None:
        _repair(repair_dir, json_out)
        return
    from mimir.config import ConfigError, check_rig_name
    from mimir.contract import RigNotRunning
    from mimir.take import TakeExists

    from .leftovers import repair_leftovers
    from .recorder import BadRecordRequest, Recorder, default_folder

    try:
        check_rig_name(rig)
    except ConfigError as exc:
        _refuse(str(exc))
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        _refuse(f"--duration {duration:g}: give a number of seconds > 0")
    folder = out if out is not None else default_folder(rig)
    try:
        recorder = Recorder(rig, folder, video=video, split_seconds=split_seconds, pre_roll_s=pre_roll,
                            from_start=from_start)
    except (BadRecordRequest, RigNotRunning, TakeExists) as exc:
        _refuse(str(exc))
    for left, manifest in repair_leftovers(folder.parent, skip=folder):
        counts = ", ".join(f"{r.source.name} {r.written:,}" for r in manifest.sources)
        typer.echo(f"mimir record: repaired {left}, left by a killed recorder ({counts})", err=True)
    # Normal priority, on purpose: at nice 5 the writer starved behind the rig's own workers on a loaded 2-core
    # machine (222 -> 31 MB/s within 20 s, then frames dropped), while at nice 0 it kept up without a camera drop
    # or an audio miss more than without a recording (docs/record.md, "Figures"). Capture is protected by being
    # a reader: nothing in the rig waits for the recorder, and the supervisor's index loop runs SCHED_FIFO.
    previous = {s: signal.signal(s, lambda *_: recorder.stop()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        recorder.start()
        _run(recorder, duration, show=not json_out)
    finally:
        result = recorder.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if json_out:
        sys.stdout.write(json.dumps(_document(result)) + "\n")
    else:
        _summary(result)
    if result.ended_by in ("disk full", "error"):
        typer.echo(f"mimir record: {result.error}; the take in {result.path} is closed, readable and marked "
                   "incomplete (manifest.json); the rig was not affected", err=True)
        raise typer.Exit(1)


def _refuse(message: str) -> None:
    typer.echo(f"mimir record: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


def _run(recorder, duration: float | None, show: bool) -> None:
    """Wait for the end (duration, a signal, the rig stopping), showing the progress line."""
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=True)
    started = time.monotonic()
    live = Live(console=console, refresh_per_second=4, transient=True) if show and console.is_terminal else None
    next_plain = started + _PLAIN_PROGRESS_S
    if live is not None:
        live.start()
    try:
        while not recorder.wait(0.25):
            if duration is not None and time.monotonic() - started >= duration:
                recorder.stop()
            if live is not None:
                live.update(_line(recorder.progress()))
            elif show and time.monotonic() >= next_plain:
                next_plain += _PLAIN_PROGRESS_S
                console.print(_line(recorder.progress()), highlight=False)
    finally:
        if live is not None:
            live.stop()


def _line(p) -> str:
    skipped = [f"{name} {sum(causes.values()):,} ({', '.join(k.replace('_', ' ') for k in causes)})"
               for name, _, _, causes in p.sources if causes]
    state = {0: "recording", 1: "finishing", 2: "done", 3: "FAILED"}[int(p.state)]
    return (f"{state} {p.seconds:7.1f} s  {p.mb_per_s:7.1f} MB/s  {p.written_bytes / 1e6:9,.0f} MB  "
            f"lag {p.lag_ms:5.0f} ms  free {p.free_bytes / 1e9:,.1f} GB  skipped: "
            + ("; ".join(skipped) if skipped else "none"))


def _document(result) -> dict:
    m = result.manifest
    return {
        "path": str(result.path), "complete": bool(m is not None and m.complete), "ended_by": result.ended_by,
        "error": result.error, "seconds": round(result.wall_s, 3), "bytes": result.bytes,
        "published": result.published, "written": result.written, "skipped": result.skipped,
        "skipped_by_cause": {led.name: led.by_cause() for led in result.ledgers},
        "staged_frames": result.staged_frames, "cpu_s": round(result.cpu_s, 3),
        "take_closed_s": round(result.take_closed_s, 3), "payload_bytes": result.payload_bytes,
        "missing": [] if m is None else [{"source": x.source, "what": x.what, "cause": x.cause} for x in m.missing],
    }


def _summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    m = result.manifest
    state = "complete" if m is not None and m.complete else "INCOMPLETE: see manifest.json"
    console = Console()
    console.print(f"{result.path}: {result.wall_s:.1f} s, {result.bytes / 1e6:,.1f} MB, ended by {result.ended_by}; "
                  f"{state}", highlight=False)
    table = Table()
    for name in ("source", "published", "written", "skipped", "by cause", "files", "MB"):
        table.add_column(name, justify="left" if name in ("source", "by cause") else "right")
    for led in result.ledgers:
        files = [f for f in (m.files if m is not None else []) if f.source == led.name and f.role in ("video", "audio")]
        table.add_row(led.name, f"{led.published:,}", f"{led.written:,}", f"{led.skipped_total:,}",
                      ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in led.by_cause().items()) or "-",
                      str(len(files)), f"{sum(f.bytes for f in files) / 1e6:,.1f}")
    console.print(table)
    for x in (m.missing if m is not None else []):
        console.print(f"  missing: {x.source or 'take'}: {x.what}: {x.cause}", highlight=False)


def _repair(folder: Path, json_out: bool) -> None:
    from mimir.take import NotATake, repair

    try:
        manifest = repair(folder)
    except NotATake as exc:
        _refuse(str(exc))
    if json_out:
        sys.stdout.write(json.dumps({"path": str(folder), "repaired": manifest.repaired, "complete": manifest.complete,
                                     "written": {r.source.name: r.written for r in manifest.sources}}) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    what = "repaired" if manifest.repaired else "already closed by its recorder; left as it was"
    console = Console()
    console.print(f"{folder}: {what}", highlight=False)
    table = Table()
    for name in ("source", "written", "skipped", "files"):
        table.add_column(name, justify="left" if name == "source" else "right")
    for r in manifest.sources:
        files = [f for f in manifest.files if f.source == r.source.name and f.role in ("video", "audio")]
        table.add_row(r.source.name, f"{r.written:,}", f"{sum(s.count for s in r.skipped):,}", str(len(files)))
    console.print(table)
