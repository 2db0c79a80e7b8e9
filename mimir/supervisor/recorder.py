"""The rig's recorder (the config's ``[record]`` section): `mimir record --from-start` as a child of the supervisor.

The supervisor starts it after the reservoir and the clock board exist and
before any worker, and waits until the recorder's status board
(``mimir-<rig>-rec<N>``) shows it running: the rig is then recorded from its
first frame. The recorder is a reader like any other (it changes nothing in
the rig); when the supervisor stops it closes the reservoir after indexing
everything its workers published, and the recorder writes what was indexed,
closes its take and exits by itself: :meth:`RigRecorder.finish` waits for
that. A recorder that dies while the rig runs is started again into a new
take (its previous take is repaired by the new one: `docs/record.md`), at
most ``supervision.max_restarts`` times.

Takes go to ``[record] out`` (relative paths: to the supervisor's working
folder), one folder per recorder start: ``<rig>-YYYYmmdd-HHMMSS``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from mimir.config import RecordConfig
from mimir.process_control import request_stop, spawn_options

__all__ = ["RigRecorder", "RecorderRefused"]

READY_TIMEOUT_S = 60.0   # a recorder imports PyAV, soundfile and the take writer: seconds on a loaded machine
FINISH_TIMEOUT_S = 120.0  # writing what is queued after the rig stopped (the writer's lag, at most a window)


class RecorderRefused(RuntimeError):
    """The recorder would not start (its folder cannot be made, a bad option): its own last line says why."""


class RigRecorder:
    """One ``mimir record`` child process of the supervisor (see the module docstring)."""

    def __init__(self, rig: str, config: RecordConfig, max_restarts: int) -> None:
        self.rig = rig
        self.config = config
        self.max_restarts = max_restarts
        self.restarts = 0
        self.proc: subprocess.Popen | None = None
        self.folder: Path | None = None
        self.error = ""
        self._stderr: IO[bytes] | None = None  # the present incarnation's stderr (a temporary file)

    def argv(self, folder: Path, from_start: bool) -> list[str]:
        cfg = self.config
        args = [sys.executable, "-m", "mimir_cli.main", "record", "--rig", self.rig, "--out", str(folder),
                "--video", cfg.video]
        if cfg.split_seconds is not None:
            args += ["--split-seconds", repr(cfg.split_seconds)]
        return args + (["--from-start"] if from_start else ["--pre-roll", "0"])

    def start(self, *, from_start: bool = True) -> None:
        """Start the recorder and wait until its status board shows it running; :class:`RecorderRefused` if not."""
        from mimir.record.status import read_recorders

        stem = Path(self.config.out) / f"{self.rig}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.folder = stem
        n = 1
        while self.folder.exists():  # a restart within the same second as the take it replaces
            n += 1
            self.folder = stem.with_name(f"{stem.name}-{n}")
        self._stderr = tempfile.TemporaryFile(prefix="mimir-recorder-stderr-")
        self.proc = subprocess.Popen(self.argv(self.folder, from_start), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._stderr, **spawn_options())
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not any(r.alive and r.header["pid"] == self.proc.pid for r in read_recorders(self.rig)):
            if self.proc.poll() is not None:
                raise RecorderRefused(f"its recorder refused to start (exit {self.proc.returncode}): "
                                      f"{self.last_line() or 'no message'}")
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise RecorderRefused(f"its recorder did not start within {READY_TIMEOUT_S:g} s")
            time.sleep(0.05)

    def last_line(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def tick(self) -> None:
        """Called from the supervisor's tick: a recorder that died while the rig runs is started again."""
        if self.proc is None or self.proc.poll() is None:
            return
        code = self.proc.returncode
        self.error = f"recorder exited with code {code}: {self.last_line()}"
        self.proc = None
        if self.restarts >= self.max_restarts:
            self.error += f"; not restarted ({self.restarts} restarts)"
            return
        self.restarts += 1
        try:
            self.start(from_start=False)
        except RecorderRefused as exc:
            self.error = str(exc)
            self.proc = None

    def finish(self, timeout_s: float = FINISH_TIMEOUT_S) -> None:
        """After the reservoir closed: wait for the recorder to close its take (SIGTERM, then kill, if it hangs)."""
        proc = self.proc
        if proc is None:
            return
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            request_stop(proc)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self.proc = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def __repr__(self) -> str:
        return f"<RigRecorder {self.rig} pid {self.pid} -> {self.folder}>"

