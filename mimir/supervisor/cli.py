"""`mimir-supervisor start`: run a rig from a config file, or the embedded synthetic default."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

import typer

from mimir.signals import stop_on_signals

__all__ = ["start"]


def start(
    config: Optional[Path] = typer.Option(None, "--config", help="Rig config (TOML); `mimir config example` shows every option. Default: the embedded synthetic rig."),
    duration: Optional[float] = typer.Option(None, "--duration", min=0.0, help="Stop after this many seconds (default: until SIGINT/SIGTERM)."),
    final_status: Optional[Path] = typer.Option(None, "--final-status", help="Also write the final status (what `mimir status --json` shows) to this file at stop."),
) -> None:
    """Start the rig: workers, rings, reservoir, sync analyzer, status. `mimir status` shows it running."""
    from mimir.config import ConfigError, default_rig, load_config
    from mimir.supervisor.rig import Rig, RigAlreadyRunning, RigStartRefused
    from ringbuf import OutOfSharedMemory, SegmentExists

    try:
        rig_config = load_config(config) if config else default_rig()
        rig = Rig(rig_config)
    except ConfigError as exc:
        typer.echo(f"mimir-supervisor: {exc}", err=True)
        raise typer.Exit(2)
    with stop_on_signals(rig.stop_event):
        try:
            rig.start()
        except (RigAlreadyRunning, SegmentExists) as exc:  # a live supervisor, or a live process not ours
            typer.echo(f"mimir-supervisor: {exc}", err=True)
            raise typer.Exit(1)
        except (OutOfSharedMemory, RigStartRefused, ConfigError) as exc:  # ConfigError: e.g. the listen port is taken
            typer.echo(f"mimir-supervisor: {exc}", err=True)
            raise typer.Exit(2)
        cams = len(rig.plan.cameras())  # the plan resolves `count = None` (one per device/file)
        audio = rig_config.audio
        typer.echo(
            f"mimir-supervisor: rig {rig_config.rig!r} running: {cams} cameras, "
            + (f"{audio.channels} audio channels at {audio.rate_hz} Hz" if audio else "no audio")
            + (f"; recording to {rig.recorder.folder}" if rig.recorder is not None else "")
            + "; watch it with `mimir status --watch" + (f" --rig {rig_config.rig}" if rig_config.rig != "default" else "") + "`",
            err=True,
        )
        realtime = threading.Timer(0.5, lambda: typer.echo(f"mimir-supervisor: {rig.realtime}", err=True))
        realtime.start()
        rig.run(duration)
        realtime.cancel()  # a rig that stopped within 0.5 s (a worker refused its spec) ends with its own line
        if rig.final_status is not None:
            import msgspec

            from mimir.supervisor.status import text

            typer.echo(text(rig.final_status))
            if final_status is not None:
                final_status.write_bytes(msgspec.json.encode(rig.final_status))
        if rig.refusal:  # a worker refused its spec at start (a device that is not there): no restart loop
            typer.echo(f"mimir-supervisor: rig {rig_config.rig!r} stopped: {rig.refusal}", err=True)
            raise typer.Exit(2)
        typer.echo(f"mimir-supervisor: rig {rig_config.rig!r} stopped", err=True)
