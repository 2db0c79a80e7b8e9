"""``python -m workers.audio {worker,latency,soak}``: the command functions without the mimir wiring."""

from __future__ import annotations

import typer

from .cli import audio_worker, latency, soak

app = typer.Typer(help="Mimir audio worker and its reports.", no_args_is_help=True, add_completion=False)
app.command("worker")(audio_worker)
app.command("latency")(latency)
app.command("soak")(soak)

if __name__ == "__main__":
    app(prog_name="python -m workers.audio")
