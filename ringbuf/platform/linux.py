"""Linux: segments are files in /dev/shm (a tmpfs), so /dev/shm's listing is the registry of objects.

Memory is reserved with ``posix_fallocate`` when a segment is created: on a
tmpfs a plain ``ftruncate`` only sets the size, and a full /dev/shm then
kills the first process that touches an unbacked page with SIGBUS. With the
reservation the creator gets ENOSPC up front and says how much was needed.
"""

from __future__ import annotations

import sys

assert sys.platform == "linux", "ringbuf.platform.linux is for Linux"

import os  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import psutil  # noqa: E402

from .posix import PosixPlatform, is_enospc  # noqa: E402

__all__ = ["LinuxPlatform", "DEV_SHM"]

DEV_SHM = Path("/dev/shm")


class LinuxPlatform(PosixPlatform):
    name = "linux"
    max_name_chars = 255
    objects_dir = DEV_SHM

    def _reserve(self, fd: int, size: int, name: str) -> None:
        os.ftruncate(fd, size)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if is_enospc(exc):
                raise self.out_of_memory(name, size, exc) from None
            raise

    def shm_available_bytes(self) -> int | None:
        try:
            st = os.statvfs(DEV_SHM)
        except OSError:
            return None
        # tmpfs pages are ordinary memory: a segment needs room in /dev/shm *and* in RAM.
        return min(st.f_bavail * st.f_frsize, psutil.virtual_memory().available)

    def shm_where(self) -> str:
        return str(DEV_SHM)

    def list_objects(self, prefix: str) -> list[str]:
        try:
            names = os.listdir(DEV_SHM)
        except OSError:
            return []
        return sorted(n for n in names if n.startswith(prefix))

    def full_barrier(self) -> Callable[[], None]:
        # sched_yield enters the scheduler, which executes smp_mb() on every call (see ringbuf.fence).
        return os.sched_yield

    def limits(self) -> dict[str, str]:
        return {
            "names": f"shared-memory names up to {self.max_name_chars} characters (Mimir keeps them to 31, "
                     "macOS's limit, so a rig config works everywhere)",
            "shared memory": "POSIX shm_open on the /dev/shm tmpfs, reserved with posix_fallocate at creation",
            "cleanup": "the creator unlinks; a crashed writer's objects are found by listing /dev/shm and removed "
                       "by the next start or `mimir doctor --clean`",
            "discovery": "the /dev/shm listing",
            "doorbells": "named FIFOs in /dev/shm",
            "locks": "flock on a companion file (released by the kernel when its holder dies)",
            "parent death": "PR_SET_PDEATHSIG (the kernel signals a worker when its supervisor dies)",
            "stop": "SIGTERM",
            "priority": "SCHED_FIFO 1 for the supervisor's index loop if allowed",
        }
