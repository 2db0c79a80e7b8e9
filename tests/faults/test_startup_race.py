"""A consumer attaching while the supervisor starts, and a supervisor killed at a seeded moment of its start.

Invariants (see tests/faults/conftest.py):
* a consumer calling ``RigConsumer.attach`` over and over, from before the supervisor exists until its rig runs,
  only ever gets a rig whose reservoir reads, or ``RigNotRunning``: never a layout mismatch, never another
  exception (the supervisor publishes the plan after its reservoirs; a plan published first once let a test
  attach a reservoir still being created);
* a supervisor SIGKILLed at a seeded moment of its start (before, while or after it creates its objects) leaves a
  consumer the same two answers, and the next start of the rig deals with what it left, runs and stops clean,
  leaving nothing in shared memory.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from mimir.consumer import RigConsumer
from mimir.contract import RigNotRunning

from .conftest import RigRun, assert_nothing_left

pytestmark = pytest.mark.slow


def _attach_outcomes(rig: str, seconds: float, rng, *, until_attached: int | None = None) -> Counter:
    """Attach again and again for ``seconds`` (or until ``until_attached`` attaches); count each outcome."""
    outcomes: Counter = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (until_attached is None or outcomes["attached"] < until_attached):
        try:
            with RigConsumer.attach(rig) as consumer:
                consumer.view.edge_ns  # a finished reservoir reads
                outcomes["attached"] += 1
        except RigNotRunning:
            outcomes["not running"] += 1
        except Exception as exc:  # noqa: BLE001 - the invariant is that nothing else ever comes out
            outcomes[f"{type(exc).__name__}: {exc}"] += 1
        time.sleep(rng.uniform(0.0, 0.002))
    return outcomes


def test_a_consumer_attaching_while_the_rig_starts_gets_the_rig_or_not_running(rig_run, rng):
    run = rig_run.start()
    outcomes = _attach_outcomes(run.rig, 60.0, rng, until_attached=200)
    assert set(outcomes) == {"attached", "not running"}, outcomes
    assert outcomes["attached"] == 200 and run.alive()
    code, err = run.stop()
    assert code == 0, err
    assert_nothing_left(run.rig)


def test_a_supervisor_killed_while_it_starts_leaves_a_rig_the_next_start_reclaims(rig, tmp_path, rng):
    first = RigRun(rig, tmp_path).start()
    kill_after_s = rng.uniform(0.3, 3.0)  # its imports take about 1 s here: before, while or after it creates
    before = _attach_outcomes(rig, kill_after_s, rng)
    first.kill()
    after = _attach_outcomes(rig, 1.0, rng)
    print(f"killed after {kill_after_s:.2f} s; before {dict(before)}, after {dict(after)}")
    assert set(before) | set(after) <= {"attached", "not running"}, (before, after)
    time.sleep(1.0)  # its workers die with it (parent-death signal)
    second = RigRun(rig, tmp_path).start("--duration", "6")
    code, _, err = second.wait(90)
    assert code == 0, err
    assert_nothing_left(rig)
