"""Typer command functions for the camera worker and its benchmark (wired in :mod:`mimir.cli`).

* :func:`camera_worker` - ``mimir-worker camera --family FAMILY ...``
* :func:`bench_cameras` - ``mimir bench cameras [--json]``

Exit codes of ``camera_worker``: 0 after a clean stop (SIGTERM, SIGINT or
``--duration``), 2 for configuration errors (unknown family, family not
available, missing device, unsupported mode, bad option), 1 when a ring of
the same name is owned by another live worker.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import List, Optional

import typer

__all__ = ["camera_worker", "bench_cameras", "import_bench"]



def camera_worker(
    family: str = typer.Option(..., "--family", help="Camera family: ks, ps3eye, synthetic or file."),
    count: Optional[int] = typer.Option(None, "--count", min=1, help="Number of cameras (default: synthetic 1, others every device found)."),
    width: Optional[int] = typer.Option(None, "--width", min=1, help="Requested frame width in pixels."),
    height: Optional[int] = typer.Option(None, "--height", min=1, help="Requested frame height in pixels."),
    fps: Optional[float] = typer.Option(None, "--fps", min=0.001, help="Requested frame rate."),
    pixel_format: Optional[str] = typer.Option(None, "--format", help="Pixel format landing in the ring: YUYV, BGR3 (BGR), GREY, GRBG."),
    device: Optional[List[str]] = typer.Option(None, "--device", help="Device to open (index, path or id); repeatable."),
    file: Optional[List[Path]] = typer.Option(None, "--file", help="Video file to replay (file family); repeatable."),
    rig: str = typer.Option("default", "--rig", help="Rig name the rings belong to."),
    duration: Optional[float] = typer.Option(None, "--duration", min=0.0, help="Stop after this many seconds (default: run until SIGTERM/SIGINT)."),
    capacity: int = typer.Option(16, "--capacity", min=2, help="Frames each camera ring holds."),
) -> None:
    """Capture every selected camera of one family, each into its own ring cam.<family>.<index>."""
    from .family import DiscoveryHints, ModeRequest, parse_pixel_format
    from .worker import WorkerConfig, serve

    try:
        fmt = parse_pixel_format(pixel_format) if pixel_format else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from None
    specs = tuple(device or ()) + tuple(str(p) for p in (file or ()))
    config = WorkerConfig(
        rig=rig,
        request=ModeRequest(width, height, fps, fmt),
        hints=DiscoveryHints(count=count, specs=specs),
        capacity=capacity,
        duration_s=duration,
    )
    raise typer.Exit(serve(family, config))


def import_bench(module: str):
    """Import ``bench.<module>`` lazily (the benchmark pulls in more than the worker needs)."""
    return importlib.import_module(f"bench.{module}")


def bench_cameras(
    json_out: bool = typer.Option(False, "--json", help="Print only the JSON document on stdout."),
    duration: float = typer.Option(8.0, "--duration", min=1.0, help="Measured seconds of the six-camera run."),
) -> None:
    """Six synthetic VGA cameras at 60 fps in one worker, plus the PS3 Eye parser records when available."""
    cameras = import_bench("cameras")
    raise typer.Exit(cameras.main(json_out=json_out, duration_s=duration))
