"""The process-supervision seam: what differs between operating systems about starting, stopping and
watching Mimir's processes. Everything else in the supervisor is the same code everywhere.

* :func:`die_with_parent` -- a worker ends when its supervisor dies: Linux
  asks the kernel (``PR_SET_PDEATHSIG``); elsewhere a watchdog thread checks
  the parent every 0.25 s and stops the worker the way a stop request does.
* :func:`spawn_options` / :func:`request_stop` -- asking a child to stop
  cleanly: SIGTERM on POSIX; on Windows the child is started in its own
  process group and sent CTRL_BREAK_EVENT (Windows has no SIGTERM handler
  that runs Python code on ``terminate()``).
* :func:`go_realtime` / :func:`lower_priority` -- the index loop's realtime
  priority and the sync worker's lower one, best effort, saying what happened.

``MIMIR_PLATFORM=darwin`` (the macOS-rules mode CI runs on Linux) selects the
portable paths here too: no prctl, a watchdog thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import psutil

from ringbuf.platform import PLATFORM

__all__ = ["die_with_parent", "spawn_options", "request_stop", "go_realtime", "lower_priority", "STOP_SIGNALS"]

PR_SET_PDEATHSIG = 1
REALTIME_PRIORITY = 1  # SCHED_FIFO, the lowest realtime level: above every normal process, below audio callbacks
STOP_SIGNALS: tuple[int, ...] = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGINT", None), getattr(signal, "SIGBREAK", None))
    if s is not None
)


def die_with_parent(on_orphaned: Callable[[], None] | None = None) -> None:
    """End this process when its parent (the supervisor) dies; exit at once if it already has.

    ``on_orphaned`` runs in the watchdog thread where the kernel cannot do it
    (default: the same as a stop request, so the worker unlinks what it made).
    """
    parent = os.getppid()
    if PLATFORM.name == "linux" and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    else:
        _watch_parent(parent, on_orphaned or _stop_self)
    if os.getppid() != parent or not psutil.pid_exists(parent):  # the parent died before we were watching
        sys.exit(1)


def _stop_self() -> None:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        os.kill(os.getpid(), signal.CTRL_BREAK_EVENT)
    else:
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(parent: int, on_orphaned: Callable[[], None]) -> None:
    def watch() -> None:
        while True:
            time.sleep(0.25)
            if os.getppid() != parent or not psutil.pid_exists(parent):
                on_orphaned()
                return

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def spawn_options() -> dict:
    """Extra ``subprocess.Popen`` arguments for a supervised child."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {}


def request_stop(proc: subprocess.Popen) -> None:
    """Ask a child to stop cleanly (it unlinks what it made); the caller kills it after a grace period."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        proc.send_signal(signal.CTRL_BREAK_EVENT)
    else:
        proc.send_signal(signal.SIGTERM)


def go_realtime() -> str:
    """Move the calling thread to realtime priority where the OS allows it; return what happened, for the log."""
    policy = getattr(os, "SCHED_FIFO", None)
    if policy is None or PLATFORM.name != "linux":
        try:
            psutil.Process().nice(psutil.HIGH_PRIORITY_CLASS if sys.platform == "win32" else -5)
            return "realtime scheduling not available on this OS; raised the supervisor's priority instead"
        except (psutil.Error, OSError, AttributeError):
            return "realtime scheduling not available on this OS; normal priority"
    try:
        os.sched_setscheduler(0, policy | getattr(os, "SCHED_RESET_ON_FORK", 0), os.sched_param(REALTIME_PRIORITY))
    except PermissionError:
        return ("realtime priority refused (grant CAP_SYS_NICE or an rtprio limit): "
                "index latency may suffer when the machine is busy")
    return f"index loop at SCHED_FIFO {REALTIME_PRIORITY}"


def lower_priority(niceness: int = 5) -> None:
    """Lower this process's priority (throughput work with seconds of slack: the sync worker).

    +5 gives it about a quarter of a core against each busy normal process
    (CFS weights 335 vs 1024): enough for decoding (about 1 % of a core per
    channel), while capture and indexing win every contended moment.
    """
    try:
        psutil.Process().nice(psutil.BELOW_NORMAL_PRIORITY_CLASS if sys.platform == "win32" else niceness)
    except (psutil.Error, OSError, AttributeError):
        pass
