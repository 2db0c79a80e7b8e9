"""Whether CUDA can be used here, and CuPy imported lazily (``import mimir`` never needs CuPy).

Every GPU entry point of :mod:`mimir.gpu` calls :func:`require_cupy`, which
returns the ``cupy`` module or raises :class:`CudaUnavailable` with one line
saying why (CuPy not installed, no driver, no device). Tests and ``mimir bench
gpu`` use :func:`cuda_unavailable_reason` to skip or exit with that line.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["CudaUnavailable", "cuda_unavailable_reason", "require_cupy", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'mimir-rig[gpu]'"


class CudaUnavailable(RuntimeError):
    """CuPy or a CUDA device is missing; the message says which and how to fix it."""


def _import_cupy() -> ModuleType:
    try:
        import cupy
    except ImportError as exc:
        raise CudaUnavailable(f"CuPy is not installed ({exc}); install the GPU extra: {INSTALL_HINT}") from None
    return cupy


def cuda_unavailable_reason() -> str | None:
    """None when CuPy imports and at least one CUDA device answers; else one line saying why not."""
    try:
        cupy = _import_cupy()
    except CudaUnavailable as exc:
        return str(exc)
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        return f"the CUDA runtime found no usable device ({exc})"
    if count == 0:
        return "the CUDA runtime reports 0 devices"
    return None


def require_cupy() -> ModuleType:
    """The ``cupy`` module, or :class:`CudaUnavailable` when it or a device is missing."""
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise CudaUnavailable(reason)
    return _import_cupy()
