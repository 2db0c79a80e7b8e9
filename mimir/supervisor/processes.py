"""Worker processes under supervision: start, watch, restart with backoff, give up, stop.

A :class:`SupervisedWorker` owns one child process (a real ``subprocess.Popen``
of ``mimir-worker ...``). The supervisor calls :meth:`SupervisedWorker.tick`
from its loop; nothing here blocks or spawns threads.

Policy (``SupervisionConfig``):

* a worker that exits while the rig runs, or whose heartbeat (the newest
  writer heartbeat of its rings) is older than ``heartbeat_timeout_s``, is a
  *crash*: it is killed if still there and restarted after a backoff that
  starts at ``restart_backoff_s`` and doubles per crash up to
  ``restart_backoff_max_s``;
* more than ``max_restarts`` crashes within ``restart_window_s`` stops the
  retries: state FAILED, with the last exit code and a clear error that
  ``mimir status`` shows;
* a worker that exits with :data:`EXIT_BAD_INPUT` (2) before its first
  heartbeat *refused its spec* (a device that is not there, a mode it cannot
  run): restarting cannot help, so it is not a crash. The worker goes FAILED
  at once, :attr:`SupervisedWorker.refused` is set and its error is the
  worker's own last stderr line. (The rig stops when a worker refuses its
  first start: see ``Rig.run``.)

Each worker's stderr goes to an unlinked temporary file that :meth:`tick`
copies to the supervisor's stderr (so nothing a worker says is lost, and a
worker never blocks on a full pipe) while keeping its last line for the error.

A rig's workers are started from their spec in the rig contract
(:func:`SupervisedWorker.for_spec`): ``python -m mimir_cli.worker_main`` with
the spec in ``MIMIR_WORKER_SPEC``. The entry point makes the worker die with
its parent (:func:`mimir.process_control.die_with_parent`), so a SIGKILLed
supervisor does not leave capture workers behind.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import time
from typing import IO, Callable

import psutil

from mimir.config import SupervisionConfig
from mimir.process_control import request_stop, spawn_options
from mimir.supervisor.status import WorkerState
from mimir.topology import SPEC_ENV, SUPERVISOR_PID_ENV, WorkerSpec, encode_worker_spec

__all__ = ["SupervisedWorker", "EXIT_BAD_INPUT"]

STARTUP_GRACE_S = 10.0      # a fresh worker may take this long to publish its first heartbeat ...
STARTUP_HARD_LIMIT_S = 120.0  # a silent worker that keeps using CPU (a busy machine) is waited for up to this
EXIT_BAD_INPUT = 2      # a worker's exit code for "I refuse this spec" (mimir_cli.worker_main): never restarted
_TAIL_BYTES = 4096      # how much of a worker's stderr is kept to find its last line


class _StderrTail:
    """A child's stderr: an unlinked file the child appends to; :meth:`pump` copies what is new to ``out``.

    The child never blocks (a file, not a pipe); the supervisor reads only what
    was added since the last pump and keeps the last ``_TAIL_BYTES``.
    """

    def __init__(self, out: IO[bytes] | None) -> None:
        self.file = tempfile.TemporaryFile(mode="a+b", prefix="mimir-worker-stderr-")
        self.out = out
        self._offset = 0
        self._tail = b""

    def pump(self) -> None:
        f = self.file
        f.seek(self._offset)
        data = f.read()
        if not data:
            return
        self._offset += len(data)
        self._tail = (self._tail + data)[-_TAIL_BYTES:]
        if self.out is not None:
            try:
                self.out.write(data)
                self.out.flush()
            except (OSError, ValueError):  # our own stderr is gone: keep supervising
                pass

    def last_line(self) -> str:
        for line in reversed(self._tail.decode("utf-8", "replace").splitlines()):
            if line.strip():
                return line.strip()
        return ""

    def close(self) -> None:
        self.file.close()


def _stderr_out() -> IO[bytes] | None:
    return getattr(sys.stderr, "buffer", None)


class SupervisedWorker:
    """One supervised child process.

    ``heartbeat_ns`` returns the worker's newest heartbeat on the monotonic
    clock, or 0 when it has not published one yet.
    """

    def __init__(self, name: str, argv: list[str], policy: SupervisionConfig,
                 heartbeat_ns: Callable[[], int] = lambda: 0, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.policy = policy
        self.heartbeat_ns = heartbeat_ns
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.state = WorkerState.STOPPED
        self.restarts = 0
        self.incarnation = 0
        self.last_exit_code = 0
        self.error = ""
        self.started_unix_ns = 0
        self._started_mono = 0.0
        self._crashes: collections.deque[float] = collections.deque()
        self._restart_at = 0.0
        self._cpu_mark = (0.0, 0.0)
        self._last_why = ""
        self._stderr: _StderrTail | None = None
        self.refused = False  # its last incarnation exited EXIT_BAD_INPUT before its first heartbeat
        self.on_restart: Callable[["SupervisedWorker"], None] | None = None

    @classmethod
    def for_spec(cls, spec: WorkerSpec, policy: SupervisionConfig) -> "SupervisedWorker":
        """The worker the rig contract describes (its spec travels in ``MIMIR_WORKER_SPEC``)."""
        return cls(spec.name, [sys.executable, "-m", "mimir_cli.worker_main"], policy,
                   env={SPEC_ENV: encode_worker_spec(spec), SUPERVISOR_PID_ENV: str(os.getpid())})

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    @property
    def last_stderr_line(self) -> str:
        """The last non-empty line the current (or last) incarnation wrote to stderr."""
        if self._stderr is None:
            return ""
        self._stderr.pump()
        return self._stderr.last_line()

    def start(self) -> None:
        env = dict(os.environ, **(self.env or {}))
        if self._stderr is not None:
            self._stderr.pump()
            self._stderr.close()
        self._stderr = _StderrTail(_stderr_out())
        self.proc = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL, stderr=self._stderr.file,
                                     **spawn_options())
        self.refused = False
        self.incarnation += 1
        self.state = WorkerState.STARTING
        self.started_unix_ns = time.time_ns()
        self._started_mono = time.monotonic()
        self._cpu_mark = (0.0, self._started_mono)

    def tick(self, now: float | None = None) -> None:
        """Advance the state machine: notice exits and silence, restart when the backoff has passed."""
        now = time.monotonic() if now is None else now
        if self._stderr is not None:
            self._stderr.pump()
        if self.state in (WorkerState.STARTING, WorkerState.RUNNING):
            proc = self.proc
            assert proc is not None, "start() made it: a STARTING or RUNNING worker has a process"
            code = proc.poll()
            if code is not None:
                if code == EXIT_BAD_INPUT and self.state == WorkerState.STARTING:
                    self._refused(code)
                    return
                self._crashed(now, code, f"exited with code {code}" if code >= 0 else f"killed by signal {-code}")
                return
            beat_ns = self.heartbeat_ns()
            if beat_ns:
                if self.state == WorkerState.STARTING and self.error:
                    self.error = f"running again after {self.restarts} restart(s); last: {self._last_why}"
                self.state = WorkerState.RUNNING
                age_s = time.monotonic_ns() / 1e9 - beat_ns / 1e9
                timeout_s = self.policy.heartbeat_timeout_s
                if age_s > timeout_s and now - self._started_mono > timeout_s \
                        and not self._making_progress(now, window_s=timeout_s, since=now - age_s):
                    self._kill()
                    self._crashed(now, proc.returncode or -9, f"stopped heartbeating ({age_s:.1f} s, no CPU used)")
            elif now - self._started_mono > STARTUP_GRACE_S and \
                    not self._making_progress(now, window_s=STARTUP_GRACE_S, since=self._started_mono):
                self._kill()
                self._crashed(now, proc.returncode or -9,
                              f"no heartbeat within {now - self._started_mono:.0f} s of start and no CPU used "
                              f"in the last {STARTUP_GRACE_S:.0f} s (hung)")
        elif self.state == WorkerState.BACKOFF and now >= self._restart_at:
            self.restarts += 1
            self.start()
            if self.on_restart:
                self.on_restart(self)

    def _making_progress(self, now: float, *, window_s: float, since: float) -> bool:
        """True while a silent worker keeps using CPU: slow because the machine is busy, not hung.

        A stopped or deadlocked process uses no CPU and is replaced after one
        ``window_s`` of silence; one that keeps computing is given up to
        :data:`STARTUP_HARD_LIMIT_S` of silence (since ``since``), then
        replaced too (a livelock is not progress forever).
        """
        if now - since > STARTUP_HARD_LIMIT_S:
            return False
        assert self.proc is not None, "judged only in tick(), for a STARTING or RUNNING worker"
        try:
            times = psutil.Process(self.proc.pid).cpu_times()
            cpu_s = times.user + times.system
        except psutil.Error:
            return False
        last_cpu_s, last_check = self._cpu_mark
        if last_check < since:  # the first judgement of this silence: mark, and give it one window
            self._cpu_mark = (cpu_s, now)
            return True
        if now - last_check < window_s:
            return True  # judged once per window
        self._cpu_mark = (cpu_s, now)
        return cpu_s > last_cpu_s + 0.01
    def _refused(self, code: int) -> None:
        """It exited EXIT_BAD_INPUT before its first heartbeat: its spec cannot run here. FAILED, not retried."""
        self.last_exit_code = code
        self.refused = True
        self.state = WorkerState.FAILED
        line = self.last_stderr_line or f"exited with code {code} (see its stderr)"
        self.error = f"refused to start: {line}; not restarting"

    def _crashed(self, now: float, code: int, why: str) -> None:
        self._last_why = why
        self.last_exit_code = code
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self.policy.restart_window_s:
            self._crashes.popleft()
        if len(self._crashes) > self.policy.max_restarts:
            self.state = WorkerState.FAILED
            self.error = (
                f"{why}; crashed {len(self._crashes)} times in {self.policy.restart_window_s:.0f} s, "
                f"not restarting (see the worker's stderr)"
            )
            return
        backoff = min(self.policy.restart_backoff_s * 2 ** (len(self._crashes) - 1), self.policy.restart_backoff_max_s)
        self.error = f"{why}; restarting in {backoff:.1f} s"
        self.state = WorkerState.BACKOFF
        self._restart_at = now + backoff

    def _kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Idempotent."""
        if self.proc and self.proc.poll() is None:
            request_stop(self.proc)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc:
            self.last_exit_code = self.proc.returncode
        if self._stderr is not None:
            self._stderr.pump()  # what it said while stopping; the file stays readable for last_stderr_line
        if self.state != WorkerState.FAILED:
            self.state = WorkerState.STOPPED
