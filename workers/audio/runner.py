"""Run one engine as a worker process: signals, duration, readiness line, exit code.

The worker prints exactly one readiness line to stderr once the stream runs::

    mimir-audio ready {"rig": ..., "ring": ..., "metrics_ring": ..., "stream": {...StreamInfo...}}

and a summary line (``mimir-audio done {...}``) when it stops. SIGTERM and
SIGINT stop it cleanly: the stream stops, the rings are unlinked, the exit
code is 0. A failed stream exits 1; bad input 2; a missing library 3.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from typing import TextIO

from . import jack
from mimir.signals import stop_on_signals
from mimir.topology import AudioWorkerSpec

from .config import EngineConfig
from .engine import AudioEngine
from .errors import AudioConfigError, AudioError
from .health import try_realtime
from .records import EngineState, Health, metrics_ring_name

__all__ = ["run_worker", "run_spec", "READY_PREFIX", "DONE_PREFIX", "WorkerProcess"]

READY_PREFIX = "mimir-audio ready "
DONE_PREFIX = "mimir-audio done "


def run_worker(config: EngineConfig, *, duration_s: float | None = None, jack_loopback: bool = False,
               log: TextIO | None = None) -> int:
    """Run until SIGTERM/SIGINT, ``duration_s``, the end of the source, or a failure; return the exit code.

    Raises :class:`~workers.audio.errors.AudioError` for bad input before the stream runs.
    """
    log = log or sys.stderr
    with stop_on_signals(threading.Event()) as stop:
        return _run(config, stop, duration_s, jack_loopback, log)


def run_spec(spec: AudioWorkerSpec) -> int:
    """The rig's audio worker (started by the supervisor with its spec); returns the exit code."""
    config = EngineConfig.from_spec(spec, freeze_gc=True, realtime_threads=True)
    if metrics_ring_name(spec.ring.object_id) != spec.metrics_ring.object_id:
        raise AudioConfigError(f"the rig contract names the metrics ring {spec.metrics_ring.object_id!r}, "
                               f"the engine would create {metrics_ring_name(spec.ring.object_id)!r}")
    return run_worker(config)


def _run(config: EngineConfig, stop: threading.Event, duration_s: float | None, jack_loopback: bool,
         log: TextIO) -> int:
    sys.setswitchinterval(0.0005)  # the audio thread waits less for the GIL when another thread holds it
    engine = AudioEngine(config)
    try:
        info = engine.init()
        if jack_loopback:
            if not info.jack_output_ports or not info.jack_input_ports:
                raise AudioConfigError("--jack-loopback needs --host-api jack (no JACK ports were found)")
            n = min(len(info.jack_output_ports), len(info.jack_input_ports))
            jack.make_loopback(list(info.jack_output_ports[:n]), list(info.jack_input_ports[:n]))
        if config.realtime_threads:
            # This thread only waits while the stream runs, but it must never be preempted by an
            # ordinary process while it holds the GIL the audio callback needs (priority inversion).
            try_realtime(1)
        engine.start()
        ring, metrics = engine.ring_names
        print(READY_PREFIX + json.dumps({"rig": config.rig, "ring": ring, "metrics_ring": metrics,
                                         "pid": _pid(), "stream": info.as_dict()}), file=log, flush=True)
        deadline = time.monotonic() + duration_s if duration_s else None
        while not stop.wait(0.25):
            if engine.ended():
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
        health_at_stop = engine.status()["health"]  # judged while still running
        engine.stop()
        final_state = engine.poll()
        status = engine.status()
        failure = engine.failure()
    finally:
        engine.shutdown()
    summary = {
        "state": EngineState(final_state).name, "health": Health(health_at_stop).name,
        "callbacks": status["callbacks"], "frames": status["frames"], "xruns": status["xruns"],
        "deadline_misses": status["deadline_misses"], "max_callback_us": status["max_callback_ns"] / 1e3,
        "failure": failure,
    }
    print(DONE_PREFIX + json.dumps(summary), file=log, flush=True)
    return 1 if final_state == EngineState.FAILED else 0


def _pid() -> int:
    import os

    return os.getpid()


class WorkerProcess:
    """``python -m workers.audio worker ARGS`` as a child process: its ready/done lines parsed, stopped by pid.

    The caller owns the process: :meth:`stop` (SIGTERM, then SIGKILL) must be
    called, also on failure. The worker unlinks its own rings when it exits.
    """

    def __init__(self, args: list[str], env: dict | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "workers.audio", "worker", *args], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.ready: dict | None = None
        self.done: dict | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        stderr = self.proc.stderr
        assert stderr is not None  # opened with stderr=PIPE
        for line in stderr:
            self.lines.append(line.rstrip("\n"))
            if line.startswith(READY_PREFIX):
                self.ready = json.loads(line[len(READY_PREFIX):])
                self._ready.set()
            elif line.startswith(DONE_PREFIX):
                self.done = json.loads(line[len(DONE_PREFIX):])
        self._ready.set()

    def wait_ready(self, timeout_s: float = 30.0) -> dict:
        """The worker's ready record; stops it and raises AudioError (with its stderr tail) if it never came."""
        self._ready.wait(timeout_s)
        if self.ready is None:
            self.stop()
            tail = "\n".join(self.lines[-15:])
            raise AudioError(f"the audio worker did not start (exit {self.proc.returncode}):\n{tail}")
        return self.ready

    def signal(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit code (raises TimeoutExpired if it does not exit)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout_s)
        self._thread.join(timeout=2)
        return code

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``. Idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._thread.join(timeout=2)
        return self.proc.returncode

    def stderr(self) -> str:
        return "\n".join(self.lines)
