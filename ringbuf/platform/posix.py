"""What Linux and macOS share: POSIX shared memory (``shm_open`` through posix_ipc), FIFO doorbells, flock locks.

posix_ipc opens segments without Python 3.11's resource tracker (which would
unlink or warn about segments a non-owner attached: CPython issue 82300).

Doorbells are named FIFOs in :attr:`PosixPlatform.objects_dir`. The listener
owns the FIFO: it creates it, holds its read end (and one write end of its
own, so the read end never reports end-of-file while writers come and go),
and unlinks it on close. A writer opens the write end lazily, writes one byte
per ring, and forgets the listener when the FIFO is gone (ENOENT, ENXIO) or
closed (EPIPE). A full FIFO (64 KiB of unread rings) means the listener has
wake-ups pending already, so the byte is simply dropped.

Locks are ``flock`` on a companion file made by the object's creator: the
kernel releases a lock when its holder dies, which is the holder-death
takeover rigs need, with no timeout to guess.
"""

from __future__ import annotations

import sys

assert sys.platform != "win32", "ringbuf.platform.posix is for Linux and macOS"

import errno  # noqa: E402
import fcntl  # noqa: E402
import itertools  # noqa: E402
import mmap  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import posix_ipc  # noqa: E402

from .base import (  # noqa: E402
    LOCK_MARK,
    DoorbellListener,
    DoorbellSender,
    LockTimeout,
    ObjectLock,
    OutOfSharedMemory,
    Platform,
    SegmentExists,
    SegmentMissing,
    bell_name,
)

__all__ = ["PosixPlatform", "FifoListener", "FifoSender", "FlockLock"]

_BELL_SEQ = itertools.count(1)


class FifoListener(DoorbellListener):
    """A doorbell listener backed by a named FIFO (see module docstring)."""

    def __init__(self, directory: Path, rig: str) -> None:
        n = next(_BELL_SEQ) & 0xFFFF
        self.bell_id = (os.getpid() << 16) | n
        self.path = directory / bell_name(rig, self.bell_id)
        try:
            self.path.unlink()  # a previous process with this pid died without removing it
        except FileNotFoundError:
            pass
        os.mkfifo(self.path, 0o600)
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._keep_open = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._closed = False

    def fileno(self) -> int:
        return self._fd

    def wait(self, timeout_s: float | None) -> bool:
        timeout_ms = None if timeout_s is None else max(0, int(timeout_s * 1000 + 0.999))
        try:
            ready = self._poll.poll(timeout_ms)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            ready = []
        if ready:
            self.drain()
            return True
        return False

    def drain(self) -> None:
        try:
            while len(os.read(self._fd, 4096)) == 4096:
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._poll.unregister(self._fd)
        except (KeyError, ValueError):
            pass
        os.close(self._fd)
        os.close(self._keep_open)
        self.path.unlink(missing_ok=True)


class FifoSender(DoorbellSender):
    """Rings FIFO doorbells of one rig by id; keeps each write end open while its listener lives."""

    MAX_OPEN = 64  # write ends kept open; beyond this all are closed and reopened on demand

    def __init__(self, directory: Path, rig: str) -> None:
        self._directory = directory
        self._rig = rig
        self._fds: dict[int, int] = {}

    def ring(self, bell_id: int) -> None:
        fd = self._fds.get(bell_id)
        if fd is None:
            fd = self._open(bell_id)
            if fd is None:
                return
        try:
            os.write(fd, b"\x01")
        except BlockingIOError:
            pass  # full: the listener has unread rings already
        except OSError:  # EPIPE: the listener closed it (or died)
            self._forget(bell_id)

    def _open(self, bell_id: int) -> int | None:
        if len(self._fds) >= self.MAX_OPEN:
            self.close()
        try:
            fd = os.open(self._directory / bell_name(self._rig, bell_id), os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENOENT: gone; ENXIO: nobody holds the read end
            return None
        self._fds[bell_id] = fd
        return fd

    def _forget(self, bell_id: int) -> None:
        fd = self._fds.pop(bell_id, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for bell_id in list(self._fds):
            self._forget(bell_id)


class FlockLock(ObjectLock):
    """``flock`` on a companion lock file; released by the kernel when the holder dies."""

    def __init__(self, path: Path) -> None:
        try:
            self._fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise SegmentMissing(f"lock {path} does not exist: its object was closed") from None
        self._path = path

    def acquire(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"lock {self._path} is held by a live process for more than {timeout_s} s") from None
                time.sleep(0.0005)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class PosixPlatform(Platform):
    """Linux and macOS (see module docstring). Subclasses fix names, discovery and reservation."""

    objects_dir: Path

    # ---- shared memory -------------------------------------------------------------------------------------
    def shm_create(self, name: str, size: int) -> mmap.mmap:
        self.check_name(name)
        try:
            shm = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, mode=0o600, size=0)
        except posix_ipc.ExistentialError:
            raise SegmentExists(f"shared-memory segment {name} already exists") from None
        try:
            try:
                self._reserve(shm.fd, size, name)
                buf = mmap.mmap(shm.fd, size)
            finally:
                shm.close_fd()
        except BaseException:
            _unlink_quietly(name)
            raise
        self._register(name)
        return buf

    def _reserve(self, fd: int, size: int, name: str) -> None:
        """Give the object its size and, where the OS allows it, its memory now (not on first touch)."""
        os.ftruncate(fd, size)

    def out_of_memory(self, name: str, size: int, exc: OSError) -> OutOfSharedMemory:
        free = self.shm_available_bytes()
        free_text = f"{free / 2**20:,.1f} MiB" if free is not None else "unknown"
        return OutOfSharedMemory(
            f"cannot reserve {size / 2**20:,.1f} MiB of shared memory for {name}: {self.shm_where()} has "
            f"{free_text} available ({exc.strerror}); stop other rigs (`mimir doctor --clean` removes stale "
            "objects), shorten the window, lower resolution or camera count, or enlarge the shared memory"
        )

    def shm_attach(self, name: str, *, readonly: bool) -> mmap.mmap:
        try:
            shm = posix_ipc.SharedMemory("/" + name, read_only=readonly)
        except posix_ipc.ExistentialError:
            raise SegmentMissing(
                f"no shared-memory segment {name}: is its writer running? (`mimir doctor` lists segments)"
            ) from None
        except posix_ipc.PermissionsError:
            raise PermissionError(f"shared-memory segment {name} belongs to another user") from None
        try:
            size = os.fstat(shm.fd).st_size
            if size == 0:
                raise SegmentMissing(f"shared-memory segment {name} is empty (its creator died while creating it)")
            return mmap.mmap(shm.fd, size, access=mmap.ACCESS_READ if readonly else mmap.ACCESS_WRITE)
        finally:
            shm.close_fd()

    def shm_unlink(self, name: str) -> bool:
        gone = _unlink_quietly(name)
        self._unregister(name)
        return gone

    # ---- registry (hooks; macOS keeps marker files, Linux lists /dev/shm itself) -----------------------------
    def _register(self, name: str) -> None:
        return None

    def _unregister(self, name: str) -> None:
        return None

    def remove_object(self, name: str) -> bool:
        if "#" in name:
            try:
                (self.objects_dir / name).unlink()
                return True
            except FileNotFoundError:
                return False
        return self.shm_unlink(name)

    # ---- doorbells and locks ---------------------------------------------------------------------------------
    def doorbell_listener(self, rig: str) -> FifoListener:
        self.objects_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return FifoListener(self.objects_dir, rig)

    def doorbell_sender(self, rig: str) -> FifoSender:
        return FifoSender(self.objects_dir, rig)

    def _lock_path(self, name: str) -> Path:
        return self.objects_dir / f"{name}{LOCK_MARK}"

    def create_lock(self, name: str) -> None:
        self.objects_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._lock_path(name)
        path.unlink(missing_ok=True)  # a crashed predecessor's (the object itself was just reclaimed)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))

    def open_lock(self, name: str) -> FlockLock:
        return FlockLock(self._lock_path(name))

    def remove_lock(self, name: str) -> None:
        self._lock_path(name).unlink(missing_ok=True)


def _unlink_quietly(name: str) -> bool:
    try:
        posix_ipc.unlink_shared_memory("/" + name)
        return True
    except posix_ipc.ExistentialError:
        return False
    except posix_ipc.PermissionsError:
        raise PermissionError(f"shared-memory segment {name} belongs to another user") from None


def is_enospc(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG)
