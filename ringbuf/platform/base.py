"""The operating-system seam of Mimir's shared memory: what every OS must provide, and nothing else.

Everything in ``ringbuf`` above this package (segments, the single-writer
shared object, rings, doorbells) is the same code on every OS; only a
:class:`Platform` differs. One instance is chosen at import
(:mod:`ringbuf.platform`). What a platform provides:

* **named shared memory**: create a segment of a size *reserved* up front (a
  full ``/dev/shm`` fails here with the bytes needed and free, never later
  with SIGBUS), attach to one, unlink it;
* **object discovery**: list the names of Mimir's objects (segments and their
  companion files) so stale ones can be found after a crash;
* **doorbells**: a reader-owned wake-up endpoint with a file descriptor that
  ``select`` and ``zmq.Poller`` accept, and a writer-side sender that rings it
  by its numeric id (:mod:`ringbuf.doorbell`);
* **object locks**: a lock that its holder's death releases (reader
  registration).

Process facts (identity, liveness) are the same everywhere through psutil
(:mod:`ringbuf.process`). Where an OS works differently the platform says so
rather than imitates: on Windows a named mapping vanishes with its last
handle, so ``unlinks`` is False and there are no stale objects to find.

Names: a Mimir object is named ``mimir-<rig>-<object>``; companions of an
object add ``#<what>`` (``#lock``), and a reader's doorbell is
``mimir-<rig>-#bell.<pid>.<n>``. ``#`` is not allowed in rig or object
names, so a name's role is never ambiguous. ``max_name_chars`` counts the
leading slash POSIX adds (macOS: 31).
"""

from __future__ import annotations

import abc
import mmap
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "Platform", "SegmentError", "SegmentExists", "SegmentMissing", "OutOfSharedMemory", "NameTooLong",
    "DoorbellListener", "DoorbellSender", "ObjectLock", "LockTimeout", "BELL_MARK", "LOCK_MARK", "bell_name",
    "parse_bell_name",
]

BELL_MARK = "#bell."
LOCK_MARK = "#lock"


def bell_name(rig: str, bell_id: int) -> str:
    """The name of a file doorbell ``bell_id`` (``pid << 16 | n``) of ``rig`` (platforms with file doorbells)."""
    return f"mimir-{rig}-{BELL_MARK}{bell_id >> 16}.{bell_id & 0xFFFF}"


def parse_bell_name(name: str) -> int | None:
    """The pid that owns doorbell ``name``, or None if ``name`` is not a doorbell."""
    at = name.find(BELL_MARK)
    if at < 0:
        return None
    try:
        return int(name[at + len(BELL_MARK):].split(".", 1)[0])
    except ValueError:
        return None


class SegmentError(RuntimeError):
    """A shared-memory segment could not be created, attached or reclaimed."""


class SegmentExists(SegmentError):
    """A segment of that name exists and its owner is alive."""


class SegmentMissing(SegmentError, FileNotFoundError):
    """No segment of that name exists."""


class OutOfSharedMemory(SegmentError, MemoryError):
    """The OS cannot give a segment the memory it needs; the message says how much was needed and free."""


class NameTooLong(ValueError):
    """An object name does not fit the platform's limit (macOS: 31 characters with the leading slash)."""


class LockTimeout(SegmentError):
    """An object lock stayed held by a live process for longer than the caller would wait."""


class DoorbellListener(abc.ABC):
    """The reader side of a doorbell: owned by one process, rung by any writer that knows :attr:`bell_id`.

    A ring is rung at most once per arming (see :mod:`ringbuf.ring`), so a
    listener's backlog stays small; :meth:`drain` empties it. Wake-ups are
    hints: a woken reader re-checks what it waits for.
    """

    bell_id: int

    @abc.abstractmethod
    def fileno(self) -> int:
        """A descriptor that becomes readable when the bell rings (for select / zmq.Poller)."""

    @abc.abstractmethod
    def wait(self, timeout_s: float | None) -> bool:
        """Block until rung or ``timeout_s`` passes (None: forever); True if rung.

        Consumes at least the ring that woke it (FIFO: everything pending;
        UDP: one datagram, and a leftover only makes the next wait return at
        once). :meth:`drain` consumes everything.
        """

    @abc.abstractmethod
    def drain(self) -> None:
        """Consume every pending ring without blocking."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop listening and remove the endpoint. Idempotent."""


class DoorbellSender(abc.ABC):
    """The writer side: rings listeners by id. Never blocks; a listener that is gone is skipped."""

    @abc.abstractmethod
    def ring(self, bell_id: int) -> None:
        """Wake the listener ``bell_id`` (no error when it has gone away)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every endpoint opened for sending. Idempotent."""


class ObjectLock(abc.ABC):
    """A short-held lock on a shared object; the OS releases it when its holder dies."""

    @abc.abstractmethod
    def acquire(self, timeout_s: float) -> None:
        """Take the lock or raise :class:`LockTimeout` after ``timeout_s`` while a live process holds it."""

    @abc.abstractmethod
    def release(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Drop this process's handle (never removes the lock). Idempotent."""

    def __enter__(self) -> "ObjectLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Platform(abc.ABC):
    """One operating system's answers to what Mimir's shared memory needs (see module docstring)."""

    name: str
    max_name_chars: int
    unlinks: bool = True   # False: objects vanish with their last handle (Windows)

    # ---- shared memory -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def shm_create(self, name: str, size: int) -> mmap.mmap:
        """Create segment ``name`` (no leading slash) of ``size`` bytes, memory reserved; return its mmap.

        Raises :class:`SegmentExists` if the name is taken and
        :class:`OutOfSharedMemory` if the memory cannot be reserved (the
        half-made object is removed first).
        """

    @abc.abstractmethod
    def shm_attach(self, name: str, *, readonly: bool) -> mmap.mmap:
        """Map an existing segment (its whole size); raise :class:`SegmentMissing` if there is none."""

    @abc.abstractmethod
    def shm_unlink(self, name: str) -> bool:
        """Remove the name (False if it did not exist). Mappings stay valid until closed."""

    @abc.abstractmethod
    def shm_available_bytes(self) -> int | None:
        """Bytes a new segment can still get (free shared-memory space, bounded by available memory)."""

    def shm_where(self) -> str:
        """Where shared memory lives, for messages (``/dev/shm``, ``memory``)."""
        return "memory"

    def check_name(self, name: str) -> None:
        """Raise :class:`NameTooLong` if ``name`` (without its leading slash) does not fit this OS."""
        if len(name) + 1 > self.max_name_chars:
            raise NameTooLong(
                f"shared-memory name /{name} has {len(name) + 1} characters; {self.name} allows "
                f"{self.max_name_chars}: use a shorter rig name (at most 16 characters) or object name"
            )

    # ---- discovery and companion files ---------------------------------------------------------------------
    @abc.abstractmethod
    def list_objects(self, prefix: str) -> list[str]:
        """Names of Mimir objects (segments and companions) starting with ``prefix``."""

    @abc.abstractmethod
    def remove_object(self, name: str) -> bool:
        """Remove a listed object: a segment (and its registry entry) or a companion file."""

    objects_dir: Path | None = None  # where companion files (locks, doorbells) live

    # ---- doorbells and locks -------------------------------------------------------------------------------
    @abc.abstractmethod
    def doorbell_listener(self, rig: str) -> DoorbellListener: ...

    @abc.abstractmethod
    def doorbell_sender(self, rig: str) -> DoorbellSender: ...

    @abc.abstractmethod
    def create_lock(self, name: str) -> None:
        """Create the lock companion of object ``name`` (its creator removes it with :meth:`remove_lock`)."""

    @abc.abstractmethod
    def open_lock(self, name: str) -> ObjectLock:
        """Open the lock companion of object ``name``; :class:`SegmentMissing` if the object is gone."""

    @abc.abstractmethod
    def remove_lock(self, name: str) -> None: ...

    # ---- memory ordering and self-description ----------------------------------------------------------------
    @abc.abstractmethod
    def full_barrier(self) -> Callable[[], None]:
        """A call that is a full memory barrier (store then load) on a weakly ordered CPU (Arm).

        Used by :mod:`ringbuf.fence` only where a lock round trip is not one
        (not on x86, where it is); each OS offers a different call.
        """

    @abc.abstractmethod
    def limits(self) -> dict[str, str]:
        """What this platform does for each duty of the seam, in words, for ``mimir doctor`` and the docs."""
