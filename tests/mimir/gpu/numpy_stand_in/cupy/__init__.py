"""A NumPy stand-in for the slice of CuPy that ``mimir.gpu`` and ``bench/gpu.py`` call, for machines without a GPU.

Used only by ``test_bench_gpu.py``, in a subprocess, by putting this folder
first on ``PYTHONPATH``. It lets ``mimir bench gpu`` run end to end here:
rings and their arenas, writer processes, the copier's seqlock checks,
verification of every handed-out frame, records, goals, JSON, cleanup. It
says nothing about CUDA: "device" arrays are host arrays, copies are
``memmove``, events complete at once, and kernels are the kernel source's
per-element functions built as host C++ and looped over (as in the
``host_kernels`` fixture). Figures measured with it are meaningless.
"""

import ctypes
import hashlib
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import cuda  # noqa: F401  (cupy.cuda is an attribute of the package, as in CuPy)

__version__ = "numpy-stand-in"
uint8 = np.uint8
uint64 = np.uint64


class _Pointer:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr


class ndarray(np.ndarray):
    """A host array posing as a device array: ``.get()`` copies to "host", ``.data.ptr`` is its address."""

    def get(self, stream=None):
        return np.array(self, copy=True)

    @property
    def data(self):
        return _Pointer(self.ctypes.data)


def empty(shape, dtype=np.float64):
    return np.empty(shape, dtype).view(ndarray)


def zeros(shape, dtype=np.float64):
    return np.zeros(shape, dtype).view(ndarray)


def asarray(a):
    return np.array(a, copy=True).view(ndarray)


# Host loops named like the __global__ kernels, with the same parameters.
_DRIVERS = {
    "mimir_yuyv_pair": r"""
extern "C" void mimir_yuyv_to_rgb(const mimir_u8* s, mimir_u8* d, mimir_i64 pairs) {
    for (mimir_i64 p = 0; p < pairs; ++p) mimir_yuyv_pair(p, s, d); }
extern "C" void mimir_grbg_to_rgb(const mimir_u8* s, mimir_u8* d, int h, int w) {
    for (mimir_i64 i = 0; i < (mimir_i64)h * w; ++i) mimir_grbg_pixel(i, s, d, h, w); }
extern "C" void mimir_grey_to_rgb(const mimir_u8* s, mimir_u8* d, mimir_i64 pixels) {
    for (mimir_i64 i = 0; i < pixels; ++i) mimir_grey_pixel(i, s, d); }
""",
    "mimir_motion_pixel": r"""
extern "C" void mimir_motion_features(const mimir_u8* f, mimir_u8* p, mimir_i64 n, int step, int threshold,
                                      mimir_u64* sums) {
    mimir_u64 a = 0, c = 0, l = 0;
    for (mimir_i64 i = 0; i < n; ++i) mimir_motion_pixel(i, f, p, step, threshold, &a, &c, &l);
    sums[0] += a; sums[1] += c; sums[2] += l; }
""",
}


class RawModule:
    """Builds ``code`` with g++ plus the host loop of whichever kernels it defines."""

    def __init__(self, code: str, options=()) -> None:
        driver = next(d for marker, d in _DRIVERS.items() if marker in code)
        with tempfile.TemporaryDirectory(prefix="cupy-stand-in-") as folder:  # a loaded library survives unlinking
            unit = Path(folder) / f"{hashlib.sha1(code.encode()).hexdigest()}.cpp"
            unit.write_text(code + driver)
            subprocess.run(["g++", "-x", "c++", "-std=c++14", "-O2", "-shared", "-fPIC", "-o",
                            str(unit.with_suffix(".so")), str(unit)], check=True)
            self._lib = ctypes.CDLL(str(unit.with_suffix(".so")))

    def get_function(self, name: str):
        fn = getattr(self._lib, name)

        def launch(grid, block, args):
            assert len(grid) == 1 and len(block) == 1 and block[0] % 32 == 0
            converted = []
            for a in args:
                if isinstance(a, np.ndarray):
                    converted.append(ctypes.c_void_p(a.ctypes.data))
                elif isinstance(a, np.int64):
                    converted.append(ctypes.c_longlong(int(a)))
                elif isinstance(a, np.int32):
                    converted.append(ctypes.c_int(int(a)))
                else:
                    raise TypeError(f"kernel argument of type {type(a).__name__}: pass numpy scalars or arrays")
            fn(*converted)

        return launch
