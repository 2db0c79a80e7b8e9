"""Register a ring's payload arena with the CUDA driver once, so frame copies out of it run at DMA speed.

``cudaHostRegister`` page-locks an existing host range and maps it for the
GPU's copy engines: a ``cudaMemcpyAsync`` from it is then a direct DMA (as
from ``cudaMallocHost`` memory) instead of the driver's staged copy through
its own pinned bounce buffer. A ring's arena is a ``MAP_SHARED`` mapping of a
``/dev/shm`` object, page aligned (``ringbuf.ring``), so one registration
covers every slot for the ring's lifetime.

Read-only mappings
    Pinning needs write access to the pages unless the range is registered
    read-only (``cudaHostRegisterReadOnly``, CUDA 11.1+, where the device
    reports ``cudaDevAttrHostRegisterReadOnlySupported``). A read-only numpy
    view (``arena.flags.writeable`` False, as a ``PROT_READ`` mapping gives)
    is registered with that flag. Where the driver cannot or will not
    register, :class:`RegisteredArena` does not fail: ``registered`` is
    False, ``fallback_reason`` says why in one line, and copies from the
    arena still work through the driver's pageable path (slower, about 3x on
    the PCIe Gen5 machine of issue 18).

Ownership
    A :class:`RegisteredArena` owns the registration and nothing else. It
    keeps a reference to the arena array, so the mapping cannot be unmapped
    while registered (``mmap.close`` refuses while a view exists; the ring's
    own close then leaves the mapping to die with the last view). Close the
    registration before the ring: :meth:`RegisteredArena.close` unregisters
    (idempotent) and drops the reference.
"""

from __future__ import annotations

import mmap
from types import ModuleType
from typing import Any

import numpy as np

from .device import require_cupy

__all__ = ["RegisteredArena", "HOST_REGISTER_PORTABLE", "HOST_REGISTER_READ_ONLY"]

# cudaHostRegister flags (driver_types.h): Portable = 0x01 (pinned for every CUDA context, so a copier
# on any device benefits), Mapped = 0x02, IoMemory = 0x04, ReadOnly = 0x08.
HOST_REGISTER_PORTABLE = 0x01
HOST_REGISTER_READ_ONLY = 0x08


class RegisteredArena:
    """The CUDA registration of one ring payload arena.

    ``arena``: a C-contiguous ``uint8`` numpy array viewing the whole arena,
    starting on a page boundary. ``device``: the CUDA device whose
    capabilities decide the flags (default: the current one). ``runtime``:
    the CUDA runtime API object (default ``cupy.cuda.runtime``); it is the
    seam tests use to check the flag and fallback logic without a GPU.

    Attributes: ``address``, ``nbytes``, ``read_only`` (the view is not
    writable), ``registered``, ``flags`` (the flags registered with, or None),
    ``fallback_reason`` (None when registered).
    """

    def __init__(self, arena: np.ndarray, *, device: int | None = None, runtime: Any | None = None) -> None:
        if not isinstance(arena, np.ndarray) or arena.dtype != np.uint8 or not arena.flags.c_contiguous:
            raise ValueError("the arena must be a C-contiguous uint8 numpy array viewing the whole payload arena")
        if arena.nbytes == 0:
            raise ValueError("the arena is empty (a ring without payload has nothing to register)")
        address = arena.ctypes.data
        if address % mmap.PAGESIZE:
            raise ValueError(
                f"the arena starts at {address:#x}, not on a {mmap.PAGESIZE}-byte page boundary; pass the whole arena"
            )
        self._arena: np.ndarray | None = arena
        self.address = address
        self.nbytes = arena.nbytes
        self.read_only = not arena.flags.writeable
        self.registered = False
        self.flags: int | None = None
        self.fallback_reason: str | None = None
        self._rt: ModuleType | Any = runtime if runtime is not None else require_cupy().cuda.runtime
        self.device = self._rt.getDevice() if device is None else device
        self._register()

    def _register(self) -> None:
        rt = self._rt
        if not rt.deviceGetAttribute(rt.cudaDevAttrHostRegisterSupported, self.device):
            self.fallback_reason = (
                f"CUDA device {self.device} does not support cudaHostRegister; copies use the pageable path"
            )
            return
        flags = HOST_REGISTER_PORTABLE
        if self.read_only:
            if not rt.deviceGetAttribute(rt.cudaDevAttrHostRegisterReadOnlySupported, self.device):
                self.fallback_reason = (
                    f"the arena is mapped read-only and CUDA device {self.device} does not support read-only "
                    "registration (cudaDevAttrHostRegisterReadOnlySupported = 0); copies use the pageable path "
                    "(map the ring read-write to register it)"
                )
                return
            flags |= HOST_REGISTER_READ_ONLY
        try:
            rt.hostRegister(self.address, self.nbytes, flags)
        except rt.CUDARuntimeError as exc:
            kind = "read-only " if self.read_only else ""
            self.fallback_reason = (
                f"the driver refused {kind}registration of {self.nbytes} B at {self.address:#x} ({exc}); "
                "copies use the pageable path"
            )
            return
        self.registered = True
        self.flags = flags

    def contains(self, view: np.ndarray) -> bool:
        """True when ``view``'s bytes lie inside this arena (a slot view of its ring)."""
        start = view.ctypes.data
        return self.address <= start and start + view.nbytes <= self.address + self.nbytes

    def close(self) -> None:
        """Unregister (if registered) and drop the arena reference. Idempotent."""
        arena, self._arena = self._arena, None
        if arena is None:
            return
        if self.registered:
            self.registered = False
            self._rt.hostUnregister(self.address)

    def __enter__(self) -> "RegisteredArena":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._arena is None:
            state = "closed"
        elif self.registered:
            state = f"registered, flags {self.flags:#x}"
        else:
            state = f"not registered: {self.fallback_reason}"
        return f"RegisteredArena({self.nbytes} B at {self.address:#x}, {state})"
