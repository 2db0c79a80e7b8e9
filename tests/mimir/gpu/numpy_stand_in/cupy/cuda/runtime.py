"""Stand-in ``cupy.cuda.runtime``: the calls Mimir makes, on host memory (see ``cupy/__init__.py``).

Registration keeps the driver's one rule that matters to Mimir: a range may
not overlap one already registered (``cudaErrorHostMemoryAlreadyRegistered``).
"""

import ctypes


class CUDARuntimeError(RuntimeError):
    pass


cudaDevAttrHostRegisterSupported = 99
cudaDevAttrHostRegisterReadOnlySupported = 113
memcpyHostToDevice = 1
memcpyDeviceToHost = 2
hostAllocDefault = 0

_events: dict = {}
_registered: dict[int, int] = {}
_allocated: set[int] = set()
_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


def getDeviceCount() -> int:
    return 1


def getDevice() -> int:
    return 0


def deviceGetAttribute(attr: int, device: int) -> int:
    assert attr in (cudaDevAttrHostRegisterSupported, cudaDevAttrHostRegisterReadOnlySupported)
    return 1


def hostRegister(ptr: int, size: int, flags: int) -> None:
    if any(ptr < p + n and p < ptr + size for p, n in _registered.items()):
        raise CUDARuntimeError("cudaErrorHostMemoryAlreadyRegistered: part of the range is already registered")
    _registered[ptr] = size


def hostUnregister(ptr: int) -> None:
    if ptr not in _registered:
        raise CUDARuntimeError("cudaErrorHostMemoryNotRegistered")
    del _registered[ptr]


def hostAlloc(size: int, flags: int) -> int:
    ptr = _libc.malloc(size)
    _allocated.add(ptr)
    return ptr


def freeHost(ptr: int) -> None:
    _allocated.remove(ptr)
    _libc.free(ptr)


def memcpyAsync(dst: int, src: int, size: int, kind: int, stream: int) -> None:
    assert kind in (memcpyHostToDevice, memcpyDeviceToHost) and isinstance(stream, int)
    ctypes.memmove(dst, src, size)


def memsetAsync(ptr: int, value: int, size: int, stream: int) -> None:
    ctypes.memset(ptr, value, size)


def eventRecord(event: int, stream: int) -> None:
    _events[event].record()


def streamWaitEvent(stream: int, event: int, flags: int = 0) -> None:
    assert _events[event].time_s is not None, "waiting on an event never recorded"


def getDeviceProperties(device: int) -> dict:
    return {"name": b"NumPy stand-in for CuPy (no GPU)", "totalGlobalMem": 0, "pciBusID": 0, "asyncEngineCount": 0}


def driverGetVersion() -> int:
    return 0


def runtimeGetVersion() -> int:
    return 0
