"""The typer command function of the camera worker, ``mimir-worker camera --family FAMILY ...`` (wired in
:mod:`mimir_cli.app`; ``mimir bench cameras`` lives in :mod:`bench.cli`).

Exit codes of ``camera_worker``: 0 after a clean stop (SIGTERM, SIGINT or
``--duration``), 2 for configuration errors (unknown family, family not
available, missing device, unsupported mode, bad option), 1 when a ring of
the same name is owned by another live worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

__all__ = ["camera_worker"]



def camera_worker(
    family: str = typer.Option(..., "--family", help="Camera family: ks, ps3eye, synthetic or file."),
    count: Optional[int] = typer.Option(None, "--count", min=1, help="Number of cameras (default: one per --device/--file, else 1)."),
    width: Optional[int] = typer.Option(None, "--width", min=1, help="Requested frame width in pixels."),
    height: Optional[int] = typer.Option(None, "--height", min=1, help="Requested frame height in pixels."),
    fps: Optional[float] = typer.Option(None, "--fps", min=0.001, help="Requested frame rate."),
    pixel_format: Optional[str] = typer.Option(None, "--format", help="Pixel format landing in the ring: YUYV, BGR3 (BGR), GREY, GRBG."),
    device: Optional[List[str]] = typer.Option(None, "--device", help="Device to open (index, path or id); repeatable, one per camera."),
    file: Optional[List[Path]] = typer.Option(None, "--file", help="Video file to replay (file family); repeatable, one per camera."),
    rig: str = typer.Option("default", "--rig", help="Rig name the rings belong to."),
    duration: Optional[float] = typer.Option(None, "--duration", min=0.0, help="Stop after this many seconds (default: run until SIGTERM/SIGINT)."),
    capacity: int = typer.Option(16, "--capacity", min=2, help="Frames each camera ring holds."),
) -> None:
    """Capture cameras of one family outside a rig, each into its own ring (object c<i>, named cam.<family>.<i>).

    A supervised rig starts its camera workers itself, from its config.
    """
    from .family import ModeRequest, parse_pixel_format
    from .worker import WorkerConfig, serve

    try:
        fmt = parse_pixel_format(pixel_format) if pixel_format else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from None
    devices = tuple(device or ())
    files = tuple(str(p) for p in (file or ()))
    n = count if count is not None else max(len(devices), len(files), 1)
    if (devices and len(devices) != n) or (files and len(files) != n):
        raise typer.BadParameter(f"{n} cameras but {len(devices) or len(files)} --device/--file given: one per camera",
                                 param_hint="--count")
    config = WorkerConfig.for_family(family, n, rig=rig, capacity=capacity, devices=devices, files=files,
                                     request=ModeRequest(width, height, fps, fmt), duration_s=duration)
    raise typer.Exit(serve(family, config))
