"""The rig beside CPU hogs: slower, never silently lossy, never killing a worker for being slow.

Invariants: with two busy processes (one per core of this machine) beside it, the rig starts, no worker is
restarted for slowness, the canonical clock locks, every published item is indexed or counted while it runs,
and after the stop the accounting is exact and nothing is left.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest

from .conftest import (
    assert_every_item_accounted, assert_final_accounting_exact, assert_nothing_left, assert_timeline_consistent,
)

pytestmark = pytest.mark.slow


def _spin() -> None:  # pragma: no cover - runs in the hog processes
    while True:
        pass


def test_two_cpu_hogs_beside_the_rig_lose_nothing_silently(rig_run):
    ctx = mp.get_context("fork")
    hogs = [ctx.Process(target=_spin, daemon=True) for _ in range(os.cpu_count() or 2)]
    for hog in hogs:
        hog.start()
    try:
        run = rig_run.start()
        snapshot = run.wait_running(timeout_s=120)
        time.sleep(8.0)
        snapshot = run.status()
        assert run.alive()
        assert all(w["restarts"] == 0 for w in snapshot["workers"]), snapshot["workers"]
        assert_every_item_accounted(snapshot)
        assert_timeline_consistent(run.rig)
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join(5)
    code, err = run.stop()
    assert code == 0, err
    assert_final_accounting_exact(run.final)
    assert_nothing_left(run.rig)
