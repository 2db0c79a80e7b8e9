"""Fixtures for the GPU package's tests: frames of every format, the CUDA/NVRTC/host-compiler gates.

Three gates, each skipping with its own counted reason:

* ``cupy_device`` - CuPy and a CUDA device ("no CUDA device: ...");
* ``nvrtc``       - NVRTC compiles kernels (no device needed; comes with the ``gpu`` extra);
* ``host_kernels``- the kernel sources built as host C++ with ``g++`` (their per-element
  functions run here, on the CPU, against the NumPy references).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mimir.descriptors import PixelFormat
from mimir.gpu.convert import KERNEL_SOURCE, mosaic_grbg
from mimir.gpu.cuda_source import nvrtc_unavailable_reason
from mimir.gpu.device import cuda_unavailable_reason
from mimir.gpu.features import FEATURE_KERNEL_SOURCE

_u8p = ctypes.POINTER(ctypes.c_uint8)

# Host drivers with the same parameters as the __global__ kernels: a loop over the thread index.
_CONVERT_DRIVER = r"""
extern "C" void host_yuyv_to_rgb(const mimir_u8* src, mimir_u8* dst, mimir_i64 pairs) {
    for (mimir_i64 p = 0; p < pairs; ++p) mimir_yuyv_pair(p, src, dst);
}
extern "C" void host_grbg_to_rgb(const mimir_u8* src, mimir_u8* dst, int h, int w) {
    for (mimir_i64 i = 0; i < (mimir_i64)h * w; ++i) mimir_grbg_pixel(i, src, dst, h, w);
}
extern "C" void host_grey_to_rgb(const mimir_u8* src, mimir_u8* dst, mimir_i64 pixels) {
    for (mimir_i64 i = 0; i < pixels; ++i) mimir_grey_pixel(i, src, dst);
}
"""
_FEATURE_DRIVER = r"""
extern "C" void host_motion_features(const mimir_u8* frame, mimir_u8* previous, mimir_i64 pixels,
                                     int luma_step, int threshold, mimir_u64* sums) {
    mimir_u64 absdiff = 0, changed = 0, luma = 0;
    for (mimir_i64 i = 0; i < pixels; ++i)
        mimir_motion_pixel(i, frame, previous, luma_step, threshold, &absdiff, &changed, &luma);
    sums[0] = absdiff; sums[1] = changed; sums[2] = luma;
}
"""


@pytest.fixture(scope="session")
def cupy_device():
    """The cupy module where a CUDA device is present; else the test skips with the reason."""
    reason = cuda_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no CUDA device: {reason}")
    import cupy

    return cupy


@pytest.fixture(scope="session")
def nvrtc():
    reason = nvrtc_unavailable_reason()
    if reason is not None:
        pytest.skip(f"NVRTC unavailable (kernel compile check needs the gpu extra): {reason}")


class HostKernels:
    """The kernel sources compiled as host C++: the per-element CUDA functions, called in a loop."""

    def __init__(self, convert: ctypes.CDLL, features: ctypes.CDLL) -> None:
        self._convert = convert
        self._features = features

    def to_rgb(self, frame: np.ndarray, fmt: PixelFormat) -> np.ndarray:
        frame = np.ascontiguousarray(frame)
        h, w = frame.shape[:2]
        out = np.full((h, w, 3), 0xA5, np.uint8)  # not zero: every byte must be written
        src, dst = frame.ctypes.data_as(_u8p), out.ctypes.data_as(_u8p)
        if fmt == PixelFormat.YUYV:
            self._convert.host_yuyv_to_rgb(src, dst, ctypes.c_longlong(h * w // 2))
        elif fmt == PixelFormat.GRBG:
            self._convert.host_grbg_to_rgb(src, dst, ctypes.c_int(h), ctypes.c_int(w))
        else:
            self._convert.host_grey_to_rgb(src, dst, ctypes.c_longlong(h * w))
        return out

    def motion_sums(self, frame: np.ndarray, previous: np.ndarray, luma_step: int, threshold: int) -> tuple[int, int, int]:
        """Run the feature kernel's per-pixel function over ``frame``; updates ``previous`` in place like the kernel."""
        sums = np.zeros(3, np.uint64)
        self._features.host_motion_features(
            np.ascontiguousarray(frame).ctypes.data_as(_u8p), previous.ctypes.data_as(_u8p),
            ctypes.c_longlong(previous.size), ctypes.c_int(luma_step), ctypes.c_int(threshold),
            sums.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64)),
        )
        return int(sums[0]), int(sums[1]), int(sums[2])


def _build(source: str, driver: str, path: Path, cxx: str) -> ctypes.CDLL:
    unit = path.with_suffix(".cpp")
    unit.write_text(source + driver)
    result = subprocess.run([cxx, "-x", "c++", "-std=c++14", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                             "-o", str(path), str(unit)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"the kernel source does not build as host C++:\n{result.stderr}"
    return ctypes.CDLL(str(path))


@pytest.fixture(scope="session")
def host_kernels(tmp_path_factory) -> HostKernels:
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler (g++): the kernels' per-element code cannot be run on the CPU here")
    d = tmp_path_factory.mktemp("host_kernels")
    return HostKernels(_build(KERNEL_SOURCE, _CONVERT_DRIVER, d / "convert.so", cxx),
                       _build(FEATURE_KERNEL_SOURCE, _FEATURE_DRIVER, d / "features.so", cxx))


# ---- frames ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def photo_rgb() -> np.ndarray:
    """A real photograph (matplotlib's bundled grace_hopper.jpg, 600 x 512) as RGB uint8."""
    import cv2
    from matplotlib import cbook

    bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    assert bgr is not None and bgr.shape == (600, 512, 3)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _structured(h: int, w: int) -> dict[str, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w]
    return {
        "ramp_x": ((x * 255) // max(w - 1, 1)).astype(np.uint8),
        "ramp_y": ((y * 255) // max(h - 1, 1)).astype(np.uint8),
        "checker": (((x + y) % 2) * 255).astype(np.uint8),
        "stripes_2px": (((x // 2) % 2) * 255).astype(np.uint8),
        "black": np.zeros((h, w), np.uint8),
        "white": np.full((h, w), 255, np.uint8),
        "edge": np.where(x < w // 3, 0, 255).astype(np.uint8),
    }


@pytest.fixture(scope="session")
def frames(photo_rgb) -> dict[PixelFormat, list[tuple[str, np.ndarray]]]:
    """Named frames per format: the photograph, random frames of several sizes, structured patterns."""
    import cv2

    rng = np.random.default_rng(18)
    out: dict[PixelFormat, list[tuple[str, np.ndarray]]] = {f: [] for f in (PixelFormat.YUYV, PixelFormat.GRBG, PixelFormat.GREY)}
    bgr = cv2.cvtColor(photo_rgb, cv2.COLOR_RGB2BGR)
    out[PixelFormat.YUYV].append(("photo", cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YUYV)))
    out[PixelFormat.GRBG].append(("photo", mosaic_grbg(photo_rgb)))
    out[PixelFormat.GRBG].append(("photo_odd_crop", np.ascontiguousarray(mosaic_grbg(photo_rgb)[1:200, 3:154])))
    out[PixelFormat.GREY].append(("photo", cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)))
    for h, w in ((480, 640), (7, 10), (3, 4), (2, 2)):
        out[PixelFormat.YUYV].append((f"random_{h}x{w}", rng.integers(0, 256, (h, w, 2), dtype=np.uint8)))
    for h, w in ((480, 640), (9, 11), (10, 7), (3, 3), (4, 5)):
        out[PixelFormat.GRBG].append((f"random_{h}x{w}", rng.integers(0, 256, (h, w), dtype=np.uint8)))
    for h, w in ((480, 640), (5, 3), (1, 1)):
        out[PixelFormat.GREY].append((f"random_{h}x{w}", rng.integers(0, 256, (h, w), dtype=np.uint8)))
    for name, plane in _structured(24, 32).items():
        out[PixelFormat.GRBG].append((name, plane))
        out[PixelFormat.GREY].append((name, plane))
        yuyv = np.empty((24, 32, 2), np.uint8)
        yuyv[:, :, 0] = plane
        yuyv[:, :, 1] = plane[:, ::-1]  # chroma from the mirrored pattern
        out[PixelFormat.YUYV].append((name, yuyv))
    # YUYV corners of the colour cube: every Y, U, V extreme together (exercises the clamps and signs).
    levels = np.array([0, 1, 15, 16, 17, 127, 128, 129, 235, 240, 254, 255], np.uint8)
    y, u, v = np.meshgrid(levels, levels, levels, indexing="ij")
    n = y.size
    extremes = np.empty((1, 2 * n, 2), np.uint8)
    extremes[0, 0::2, 0] = y.ravel()
    extremes[0, 1::2, 0] = y.ravel()[::-1]
    extremes[0, 0::2, 1] = u.ravel()
    extremes[0, 1::2, 1] = v.ravel()
    out[PixelFormat.YUYV].append(("extremes", extremes))
    return out
