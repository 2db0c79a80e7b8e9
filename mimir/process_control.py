"""The process-supervision seam: what differs between operating systems about starting, stopping and
watching Mimir's processes. Everything else in the supervisor is the same code everywhere.

* :func:`die_with_parent` -- a worker ends when its supervisor dies: Linux
  asks the kernel (``PR_SET_PDEATHSIG``); elsewhere a watchdog thread checks
  the parent every 0.25 s (psutil: pid *and* start time, so a reused pid is
  no parent) and stops the worker the way a stop request does.
* :func:`spawn_options` / :func:`request_stop` -- asking a child to stop
  cleanly: SIGTERM on POSIX; on Windows the child is started in its own
  process group and sent CTRL_BREAK_EVENT, which its SIGBREAK handler
  (:data:`mimir.signals.STOP_SIGNALS`) turns into the same clean stop
  (``terminate()`` there runs no Python code at all).
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
from typing import TypedDict

import psutil

from mimir.signals import STOP_SIGNALS
from ringbuf.platform import PLATFORM

__all__ = [
    "die_with_parent", "kernel_parent_death", "SpawnOptions", "spawn_options", "request_stop", "go_realtime", "lower_priority",
    "STOP_SIGNALS",
]

PR_SET_PDEATHSIG = 1
REALTIME_PRIORITY = 1  # SCHED_FIFO, the lowest realtime level: above every normal process, below audio callbacks


WATCHDOG_PERIOD_S = 0.25


def kernel_parent_death() -> bool:
    """True where the kernel ends a worker whose parent died (Linux, not under another OS's rules)."""
    return sys.platform.startswith("linux") and PLATFORM.name == "linux"


def die_with_parent(on_orphaned: Callable[[], None] | None = None, *, parent_pid: int | None = None) -> str:
    """End this process when its parent (the supervisor) dies; exit at once if it already has.

    ``parent_pid``: the pid the parent passed down (its ``os.getpid()``);
    without it the current parent is assumed, which cannot tell a parent
    that died before this call (the orphan then has a new parent). On
    Linux the kernel signals SIGTERM when the parent dies; elsewhere
    ``on_orphaned`` runs in a watchdog thread (default: the same as a stop
    request, so the worker unlinks what it made). Returns how
    (``"kernel"`` or ``"watchdog"``), for the log.
    """
    parent = _parent(parent_pid if parent_pid is not None else os.getppid())
    if kernel_parent_death():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        how = "kernel"
    else:
        _watch_parent(parent, on_orphaned or _stop_self)
        how = "watchdog"
    if parent is None or not _same_parent(parent):  # the parent died before we were watching
        sys.exit(1)
    return how


def _parent(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _same_parent(parent: psutil.Process) -> bool:
    """True while ``parent`` (pid and start time) runs and is still our parent."""
    try:
        return os.getppid() == parent.pid and parent.is_running() and parent.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stop_self() -> None:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        # raise() runs the SIGTERM handler the worker installed (mimir.signals); no console group needed.
        signal.raise_signal(signal.SIGTERM)
    else:
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(parent: psutil.Process | None, on_orphaned: Callable[[], None]) -> None:
    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_PERIOD_S)
            if parent is None or not _same_parent(parent):
                on_orphaned()
                return

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


class SpawnOptions(TypedDict, total=False):
    """Keyword arguments of ``subprocess.Popen`` that :func:`spawn_options` may set."""

    creationflags: int


def spawn_options() -> SpawnOptions:
    """Extra ``subprocess.Popen`` arguments for a supervised child."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {}


def request_stop(proc: subprocess.Popen[bytes]) -> None:
    """Ask a child to stop cleanly (it unlinks what it made); the caller kills it after a grace period."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        proc.send_signal(signal.CTRL_BREAK_EVENT)
    else:
        proc.send_signal(signal.SIGTERM)


def go_realtime() -> str:
    """Move the calling thread to realtime priority where the OS allows it; return what happened, for the log."""
    if sys.platform.startswith("linux") and PLATFORM.name == "linux":
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(REALTIME_PRIORITY))
        except PermissionError:
            return ("realtime priority refused (grant CAP_SYS_NICE or an rtprio limit): "
                    "index latency may suffer when the machine is busy")
        return f"index loop at SCHED_FIFO {REALTIME_PRIORITY}"
    try:
        psutil.Process().nice(_HIGH_PRIORITY)
        return "realtime scheduling not available on this OS; raised the supervisor's priority instead"
    except (psutil.Error, OSError):
        return "realtime scheduling not available on this OS; normal priority"


def lower_priority(niceness: int = 5) -> None:
    """Lower this process's priority (throughput work with seconds of slack: the sync worker).

    +5 gives it about a quarter of a core against each busy normal process
    (CFS weights 335 vs 1024): enough for decoding (about 1 % of a core per
    channel), while capture and indexing win every contended moment.
    """
    try:
        psutil.Process().nice(_LOW_PRIORITY if sys.platform == "win32" else niceness)  # priority class vs nice
    except (psutil.Error, OSError):
        pass


# psutil's nice() takes a priority class on Windows and a nice value elsewhere.
if sys.platform == "win32":  # pragma: no cover - Windows only
    _HIGH_PRIORITY = psutil.HIGH_PRIORITY_CLASS
    _LOW_PRIORITY = psutil.BELOW_NORMAL_PRIORITY_CLASS
else:
    _HIGH_PRIORITY = -5
    _LOW_PRIORITY = 5
