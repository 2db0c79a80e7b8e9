"""``python -m workers.camera --family FAMILY ...``: the camera worker without the ``mimir-worker`` wrapper.

Tests and the benchmark start the worker this way, as a real child process.
"""

import typer

from .cli import camera_worker

app = typer.Typer(add_completion=False)
app.command()(camera_worker)

if __name__ == "__main__":
    app()
