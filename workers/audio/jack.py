"""JACK helpers built on the command-line tools that ship with jackd2 (jackd, jack_lsp, jack_connect, jack_iodelay).

Everything takes an optional ``env`` mapping so a private server (its name
in ``JACK_DEFAULT_SERVER``) can be addressed without touching the caller's
environment. :class:`DummyServer` owns one ``jackd -d dummy`` process and
stops it by pid, never by name. A server is named after the process that
started it (``mimir<pid>x<n>``); what a killed run left of one (its jackd,
its client semaphores in shared memory) is removed by the next
:meth:`DummyServer.start` (:func:`remove_leftovers`).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from ringbuf.platform import PLATFORM

__all__ = [
    "JackError", "DummyServer", "jack_tools_available", "list_ports", "connections", "connect", "disconnect",
    "make_loopback", "route", "iodelay_round_trip", "IodelayResult", "wait_for_ports", "remove_leftovers",
]

_counter = itertools.count()
_TOOL_TIMEOUT_S = 5.0
_PRIVATE_NAME = re.compile(r"^mimir(?:test)?(\d+)x\d+$")          # DummyServer names: mimir<pid>x<n>
_CLIENT_SEMAPHORE = re.compile(r"^jack_sem\.\d+_(mimir(?:test)?\d+x\d+)_")  # jackd's per-client semaphores


class JackError(RuntimeError):
    """A JACK tool failed or a server did not come up."""


def jack_tools_available() -> str | None:
    """None if jackd, jack_lsp, jack_connect and jack_iodelay are on PATH, else which one is missing."""
    for tool in ("jackd", "jack_lsp", "jack_connect", "jack_disconnect", "jack_iodelay"):
        if shutil.which(tool) is None:
            return tool
    return None


def _run(args: list[str], env: Mapping[str, str] | None, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(args, env=dict(env) if env is not None else None, capture_output=True, text=True,
                              timeout=_TOOL_TIMEOUT_S)
    except FileNotFoundError:
        raise JackError(f"{args[0]} not found: apt-get install jackd2 (or run bash scripts/setup.sh)") from None
    except subprocess.TimeoutExpired:
        raise JackError(f"{' '.join(args)} did not answer within {_TOOL_TIMEOUT_S:.0f} s (is the server hung?)") from None
    if check and proc.returncode != 0:
        raise JackError(f"{' '.join(args)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return proc


def list_ports(env: Mapping[str, str] | None = None) -> list[str]:
    """All port names of the server."""
    out = _run(["jack_lsp"], env).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def connections(env: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """``{port: [connected ports]}`` for every port of the server."""
    out = _run(["jack_lsp", "-c"], env).stdout
    result: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            if current is not None:
                result[current].append(line.strip())
        else:
            current = line.strip()
            result[current] = []
    return result


def connect(source: str, destination: str, env: Mapping[str, str] | None = None) -> None:
    _run(["jack_connect", source, destination], env)


def disconnect(source: str, destination: str, env: Mapping[str, str] | None = None) -> None:
    _run(["jack_disconnect", source, destination], env, check=False)


def _isolate(ports: list[str], env: Mapping[str, str] | None) -> None:
    """Remove every existing connection of ``ports`` (PortAudio auto-connects its ports to system ports)."""
    table = connections(env)
    for port in ports:
        for other in table.get(port, []):
            # jack_disconnect accepts either order.
            disconnect(port, other, env)


def make_loopback(outputs: list[str], inputs: list[str], env: Mapping[str, str] | None = None) -> None:
    """A pure digital loop: ``outputs[k] -> inputs[k]``, every other connection of these ports removed."""
    if len(outputs) != len(inputs):
        raise JackError(f"loopback needs as many outputs as inputs, got {len(outputs)} and {len(inputs)}")
    _isolate([*outputs, *inputs], env)
    for out_port, in_port in zip(outputs, inputs):
        connect(out_port, in_port, env)


def route(pairs: list[tuple[str, str]], env: Mapping[str, str] | None = None) -> None:
    """Connect each ``(source, destination)``, after removing every other connection of those ports."""
    _isolate([p for pair in pairs for p in pair], env)
    for source, destination in pairs:
        connect(source, destination, env)


def wait_for_ports(names: list[str], env: Mapping[str, str] | None = None, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        present = set(list_ports(env))
        missing = [n for n in names if n not in present]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise JackError(f"JACK ports did not appear within {timeout_s:.0f} s: {', '.join(missing)}")
        time.sleep(0.05)


@dataclass(frozen=True)
class IodelayResult:
    round_trip_frames: float
    round_trip_ms: float
    readings: int


_IODELAY_RE = re.compile(r"^\s*([0-9.]+) frames\s+([0-9.]+) ms total roundtrip latency")


def iodelay_round_trip(env: Mapping[str, str] | None = None, seconds: float = 1.5) -> IodelayResult:
    """Run ``jack_iodelay`` with its output looped to its input; return its (most frequent) round-trip figure.

    ``stdbuf -o0`` makes jack_iodelay's stdout unbuffered, otherwise nothing
    arrives before it exits. The process is stopped by pid (SIGINT, then SIGKILL).
    """
    args = ["jack_iodelay"]
    if shutil.which("stdbuf"):
        args = ["stdbuf", "-o0", *args]
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(args, env=dict(env) if env is not None else None, stdout=log, stderr=subprocess.STDOUT,
                            text=True)
    try:
        wait_for_ports(["jack_delay:out", "jack_delay:in"], env)
        make_loopback(["jack_delay:out"], ["jack_delay:in"], env)
        time.sleep(seconds)
    finally:
        _stop_pid(proc)
    log.seek(0)
    readings = []
    for line in log.read().splitlines():
        m = _IODELAY_RE.match(line)
        if m and float(m.group(1)) > 0:
            readings.append((float(m.group(1)), float(m.group(2))))
    log.close()
    if not readings:
        raise JackError("jack_iodelay printed no round-trip figure (is the loop connected? is stdbuf installed?)")
    frames = max(set(r[0] for r in readings), key=lambda f: sum(1 for r in readings if r[0] == f))
    ms = next(r[1] for r in readings if r[0] == frames)
    return IodelayResult(frames, ms, len(readings))


def _stop_pid(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout_s: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


def _orphaned(server: str) -> bool:
    """True when ``server`` is a DummyServer name whose starting process is gone (a killed run's)."""
    m = _PRIVATE_NAME.match(server)
    return m is not None and not psutil.pid_exists(int(m[1]))


def remove_leftovers() -> list[str]:
    """Stop the jackd of every private server whose starter died, then remove their client semaphores.

    A run killed with SIGKILL never stops its server (jackd runs in a session
    of its own) and a jackd killed with its clients attached leaves their
    ``jack_sem.*`` objects in shared memory. Returns what was stopped or
    removed. Servers of live processes are never touched.
    """
    done = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "jackd":
            continue
        try:
            server = proc.environ().get("JACK_DEFAULT_SERVER", "")
            if _orphaned(server):
                proc.terminate()
                proc.wait(5)
                done.append(f"jackd {proc.pid} ({server})")
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or another user's
    for name in PLATFORM.list_objects("jack_sem."):
        m = _CLIENT_SEMAPHORE.match(name)
        if m and _orphaned(m[1]) and PLATFORM.remove_object(name):
            done.append(name)
    return done


class DummyServer:
    """One private ``jackd -d dummy`` server, addressed through :attr:`env`, stopped by pid.

    Tries realtime scheduling first (``-R -P 70``) and falls back to
    ``--no-realtime`` when the server does not come up with it. The server's
    output goes to :attr:`log_path`; :meth:`xruns` counts the xruns it logged.
    """

    def __init__(self, sample_rate_hz: int = 48000, period_frames: int = 256, *, name: str | None = None,
                 realtime: bool = True, base_env: Mapping[str, str] | None = None) -> None:
        self.sample_rate_hz = int(sample_rate_hz)
        self.period_frames = int(period_frames)
        self.name = name or f"mimir{os.getpid()}x{next(_counter)}"
        self.realtime_requested = realtime
        self.realtime = False
        env = dict(base_env if base_env is not None else os.environ)
        env["JACK_DEFAULT_SERVER"] = self.name
        env["JACK_NO_START_SERVER"] = "1"
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._logdir = tempfile.TemporaryDirectory(prefix="mimir-jackd-")
        self.log_path = Path(self._logdir.name) / "jackd.log"

    def start(self, timeout_s: float = 10.0) -> "DummyServer":
        missing = jack_tools_available()
        if missing:
            raise JackError(f"{missing} not found: apt-get install jackd2 (or run bash scripts/setup.sh)")
        remove_leftovers()  # what a killed run left: orphaned servers, their client semaphores
        attempts = [True, False] if self.realtime_requested else [False]
        errors = []
        for rt in attempts:
            proc = self._spawn(rt)
            if self._wait_ready(proc, timeout_s):
                self.realtime = rt
                return self
            errors.append(self.log_path.read_text(errors="replace")[-600:])
            self.stop()
        raise JackError("jackd -d dummy did not start:\n" + "\n---\n".join(errors))

    def _spawn(self, realtime: bool) -> subprocess.Popen:
        sched = ["-R", "-P", "70"] if realtime else ["--no-realtime"]
        args = ["jackd", *sched, "-d", "dummy", "-r", str(self.sample_rate_hz), "-p", str(self.period_frames)]
        log = open(self.log_path, "w")
        proc = self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return proc

    def _wait_ready(self, proc: subprocess.Popen, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                if "system:capture_1" in list_ports(self.env):
                    return True
            except JackError:
                pass
            time.sleep(0.05)
        return False

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_offset(self) -> int:
        """Current size of the server log (pass to :meth:`xruns` to count from here)."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def xruns(self, since_offset: int = 0, client: str | None = None) -> int:
        """Xruns the server logged since ``since_offset`` ("JackEngine::XRun: client = NAME was not finished")."""
        with open(self.log_path, errors="replace") as f:
            f.seek(since_offset)
            text = f.read()
        lines = [ln for ln in text.splitlines() if "JackEngine::XRun" in ln]
        if client is not None:
            lines = [ln for ln in lines if f"client = {client} " in ln]
        return len(lines)

    def stop(self) -> None:
        """Stop jackd by pid (SIGTERM, then SIGKILL). Idempotent."""
        if self.proc is not None:
            _stop_pid(self.proc, signal.SIGTERM, timeout_s=5.0)
            self.proc = None

    def close(self) -> None:
        self.stop()
        self._logdir.cleanup()

    def __enter__(self) -> "DummyServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
