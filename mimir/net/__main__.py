"""``python -m mimir.net receiver|keys``: the remote receiver's commands alone (what a receiver machine runs)."""

from __future__ import annotations

import typer

from .cli import keys_app, receiver

app = typer.Typer(help="Mimir remote receivers.", no_args_is_help=True)
app.command("receiver")(receiver)
app.add_typer(keys_app, name="keys")

if __name__ == "__main__":
    app(prog_name="python -m mimir.net")
