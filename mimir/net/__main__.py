"""``python -m mimir.net receiver|keys|bench-receivers``: the net commands before (and besides) the top-level CLI."""

from __future__ import annotations

import typer

from .cli import bench_receivers, keys_app, receiver

app = typer.Typer(help="Mimir remote receivers.", no_args_is_help=True)
app.command("receiver")(receiver)
app.add_typer(keys_app, name="keys")
app.command("bench-receivers")(bench_receivers)

if __name__ == "__main__":
    app(prog_name="python -m mimir.net")
