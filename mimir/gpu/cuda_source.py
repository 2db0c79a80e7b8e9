"""CUDA C shared by the GPU kernels, written so the same per-element code also builds as host C++.

Every kernel in :mod:`mimir.gpu` is split in two:

* a per-element function marked ``MIMIR_FN`` (one pixel, one pixel pair, one
  accumulation step). Under NVRTC (``__CUDACC__``) it is a ``__device__``
  function; under a host C++ compiler it is a ``static inline`` function, so
  the tests compile the very same text with ``g++`` and compare it with the
  NumPy references on this machine, which has no GPU;
* an ``extern "C" __global__`` wrapper inside ``#ifdef __CUDACC__`` that maps
  the thread index to the element and calls the function (plus, for
  reductions, the warp shuffle and atomics, which only exist on the device).

No ``#include``: NVRTC has no standard headers by default, and the kernels
need none. Constants come from Python (:func:`module_source`), declared once.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .device import require_cupy

__all__ = ["PRELUDE", "NVRTC_OPTIONS", "THREADS_PER_BLOCK", "module_source", "load_module", "compile_ptx", "blocks_for",
           "nvrtc_unavailable_reason"]

NVRTC_OPTIONS: tuple[str, ...] = ("--std=c++14",)
THREADS_PER_BLOCK = 256  # a multiple of the warp size (32): every warp is full in the reductions

PRELUDE = r"""
typedef unsigned char mimir_u8;
typedef long long mimir_i64;
typedef unsigned long long mimir_u64;
#ifdef __CUDACC__
#define MIMIR_FN __device__ __forceinline__
#else
#define MIMIR_FN static inline
#endif
MIMIR_FN int mimir_clamp(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }
"""


def module_source(body: str, defines: dict[str, int] | None = None) -> str:
    """The full translation unit: prelude, ``#define NAME value`` for each constant, then ``body``."""
    lines = [f"#define {name} ({int(value)})" for name, value in (defines or {}).items()]
    return PRELUDE + "\n".join(lines) + "\n" + body


def blocks_for(elements: int) -> int:
    """Blocks of :data:`THREADS_PER_BLOCK` threads covering ``elements`` (at least 1)."""
    return max(1, -(-elements // THREADS_PER_BLOCK))


@cache
def load_module(source: str) -> Any:
    """A compiled ``cupy.RawModule`` of ``source`` (compiled once per process; CuPy also caches on disk)."""
    cupy = require_cupy()
    return cupy.RawModule(code=source, options=NVRTC_OPTIONS)


def compile_ptx(source: str, arch: str = "compute_90", name: str = "mimir.cu") -> str:
    """Compile ``source`` with NVRTC for virtual architecture ``arch`` and return the PTX.

    Needs CuPy and the NVRTC library, not a device: it is how this project
    checks, on machines without a GPU, that the kernels compile. Raises
    ``ImportError`` where CuPy is missing, ``RuntimeError`` (CuPy's
    ``NVRTCError``, or an ``OSError`` from loading the library) where NVRTC
    is missing, and ``ValueError`` with the compiler log on a compile error.
    """
    from cupy_backends.cuda.libs import nvrtc

    program = nvrtc.createProgram(source, name, [], [])
    try:
        try:
            nvrtc.compileProgram(program, [f"-arch={arch}", *NVRTC_OPTIONS])
        except nvrtc.NVRTCError as exc:
            raise ValueError(f"NVRTC could not compile {name}: {exc}\n{nvrtc.getProgramLog(program)}") from None
        ptx = nvrtc.getPTX(program)
    finally:
        nvrtc.destroyProgram(program)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


def nvrtc_unavailable_reason() -> str | None:
    """None when NVRTC compiles a trivial kernel here; else one line saying why it cannot (no device needed)."""
    try:
        compile_ptx('extern "C" __global__ void mimir_probe() {}', name="probe.cu")
    except ImportError as exc:
        return f"CuPy is not installed ({exc})"
    except Exception as exc:  # noqa: BLE001 - whatever the loader raises, the line names it
        return f"NVRTC is not usable here ({type(exc).__name__}: {exc}); it comes with the GPU extra"
    return None
