"""Named POSIX shared-memory segments with explicit ownership.

Segments are opened through ``posix_ipc`` and ``mmap`` rather than
``multiprocessing.shared_memory``: on Python 3.11 the latter registers every
segment it *attaches* with the resource tracker, which then unlinks or warns
about segments it does not own when the attaching process exits (CPython
issue 82300). Here nothing is registered anywhere:

* the **creator** (:meth:`Segment.create`) owns the segment and is the only
  process that unlinks it (:meth:`Segment.unlink`);
* an **attacher** (:meth:`Segment.attach`) maps it and only ever closes its
  own mapping.

Every Mimir segment name starts with :data:`PREFIX` and carries its rig name,
``mimir-<rig>-<object>``, so stale segments left by a crashed owner can be
found (:func:`list_segments`) and reclaimed. Doorbell semaphores use the same
names, so one listing shows both.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import posix_ipc

__all__ = [
    "PREFIX", "SegmentError", "SegmentExists", "SegmentMissing", "Segment",
    "segment_name", "list_segments", "unlink_segment", "unlink_semaphore", "create_reclaiming",
    "process_start_ticks", "pid_alive",
]

PREFIX = "mimir-"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.]+$")
_DEV_SHM = Path("/dev/shm")
PAGE_BYTES = mmap.PAGESIZE


class SegmentError(RuntimeError):
    """A shared-memory segment could not be created, attached or reclaimed."""


class SegmentExists(SegmentError):
    """A segment of that name exists and its owner is alive."""


class SegmentMissing(SegmentError, FileNotFoundError):
    """No segment of that name exists."""


def segment_name(rig: str, obj: str) -> str:
    """The shared-memory name of object ``obj`` of rig ``rig`` (without the leading slash)."""
    for label, value in (("rig", rig), ("object", obj)):
        if not value or not _NAME_RE.match(value):
            raise ValueError(
                f"{label} name {value!r} is not allowed: use letters, digits, '_' and '.' only"
            )
    return f"{PREFIX}{rig}-{obj}"


def process_start_ticks(pid: int) -> int:
    """Start time of ``pid`` in clock ticks since boot (Linux), or 0 where unknown.

    Paired with the pid it identifies a process even after the pid is reused.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name (field 2) may hold spaces or parentheses: split after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def pid_alive(pid: int, start_ticks: int = 0) -> bool:
    """True if process ``pid`` exists and, when ``start_ticks`` is given, is the same process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start_ticks:
        now = process_start_ticks(pid)
        if now and now != start_ticks:
            return False
    # A zombie (exited, not yet reaped) is not alive for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return True


@dataclass
class Segment:
    """One mapped shared-memory segment. ``owner`` is True only in the creating process."""

    name: str
    size: int
    buf: mmap.mmap
    owner: bool

    @classmethod
    def create(cls, name: str, size: int) -> "Segment":
        """Create and map a new zero-filled segment; fail with :class:`SegmentExists` if the name is taken."""
        if size <= 0:
            raise ValueError(f"segment {name}: size must be positive, got {size}")
        size = -(-size // PAGE_BYTES) * PAGE_BYTES
        try:
            shm = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, mode=0o600, size=size)
        except posix_ipc.ExistentialError:
            raise SegmentExists(f"shared-memory segment {name} already exists") from None
        try:
            buf = mmap.mmap(shm.fd, size)
        finally:
            shm.close_fd()
        return cls(name, size, buf, owner=True)

    @classmethod
    def attach(cls, name: str, *, readonly: bool = False) -> "Segment":
        """Map an existing segment. The attacher never unlinks it."""
        try:
            shm = posix_ipc.SharedMemory("/" + name, read_only=readonly)
        except posix_ipc.ExistentialError:
            raise SegmentMissing(
                f"no shared-memory segment {name}: is its writer running? (`mimir doctor` lists segments)"
            ) from None
        try:
            size = os.fstat(shm.fd).st_size
            if size == 0:
                raise SegmentMissing(f"shared-memory segment {name} is empty (its creator died while creating it)")
            access = mmap.ACCESS_READ if readonly else mmap.ACCESS_WRITE
            buf = mmap.mmap(shm.fd, size, access=access)
        finally:
            shm.close_fd()
        return cls(name, size, buf, owner=False)

    def close(self) -> None:
        """Unmap this process's view. Raises BufferError if numpy views still export the buffer."""
        if not self.buf.closed:
            self.buf.close()

    def unlink(self) -> None:
        """Remove the name (owner only). Existing mappings stay valid until closed."""
        if not self.owner:
            raise SegmentError(f"segment {self.name}: only its creator may unlink it")
        unlink_segment(self.name)


def unlink_segment(name: str) -> bool:
    """Unlink a segment by name; return False if it did not exist."""
    try:
        posix_ipc.unlink_shared_memory("/" + name)
        return True
    except posix_ipc.ExistentialError:
        return False


def unlink_semaphore(name: str) -> bool:
    try:
        posix_ipc.unlink_semaphore("/" + name)
        return True
    except posix_ipc.ExistentialError:
        return False


def create_reclaiming(name: str, size: int, refusal: Callable[[Segment], str | None], *,
                      unlink: Callable[[str], object] = unlink_segment) -> Segment:
    """Create segment ``name``; if it exists, reclaim it unless its owner is alive.

    ``refusal(existing)`` reads the existing segment's header (mapped
    read-only, closed afterwards) and returns why it must not be reclaimed (a
    live writer, a foreign object), or None when it is stale. A refusal raises
    :class:`SegmentExists` with that message; a stale segment is removed with
    ``unlink(name)`` (which may also remove companion objects) and created
    afresh. Shared by every kind of Mimir segment (rings, the reservoir).
    """
    try:
        return Segment.create(name, size)
    except SegmentExists:
        pass
    try:
        existing = Segment.attach(name, readonly=True)
    except SegmentMissing:
        return Segment.create(name, size)
    try:
        why = refusal(existing)
    finally:
        existing.close()
    if why:
        raise SegmentExists(why)
    unlink(name)
    return Segment.create(name, size)


def list_segments(rig: str | None = None) -> list[str]:
    """Names of Mimir segments and semaphores present on this machine (Linux: from /dev/shm).

    Semaphores are returned with their ``sem.`` prefix, as the kernel shows them.
    """
    if not _DEV_SHM.is_dir():
        return []
    want = PREFIX if rig is None else f"{PREFIX}{rig}-"
    names = []
    for entry in _DEV_SHM.iterdir():
        bare = entry.name.removeprefix("sem.")
        if bare.startswith(want):
            names.append(entry.name)
    return sorted(names)
