"""Linux: segments are files in /dev/shm (a tmpfs), so /dev/shm's listing is the registry of objects.

Memory is reserved with ``posix_fallocate`` when a segment is created: on a
tmpfs a plain ``ftruncate`` only sets the size, and a full /dev/shm then
kills the first process that touches an unbacked page with SIGBUS. With the
reservation the creator gets ENOSPC up front and says how much was needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from .posix import PosixPlatform, is_enospc

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
