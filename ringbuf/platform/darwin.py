"""macOS rules: 31-character names, no way to list POSIX shared memory, no memory reservation.

macOS limits POSIX shared-memory names to 31 characters including the leading
slash and offers no listing of them (there is no /dev/shm). So the creator of
a segment also registers a marker file of the same name
(:mod:`ringbuf.platform.registry`); discovery lists the markers and unlinking
removes the marker. A SIGKILLed creator leaves both, and the next start (or
``mimir doctor --clean``) removes both. Lock files and FIFO doorbells live in
the same directory.

``ftruncate`` on a POSIX shared-memory object is allowed once on macOS and
its pages are ordinary pageable memory, so there is nothing to reserve: the
budget check against available memory (``shm_available_bytes``) is what
guards a rig there.

This class runs unchanged on Linux too: ``MIMIR_PLATFORM=darwin`` selects it
there, which is how CI runs the shared-memory suites under macOS's rules, and
then :mod:`ringbuf.platform.macos_rules` also forbids what macOS lacks
(/proc, prctl, timed semaphore waits) in every process of the run.
"""

from __future__ import annotations

import sys

assert sys.platform != "win32", "ringbuf.platform.darwin is for macOS (and macOS rules on Linux)"

import ctypes  # noqa: E402
import os  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import psutil  # noqa: E402

from .posix import PosixPlatform  # noqa: E402
from .registry import MarkerRegistry, default_objects_dir  # noqa: E402

__all__ = ["DarwinPlatform"]

LIBSYSTEM = "/usr/lib/libSystem.B.dylib"


class DarwinPlatform(PosixPlatform):
    name = "darwin"
    max_name_chars = 31  # PSHMNAMLEN + 1: the leading slash counts

    def __init__(self, objects_dir: Path | None = None) -> None:
        self.objects_dir = objects_dir or default_objects_dir()
        self._registry = MarkerRegistry(self.objects_dir)

    def shm_available_bytes(self) -> int | None:
        return psutil.virtual_memory().available

    def _register(self, name: str) -> None:
        self._registry.add(name)

    def _unregister(self, name: str) -> None:
        self._registry.remove(name)

    def list_objects(self, prefix: str) -> list[str]:
        return self._registry.names(prefix)

    def full_barrier(self) -> Callable[[], None]:
        if sys.platform == "darwin":  # pragma: no cover - macOS only
            # OSMemoryBarrier (libkern/OSAtomic.h) is a `dmb ish` on arm64; deprecated, still exported.
            barrier = ctypes.CDLL(LIBSYSTEM).OSMemoryBarrier
            barrier.restype = None
            return barrier
        else:
            return os.sched_yield  # macOS rules on Linux: the Linux kernel's barrier (see ringbuf.fence)

    def limits(self) -> dict[str, str]:
        return {
            "names": f"shared-memory names up to {self.max_name_chars} characters with the leading slash "
                     "(rig names up to 16)",
            "shared memory": "POSIX shm_open (posix_ipc); pageable, nothing reserved: the rig's budget is checked "
                             "against available memory",
            "cleanup": "the creator unlinks; a crashed writer's objects are found from marker files and removed "
                       "by the next start or `mimir doctor --clean`",
            "discovery": f"marker files in {self.objects_dir} (macOS cannot list POSIX shared memory)",
            "doorbells": f"named FIFOs in {self.objects_dir}",
            "locks": "flock on a companion file (released by the kernel when its holder dies)",
            "parent death": "a watchdog thread in each worker (macOS has no PR_SET_PDEATHSIG)",
            "stop": "SIGTERM",
            "priority": "nice -5 for the supervisor if allowed (no SCHED_FIFO for Python threads)",
        }
