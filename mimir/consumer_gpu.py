"""GPU delivery for :class:`mimir.consumer.RigConsumer`: ``latest_frame`` / ``frame_at`` with ``device="cuda"``.

Per camera ring, created on that camera's first GPU read and kept until
:meth:`CudaDelivery.close`: one :class:`mimir.gpu.RegisteredArena` over the
ring's whole payload arena (``cudaHostRegister`` once, so every slot copy is
a DMA) and one :class:`mimir.gpu.GpuFrameCopier` (a pool of device buffers of
the slot's shape). A frame is copied from the consumer's own mapping of the
ring (the registered one) and re-validated by the ring's seqlock after the
DMA; a frame overwritten before or during the copy is never handed out
(:class:`~mimir.reservoir.StaleHandle`).

Nothing here imports CuPy until a GPU object is made; without CuPy or a
device the first GPU read raises :class:`mimir.gpu.CudaUnavailable` with one
line saying what is missing (``docs/gpu.md``). ``runtime`` and
``backend_factory`` are :mod:`mimir.gpu`'s own seams (the CUDA runtime the
arena registers with, the copier's backend): the tests pass a fake runtime
and ``HostBackend`` to run this code without a GPU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mimir.descriptors import CameraFrameDescriptor
from mimir.reservoir import StaleHandle

if TYPE_CHECKING:
    from mimir.consumer import Frame
    from mimir.gpu import DeviceFrame, GpuFrameCopier, RegisteredArena

__all__ = ["CudaDelivery", "GpuFrame"]


@dataclass(frozen=True)
class GpuFrame:
    """A camera frame in GPU memory (a leased pool buffer): release it when done.

    ``device_frame`` is a :class:`mimir.gpu.DeviceFrame` (``.array`` a CuPy
    array; DLPack for torch/JAX). The copy was checked against the ring's
    seqlock after the DMA: it is exactly the published frame.
    """

    camera: str
    device_frame: "DeviceFrame"
    descriptor: CameraFrameDescriptor
    canonical_ns: int
    skew_ns: int

    @property
    def array(self) -> Any:
        return self.device_frame.array

    def release(self, stream: int | None = None) -> None:
        """Give the buffer back to the camera's pool (after the GPU work using it is enqueued)."""
        self.device_frame.release(stream)

    def __enter__(self) -> "GpuFrame":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Camera:
    def __init__(self, reader, arena: "RegisteredArena", copier: "GpuFrameCopier") -> None:
        self.reader = reader
        self.arena = arena
        self.copier = copier


class CudaDelivery:
    """Registered arenas and copiers of the consumer's camera rings (one per camera, made on first use)."""

    def __init__(self, *, pool_size: int = 2, runtime: Any | None = None,
                 backend_factory: Callable[[], Any] | None = None) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        if runtime is None or backend_factory is None:
            from mimir.gpu import CudaUnavailable, cuda_unavailable_reason

            reason = cuda_unavailable_reason()
            if reason is not None:
                raise CudaUnavailable(f"device='cuda' needs CuPy and a CUDA device: {reason}")
        self.pool_size = pool_size
        self._runtime = runtime
        self._backend_factory = backend_factory
        self._cameras: dict[str, _Camera] = {}

    def _camera(self, frame: "Frame") -> _Camera:
        cam = self._cameras.get(frame.camera)
        if cam is not None and cam.reader is frame._reader:
            return cam
        if cam is not None:  # the consumer re-attached the ring (its worker restarted)
            self.forget(frame.camera)
        from mimir.gpu import GpuFrameCopier, RegisteredArena

        arena_bytes = frame._reader.arena_bytes
        if arena_bytes is None:  # a camera ring always has a payload arena
            raise ValueError(f"the ring of {frame.camera} has no payload arena to register")
        arena = RegisteredArena(arena_bytes, runtime=self._runtime)
        try:
            backend = self._backend_factory() if self._backend_factory is not None else None
            copier = GpuFrameCopier(frame.pixels.shape, frame.pixels.dtype, pool_size=self.pool_size,
                                    backend=backend)
        except BaseException:
            arena.close()
            raise
        cam = self._cameras[frame.camera] = _Camera(frame._reader, arena, copier)
        return cam

    def deliver(self, frame: "Frame") -> GpuFrame:
        """Copy ``frame`` (a view of the consumer's mapping of its ring) into GPU memory, seqlock-checked."""
        cam = self._camera(frame)
        device_frame = cam.copier.copy(frame.pixels, functools.partial(cam.reader.valid, frame._sequence))
        if device_frame is None:
            raise StaleHandle(f"frame {frame.descriptor.sequence} of {frame.camera} was overwritten before its "
                              "copy to the GPU completed; read a more recent frame")
        return GpuFrame(frame.camera, device_frame, frame.descriptor, frame.canonical_ns, frame.skew_ns)

    def copiers(self) -> dict[str, "GpuFrameCopier"]:
        """``{camera: copier}`` made so far (their counters say what was handed out or dropped)."""
        return {name: cam.copier for name, cam in self._cameras.items()}

    def arenas(self) -> dict[str, "RegisteredArena"]:
        return {name: cam.arena for name, cam in self._cameras.items()}

    def forget(self, camera: str) -> None:
        """Unregister one camera's arena (its ring is going away); frames already handed out stay valid."""
        cam = self._cameras.pop(camera, None)
        if cam is not None:
            cam.arena.close()

    def close(self) -> None:
        """Unregister every arena (before the consumer unmaps its rings). Idempotent."""
        for name in list(self._cameras):
            self.forget(name)
