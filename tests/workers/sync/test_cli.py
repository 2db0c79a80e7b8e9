"""`mimir-worker sync`: bad input is one line on stderr and exit 2, before any ring is touched."""

import typer
from typer.testing import CliRunner

from workers.sync.cli import sync_worker

app = typer.Typer()
app.command()(sync_worker)
runner = CliRunner()


def test_bad_options_exit_2_with_one_line(rig):
    for args, words in ((["--band", "3400-300"], "band must be LO-HI"),
                        (["--band", "300-2500"], "decoding needs at least 2"),
                        (["--channel-path", "1:2:3:4"], "--channel-path must look like"),
                        (["--channel-path", "1:2", "--channel-path", "1:3"], "given twice"),
                        (["--channel-pulse", "1:/no/such/pulse.json"], "cannot read the path pulse"),
                        (["--channel-pulse", "one:pulse.json"], "--channel-pulse must look like")):
        r = runner.invoke(app, ["--rig", rig, *args])
        assert r.exit_code == 2, (args, r.output)
        assert r.stdout == "" and r.stderr.count("\n") == 1 and words in r.stderr, (args, r.stderr)
        assert r.stderr.startswith("mimir-worker sync: ")
