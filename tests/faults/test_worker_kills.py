"""Random, seeded SIGKILLs of every worker type while the rig runs.

Invariants checked after every kill (each stated in tests/faults/conftest.py):
the supervisor is alive; the killed worker is restarted and its sources index again; every published item is
indexed or counted (overrun or restart gap); the canonical clock relocks, the restart is a recorded clock
segment, and cameras and audio share one canonical timeline within TIMELINE_BOUND_NS; after the stop, the final
accounting is exact and nothing is left in shared memory.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from .conftest import (
    assert_every_item_accounted, assert_final_accounting_exact, assert_nothing_left, assert_timeline_consistent,
    wait_for,
)

pytestmark = pytest.mark.slow
KILLS = 5


def test_random_kills_of_every_worker_never_corrupt_time_or_lose_data_silently(rig_run, rng):
    run = rig_run.start()
    run.wait_running()
    assert_timeline_consistent(run.rig)
    restarts = {"camera.synthetic": 0, "audio": 0, "sync": 0}
    for round_ in range(KILLS):
        victim = rng.choice(sorted(restarts))
        time.sleep(rng.uniform(0.2, 2.0))  # a random moment
        before = run.status()
        segment_before = before["header"]["clock_segment"]
        os.kill(run.worker_pid(victim), signal.SIGKILL)
        restarts[victim] += 1

        def recovered():
            s = run.status()
            worker = next(w for w in s["workers"] if w["name"] == victim)
            return s if worker["restarts"] >= restarts[victim] and worker["state"] == 1 \
                and s["header"]["clock_state"] == 1 else None

        after = wait_for(recovered, 60, f"round {round_}: {victim} restarted and the clock locked")
        assert run.alive(), "the supervisor died"
        assert_every_item_accounted(after)
        if victim == "audio":
            # A new audio stream is a new clock segment (holdover, then the relock with its measured step).
            assert after["header"]["clock_segment"] >= segment_before + 2, (segment_before, after["header"])
            assert abs(after["header"]["clock_last_step_ns"]) < 20_000_000  # the emitter continued the schedule
        source = {"camera.synthetic": "cam.synthetic.0", "audio": "audio"}.get(victim)
        if source is not None:
            wait_for(lambda: {s["name"]: s for s in run.status()["sources"]}[source]["lost_restart_gap"] > 0, 20,
                     f"the {source} restart gap to be counted")
        time.sleep(2.0)  # let the window fill with post-relock samples
        assert_timeline_consistent(run.rig)
    code, err = run.stop()
    assert code == 0, err
    assert_final_accounting_exact(run.final)
    assert_nothing_left(run.rig)
