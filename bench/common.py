"""Helpers shared by every ``mimir bench ...``: a description of the machine a run happened on, its load, and
the busy processes a benchmark runs beside what it measures."""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12: bytes, memoryviews

from ringbuf.platform import PLATFORM

__all__ = [
    "machine_info", "load_average_1min", "busy_processes", "sync_data", "plain_write_s", "fsync_tree",
    "UnsupportedPlatform",
]


class UnsupportedPlatform(ImportError):
    """This benchmark does not run on this OS (the message says why); raised when its module is imported."""


def _cpu_model() -> str:
    """The CPU's marketing name: /proc/cpuinfo on Linux, sysctl on macOS, else what ``platform`` knows."""
    if PLATFORM.name == "linux":  # not under macOS rules on Linux, which forbid /proc
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                for line in f:
                    if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
    elif sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.machine()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return int(psutil.virtual_memory().total)
    except (psutil.Error, OSError):
        return None


def machine_info() -> dict:
    """CPU model, core counts, memory, Python, numpy, OS and kernel of this machine (flat, JSON-ready)."""
    try:
        import numpy

        numpy_version = numpy.__version__
    except ImportError:  # pragma: no cover - numpy is a runtime dependency
        numpy_version = None
    usable = os.cpu_count()
    if sys.platform != "win32" and sys.platform != "darwin":  # no sched_getaffinity there: all cores count
        try:
            usable = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # a Unix without it
            pass
    return {
        "cpu_model": _cpu_model(),
        "arch": platform.machine(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "memory_bytes": _memory_bytes(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "numpy": numpy_version,
        "os": platform.platform(),
        "kernel": platform.release(),
        "executable": sys.executable,
    }


def load_average_1min() -> float | None:
    """The 1-minute load average (the run's background load); None where the OS keeps none (Windows)."""
    if sys.platform == "win32":
        return None
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def busy_processes(count: int, target: Callable[[], None]) -> list[BaseProcess]:
    """``count`` daemon processes (not started) running ``target``, each spinning a core beside a measurement.

    Forked where the OS can fork (they start in milliseconds, with this
    process's modules), spawned on Windows (``target`` must be a module-level
    function there). The caller starts, terminates and joins them.
    """
    if sys.platform == "win32":
        spawn = mp.get_context("spawn")
        return [spawn.Process(target=target, daemon=True) for _ in range(count)]
    fork = mp.get_context("fork")
    return [fork.Process(target=target, daemon=True) for _ in range(count)]


def sync_data(fd: int) -> None:
    """Flush a file's data to the disk: ``fdatasync`` where Python has it (Linux), ``fsync`` on macOS and Windows."""
    if sys.platform == "win32" or sys.platform == "darwin":
        os.fsync(fd)
    else:
        os.fdatasync(fd)


def plain_write_s(path: str | os.PathLike[str], chunks: int | Iterable[Buffer]) -> float:
    """Seconds to write ``chunks`` sequentially to ``path`` and flush them to the disk (:func:`sync_data`): the peer
    a take or snapshot's write speed is measured against. ``chunks``: the buffers in order, or a byte count of
    random data (1 MiB buffers). ``path`` is removed afterwards."""
    if isinstance(chunks, int):
        chunks = _random_chunks(chunks)
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:  # a regular file may take less than asked
                view = view[os.write(fd, view):]
        sync_data(fd)
    finally:
        os.close(fd)
    wall = time.perf_counter() - start
    os.unlink(path)
    return wall


def _random_chunks(nbytes: int) -> Iterator[bytes]:
    chunk = os.urandom(1 << 20)
    for start in range(0, nbytes, len(chunk)):
        yield chunk[: min(nbytes - start, len(chunk))]


def fsync_tree(root: str | os.PathLike[str]) -> float:
    """fsync every file under ``root``; return the seconds it took."""
    start = time.perf_counter()
    for folder, _, names in os.walk(root):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return time.perf_counter() - start
