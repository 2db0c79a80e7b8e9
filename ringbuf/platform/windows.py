"""Windows: named file mappings, loopback-UDP doorbells, named mutexes, a marker-file registry.

Where Windows works differently this platform says so rather than imitates:

* **Shared memory** is a pagefile-backed *named file mapping* in the
  session's ``Local\\`` namespace (what :mod:`multiprocessing.shared_memory`
  uses). The whole size is *committed* when it is created, so a machine
  short of commit fails right there (:class:`OutOfSharedMemory`, with the
  bytes needed and available), never later.
* **Nothing is unlinked** (``unlinks = False``): a mapping vanishes when its
  last handle closes, so a crashed writer leaves no object behind, only
  possibly its marker file (below). The flip side: while any reader still
  maps a previous incarnation of an object, a new writer cannot create one
  of the same name (:class:`SegmentExists` says so); readers of a dead
  writer must close (the supervisor detaches before it restarts a worker).
* **Discovery**: Windows cannot list named mappings, so creators register a
  marker file (:mod:`ringbuf.platform.registry`), as on macOS.
* **Doorbells** are loopback UDP sockets (:mod:`ringbuf.platform.udp`):
  ``select`` and ``zmq.Poller`` accept only sockets on Windows.
* **Object locks** are named mutexes. A mutex whose owner dies while holding
  it is *abandoned*, and the next waiter gets it with ``WAIT_ABANDONED``:
  the holder-death takeover, decided by the kernel, with no timeout to
  guess. A mutex is owned by a *thread*: acquire and release it in the same
  thread. The object's creator keeps a handle open for the object's life,
  so the mutex exists exactly as long as the object's writer.
* **Full barrier** on a weakly ordered CPU: ``FlushProcessWriteBuffers``.

Every call into the OS goes through a :class:`Kernel` (the real one,
:mod:`ringbuf.platform.win32`, is loaded on first use), so this module
imports on any OS and its logic is tested on Linux against a fake kernel.
"""

from __future__ import annotations

import mmap
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import psutil

from .base import (
    LOCK_MARK, DoorbellListener, DoorbellSender, LockTimeout, ObjectLock, OutOfSharedMemory, Platform, SegmentError,
    SegmentExists, SegmentMissing,
)
from .registry import MarkerRegistry, default_objects_dir
from .udp import UdpListener, UdpSender

__all__ = [
    "WindowsPlatform", "Kernel", "MutexLock", "NAMESPACE", "WAIT_OBJECT_0", "WAIT_ABANDONED", "WAIT_TIMEOUT",
    "COMMIT_ERRORS",
]

NAMESPACE = "Local\\"          # this logon session's kernel object namespace
WAIT_OBJECT_0 = 0x0
WAIT_ABANDONED = 0x80
WAIT_TIMEOUT = 0x102
ERROR_NOT_ENOUGH_MEMORY = 8
ERROR_OUTOFMEMORY = 14
ERROR_COMMITMENT_LIMIT = 1455
ERROR_NO_SYSTEM_RESOURCES = 1450
COMMIT_ERRORS = frozenset({ERROR_NOT_ENOUGH_MEMORY, ERROR_OUTOFMEMORY, ERROR_COMMITMENT_LIMIT,
                           ERROR_NO_SYSTEM_RESOURCES})


class Kernel(Protocol):
    """The Windows calls this platform makes (the real binding: :class:`ringbuf.platform.win32.Kernel32`).

    Handles are plain ints. Errors are ``OSError`` with ``winerror`` set;
    ``FileExistsError`` / ``FileNotFoundError`` / ``PermissionError`` where
    Python maps the code to them.
    """

    def create_mapping(self, name: str, size: int) -> int:
        """CreateFileMapping on the pagefile, committed; FileExistsError (handle closed) if ``name`` exists."""
        ...

    def open_mapping(self, name: str, readonly: bool) -> int:
        """OpenFileMapping; FileNotFoundError if there is none."""
        ...

    def mapping_size(self, handle: int) -> int:
        """The size of a mapping (a view's region size: whole pages)."""
        ...

    def map_view(self, name: str, size: int, readonly: bool) -> mmap.mmap:
        """Map the *existing* mapping ``name`` (the caller holds a handle to it, so it cannot vanish meanwhile)."""
        ...

    def close_handle(self, handle: int) -> None: ...

    def create_mutex(self, name: str) -> int:
        """CreateMutex, not owned (opens it if it exists)."""
        ...

    def open_mutex(self, name: str) -> int:
        """OpenMutex for wait and release; FileNotFoundError if there is none."""
        ...

    def wait(self, handle: int, timeout_ms: int) -> int:
        """WaitForSingleObject: WAIT_OBJECT_0, WAIT_ABANDONED or WAIT_TIMEOUT; OSError if the wait failed."""
        ...

    def release_mutex(self, handle: int) -> None: ...

    def available_commit_bytes(self) -> int:
        """What this process can still commit (GlobalMemoryStatusEx ``ullAvailPageFile``)."""
        ...

    def memory_barrier(self) -> None:
        """FlushProcessWriteBuffers: a full barrier on every CPU running this process's threads."""
        ...


def _winerror(exc: OSError) -> int | None:
    return getattr(exc, "winerror", None)


class MutexLock(ObjectLock):
    """A named mutex (see module docstring); ``took_over`` says the last acquire found its holder dead."""

    def __init__(self, kernel: Kernel, handle: int, name: str) -> None:
        self._kernel = kernel
        self._handle = handle
        self._name = name
        self.took_over = False

    def acquire(self, timeout_s: float) -> None:
        code = self._kernel.wait(self._handle, max(0, int(timeout_s * 1000 + 0.999)))
        if code in (WAIT_OBJECT_0, WAIT_ABANDONED):
            self.took_over = code == WAIT_ABANDONED  # its holder died holding it; the kernel gave it to us
            return
        if code == WAIT_TIMEOUT:
            raise LockTimeout(f"lock {self._name} is held by a live process for more than {timeout_s} s")
        raise SegmentError(f"waiting for lock {self._name} returned {code:#x}")

    def release(self) -> None:
        self._kernel.release_mutex(self._handle)

    def close(self) -> None:
        if self._handle:
            self._kernel.close_handle(self._handle)
            self._handle = 0


class WindowsPlatform(Platform):
    """Windows (see module docstring). ``kernel`` and ``objects_dir`` are injectable for tests."""

    name = "windows"
    max_name_chars = 240   # object names up to MAX_PATH with the "Local\" prefix; Mimir keeps them to 31 anyway
    unlinks = False

    def __init__(self, kernel: Kernel | None = None, objects_dir: Path | None = None) -> None:
        self._kernel = kernel
        self.objects_dir = objects_dir or default_objects_dir()
        self._registry = MarkerRegistry(self.objects_dir)
        self._lock_handles: dict[str, int] = {}  # locks of the objects this process created

    @property
    def kernel(self) -> Kernel:
        if self._kernel is None:
            if sys.platform == "win32":
                from .win32 import Kernel32

                self._kernel = Kernel32()
            else:
                raise SegmentError("the Windows kernel binding runs on Windows only (inject a kernel elsewhere)")
        return self._kernel

    # ---- shared memory -------------------------------------------------------------------------------------
    def shm_create(self, name: str, size: int) -> mmap.mmap:
        self.check_name(name)
        kernel = self.kernel
        try:
            handle = kernel.create_mapping(NAMESPACE + name, size)
        except FileExistsError:
            raise SegmentExists(
                f"shared-memory object {name} already exists: on Windows a mapping lives until the last process "
                "that opened it closes it (a previous writer's readers may still hold it; `mimir doctor` lists objects)"
            ) from None
        except OSError as exc:
            if _winerror(exc) in COMMIT_ERRORS:
                raise self._out_of_memory(name, size, exc) from None
            raise
        try:
            buf = kernel.map_view(NAMESPACE + name, size, readonly=False)
        except OSError as exc:
            if _winerror(exc) in COMMIT_ERRORS:
                raise self._out_of_memory(name, size, exc) from None
            raise
        finally:
            kernel.close_handle(handle)
        self._registry.add(name)
        return buf

    def _out_of_memory(self, name: str, size: int, exc: OSError) -> OutOfSharedMemory:
        free = self.shm_available_bytes()
        free_text = f"{free / 2**20:,.1f} MiB" if free is not None else "unknown"
        return OutOfSharedMemory(
            f"cannot commit {size / 2**20:,.1f} MiB of shared memory for {name}: {free_text} can still be committed "
            f"({exc.strerror or exc}); stop other rigs, shorten the window, lower resolution or camera count, "
            "or enlarge the page file"
        )

    def shm_attach(self, name: str, *, readonly: bool) -> mmap.mmap:
        kernel = self.kernel
        try:
            handle = kernel.open_mapping(NAMESPACE + name, readonly)
        except FileNotFoundError:
            raise SegmentMissing(
                f"no shared-memory segment {name}: is its writer running? (`mimir doctor` lists segments)"
            ) from None
        except PermissionError:
            raise PermissionError(f"shared-memory segment {name} belongs to another user") from None
        try:
            size = kernel.mapping_size(handle)
            return kernel.map_view(NAMESPACE + name, size, readonly=readonly)
        finally:
            kernel.close_handle(handle)

    def shm_unlink(self, name: str) -> bool:
        """Forget the object's marker and close the creator's lock handle; False if no marker was registered.

        The mapping itself goes with its last handle; the lock (a companion
        of the object) with the last handle of the mutex.
        """
        self.remove_lock(name)
        return self._registry.remove(name)

    def shm_available_bytes(self) -> int | None:
        try:
            commit = self.kernel.available_commit_bytes()
        except OSError:
            return None
        return min(commit, psutil.virtual_memory().available)

    def shm_where(self) -> str:
        return "the page file (named mappings)"

    # ---- discovery -----------------------------------------------------------------------------------------
    def list_objects(self, prefix: str) -> list[str]:
        return self._registry.names(prefix)

    def remove_object(self, name: str) -> bool:
        return self._registry.remove(name)

    # ---- doorbells and locks ---------------------------------------------------------------------------------
    def doorbell_listener(self, rig: str) -> DoorbellListener:
        return UdpListener()

    def doorbell_sender(self, rig: str) -> DoorbellSender:
        return UdpSender()

    @staticmethod
    def _mutex_name(name: str) -> str:
        return f"{NAMESPACE}{name}{LOCK_MARK}"

    def create_lock(self, name: str) -> None:
        self.remove_lock(name)
        self._lock_handles[name] = self.kernel.create_mutex(self._mutex_name(name))

    def open_lock(self, name: str) -> MutexLock:
        try:
            handle = self.kernel.open_mutex(self._mutex_name(name))
        except FileNotFoundError:
            raise SegmentMissing(f"lock of {name} does not exist: its object was closed") from None
        return MutexLock(self.kernel, handle, name + LOCK_MARK)

    def remove_lock(self, name: str) -> None:
        handle = self._lock_handles.pop(name, None)
        if handle is not None:
            self.kernel.close_handle(handle)

    # ---- memory ordering and self-description ----------------------------------------------------------------
    def full_barrier(self) -> Callable[[], None]:
        return self.kernel.memory_barrier

    def limits(self) -> dict[str, str]:
        return {
            "names": f"shared-memory names up to {self.max_name_chars} characters "
                     "(Mimir keeps them to 31, macOS's limit)",
            "shared memory": "named file mappings on the page file, committed in full at creation",
            "cleanup": "nothing to unlink: a mapping vanishes with its last handle; a crashed writer leaves at most "
                       "a marker file, which `mimir doctor --clean` removes",
            "discovery": f"marker files in {self.objects_dir}",
            "doorbells": "loopback UDP sockets (bell id = port)",
            "locks": "named mutexes; a dead holder's mutex is abandoned and taken over",
            "parent death": "a watchdog thread in each worker (no kernel parent-death signal)",
            "stop": "CTRL_BREAK_EVENT to the worker's process group",
            "priority": "HIGH_PRIORITY_CLASS for the supervisor (no SCHED_FIFO)",
        }
