"""The platform seam: one :class:`~ringbuf.platform.base.Platform` for this process, chosen at import.

=========  ======================  =================  ==============  ================================
platform   shared memory           discovery          doorbells       object locks
=========  ======================  =================  ==============  ================================
linux      POSIX shm, reserved     /dev/shm listing   FIFOs           flock
darwin     POSIX shm, 31 chars     marker files       FIFOs           flock
windows    named file mappings     marker files       loopback UDP    named mutex (abandoned = taken)
=========  ======================  =================  ==============  ================================

``MIMIR_PLATFORM`` (``linux``, ``darwin``) overrides the choice: with
``MIMIR_PLATFORM=darwin`` on Linux every shared object obeys macOS's rules
(31-character names, marker-file discovery, no reservation) and
:mod:`.macos_rules` forbids what macOS lacks (/proc, prctl, timed semaphore
waits), which is how CI runs the shared-memory suites a second time under
those rules. A run must use one platform in all its processes (the
supervisor passes its environment to its workers).
"""

from __future__ import annotations

import os
import sys

from .base import (
    DoorbellListener, DoorbellSender, LockTimeout, NameTooLong, ObjectLock, OutOfSharedMemory, Platform, SegmentError,
    SegmentExists, SegmentMissing,
)

__all__ = [
    "PLATFORM", "current", "Platform", "DoorbellListener", "DoorbellSender", "ObjectLock", "SegmentError",
    "SegmentExists", "SegmentMissing", "OutOfSharedMemory", "NameTooLong", "LockTimeout", "select", "native",
    "EMULATED",
]

_KNOWN = ("linux", "darwin", "windows")


def select(name: str) -> Platform:
    """The platform implementation for ``name`` (``linux``, ``darwin`` or ``windows``)."""
    if name not in _KNOWN:
        raise ValueError(f"MIMIR_PLATFORM={name!r}: use one of {', '.join(_KNOWN)}")
    if name == "windows":
        return _windows()
    if name == "darwin":
        return _darwin()
    return _linux()


# One function per OS, each guarded the way mypy reads (it checks the package once per platform).
def _linux() -> Platform:
    if sys.platform.startswith("linux"):
        from .linux import LinuxPlatform

        return LinuxPlatform()
    else:
        raise ValueError(f"MIMIR_PLATFORM=linux: the Linux platform runs on Linux only, not {sys.platform}")


def _darwin() -> Platform:
    if sys.platform != "win32":
        from .darwin import DarwinPlatform

        return DarwinPlatform()
    else:
        raise ValueError("MIMIR_PLATFORM=darwin: macOS rules run on Linux or macOS, not on Windows")


def _windows() -> Platform:
    from .windows import WindowsPlatform

    if sys.platform == "win32":
        return WindowsPlatform()
    else:
        raise ValueError(f"MIMIR_PLATFORM=windows: named mappings exist on Windows only, not {sys.platform}")


def native() -> str:
    """The platform of the OS this process runs on (another POSIX OS gets macOS's rules: no listing, no fallocate)."""
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "win32":
        return "windows"
    return "darwin"


def _choose() -> tuple[Platform, bool]:
    name = os.environ.get("MIMIR_PLATFORM") or native()
    try:
        chosen = select(name)
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
    emulated = chosen.name == "darwin" and sys.platform.startswith("linux")
    if emulated:
        from .macos_rules import enforce

        enforce()
    return chosen, emulated


PLATFORM, EMULATED = _choose()
"""The platform of this process, and whether it is another OS's rules emulated on this one (CI's macOS pass)."""


def current() -> Platform:
    return PLATFORM
