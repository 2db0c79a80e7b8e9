"""Health: GREEN when every callback in the last window met its deadline and none reported an xrun.

:func:`classify` is the rule (a pure function); :class:`HealthMonitor` is a
small thread in the worker that applies it every ``period_s`` and copies the
processor's counters into the ring header's :class:`AudioStatus`, where
``mimir status`` (or any reader) finds them. The callback never touches the
status record: it only bumps plain int counters.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

from .callback import BlockProcessor
from .records import EngineState, Health

__all__ = ["classify", "HealthMonitor", "read_status", "try_realtime", "scheduler_policy", "restore_scheduler"]


def try_realtime(priority: int = 1) -> bool:
    """Best effort: make the calling thread SCHED_FIFO at ``priority`` (Linux); False if not permitted.

    Why: the audio callback needs the GIL. A helper thread of the worker that
    is preempted by an ordinary process *while holding the GIL* stalls the
    realtime audio thread until it runs again (priority inversion). At
    SCHED_FIFO 1 a helper is below every audio thread but above every
    ordinary process, so it finishes its few microseconds and lets go.

    Windows and macOS give Python no scheduling policies (``os.sched_*``
    does not exist there): False, the thread keeps its normal priority,
    which every caller accepts (the worker runs, only without the
    priority-inversion guard).
    """
    if sys.platform == "win32" or sys.platform == "darwin":
        return False
    if not hasattr(os, "sched_setscheduler"):  # a Unix whose libc lacks it
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: the calling thread on Linux
        return True
    except (OSError, PermissionError):
        return False


def scheduler_policy() -> int | None:
    """The calling thread's scheduling policy, to hand to :func:`restore_scheduler` after :func:`try_realtime`.

    None where Python cannot read it (Windows, macOS): there
    :func:`try_realtime` changes nothing, so there is nothing to restore.
    """
    if sys.platform == "win32" or sys.platform == "darwin":
        return None
    if not hasattr(os, "sched_getscheduler"):
        return None
    return os.sched_getscheduler(0)


def restore_scheduler(policy: int | None) -> None:
    """Put the calling thread back to ``policy`` (from :func:`scheduler_policy`) if it changed; None: nothing."""
    if sys.platform == "win32" or sys.platform == "darwin":
        return
    if policy is not None and os.sched_getscheduler(0) != policy:
        os.sched_setscheduler(0, policy, os.sched_param(0))


def classify(*, now_ns: int, running: bool, callbacks: int, last_callback_ns: int, last_bad_ns: int,
             window_ns: int, stall_ns: int, started_ns: int = 0) -> Health:
    """The health rule.

    UNKNOWN: not running, no callback yet, or running for less than one
    window (not judged yet). RED: an xrun or deadline miss less than
    ``window_ns`` ago, or no callback for ``stall_ns``. GREEN otherwise: a
    whole window of callbacks, every one on time.
    """
    if not running or callbacks == 0:
        return Health.UNKNOWN
    if now_ns - last_callback_ns > stall_ns:
        return Health.RED
    if last_bad_ns and now_ns - last_bad_ns < window_ns:
        return Health.RED
    if now_ns - started_ns < window_ns:
        return Health.UNKNOWN
    return Health.GREEN


class HealthMonitor:
    """Publishes the processor's counters and the health verdict into ``status`` every ``period_s``.

    ``status`` is the ring's 0-d structured status view (writer side).
    ``state_fn`` returns the engine's current :class:`EngineState`.
    """

    def __init__(self, processor: BlockProcessor, status: np.ndarray, *, window_s: float, state_fn,
                 period_s: float = 0.1, realtime: bool = False) -> None:
        self.processor = processor
        self.status = status
        self.window_ns = int(window_s * 1e9)
        self.period_s = period_s
        self.state_fn = state_fn
        self.realtime = realtime
        self.got_realtime = False
        block_ns = (processor.block_frames or processor.slot_frames) * 1e9 / processor.sample_rate_hz
        self.stall_ns = int(max(0.25e9, 8 * block_ns))
        self.health = Health.UNKNOWN
        self.started_ns = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        status["health_window_ms"] = int(window_s * 1000)
        status["pid"] = os.getpid()

    def update(self) -> Health:
        """Copy counters, classify, write the status record (``updated_host_ns`` last). Returns the health."""
        p = self.processor
        s = self.status
        now = time.monotonic_ns()
        state = self.state_fn()
        self.health = classify(
            now_ns=now, running=state == EngineState.RUNNING, callbacks=p.callbacks,
            last_callback_ns=p.last_entry_ns, last_bad_ns=p.last_bad_ns, window_ns=self.window_ns,
            stall_ns=self.stall_ns, started_ns=self.started_ns,
        )
        s["state"] = int(state)
        s["health"] = int(self.health)
        s["callbacks"] = p.callbacks
        s["frames"] = p.next_sample
        s["xruns"] = p.xruns
        s["input_overflows"] = p.input_overflows
        s["output_underflows"] = p.output_underflows
        s["deadline_misses"] = p.deadline_misses
        s["failures"] = p.failures + p.truncated
        s["max_callback_ns"] = p.max_callback_ns
        s["last_callback_host_ns"] = p.last_entry_ns
        s["last_bad_host_ns"] = p.last_bad_ns
        s["cpu_load"] = p.cpu_load
        s["updated_host_ns"] = now
        return self.health

    def start(self) -> None:
        self.started_ns = time.monotonic_ns()
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="mimir-audio-health", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        if self.realtime:
            self.got_realtime = try_realtime(1)
        while not self._stop.wait(self.period_s):
            self.update()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self.update()


def read_status(rig: str, ring: str = "audio") -> dict:
    """The worker's :class:`AudioStatus` as a dict, read from outside (``mimir status``, the supervisor).

    Attaches without taking a reader slot; adds ``health_name``, ``state_name``
    and ``writer_alive``. Raises ``ringbuf.SegmentMissing`` if no worker writes
    that ring.
    """
    from mimir.descriptors import AudioBlockRecord
    from ringbuf import RingReader
    from ringbuf.layout import record_fields

    reader = RingReader.attach(ring, rig=rig, descriptor=AudioBlockRecord, register=False)
    try:
        rec = reader.status
        out = {name: rec[name].item() for name in record_fields(rec.dtype)}
        out["health_name"] = Health(out["health"]).name
        out["state_name"] = EngineState(out["state"]).name
        out["writer_alive"] = reader.writer_alive()
        out["published"] = reader.published
    finally:
        reader.close()
    return out
