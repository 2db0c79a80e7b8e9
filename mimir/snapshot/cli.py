"""``mimir snapshot``: the command function (wired into the ``mimir`` CLI by ``mimir_cli.app``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["snapshot"]


def snapshot(
    rig: Annotated[str, typer.Option("--rig", help="The running rig to read.")] = "default",
    seconds: Annotated[float | None, typer.Option(
        "--seconds", help="Seconds to save, ending now (default: the whole reservoir window).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Take folder to create; must not exist or be empty (default: ./snapshot-RIG-YYYYmmdd-HHMMSS)."
    )] = None,
    video: Annotated[str, typer.Option(
        "--video", help="Video encoding: raw (lossless, keeps up), ffv1 (lossless, smaller, ~9 ms CPU per VGA "
                        "frame), h264 (lossy).")] = "raw",
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Save the last N seconds of every camera and audio source of a running rig as a take folder.

    The rig keeps running at full rate: the snapshot only reads. Exit 2 for
    bad input (N beyond the window, no such rig, OUT not empty), 1 when the
    disk fills (the partial take is closed, readable and marked incomplete).
    """
    from mimir.contract import RigNotRunning
    from mimir.process_control import lower_priority
    from mimir.snapshot import BadSnapshotRequest, default_folder, take_snapshot
    from mimir.take import CameraSource, DiskFull, TakeExists

    lower_priority()  # capture first: the snapshot has the window's headroom of slack, capture has none
    folder = out if out is not None else default_folder(rig)
    progress = None if json_out else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        result = take_snapshot(rig, seconds, folder, video, progress=progress)
    except (BadSnapshotRequest, RigNotRunning, TakeExists) as exc:
        typer.echo(f"mimir snapshot: {exc}", err=True)
        raise typer.Exit(2) from None
    except DiskFull as exc:
        # Exit 1, not 2: the request was valid; the machine ran out of disk. The rig never noticed.
        typer.echo(f"mimir snapshot: {exc}; the partial take in {folder} is readable and marked incomplete "
                   "(manifest.json); the rig was not affected", err=True)
        raise typer.Exit(1) from None
    m = result.manifest
    if json_out:
        sys.stdout.write(json.dumps({
            "path": str(result.path), "complete": m.complete, "span_ns": list(result.span_ns),
            "written": result.written, "lost": result.lost, "staged_frames": result.staged_frames,
            "wall_s": round(result.wall_s, 3), "bytes": result.bytes,
            "missing": [{"source": x.source, "what": x.what, "cause": x.cause} for x in m.missing],
        }) + "\n")
        return
    t0, t1 = result.span_ns
    typer.echo(f"{result.path}: {(t1 - t0) / 1e9:g} s of rig {rig!r} (canonical {t0 / 1e9:.3f} .. {t1 / 1e9:.3f} s), "
               f"{result.bytes / 1e6:,.1f} MB in {result.wall_s:.2f} s; "
               + ("complete" if m.complete else "INCOMPLETE: see manifest.json"))
    for record in m.sources:
        name = record.source.name
        unit = "frames" if isinstance(record.source, CameraSource) else "blocks"
        segments = len(record.clock_segments)
        typer.echo(f"  {name:24s} {record.written:>7,d} {unit}  lost {result.lost.get(name, 0):>4d}"
                   + (f"  {segments} clock segments" if segments > 1 else ""))
    for x in m.missing:
        typer.echo(f"  missing: {x.source or 'take'}: {x.what}: {x.cause}")
