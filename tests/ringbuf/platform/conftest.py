"""A fake Windows kernel (named mappings and mutexes with Windows' lifetime rules) and platform swaps.

:class:`FakeKernel` implements :class:`ringbuf.platform.windows.Kernel` on
Linux: a named mapping is a memfd with a reference count (every handle and
every mapped view holds one) and vanishes when the count reaches zero, as
Windows' named mappings do; commit is counted against a limit; a mutex is
owned by a thread, recursive, and *abandoned* when its owning thread ends
(the next waiter gets ``WAIT_ABANDONED``). Errors carry ``winerror`` like
the real ones. It is the lowest seam: everything above it
(:class:`~ringbuf.platform.windows.WindowsPlatform`, segments, shared
objects, rings) runs unchanged.

``use_platform(platform)`` swaps the process's platform for one test (every
loaded module's ``PLATFORM`` binding), so the real ring code runs on it.
"""

from __future__ import annotations

import itertools
import mmap
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest

import ringbuf.platform
from ringbuf.platform import windows as win

ERROR_INVALID_HANDLE = 6
ERROR_NOT_OWNER = 288


def winerror(code: int, text: str) -> OSError:
    exc = OSError(text)
    exc.winerror = code  # what Python sets on Windows
    exc.strerror = text
    return exc


@dataclass
class _Mapping:
    fd: int
    size: int
    refs: int = 0


@dataclass
class _Mutex:
    refs: int = 0
    owner: int | None = None      # thread ident
    count: int = 0
    abandoned_by: set = field(default_factory=set)


class FakeKernel:
    """Windows' named mappings and mutexes, in one process (see module docstring)."""

    def __init__(self, commit_limit_bytes: int = 1 << 34) -> None:
        self.commit_limit_bytes = commit_limit_bytes
        self.committed_bytes = 0
        self.objects: dict[str, _Mapping | _Mutex] = {}
        self.handles: dict[int, str] = {}
        self.barriers = 0
        self._next = itertools.count(0x100, 4)
        self._generation = 0
        self._lock = threading.RLock()

    # ---- bookkeeping --------------------------------------------------------------------------------------
    def _handle(self, name: str) -> int:
        handle = next(self._next)
        self.handles[handle] = name
        self.objects[name].refs += 1
        return handle

    def _unref(self, name: str) -> None:
        obj = self.objects[name]
        obj.refs -= 1
        if obj.refs == 0:
            del self.objects[name]
            if isinstance(obj, _Mapping):
                self.committed_bytes -= obj.size
                os.close(obj.fd)

    def close_handle(self, handle: int) -> None:
        with self._lock:
            name = self.handles.pop(handle, None)
            if name is None:
                raise winerror(ERROR_INVALID_HANDLE, f"CloseHandle({handle:#x}): invalid handle")
            self._unref(name)

    # ---- mappings -----------------------------------------------------------------------------------------
    def create_mapping(self, name: str, size: int) -> int:
        with self._lock:
            existing = self.objects.get(name)
            if existing is not None:
                if not isinstance(existing, _Mapping):
                    raise winerror(ERROR_INVALID_HANDLE, f"{name} is another kind of object")
                raise FileExistsError(f"file mapping {name} exists")
            if self.committed_bytes + size > self.commit_limit_bytes:
                raise winerror(win.ERROR_COMMITMENT_LIMIT, "The paging file is too small for this operation")
            fd = os.memfd_create("fake-mapping")
            os.ftruncate(fd, size)
            self.objects[name] = _Mapping(fd, size)
            self.committed_bytes += size
            return self._handle(name)

    def open_mapping(self, name: str, readonly: bool) -> int:
        with self._lock:
            if not isinstance(self.objects.get(name), _Mapping):
                raise FileNotFoundError(f"no file mapping {name}")
            return self._handle(name)

    def mapping_size(self, handle: int) -> int:
        with self._lock:
            obj = self.objects[self.handles[handle]]
            assert isinstance(obj, _Mapping)
            return obj.size

    def map_view(self, name: str, size: int, readonly: bool) -> mmap.mmap:
        with self._lock:
            obj = self.objects.get(name)
            # mmap(tagname=) would silently create a new, empty mapping here: the platform must hold a handle.
            assert isinstance(obj, _Mapping), f"map_view of {name}, which no handle keeps alive"
            if size > obj.size:
                raise winerror(win.ERROR_NOT_ENOUGH_MEMORY, "view larger than the mapping")
            view = _View(obj.fd, size, access=mmap.ACCESS_READ if readonly else mmap.ACCESS_WRITE)
            obj.refs += 1
            generation = self._generation
            view.release_ref = lambda: self._release_view(name, generation)
            return view

    def _release_view(self, name: str, generation: int) -> None:
        with self._lock:
            if generation == self._generation:  # views from before a process exit were released by it
                self._unref(name)

    def process_exit(self) -> None:
        """What the death of the (one) process does: every handle and view it had is closed by the OS."""
        with self._lock:
            self._generation += 1
            for obj in self.objects.values():
                if isinstance(obj, _Mapping):
                    os.close(obj.fd)
            self.objects.clear()
            self.handles.clear()
            self.committed_bytes = 0

    def exists(self, name: str) -> bool:
        return name in self.objects

    # ---- mutexes ------------------------------------------------------------------------------------------
    def create_mutex(self, name: str) -> int:
        with self._lock:
            existing = self.objects.get(name)
            if existing is None:
                self.objects[name] = _Mutex()
            elif not isinstance(existing, _Mutex):
                raise winerror(ERROR_INVALID_HANDLE, f"{name} is another kind of object")
            return self._handle(name)

    def open_mutex(self, name: str) -> int:
        with self._lock:
            if not isinstance(self.objects.get(name), _Mutex):
                raise FileNotFoundError(f"no mutex {name}")
            return self._handle(name)

    def wait(self, handle: int, timeout_ms: int) -> int:
        me = threading.get_ident()
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            with self._lock:
                mutex = self.objects[self.handles[handle]]
                assert isinstance(mutex, _Mutex)
                live = {t.ident for t in threading.enumerate()}
                if mutex.owner is None or mutex.owner == me:
                    mutex.owner = me
                    mutex.count += 1
                    return win.WAIT_OBJECT_0
                if mutex.owner not in live:  # its owning thread ended while holding it
                    mutex.owner, mutex.count = me, 1
                    return win.WAIT_ABANDONED
            if time.monotonic() >= deadline:
                return win.WAIT_TIMEOUT
            time.sleep(0.001)

    def release_mutex(self, handle: int) -> None:
        with self._lock:
            mutex = self.objects[self.handles[handle]]
            assert isinstance(mutex, _Mutex)
            if mutex.owner != threading.get_ident():
                raise winerror(ERROR_NOT_OWNER, "Attempt to release mutex not owned by caller")
            mutex.count -= 1
            if mutex.count == 0:
                mutex.owner = None

    # ---- memory -------------------------------------------------------------------------------------------
    def available_commit_bytes(self) -> int:
        return self.commit_limit_bytes - self.committed_bytes

    def memory_barrier(self) -> None:
        self.barriers += 1


class _View(mmap.mmap):
    """A mapped view: holds a reference on its mapping until closed (as MapViewOfFile does)."""

    release_ref = None

    def close(self) -> None:
        if not self.closed:
            super().close()  # BufferError while numpy views still export it: the reference stays
            release, self.release_ref = self.release_ref, None
            if release is not None:
                release()


def _swap_platform(monkeypatch: pytest.MonkeyPatch, platform: ringbuf.platform.Platform) -> None:
    old = ringbuf.platform.PLATFORM
    for module in list(sys.modules.values()):
        if getattr(module, "PLATFORM", None) is old:
            monkeypatch.setattr(module, "PLATFORM", platform)


@pytest.fixture
def fake_kernel() -> FakeKernel:
    kernel = FakeKernel()
    yield kernel
    leaked = {n for n in kernel.objects}
    assert not leaked, f"kernel objects still referenced after the test: {sorted(leaked)}"


@pytest.fixture
def windows_platform(fake_kernel, tmp_path, monkeypatch) -> win.WindowsPlatform:
    """A WindowsPlatform on the fake kernel, installed as this process's platform for the test."""
    platform = win.WindowsPlatform(kernel=fake_kernel, objects_dir=tmp_path / "objects")
    _swap_platform(monkeypatch, platform)
    return platform


@pytest.fixture
def use_platform(monkeypatch):
    """``use_platform(p)``: make ``p`` this process's platform for the test."""
    return lambda platform: _swap_platform(monkeypatch, platform)
