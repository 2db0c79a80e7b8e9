"""``mimir.sync`` is a library layer: importing any of its modules loads no ring, rig config, worker or benchmark.

Every module is imported in one fresh interpreter (in this test process,
modules imported by other tests would hide what ``mimir.sync`` pulls in),
one after the other, and ``sys.modules`` is checked after each: a forbidden
package is blamed on the first module that loaded it. The modules are found
on disk, so a new module is checked without being listed here.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import textwrap

import mimir.sync

# Packages above the DSP library, or beside it with rig state: mimir.config imports mimir.sync, so an import the
# other way is a cycle; ringbuf, workers and bench are other layers.
FORBIDDEN = ("mimir.topology", "mimir.config", "mimir.contract", "mimir.supervisor", "ringbuf", "workers", "bench",
             "mimir_cli")

MODULES = ["mimir.sync"] + sorted(f"mimir.sync.{m.name}" for m in pkgutil.iter_modules(mimir.sync.__path__))

_PROBE = textwrap.dedent("""
    import importlib, json, sys
    forbidden = tuple(sys.argv[1].split(","))
    blame = {}
    for name in sys.argv[2:]:
        importlib.import_module(name)
        for m in sys.modules:
            if (m in forbidden or m.startswith(tuple(f + "." for f in forbidden))) and m not in blame:
                blame[m] = name
    print(json.dumps({"loaded": sorted(sys.modules), "blame": blame}))
""")


def test_the_modules_are_found():
    assert {"mimir.sync.receiver", "mimir.sync.report", "mimir.sync.trials", "mimir.sync.room_trials",
            "mimir.sync.calibration", "mimir.sync.cli"} <= set(MODULES)
    assert not {"mimir.sync.worker", "mimir.sync.fits", "mimir.sync.benchmark", "mimir.sync.roombench",
                "mimir.sync.baseline"} & set(MODULES)


def test_importing_every_module_loads_nothing_above_the_library():
    out = subprocess.run([sys.executable, "-c", _PROBE, ",".join(FORBIDDEN), *MODULES], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(MODULES) <= set(doc["loaded"])
    assert doc["blame"] == {}, "\n".join(f"{m} loaded by {by}" for m, by in sorted(doc["blame"].items()))
