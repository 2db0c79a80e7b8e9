"""The process seam with real processes: a worker dies with its parent (kernel on Linux, watchdog under macOS
rules), stop requests end a worker cleanly, priorities change where the OS allows."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from mimir.process_control import STOP_SIGNALS, request_stop, spawn_options

CHILD = textwrap.dedent("""
    import sys, threading
    from mimir.process_control import die_with_parent
    from mimir.signals import stop_on_signals

    out = open(sys.argv[2], "a", buffering=1)
    with stop_on_signals(threading.Event()) as stop:
        out.write(die_with_parent(parent_pid=int(sys.argv[1])) + "\\n")
        stop.wait(60)
        out.write("clean stop\\n" if stop.is_set() else "timed out\\n")
""")

PARENT = textwrap.dedent("""
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid()), sys.argv[2]])
    print(child.pid, flush=True)
    time.sleep(120)
""")


def _env(platform: str, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MIMIR_PLATFORM"}
    env["MIMIR_PLATFORM"] = platform
    env["MIMIR_MACOS_RULES_LOG"] = str(tmp_path / "violations.log")
    return env


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("platform, how", [("linux", "kernel"), ("darwin", "watchdog")])
def test_a_worker_stops_cleanly_when_its_parent_is_killed(tmp_path, platform, how):
    out = tmp_path / "child.txt"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(out)], env=_env(platform, tmp_path),
                              stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    try:
        _wait_for(lambda: out.exists() and out.read_text().strip() == how, 30, f"the child to watch by {how}")
        parent.kill()
        parent.wait(10)
        _wait_for(lambda: not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == "zombie",
                  10, "the orphaned child to end")
        assert out.read_text() == f"{how}\nclean stop\n"  # it ran its stop path, not killed outright
        log = tmp_path / "violations.log"
        assert not log.exists() or log.read_text() == ""  # under macOS rules: no prctl, no /proc
    finally:
        for pid in (parent.pid, child_pid):
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        parent.wait(10)


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_a_worker_whose_parent_is_already_gone_exits_at_once(tmp_path, platform):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)
    out = tmp_path / "child.txt"
    child = subprocess.run([sys.executable, "-c", CHILD, str(gone.pid), str(out)], env=_env(platform, tmp_path),
                           timeout=30)
    assert child.returncode == 1 and (not out.exists() or out.read_text() == "")


STOPPABLE = textwrap.dedent("""
    import threading
    from mimir.signals import stop_on_signals
    with stop_on_signals(threading.Event()) as stop:
        print("ready", flush=True)
        raise SystemExit(0 if stop.wait(60) else 3)
""")


def test_request_stop_ends_a_child_through_its_stop_handler():
    assert signal.SIGTERM in STOP_SIGNALS and signal.SIGINT in STOP_SIGNALS
    proc = subprocess.Popen([sys.executable, "-c", STOPPABLE], stdout=subprocess.PIPE, text=True, **spawn_options())
    try:
        assert proc.stdout.readline().strip() == "ready"
        request_stop(proc)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


PRIORITY = textwrap.dedent("""
    import psutil
    from mimir.process_control import go_realtime, lower_priority
    print(go_realtime())
    lower_priority()
    print(psutil.Process().nice())
""")


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_priorities_change_where_allowed_and_say_what_happened(tmp_path, platform):
    out = subprocess.run([sys.executable, "-c", PRIORITY], env=_env(platform, tmp_path), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    said, nice = out.stdout.splitlines()
    if platform == "linux":
        assert said.startswith("index loop at SCHED_FIFO 1") or said.startswith("realtime priority refused")
    else:  # macOS rules: no SCHED_FIFO; a raised priority if this user may, else normal
        assert said.startswith("realtime scheduling not available on this OS")
    assert int(nice) >= 5  # lowered to +5 (from -5 when raising was allowed, or from the parent's niceness)
