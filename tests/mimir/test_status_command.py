"""`mimir status`, `rings` and `doctor` on bad rig names, squatted names, stale boards and other users' rigs.

Every refusal is one line on stderr and a non-zero exit, never a traceback. Another user's live rig is
never called stale (and never cleaned). The "another user" tests run the real CLI under uid/gid 65534
(nobody, through ``setpriv``) against objects this (root) test process owns.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
from typer.testing import CliRunner

from mimir.reservoir import Reservoir
from mimir.supervisor.status import SourceRow, StatusBoard, SupervisorHeader, WorkerRow
from mimir_cli.app import app
from ringbuf import U64, Ring, RingReader, dtype_of, list_segments
from ringbuf.platform import PLATFORM
from ringbuf.shared import MAGIC

BIN = Path(sys.executable).parent
MIMIR = str(BIN / "mimir")
NOBODY = 65534


SETPRIV = shutil.which("setpriv")


def mimir(*args: str, user: int | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the CLI; as ``user`` (uid = gid, no supplementary groups) through util-linux's setpriv."""
    prefix = [] if user is None else [SETPRIV, f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    return subprocess.run([*prefix, MIMIR, *args], capture_output=True, text=True, timeout=timeout, cwd="/")


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("command", ["status", "rings", "doctor"])
@pytest.mark.parametrize("name", ["../../etc", "a" * 17, "has space", ""])
def test_a_bad_rig_name_is_refused_in_one_line(command, name):
    r = CliRunner().invoke(app, [command, "--rig", name])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == f"mimir {command}: rig name {name!r} is not valid: use 1-16 letters, digits, '_' and '.'\n"


class _Desc(msgspec.Struct):
    x: U64


@pytest.fixture
def live_rig(rig):
    """A live rig's objects, written by this process: board (with one snapshot), reservoir, a ring, a reader's
    doorbell, and the rings' lock files."""
    board = StatusBoard(rig)
    header = msgspec.structs.replace(SupervisorHeader(*np.zeros((), dtype_of(SupervisorHeader)).item()),
                                     pid=os.getpid(), state=1)
    board.publish(header, np.zeros(0, dtype_of(WorkerRow)), np.zeros(0, dtype_of(SourceRow)))
    res = Reservoir.create(rig, capacity=64)
    bell = PLATFORM.doorbell_listener(rig)
    ring = Ring.create("c0", rig=rig, descriptor=_Desc, capacity=8)
    reader = RingReader.attach("c0", rig=rig, doorbell=bell)
    try:
        yield rig
    finally:
        reader.close()
        ring.close()
        bell.close()
        res.close()
        board.close()


needs_root = pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None,
                                reason="running the CLI as another user needs root and util-linux's setpriv")


@needs_root
def test_doctor_run_by_another_user_calls_no_live_object_stale_and_removes_nothing(live_rig):
    before = sorted(list_segments(live_rig))
    assert len(before) >= 6  # the board's two rings, the reservoir, the ring, their locks, the doorbell
    r = mimir("doctor", "--json", "--rig", live_rig, user=NOBODY)
    found = json.loads(r.stdout)
    names = {o["name"] for o in found["objects"]}
    assert names == set(before) or not names  # where objects are not listed to other users (darwin) none is seen
    assert not [o for o in found["objects"] if o["stale"]], found["objects"]
    r = mimir("doctor", "--clean", "--rig", live_rig, user=NOBODY)
    assert "STALE" not in r.stdout and "(removed)" not in r.stdout
    assert sorted(list_segments(live_rig)) == before


@needs_root
@pytest.mark.parametrize("command", ["status", "rings"])
def test_status_and_rings_of_another_users_rig_say_so_in_one_line(live_rig, command):
    assert mimir(command, "--rig", live_rig).returncode == 0  # its owner sees it
    r = mimir(command, "--rig", live_rig, user=NOBODY)
    assert r.returncode == 2
    assert one_line(r) == (f"mimir {command}: rig {live_rig!r} belongs to another user: its shared memory is "
                           "readable only by them; run this as that user")


SQUATTERS = [
    ("random bytes", os.urandom(4096), "not a Mimir object of this version"),
    ("too small", b"0123456789", "too small to be a Mimir object"),
    ("a reservoir", MAGIC.to_bytes(8, "little") + b"reservoir".ljust(16, b"\0") + bytes(4096 - 24),
     "is a reservoir, not a ring"),
]


@pytest.fixture
def squat(rig):
    """Write a file on the board's name of ``rig``; remove it (and anything else of the rig) afterwards."""
    path = Path("/dev/shm") / f"mimir-{rig}-sw"
    yield path
    path.unlink(missing_ok=True)
    for name in list_segments(rig):
        PLATFORM.remove_object(name)


linux_only = pytest.mark.skipif(PLATFORM.name != "linux", reason="squats the board's name as a file in /dev/shm")


@linux_only
@pytest.mark.parametrize("what, data, says", SQUATTERS, ids=[s[0] for s in SQUATTERS])
def test_status_of_a_name_squatted_by_something_else_says_so_in_one_line(rig, squat, what, data, says):
    squat.write_bytes(data)
    r = CliRunner().invoke(app, ["status", "--rig", rig])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith(f"mimir status: rig {rig!r} has no status board this Mimir can read: ")
    assert r.stderr.count("\n") == 1
    assert squat.read_bytes() == data


@linux_only
@pytest.mark.parametrize("what, data, says", SQUATTERS, ids=[s[0] for s in SQUATTERS])
def test_a_squatter_is_refused_and_left_alone_by_a_create(rig, squat, what, data, says):
    """The board is created like every object (SharedObject.create): what is not ours is never reclaimed."""
    from mimir.supervisor.status import StatusBoard
    from ringbuf import ForeignObject

    squat.write_bytes(data)
    with pytest.raises(ForeignObject, match=says) as info:
        StatusBoard(rig)
    assert "\n" not in str(info.value) and "OverflowError" not in str(info.value)
    assert squat.read_bytes() == data


@linux_only
def test_mimir_supervisor_start_on_a_squatted_name_refuses_in_one_line(rig, squat, tmp_path):
    squat.write_bytes(SQUATTERS[0][1])
    config = tmp_path / "rig.toml"
    config.write_text(f'rig = "{rig}"\n')
    r = subprocess.run([str(BIN / "mimir-supervisor"), "start", "--config", str(config), "--duration", "1"],
                       capture_output=True, text=True, timeout=60)
    line = one_line(r)
    assert r.returncode == 2 and SQUATTERS[0][2] in line and "already supervised" not in line
    assert squat.read_bytes() == SQUATTERS[0][1]


@pytest.mark.slow
def test_status_after_a_supervisor_sigkill_says_stale_and_exits_non_zero(rig, tmp_path):
    config = tmp_path / "rig.toml"
    config.write_text(f'rig = "{rig}"\n[[cameras]]\nfamily = "synthetic"\ncount = 1\nwidth = 32\nheight = 24\n'
                      'fps = 30.0\n')
    sup = subprocess.Popen([str(BIN / "mimir-supervisor"), "start", "--config", str(config)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = mimir("status", "--rig", rig, "--json")
            if r.returncode == 0 and json.loads(r.stdout)["header"].get("indexed_total", 0) > 0:
                break
            time.sleep(0.3)
        assert r.returncode == 0, r.stderr
        sup.send_signal(signal.SIGKILL)
        sup.wait(10)
        for args in (("status", "--rig", rig), ("status", "--rig", rig, "--json")):
            r = mimir(*args)
            assert r.returncode == 1
            assert one_line(r).startswith(f"mimir status: STALE: the supervisor of rig {rig!r} (pid {sup.pid}) is gone")
        assert "NOT RUNNING (stale status)" in mimir("status", "--rig", rig).stdout
        assert json.loads(mimir("status", "--rig", rig, "--json").stdout)["supervisor_alive"] is False
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait(10)
        deadline = time.monotonic() + 20  # its camera worker dies with it (die_with_parent), then all is stale
        while time.monotonic() < deadline:
            mimir("doctor", "--clean", "--rig", rig)
            if not list_segments(rig):
                break
            time.sleep(0.3)
