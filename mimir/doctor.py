"""`mimir doctor`: check the machine for what Mimir needs, and find or remove stale shared memory.

A Mimir object (a segment, its lock file, a reader's doorbell) is **stale**
when nobody will ever use it again: its writer closed it, or its writer
process is gone (pid *and* start time, so a reused pid does not count), or
its creation never finished; a doorbell is stale when the process listening
on it is gone. Objects of another user are never called stale. The judgement
is :func:`ringbuf.scan`'s, the same on every OS; ``mimir doctor --clean``
removes what it calls stale. Owners reclaim their own stale objects on the
next start anyway; this command is for everything else.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ringbuf import ObjectInfo, remove_stale, scan
from ringbuf.platform import PLATFORM

__all__ = ["Check", "scan_objects", "remove_stale", "environment_checks", "ObjectInfo"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def scan_objects(rig: str | None = None) -> list[ObjectInfo]:
    """Every Mimir object of ``rig`` (or all), each judged stale or in use (see module docstring)."""
    return scan(rig)


def environment_checks() -> list[Check]:
    """What a capture rig needs from this machine, each with the fix when it is missing."""
    checks = []
    try:
        import sounddevice as sd

        checks.append(Check("PortAudio", True, sd.get_portaudio_version()[1]))
    except OSError as exc:
        checks.append(Check("PortAudio", False, str(exc),
                            "install the PortAudio library: `apt-get install libportaudio2` (Debian/Ubuntu), "
                            "`brew install portaudio` (macOS); Windows wheels ship it"))
    try:
        import usb.backend.libusb1

        backend = usb.backend.libusb1.get_backend()
        checks.append(Check("libusb", backend is not None,
                            "libusb-1.0 found" if backend else "libusb-1.0 not found",
                            "" if backend else "`apt-get install libusb-1.0-0` (PS3 Eye family needs it)"))
    except Exception as exc:  # pyusb raises various errors when the library is broken
        checks.append(Check("libusb", False, str(exc), "`apt-get install libusb-1.0-0`"))
    checks.extend(_shared_memory_checks())
    usb_dir = Path("/dev/bus/usb")
    if usb_dir.is_dir():
        usb_ok = os.access(usb_dir, os.R_OK | os.X_OK)
        checks.append(Check("USB device access", usb_ok, str(usb_dir),
                            "" if usb_ok else "add a udev rule granting your user access to 1415:2000 (PS3 Eye)"))
    else:
        checks.append(Check("USB device access", True, "no /dev/bus/usb on this machine (no USB cameras to open)"))
    jackd = shutil.which("jackd")
    checks.append(Check("JACK server", True, jackd or "jackd not installed (only needed for the JACK host API)"))
    sndfile = ctypes.util.find_library("sndfile")
    checks.append(Check("libsndfile", sndfile is not None, sndfile or "not found",
                        "" if sndfile else "`apt-get install libsndfile1` (file audio backend, mimir decode)"))
    return checks


def _shared_memory_checks() -> list[Check]:
    """The platform's limits (one line per duty of the seam), then what can be checked about them here."""
    from ringbuf.platform import EMULATED

    free = PLATFORM.shm_available_bytes()
    free_text = f"{free / 2**30:.1f} GiB available" if free is not None else "free space unknown"
    rules = f"{PLATFORM.name} (macOS rules emulated on {sys.platform}: CI's second pass)" if EMULATED else PLATFORM.name
    lifetime = "unlinked by their creator" if PLATFORM.unlinks else "gone with their last handle"
    checks = [Check("platform", True, f"{rules}; objects {lifetime}")]
    checks += [Check(f"  {duty}", True, how) for duty, how in PLATFORM.limits().items()]
    where = Path(PLATFORM.shm_where())
    if PLATFORM.name == "linux":
        ok = where.is_dir() and os.access(where, os.W_OK)
        checks.append(Check(str(where), ok, f"writable, {free_text}" if ok else "missing or not writable",
                            "" if ok else "mount a tmpfs on /dev/shm writable by this user"))
    else:
        checks.append(Check("shared memory", free is not None, free_text,
                            "" if free is not None else "cannot read how much memory is available"))
    objects = PLATFORM.objects_dir
    if objects is not None and PLATFORM.name != "linux":
        ok = (objects.is_dir() and os.access(objects, os.W_OK)) or (not objects.exists()
                                                                     and os.access(objects.parent, os.W_OK))
        state = "exists" if objects.is_dir() else "made on first use"
        checks.append(Check("object registry", ok, f"{objects} ({state})",
                            "" if ok else f"make {objects} writable by this user (it holds marker files)"))
    if sys.platform == "win32":  # pragma: no cover - Windows only
        try:
            import win32security  # noqa: F401

            checks.append(Check("key file access lists", True, "pywin32 reads and sets owner-only ACLs"))
        except ImportError:
            checks.append(Check("key file access lists", False, "pywin32 missing: secret keys cannot be checked",
                                "pip install pywin32 (scripts/setup-windows.ps1 does)"))
    return checks
