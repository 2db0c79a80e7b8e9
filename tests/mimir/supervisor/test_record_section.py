"""`[record]`: the supervisor records the rig from its first frame; `mimir status` shows the recorder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mimir.config import EXAMPLE_TOML, ConfigError, parse_config
from mimir.record.status import read_recorders
from mimir.supervisor.status import read_status, text
from mimir.take import open_take, read_manifest
from ringbuf.segment import list_segments

BIN = Path(sys.executable).parent
SOURCES = ("cam.synthetic.0", "cam.synthetic.1", "audio")


def config(rig: str, record: str) -> str:
    return f'''
rig = "{rig}"
[reservoir]
window_s = 10.0
[audio]
backend = "synthetic"
channels = 2
[[cameras]]
family = "synthetic"
count = 2
width = 160
height = 120
fps = 30.0
{record}
'''


def test_the_record_section_parses_and_bad_values_are_refused():
    cfg = parse_config(config("r1", '[record]\nout = "takes"\nvideo = "ffv1"\nsplit_seconds = 30.0'))
    assert cfg.record is not None and cfg.record.video == "ffv1" and cfg.record.split_seconds == 30.0
    assert parse_config(config("r1", "")).record is None
    assert parse_config(EXAMPLE_TOML).record is None  # commented out in the example
    for bad in ('video = "mpeg2"', "split_seconds = 0.0", 'out = ""', "enabled = true"):
        with pytest.raises(ConfigError):
            parse_config(config("r1", f"[record]\n{bad}"))


@pytest.mark.slow
def test_a_rig_with_a_record_section_is_recorded_from_its_first_frame(tmp_path):
    rig = f"t{os.getpid()}nr"
    (tmp_path / "rig.toml").write_text(config(rig, f'[record]\nout = "{tmp_path / "takes"}"'))
    sup = subprocess.Popen([str(BIN / "mimir-supervisor"), "start", "--config", str(tmp_path / "rig.toml"),
                            "--final-status", str(tmp_path / "final.json")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        shown = ""
        while time.monotonic() < deadline and sup.poll() is None:
            try:
                snapshot = read_status(rig)
            except FileNotFoundError:
                snapshot = None
            if snapshot is not None and snapshot.recorders and all(s["written"] > 60 for s in snapshot.recorders[0].sources):
                shown = text(snapshot)
                break
            time.sleep(0.2)
        assert "recorder rec0 pid" in shown, shown
    finally:
        sup.send_signal(signal.SIGTERM)
        _, err = sup.communicate(timeout=180)
    assert sup.returncode == 0, err
    assert "recording to" in err
    assert not list_segments(rig) and not read_recorders(rig)
    (take_dir,) = (tmp_path / "takes").iterdir()
    assert take_dir.name.startswith(f"{rig}-")
    final = {s["name"]: s["published"] for s in json.loads((tmp_path / "final.json").read_text())["sources"]}
    m = read_manifest(take_dir)
    assert m.rig["record"]["from_start"] and m.rig["record"]["ended_by"] == "rig stopped"
    for name in SOURCES:
        record = m.source(name)
        assert record.written + sum(s.count for s in record.skipped) == final[name] > 0
        assert m.rig["record"]["sources"][name]["first_ring_sequence"] == 0
    take = open_take(take_dir)
    assert len(take.frames(SOURCES[0]).sequence) == m.source(SOURCES[0]).written


@pytest.mark.slow
def test_a_recorder_that_refuses_stops_the_start_with_its_line(tmp_path):
    rig = f"t{os.getpid()}nq"
    blocker = tmp_path / "takes"
    blocker.write_text("a file where the take folder's parent should be")
    (tmp_path / "rig.toml").write_text(config(rig, f'[record]\nout = "{blocker}"'))
    done = subprocess.run([str(BIN / "mimir-supervisor"), "start", "--config", str(tmp_path / "rig.toml")],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stderr
    assert "its recorder refused to start" in done.stderr
    assert not list_segments(rig)
