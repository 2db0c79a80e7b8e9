"""Copy ring frame slots into a small pool of preallocated device buffers, handing out only untorn frames.

The seqlock, as the ring's readers use it (``ringbuf.ring``), stretched
over an asynchronous DMA::

    start(src, still_valid):
        still_valid() false     -> stale_before_copy += 1, nothing copied
        take a free buffer      -> PoolExhausted if every buffer is out
        enqueue the H2D copy on the copier's stream, then a completion event
    result():
        wait for the event      (the DMA has finished reading host memory)
        full fence, then still_valid()
        false -> torn_dropped += 1, the buffer goes back to the pool, None
        true  -> handed_out += 1, a DeviceFrame leasing that buffer

``still_valid`` is the ring's check for the item (``RingReader.valid(seq)``,
``Frame.still_valid``): True while the slot's sequence word still names the
item. The writer zeroes that word before touching the slot and never sets it
back to the same item, so "valid before the copy started and still valid
after the DMA completed" means the writer did not touch the slot while the
engine read it: what was copied is exactly the published frame. Anything
else is dropped and counted; a torn frame is never handed out.

Buffer ownership
    The copier owns ``pool_size`` device buffers of the slot's shape,
    allocated once in the constructor: the steady state allocates no device
    memory. A handed-out :class:`DeviceFrame` leases one buffer until
    :meth:`DeviceFrame.release`; release records an event on the stream that
    used the frame (default: CuPy's current stream), and the next copy into
    that buffer waits for it on the device, so GPU work still reading the
    frame is never overwritten. Do not keep a frame, or an array or DLPack
    tensor made from it, after releasing it.

DLPack: a :class:`DeviceFrame` has ``__dlpack__``/``__dlpack_device__``, so
``torch.from_dlpack(frame)``, ``jax.dlpack.from_dlpack(frame)`` or
``cupy.from_dlpack(frame)`` take it without a copy (the copy has completed
before the frame is handed out, so any consumer stream may read it).

The device side is a :class:`CopyBackend`: :class:`CupyBackend` for CUDA,
:class:`HostBackend` for host buffers (the same seqlock-checked copy into a
preallocated pool, without a GPU; its copy function is injectable, which is
how the tests overwrite a slot in the middle of a "DMA"). Not thread-safe:
one copier per consuming thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ringbuf import fence

from .device import require_cupy

__all__ = ["GpuFrameCopier", "DeviceFrame", "PendingCopy", "PoolExhausted", "FrameReleased",
           "CopyBackend", "CupyBackend", "HostBackend"]


class PoolExhausted(RuntimeError):
    """Every device buffer of the copier is leased or in flight: release frames you are done with."""


class FrameReleased(RuntimeError):
    """A released DeviceFrame (or a PendingCopy already resolved) was used again."""


class CopyBackend(Protocol):
    """Where the copier's buffers live and how a host slot gets into one (the seam for tests)."""

    def allocate(self, count: int, shape: tuple[int, ...], dtype: np.dtype) -> list[Any]:
        """Allocate ``count`` buffers (and whatever per-buffer events the backend needs), once."""

    def copy_async(self, index: int, src: np.ndarray) -> None:
        """Enqueue the copy of ``src`` into buffer ``index`` (after its release fence) and its completion event."""

    def wait(self, index: int) -> None:
        """Block until the last copy into buffer ``index`` has completed."""

    def release_fence(self, index: int, stream: int | None) -> None:
        """Note that buffer ``index`` may be reused once the work enqueued so far on ``stream`` is done."""


class HostBackend:
    """Host (numpy) buffers; ``copy(dst, src)`` does the copy, synchronously (default ``np.copyto``)."""

    def __init__(self, copy: Callable[[np.ndarray, np.ndarray], None] | None = None) -> None:
        self._copy = copy if copy is not None else np.copyto
        self.buffers: list[np.ndarray] = []

    def allocate(self, count: int, shape: tuple[int, ...], dtype: np.dtype) -> list[np.ndarray]:
        self.buffers = [np.empty(shape, dtype) for _ in range(count)]
        return self.buffers

    def copy_async(self, index: int, src: np.ndarray) -> None:
        self._copy(self.buffers[index], src)

    def wait(self, index: int) -> None:
        return None

    def release_fence(self, index: int, stream: int | None) -> None:
        return None


class CupyBackend:
    """CUDA buffers on one device; copies on a non-blocking stream owned by the backend.

    Per buffer it keeps a completion event (recorded after each copy) and a
    release event (recorded on the consumer's stream by ``release``), both
    created once with timing disabled.
    """

    def __init__(self, device: int | None = None) -> None:
        cp = self._cp = require_cupy()
        self._rt = cp.cuda.runtime
        self.device = cp.cuda.Device(device)
        with self.device:
            self.stream = cp.cuda.Stream(non_blocking=True)
        self.buffers: list[Any] = []
        self._done: list[Any] = []
        self._released: list[Any] = []
        self._fenced: list[bool] = []
        self._dst_ptrs: list[int] = []

    def allocate(self, count: int, shape: tuple[int, ...], dtype: np.dtype) -> list[Any]:
        cp = self._cp
        with self.device:
            self.buffers = [cp.empty(shape, dtype) for _ in range(count)]
            self._done = [cp.cuda.Event(disable_timing=True) for _ in range(count)]
            self._released = [cp.cuda.Event(disable_timing=True) for _ in range(count)]
        self._fenced = [False] * count
        self._dst_ptrs = [b.data.ptr for b in self.buffers]
        return self.buffers

    def copy_async(self, index: int, src: np.ndarray) -> None:
        rt = self._rt
        stream_ptr = self.stream.ptr
        with self.device:
            if self._fenced[index]:  # GPU work on the previous lease of this buffer must finish first
                rt.streamWaitEvent(stream_ptr, self._released[index].ptr, 0)
                self._fenced[index] = False
            rt.memcpyAsync(self._dst_ptrs[index], src.ctypes.data, src.nbytes, rt.memcpyHostToDevice, stream_ptr)
            rt.eventRecord(self._done[index].ptr, stream_ptr)

    def wait(self, index: int) -> None:
        self._done[index].synchronize()

    def release_fence(self, index: int, stream: int | None) -> None:
        with self.device:
            ptr = self._cp.cuda.get_current_stream().ptr if stream is None else stream
            self._rt.eventRecord(self._released[index].ptr, ptr)
        self._fenced[index] = True


class DeviceFrame:
    """One handed-out frame: a lease of one pool buffer holding an untorn copy of the slot.

    ``array`` is the buffer (a ``cupy.ndarray`` with :class:`CupyBackend`,
    a ``numpy.ndarray`` with :class:`HostBackend`). Pool-owned and reused:
    after :meth:`release` this object and everything made from it are void.
    """

    __slots__ = ("_copier", "_index", "_array", "_leased")

    def __init__(self, copier: "GpuFrameCopier", index: int, array: Any) -> None:
        self._copier = copier
        self._index = index
        self._array = array
        self._leased = False

    @property
    def array(self) -> Any:
        if not self._leased:
            raise FrameReleased("this DeviceFrame was released; its buffer belongs to the copier again")
        return self._array

    @property
    def shape(self) -> tuple[int, ...]:
        return self._array.shape

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype

    def __dlpack__(self, **kwargs: Any) -> Any:
        """A DLPack capsule of :attr:`array` (no copy); keyword arguments pass through to the array's."""
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self.array.__dlpack_device__()

    def release(self, stream: int | None = None) -> None:
        """Give the buffer back. ``stream``: raw CUDA stream handle of the last work reading it (default: CuPy's current)."""
        if not self._leased:
            raise FrameReleased("DeviceFrame released twice")
        self._leased = False
        self._copier._give_back(self._index, stream)

    def __enter__(self) -> "DeviceFrame":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._leased:
            self.release()


class PendingCopy:
    """A copy in flight; :meth:`result` resolves it exactly once. Pool-owned and reused like the frames.

    The copier's one "stale" instance (index -1) stands for a slot found overwritten before any copy
    started: its result is always None.
    """

    __slots__ = ("_copier", "_index", "_still_valid")

    def __init__(self, copier: "GpuFrameCopier", index: int) -> None:
        self._copier = copier
        self._index = index
        self._still_valid: Callable[[], bool] | None = None  # the slot's seqlock check; set while in flight

    def result(self) -> DeviceFrame | None:
        """Wait for the copy, re-check the seqlock: the frame, or None if it was stale or overwritten (counted)."""
        if self._index < 0:
            return None
        still_valid = self._still_valid
        if still_valid is None:
            raise FrameReleased("this PendingCopy was already resolved")
        self._still_valid = None
        return self._copier._finish(self._index, still_valid)


class GpuFrameCopier:
    """Seqlock-checked copies of ring slots of one shape into a pool of preallocated device buffers.

    ``shape``/``dtype``: the ring's payload slot (every ``src`` must be a
    C-contiguous array of exactly that). ``pool_size``: buffers in the pool
    = frames that may be leased or in flight at once (e.g. 2 per camera for
    a double-buffered consumer, or 6 for six cameras started together).
    ``backend``: default :class:`CupyBackend` on the current CUDA device.

    Counters (plain ints): ``started``, ``handed_out``, ``torn_dropped``
    (overwritten during the copy), ``stale_before_copy`` (already overwritten
    when asked). Invariant: ``started == handed_out + torn_dropped +
    stale_before_copy + in_flight``.
    """

    def __init__(self, shape: tuple[int, ...], dtype: Any = np.uint8, *, pool_size: int = 4,
                 backend: CopyBackend | None = None) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.pool_size = pool_size
        self.backend = backend if backend is not None else CupyBackend()
        buffers = self.backend.allocate(pool_size, self.shape, self.dtype)
        self._frames = [DeviceFrame(self, i, b) for i, b in enumerate(buffers)]
        self._pending = [PendingCopy(self, i) for i in range(pool_size)]
        self._free = list(range(pool_size - 1, -1, -1))  # a stack: pop() takes the most recently freed
        self._stale = PendingCopy(self, -1)
        self.started = 0
        self.handed_out = 0
        self.torn_dropped = 0
        self.stale_before_copy = 0
        self.in_flight = 0

    @property
    def leased(self) -> int:
        """Buffers handed out and not yet released."""
        return self.pool_size - len(self._free) - self.in_flight

    def start(self, src: np.ndarray, still_valid: Callable[[], bool]) -> PendingCopy:
        """Begin copying slot view ``src``; resolve with ``.result()`` (start several, then resolve, to overlap)."""
        if src.shape != self.shape or src.dtype != self.dtype or not src.flags.c_contiguous:
            raise ValueError(
                f"slot view of shape {src.shape} {src.dtype} (contiguous: {src.flags.c_contiguous}); "
                f"this copier copies C-contiguous {self.shape} {self.dtype}"
            )
        self.started += 1
        if not still_valid():
            self.stale_before_copy += 1
            return self._stale
        if not self._free:
            self.started -= 1
            raise PoolExhausted(
                f"all {self.pool_size} buffers of the copier are leased or in flight: release() frames "
                "you are done with, or create the copier with a larger pool_size"
            )
        index = self._free.pop()
        self.in_flight += 1
        self.backend.copy_async(index, src)
        pending = self._pending[index]
        pending._still_valid = still_valid
        return pending

    def copy(self, src: np.ndarray, still_valid: Callable[[], bool]) -> DeviceFrame | None:
        """Copy slot view ``src`` and wait: the frame, or None when it was stale or torn (counted)."""
        return self.start(src, still_valid).result()

    def _finish(self, index: int, still_valid: Callable[[], bool]) -> DeviceFrame | None:
        self.backend.wait(index)
        fence.full_fence()  # order the seqlock load after the DMA's completion (matters on weakly ordered CPUs)
        self.in_flight -= 1
        if not still_valid():
            self.torn_dropped += 1
            self._free.append(index)
            return None
        self.handed_out += 1
        frame = self._frames[index]
        frame._leased = True
        return frame

    def _give_back(self, index: int, stream: int | None) -> None:
        self.backend.release_fence(index, stream)
        self._free.append(index)
