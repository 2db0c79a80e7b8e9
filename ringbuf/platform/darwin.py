"""macOS rules: 31-character names, no way to list POSIX shared memory, no memory reservation.

macOS limits POSIX shared-memory names to 31 characters including the leading
slash and offers no listing of them (there is no /dev/shm). So the creator of
a segment also creates an empty *marker file* of the same name in
:attr:`objects_dir`, and discovery lists those markers; the marker goes when
the segment is unlinked. A SIGKILLed creator leaves both, and the next start
(or ``mimir doctor --clean``) removes both.

``ftruncate`` on a POSIX shared-memory object is allowed once on macOS and
its pages are ordinary pageable memory, so there is nothing to reserve: the
budget check against available memory (``shm_available_bytes``) is what
guards a rig there.

This class runs unchanged on Linux too: ``MIMIR_PLATFORM=darwin`` selects it
there, which is how CI runs the shared-memory suites under macOS's rules
(see :mod:`ringbuf.platform`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psutil

from .posix import PosixPlatform

__all__ = ["DarwinPlatform"]


def _default_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"mimir-objects-{uid}"


class DarwinPlatform(PosixPlatform):
    name = "darwin"
    max_name_chars = 31  # PSHMNAMLEN + 1: the leading slash counts

    def __init__(self, objects_dir: Path | None = None) -> None:
        self.objects_dir = objects_dir or _default_dir()

    def shm_available_bytes(self) -> int | None:
        return psutil.virtual_memory().available

    def _register(self, name: str) -> None:
        self.objects_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.objects_dir / name).touch(mode=0o600)

    def _unregister(self, name: str) -> None:
        (self.objects_dir / name).unlink(missing_ok=True)

    def list_objects(self, prefix: str) -> list[str]:
        try:
            names = os.listdir(self.objects_dir)
        except OSError:
            return []
        return sorted(n for n in names if n.startswith(prefix))
