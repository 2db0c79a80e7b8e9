"""`mimir doctor` finds stale shared memory left by a killed process and removes only that."""
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from mimir.doctor import remove_stale, scan_objects
from ringbuf import Ring, U64

MIMIR = str(Path(sys.executable).with_name("mimir"))


class Stamp(msgspec.Struct):
    sequence: U64


def _hold_ring(rig, ready):
    ring = Ring.create("held", rig=rig, descriptor=Stamp, capacity=4)
    ready.set()
    time.sleep(60)
    ring.close()


def test_doctor_lists_and_cleans_only_stale_objects(rig):
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_ring, args=(rig, ready))
    proc.start()
    assert ready.wait(10)
    live = Ring.create("live", rig=rig, descriptor=Stamp, capacity=4)
    try:
        objects = {o.name: o for o in scan_objects(rig)}
        assert objects[f"mimir-{rig}-held"].writer_pid == proc.pid
        assert objects[f"mimir-{rig}-held"].kind == "ring" and objects[f"mimir-{rig}-held"].label == f"{rig}/held"
        assert not any(o.stale for o in objects.values())
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        stale = sorted(o.name for o in scan_objects(rig) if o.stale)
        assert stale == [f"mimir-{rig}-held", f"mimir-{rig}-held#lock"]
        assert not any("live" in name for name in stale)
        listing = subprocess.run([MIMIR, "doctor", "--rig", rig], capture_output=True, text=True)
        assert "STALE" in listing.stdout and f"mimir-{rig}-held" in listing.stdout
        assert sorted(remove_stale(rig)) == stale
        assert all("live" in o.name for o in scan_objects(rig))
    finally:
        live.close()
