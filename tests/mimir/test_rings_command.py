"""`mimir rings` shows every ring's counters and each reader's lag and losses."""
import json
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np

from ringbuf import Ring, RingReader, U64

MIMIR = str(Path(sys.executable).with_name("mimir"))


class Stamp(msgspec.Struct):
    sequence: U64


def test_rings_lists_counters_and_reader_lag(rig):
    ring = Ring.create("cam.test.0", rig=rig, descriptor=Stamp, capacity=4, payload_shape=(8,))
    reader = RingReader.attach("cam.test.0", rig=rig, descriptor=Stamp)
    try:
        for n in range(10):
            ring.write(np.zeros(8, np.uint8), n)
        reader.read()  # lapped: 6 lost, then item 6 read; 3 still to read
        done = subprocess.run([MIMIR, "rings", "--rig", rig, "--json"], capture_output=True, text=True, check=True)
        (info,) = json.loads(done.stdout)
        assert (info["name"], info["published"], info["capacity"], info["writer_alive"]) == ("cam.test.0", 10, 4, True)
        (r,) = info["readers"]
        assert (r["lag"], r["lost"], r["alive"]) == (3, 6, True)
        text = subprocess.run([MIMIR, "rings", "--rig", rig], capture_output=True, text=True, check=True).stdout
        assert "cam.test.0: 10 published" in text and "lag 3, lost 6" in text
    finally:
        reader.close()
        ring.close()
