"""Supervision policy with real child processes."""
import sys
import time

from mimir.config import SupervisionConfig
from mimir.supervisor.processes import SupervisedWorker
from mimir.supervisor.status import WorkerState

FAST = SupervisionConfig(heartbeat_timeout_s=0.5, restart_backoff_s=0.1, restart_backoff_max_s=0.4,
                         max_restarts=3, restart_window_s=30.0)


def run_until(worker, predicate, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.tick()
        if predicate(worker):
            return True
        time.sleep(0.02)
    return False


def beating():
    return time.monotonic_ns()


def test_a_crashing_worker_is_restarted_with_backoff_then_given_up():
    worker = SupervisedWorker("crasher", [sys.executable, "-c", "import sys; sys.exit(3)"], FAST, heartbeat_ns=beating)
    restarts_seen = []
    worker.on_restart = lambda w: restarts_seen.append(time.monotonic())
    worker.start()
    assert run_until(worker, lambda w: w.state == WorkerState.FAILED)
    assert worker.restarts == 3 and worker.last_exit_code == 3
    assert "exited with code 3" in worker.error and "not restarting" in worker.error
    gaps = [b - a for a, b in zip(restarts_seen, restarts_seen[1:])]
    assert all(g >= 0.1 for g in gaps)  # backoff respected between incarnations
    worker.tick()
    assert worker.state == WorkerState.FAILED and worker.restarts == 3  # no more retries


def test_a_silent_worker_is_killed_and_restarted():
    worker = SupervisedWorker("silent", [sys.executable, "-c", "import time; time.sleep(60)"], FAST,
                              heartbeat_ns=lambda: time.monotonic_ns() - 5_000_000_000)
    worker.start()
    first_pid = worker.pid
    time.sleep(0.6)
    assert run_until(worker, lambda w: w.state == WorkerState.BACKOFF)
    assert "stopped heartbeating" in worker.error
    assert run_until(worker, lambda w: w.restarts == 1)
    assert worker.pid != first_pid
    worker.stop()
    assert worker.state == WorkerState.STOPPED


def test_stop_terminates_a_running_worker():
    worker = SupervisedWorker("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], FAST, heartbeat_ns=beating)
    worker.start()
    assert run_until(worker, lambda w: w.state == WorkerState.RUNNING)
    worker.stop(timeout_s=5)
    assert worker.state == WorkerState.STOPPED and worker.proc.returncode == -15


REFUSE = ("import sys; print('starting', file=sys.stderr); "
          "print('mimir-worker camera: error: ps3eye: no devices found', file=sys.stderr); sys.exit(2)")


def test_a_worker_refusing_its_spec_at_start_fails_at_once_with_its_line(capfd):
    worker = SupervisedWorker("refuser", [sys.executable, "-c", REFUSE], FAST)  # no heartbeat: still starting
    worker.start()
    assert run_until(worker, lambda w: w.state != WorkerState.STARTING)
    assert worker.state == WorkerState.FAILED and worker.refused
    assert worker.restarts == 0 and worker.last_exit_code == 2
    assert worker.error == "refused to start: mimir-worker camera: error: ps3eye: no devices found; not restarting"
    time.sleep(FAST.restart_backoff_max_s * 2)
    worker.tick()
    assert worker.state == WorkerState.FAILED and worker.restarts == 0 and worker.pid == worker.proc.pid
    err = capfd.readouterr().err  # the worker's stderr still reaches the supervisor's
    assert "starting\n" in err and "no devices found" in err


def test_exit_2_after_the_first_heartbeat_is_a_crash_and_is_restarted():
    worker = SupervisedWorker("late", [sys.executable, "-c", "import sys, time; time.sleep(0.3); sys.exit(2)"], FAST,
                              heartbeat_ns=beating)
    worker.start()
    assert run_until(worker, lambda w: w.state == WorkerState.RUNNING)
    assert run_until(worker, lambda w: w.restarts == 1)
    assert not worker.refused and "exited with code 2" in worker.error
    worker.stop()


def test_a_worker_writing_a_lot_to_stderr_never_blocks_on_the_supervisor():
    # 1 MiB of stderr with nobody ticking: a pipe would fill at 64 KiB and block the worker.
    code = "import sys; sys.stderr.write('x' * (1 << 20) + '\\nlast words\\n'); sys.stderr.flush()"
    worker = SupervisedWorker("chatty", [sys.executable, "-c", code], FAST, heartbeat_ns=beating)
    worker.start()
    assert worker.proc.wait(timeout=30) == 0
    assert worker.last_stderr_line == "last words"
