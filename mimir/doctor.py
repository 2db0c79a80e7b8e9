"""`mimir doctor`: check the machine for what Mimir needs, and find or remove stale shared memory.

A Mimir shared-memory object (segment or doorbell semaphore, ``/dev/shm/mimir-*``
and ``/dev/shm/sem.mimir-*``) is **in use** while any live process maps it
(read from ``/proc/<pid>/maps``) and **stale** otherwise: its creator died
without unlinking it (SIGKILL, power loss). Stale objects are safe to remove;
``mimir doctor --clean`` removes them. Owners reclaim their own stale objects
on the next start anyway; this command is for everything else.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ringbuf.segment import list_segments, unlink_segment, unlink_semaphore

__all__ = ["ShmObject", "Check", "scan_objects", "remove_stale", "environment_checks"]

_DEV_SHM = Path("/dev/shm")


@dataclass(frozen=True)
class ShmObject:
    name: str           # as in /dev/shm (semaphores keep their "sem." prefix)
    size_bytes: int
    mapped_by: tuple[int, ...]

    @property
    def stale(self) -> bool:
        return not self.mapped_by

    @property
    def is_semaphore(self) -> bool:
        return self.name.startswith("sem.")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _mappers() -> dict[str, set[int]]:
    """/dev/shm file name -> pids of live processes mapping it."""
    users: dict[str, set[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            maps = (proc / "maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            at = line.find("/dev/shm/")
            if at >= 0:
                name = line[at + len("/dev/shm/"):].removesuffix(" (deleted)")
                if "mimir-" in name:
                    users.setdefault(name, set()).add(int(proc.name))
    return users


def scan_objects(rig: str | None = None) -> list[ShmObject]:
    """Every Mimir object of ``rig`` (or all) with the live pids that map it.

    glibc creates a semaphore under a temporary name and links it into place,
    so /proc/<pid>/maps never shows a semaphore's final name. A semaphore
    belongs to the segment named like it minus its last ``.suffix``
    (``sem.mimir-rig-cam0.r3`` -> ``mimir-rig-cam0``) and is in use exactly
    when that segment is.
    """
    users = _mappers()
    out = []
    for name in list_segments(rig):
        try:
            size = (_DEV_SHM / name).stat().st_size
        except OSError:
            continue
        owner = name.removeprefix("sem.").rsplit(".", 1)[0] if name.startswith("sem.") else name
        out.append(ShmObject(name, size, tuple(sorted(users.get(owner, ())))))
    return out


def remove_stale(rig: str | None = None) -> list[str]:
    """Unlink every stale Mimir object (of ``rig``, or all); return the names removed."""
    removed = []
    for obj in scan_objects(rig):
        if not obj.stale:
            continue
        ok = unlink_semaphore(obj.name.removeprefix("sem.")) if obj.is_semaphore else unlink_segment(obj.name)
        if ok:
            removed.append(obj.name)
    return removed


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
    shm_ok = _DEV_SHM.is_dir() and os.access(_DEV_SHM, os.W_OK)
    checks.append(Check("/dev/shm", shm_ok, "writable" if shm_ok else "missing or not writable",
                        "" if shm_ok else "mount a tmpfs on /dev/shm writable by this user"))
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
