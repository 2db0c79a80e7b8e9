"""The object registry of OSes that cannot list their shared memory: one empty marker file per object.

macOS has no listing of POSIX shared memory (no ``/dev/shm``) and Windows
none of named mappings, so there the creator of a segment also creates an
empty *marker file* of the same name in a per-user directory, discovery
(:meth:`MarkerRegistry.names`) lists the markers, and unlinking removes the
marker. A marker outlives a SIGKILLed creator; :func:`ringbuf.scan` then
finds no object (Windows, where a mapping vanishes with its last handle) or a
stale one (macOS) behind it, and ``mimir doctor --clean`` removes both.

The registry is plain files, the same code on every OS (CI runs it on Linux
through ``MIMIR_PLATFORM=darwin``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["MarkerRegistry", "default_objects_dir"]


def default_objects_dir() -> Path:
    """This user's directory for markers and companion files (the temp directory is per user on macOS/Windows)."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    return Path(tempfile.gettempdir()) / ("mimir-objects" if uid is None else f"mimir-objects-{uid}")


class MarkerRegistry:
    """Marker files in ``directory``, one per live (or stale) shared-memory object. Owned by the object's creator."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def add(self, name: str) -> None:
        """Register object ``name`` (idempotent)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.directory / name).touch(mode=0o600)

    def remove(self, name: str) -> bool:
        """Forget object ``name``; False if it was not registered."""
        try:
            (self.directory / name).unlink()
            return True
        except FileNotFoundError:
            return False

    def names(self, prefix: str) -> list[str]:
        """Registered names (and any companion files kept in the same directory) starting with ``prefix``."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return sorted(n for n in names if n.startswith(prefix))
