import typer
app = typer.Typer()
supervisor_app = typer.Typer()
worker_app = typer.Typer()
