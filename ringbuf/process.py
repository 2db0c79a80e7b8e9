"""Process facts the shared objects need, the same on every OS (psutil).

A process is identified by its pid *and* its start time: the pair tells a
live writer from an unrelated process that later got the same pid. The start
time is stored in headers as integer microseconds (:func:`identity`).
"""

from __future__ import annotations

import os

import psutil

__all__ = ["identity", "alive", "exists", "IDENTITY_TOLERANCE_US"]

IDENTITY_TOLERANCE_US = 1000  # start times agree to the tick; a pid is never reused within a millisecond


def _start_time_s(proc: psutil.Process) -> float:
    try:
        # psutil >= 7 on Linux: jiffies since boot, immune to clock steps (not in types-psutil yet)
        return proc.create_time(monotonic=True)  # type: ignore[call-arg]
    except TypeError:
        return proc.create_time()


def identity(pid: int | None = None) -> int:
    """The start time of ``pid`` (default: this process) in microseconds, or 0 when it cannot be read."""
    try:
        return int(round(_start_time_s(psutil.Process(os.getpid() if pid is None else pid)) * 1e6))
    except (psutil.Error, OSError):
        return 0


def exists(pid: int) -> bool:
    """True if a process ``pid`` exists (of any user), zombies excluded."""
    return alive(pid)


def alive(pid: int, start_identity: int = 0) -> bool:
    """True if process ``pid`` runs and, when ``start_identity`` is given, is the process that had it.

    A zombie (exited, not yet reaped) is not alive. A process of another user
    whose start time cannot be read counts as alive: never call another
    user's live object stale.
    """
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if start_identity:
            now = int(round(_start_time_s(proc) * 1e6))
            return abs(now - start_identity) <= IDENTITY_TOLERANCE_US
        return True
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
