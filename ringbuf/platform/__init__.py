"""The platform seam: one :class:`~ringbuf.platform.base.Platform` for this process, chosen at import.

``MIMIR_PLATFORM`` (``linux``, ``darwin``) overrides the choice: with
``MIMIR_PLATFORM=darwin`` on Linux every shared object obeys macOS's rules
(31-character names, marker-file discovery, no reservation), which is how CI
runs the shared-memory suites a second time under those rules. A run must
use one platform in all its processes (the supervisor passes its environment
to its workers).
"""

from __future__ import annotations

import os
import sys

from .base import (
    DoorbellListener, DoorbellSender, LockTimeout, NameTooLong, ObjectLock, OutOfSharedMemory, Platform,
    SegmentError, SegmentExists, SegmentMissing,
)

__all__ = [
    "PLATFORM", "current", "Platform", "DoorbellListener", "DoorbellSender", "ObjectLock", "SegmentError",
    "SegmentExists", "SegmentMissing", "OutOfSharedMemory", "NameTooLong", "LockTimeout", "select",
]

_KNOWN = ("linux", "darwin", "windows")


def select(name: str) -> Platform:
    """The platform implementation for ``name`` (``linux``, ``darwin`` or ``windows``)."""
    if name == "linux":
        from .linux import LinuxPlatform

        return LinuxPlatform()
    if name == "darwin":
        from .darwin import DarwinPlatform

        return DarwinPlatform()
    if name == "windows":
        from .windows import WindowsPlatform

        return WindowsPlatform()
    raise ValueError(f"MIMIR_PLATFORM={name!r}: use one of {', '.join(_KNOWN)}")


def _native() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform == "win32":
        return "windows"
    return "linux" if os.path.isdir("/dev/shm") else "darwin"


PLATFORM: Platform = select(os.environ.get("MIMIR_PLATFORM") or _native())


def current() -> Platform:
    return PLATFORM
