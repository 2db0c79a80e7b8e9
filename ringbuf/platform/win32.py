"""The real Windows calls of :class:`ringbuf.platform.windows.WindowsPlatform` (loaded on Windows only).

File mappings go through CPython's ``_winapi`` and ``mmap`` exactly as
:mod:`multiprocessing.shared_memory` does, with two differences: a read-only
attach maps read-only, and the mapping handle stays open until the view
exists (so the mapping cannot vanish in between and be silently re-created
empty by ``mmap``'s ``tagname``). Mutexes, the commit figure and the barrier
come from kernel32 through ctypes.

Never run by CI (Linux): the logic above it is tested against a fake kernel
(tests/ringbuf/platform/fake_kernel.py); mypy checks this file with
``--platform win32``.
"""

from __future__ import annotations

import sys

assert sys.platform == "win32", "ringbuf.platform.win32 is the Windows binding"

import _winapi  # noqa: E402
import ctypes  # noqa: E402
import mmap  # noqa: E402
from ctypes import wintypes  # noqa: E402

__all__ = ["Kernel32"]

ERROR_FILE_NOT_FOUND = 2
SYNCHRONIZE = 0x00100000
MUTEX_MODIFY_STATE = 0x0001
WAIT_FAILED = 0xFFFFFFFF


class _MemoryStatusEx(ctypes.Structure):
    _fields_ = [
        ("dwLength", wintypes.DWORD), ("dwMemoryLoad", wintypes.DWORD),
        ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
        ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
        ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
        ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
    ]


class Kernel32:
    """:class:`ringbuf.platform.windows.Kernel` on the real OS."""

    def __init__(self) -> None:
        k = ctypes.WinDLL("kernel32", use_last_error=True)
        self._create_mutex = k.CreateMutexW
        self._create_mutex.argtypes = [wintypes.LPVOID, wintypes.BOOL, wintypes.LPCWSTR]
        self._create_mutex.restype = wintypes.HANDLE
        self._open_mutex = k.OpenMutexW
        self._open_mutex.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.LPCWSTR]
        self._open_mutex.restype = wintypes.HANDLE
        self._release_mutex = k.ReleaseMutex
        self._release_mutex.argtypes = [wintypes.HANDLE]
        self._release_mutex.restype = wintypes.BOOL
        self._wait = k.WaitForSingleObject
        self._wait.argtypes = [wintypes.HANDLE, wintypes.DWORD]
        self._wait.restype = wintypes.DWORD
        self._close = k.CloseHandle
        self._close.argtypes = [wintypes.HANDLE]
        self._close.restype = wintypes.BOOL
        self._memory_status = k.GlobalMemoryStatusEx
        self._memory_status.argtypes = [ctypes.POINTER(_MemoryStatusEx)]
        self._memory_status.restype = wintypes.BOOL
        self.memory_barrier = k.FlushProcessWriteBuffers
        self.memory_barrier.argtypes = []
        self.memory_barrier.restype = None

    @staticmethod
    def _error(what: str) -> OSError:
        code = ctypes.get_last_error()
        return ctypes.WinError(code, f"{what}: {ctypes.FormatError(code)}")

    # ---- file mappings (as multiprocessing.shared_memory does) ---------------------------------------------
    def create_mapping(self, name: str, size: int) -> int:
        handle = _winapi.CreateFileMapping(_winapi.INVALID_HANDLE_VALUE, _winapi.NULL, _winapi.PAGE_READWRITE,
                                           (size >> 32) & 0xFFFFFFFF, size & 0xFFFFFFFF, name)
        if _winapi.GetLastError() == _winapi.ERROR_ALREADY_EXISTS:
            _winapi.CloseHandle(handle)
            raise FileExistsError(f"file mapping {name} exists")
        return handle

    def open_mapping(self, name: str, readonly: bool) -> int:
        access = _winapi.FILE_MAP_READ if readonly else _winapi.FILE_MAP_WRITE
        return _winapi.OpenFileMapping(access, False, name)

    def mapping_size(self, handle: int) -> int:
        view = _winapi.MapViewOfFile(handle, _winapi.FILE_MAP_READ, 0, 0, 0)
        try:
            return _winapi.VirtualQuerySize(view)
        finally:
            _winapi.UnmapViewOfFile(view)

    def map_view(self, name: str, size: int, readonly: bool) -> mmap.mmap:
        return mmap.mmap(-1, size, tagname=name, access=mmap.ACCESS_READ if readonly else mmap.ACCESS_WRITE)

    def close_handle(self, handle: int) -> None:
        _winapi.CloseHandle(handle)

    # ---- mutexes ---------------------------------------------------------------------------------------------
    def create_mutex(self, name: str) -> int:
        handle = self._create_mutex(None, False, name)
        if not handle:
            raise self._error(f"CreateMutex {name}")
        return int(handle)

    def open_mutex(self, name: str) -> int:
        handle = self._open_mutex(SYNCHRONIZE | MUTEX_MODIFY_STATE, False, name)
        if not handle:
            code = ctypes.get_last_error()
            if code == ERROR_FILE_NOT_FOUND:
                raise FileNotFoundError(f"mutex {name} does not exist")
            raise ctypes.WinError(code, f"OpenMutex {name}")
        return int(handle)

    def wait(self, handle: int, timeout_ms: int) -> int:
        code = int(self._wait(handle, timeout_ms))
        if code == WAIT_FAILED:
            raise self._error("WaitForSingleObject")
        return code

    def release_mutex(self, handle: int) -> None:
        if not self._release_mutex(handle):
            raise self._error("ReleaseMutex")

    # ---- memory ----------------------------------------------------------------------------------------------
    def available_commit_bytes(self) -> int:
        status = _MemoryStatusEx()
        status.dwLength = ctypes.sizeof(_MemoryStatusEx)
        if not self._memory_status(ctypes.byref(status)):
            raise self._error("GlobalMemoryStatusEx")
        return int(status.ullAvailPageFile)
