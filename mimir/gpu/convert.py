"""Camera pixel formats to packed 8-bit RGB: CUDA kernels and NumPy references with the same arithmetic.

Formats (the ring slot shapes of :mod:`workers.camera`), each matching
OpenCV's CPU conversion of the same frame **bit for bit** (no tolerance; the
tests compare every byte on real and random frames):

``YUYV`` ``uint8 (h, w, 2)``, ``w`` even
    BT.601 video range, as ``cv2.COLOR_YUV2RGB_YUYV``. OpenCV's fixed-point
    arithmetic (``color_yuv.simd.hpp``): with ``u = U - 128``, ``v = V - 128``
    and ``y = max(Y - 16, 0) * 1220542``,
    ``R = sat((y + 2**19 + 1673527 v) >> 20)``,
    ``G = sat((y + 2**19 - 852492 v - 409993 u) >> 20)``,
    ``B = sat((y + 2**19 + 2116026 u) >> 20)`` (``>>`` an arithmetic shift,
    ``sat`` clamps to 0..255). Every intermediate fits int32.
``GRBG`` ``uint8 (h, w)``, ``h, w >= 3``
    8-bit Bayer as the PS3 Eye delivers it: row 0 is ``G R G R ...``, row 1
    ``B G B G ...``. OpenCV names Bayer codes after the second row's second
    and third pixels, so this layout is ``cv2.COLOR_BayerGB2RGB`` (OpenCV 5
    adds the layout-named alias ``COLOR_BayerGRBG2RGB``, the same constant;
    REFERENCE.md's ``COLOR_BayerGB2BGR`` is the BGR-output twin). The test
    ``test_opencv_code_for_grbg`` checks this on a flat-colour mosaic where
    only the right code returns the colour. Demosaic is OpenCV's bilinear
    ``Bayer2RGB_``: at a red or blue site the missing colours are
    ``(4 cross neighbours + 2) >> 2`` (green) and ``(4 diagonal neighbours + 2)
    >> 2``; at a green site ``(left + right + 1) >> 1`` and ``(up + down + 1)
    >> 1`` for the colours of that row and column. Border pixels copy the
    nearest interior pixel, which is OpenCV's edge fill: pixel ``(y, x)`` is
    the interior result at ``(clamp(y, 1, h-2), clamp(x, 1, w-2))``.
``GREY`` ``uint8 (h, w)``
    ``R = G = B = Y`` (``cv2.COLOR_GRAY2RGB``).

GPU use: :class:`GpuRgbConverter` launches on CuPy's current stream and
returns without waiting; pass ``out`` to allocate nothing per frame. The
CUDA C per-pixel functions are the strings in :data:`KERNEL_SOURCE`; the
tests build that same text with a host C++ compiler (see
:mod:`mimir.gpu.cuda_source`) and with NVRTC where available.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mimir.descriptors import PixelFormat

from .cuda_source import blocks_for, load_module, module_source, THREADS_PER_BLOCK
from .device import require_cupy

__all__ = [
    "FORMATS", "BT601", "KERNEL_SOURCE", "frame_shape", "check_frame_shape",
    "yuyv_to_rgb_reference", "grbg_to_rgb_reference", "grey_to_rgb_reference", "to_rgb_reference",
    "opencv_code", "opencv_to_rgb", "mosaic_grbg", "GpuRgbConverter",
]

FORMATS = (PixelFormat.YUYV, PixelFormat.GRBG, PixelFormat.GREY)

# OpenCV's BT.601 YUV422 -> RGB fixed-point coefficients (ITUR_BT_601_*), scaled by 2**20.
BT601 = {
    "BT601_SHIFT": 20,
    "BT601_CY": 1220542,   # 1.164 (255/219, video range)
    "BT601_CVR": 1673527,  # 1.596
    "BT601_CVG": -852492,  # -0.813
    "BT601_CUG": -409993,  # -0.391
    "BT601_CUB": 2116026,  # 2.018
}

_BODY = r"""
/* YUYV: one call per pixel pair p (pixels 2p and 2p+1, row-major); bytes Y0 U Y1 V. */
MIMIR_FN void mimir_yuyv_pair(mimir_i64 p, const mimir_u8* src, mimir_u8* dst) {
    const mimir_u8* s = src + 4 * p;
    const int u = (int)s[1] - 128;
    const int v = (int)s[3] - 128;
    const int half = 1 << (BT601_SHIFT - 1);
    const int ruv = half + BT601_CVR * v;
    const int guv = half + BT601_CVG * v + BT601_CUG * u;
    const int buv = half + BT601_CUB * u;
    mimir_u8* d = dst + 6 * p;
    for (int k = 0; k < 2; ++k) {
        const int y = mimir_clamp((int)s[2 * k] - 16, 0, 255) * BT601_CY;
        d[3 * k + 0] = (mimir_u8)mimir_clamp((y + ruv) >> BT601_SHIFT, 0, 255);
        d[3 * k + 1] = (mimir_u8)mimir_clamp((y + guv) >> BT601_SHIFT, 0, 255);
        d[3 * k + 2] = (mimir_u8)mimir_clamp((y + buv) >> BT601_SHIFT, 0, 255);
    }
}

/* Bayer GRBG (row 0: G R, row 1: B G), bilinear; one call per output pixel i. Needs h, w >= 3. */
MIMIR_FN void mimir_grbg_pixel(mimir_i64 i, const mimir_u8* src, mimir_u8* dst, int h, int w) {
    const int cy = mimir_clamp((int)(i / w), 1, h - 2);   /* border pixels copy the nearest interior one */
    const int cx = mimir_clamp((int)(i % w), 1, w - 2);
    const mimir_u8* c = src + (mimir_i64)cy * w + cx;
    const int up = c[-w], down = c[w], left = c[-1], right = c[1];
    const int cross = (up + down + left + right + 2) >> 2;
    const int diag = (c[-w - 1] + c[-w + 1] + c[w - 1] + c[w + 1] + 2) >> 2;
    const int vert = (up + down + 1) >> 1;
    const int horiz = (left + right + 1) >> 1;
    const int even_row = (cy & 1) == 0;
    const int even_col = (cx & 1) == 0;
    int r, g, b;
    if (even_row && !even_col) {        /* red site */
        r = c[0]; g = cross; b = diag;
    } else if (!even_row && even_col) { /* blue site */
        r = diag; g = cross; b = c[0];
    } else if (even_row) {              /* green in a G R row: red left/right, blue up/down */
        r = horiz; g = c[0]; b = vert;
    } else {                            /* green in a B G row: blue left/right, red up/down */
        r = vert; g = c[0]; b = horiz;
    }
    mimir_u8* d = dst + 3 * i;
    d[0] = (mimir_u8)r; d[1] = (mimir_u8)g; d[2] = (mimir_u8)b;
}

/* GREY: one call per pixel i. */
MIMIR_FN void mimir_grey_pixel(mimir_i64 i, const mimir_u8* src, mimir_u8* dst) {
    const mimir_u8 y = src[i];
    mimir_u8* d = dst + 3 * i;
    d[0] = y; d[1] = y; d[2] = y;
}

#ifdef __CUDACC__
extern "C" __global__ void mimir_yuyv_to_rgb(const mimir_u8* src, mimir_u8* dst, mimir_i64 pairs) {
    const mimir_i64 p = (mimir_i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (p < pairs) mimir_yuyv_pair(p, src, dst);
}
extern "C" __global__ void mimir_grbg_to_rgb(const mimir_u8* src, mimir_u8* dst, int h, int w) {
    const mimir_i64 i = (mimir_i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (mimir_i64)h * w) mimir_grbg_pixel(i, src, dst, h, w);
}
extern "C" __global__ void mimir_grey_to_rgb(const mimir_u8* src, mimir_u8* dst, mimir_i64 pixels) {
    const mimir_i64 i = (mimir_i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < pixels) mimir_grey_pixel(i, src, dst);
}
#endif
"""

KERNEL_SOURCE = module_source(_BODY, BT601)
_KERNEL_NAMES = {PixelFormat.YUYV: "mimir_yuyv_to_rgb", PixelFormat.GRBG: "mimir_grbg_to_rgb", PixelFormat.GREY: "mimir_grey_to_rgb"}


def frame_shape(pixel_format: PixelFormat, height: int, width: int) -> tuple[int, ...]:
    """The ring slot shape of a frame: ``(h, w, 2)`` for YUYV, ``(h, w)`` for GRBG and GREY."""
    fmt = _known(pixel_format)
    return (height, width, 2) if fmt == PixelFormat.YUYV else (height, width)


def check_frame_shape(pixel_format: PixelFormat, shape: tuple[int, ...]) -> tuple[int, int]:
    """``(height, width)`` of a frame of ``shape``; ValueError naming the expected shape if it does not fit."""
    fmt = _known(pixel_format)
    ok = len(shape) == (3 if fmt == PixelFormat.YUYV else 2) and all(d > 0 for d in shape)
    if fmt == PixelFormat.YUYV:
        ok = ok and shape[2] == 2 and shape[1] % 2 == 0
    if fmt == PixelFormat.GRBG:
        ok = ok and shape[0] >= 3 and shape[1] >= 3
    if not ok:
        need = {
            PixelFormat.YUYV: "(h, w, 2) with w even",
            PixelFormat.GRBG: "(h, w) with h, w >= 3",
            PixelFormat.GREY: "(h, w)",
        }[fmt]
        raise ValueError(f"{fmt.name} frame of shape {tuple(shape)}: expected uint8 {need}")
    return int(shape[0]), int(shape[1])


def _known(pixel_format: PixelFormat | int) -> PixelFormat:
    try:
        fmt = PixelFormat(pixel_format)
    except ValueError:
        fmt = None
    if fmt not in FORMATS:
        raise ValueError(f"pixel format {pixel_format!r} has no RGB conversion here; formats: YUYV, GRBG, GREY")
    return fmt


def _check_host_frame(frame: np.ndarray, pixel_format: PixelFormat) -> tuple[int, int]:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError(f"{PixelFormat(pixel_format).name} frame must be a uint8 numpy array")
    return check_frame_shape(pixel_format, frame.shape)


def yuyv_to_rgb_reference(frame: np.ndarray) -> np.ndarray:
    """NumPy reference of the YUYV kernel: same int32 arithmetic, new ``(h, w, 3)`` uint8 array."""
    h, w = _check_host_frame(frame, PixelFormat.YUYV)
    c = BT601
    y = frame[:, :, 0].astype(np.int32)
    u = np.repeat(frame[:, 0::2, 1], 2, axis=1).astype(np.int32) - 128
    v = np.repeat(frame[:, 1::2, 1], 2, axis=1).astype(np.int32) - 128
    half = 1 << (c["BT601_SHIFT"] - 1)
    luma = np.clip(y - 16, 0, 255) * c["BT601_CY"]
    out = np.empty((h, w, 3), np.uint8)
    for k, chroma in enumerate((
        half + c["BT601_CVR"] * v,
        half + c["BT601_CVG"] * v + c["BT601_CUG"] * u,
        half + c["BT601_CUB"] * u,
    )):
        out[:, :, k] = np.clip((luma + chroma) >> c["BT601_SHIFT"], 0, 255)
    return out


def grbg_to_rgb_reference(frame: np.ndarray) -> np.ndarray:
    """NumPy reference of the GRBG kernel (OpenCV bilinear, edge fill), new ``(h, w, 3)`` uint8 array."""
    h, w = _check_host_frame(frame, PixelFormat.GRBG)
    p = frame.astype(np.int32)
    centre = p[1:-1, 1:-1]
    up, down, left, right = p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]
    cross = (up + down + left + right + 2) >> 2
    diag = (p[:-2, :-2] + p[:-2, 2:] + p[2:, :-2] + p[2:, 2:] + 2) >> 2
    vert = (up + down + 1) >> 1
    horiz = (left + right + 1) >> 1
    rows, cols = np.ogrid[1:h - 1, 1:w - 1]
    even_row, even_col = rows % 2 == 0, cols % 2 == 0
    red_site = even_row & ~even_col
    blue_site = ~even_row & even_col
    green_red_row = even_row & even_col
    green_blue_row = ~even_row & ~even_col
    sites = [red_site, blue_site, green_red_row, green_blue_row]
    r = np.select(sites, [centre, diag, horiz, vert])
    g = np.select(sites, [cross, cross, centre, centre])
    b = np.select(sites, [diag, centre, vert, horiz])
    inner = np.stack([r, g, b], axis=-1).astype(np.uint8)
    return np.pad(inner, ((1, 1), (1, 1), (0, 0)), mode="edge")


def mosaic_grbg(rgb: np.ndarray) -> np.ndarray:
    """The GRBG mosaic a sensor records of an ``(h, w, 3)`` RGB image: row 0 ``G R G R``, row 1 ``B G B G``."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("mosaic_grbg takes a uint8 (h, w, 3) RGB array")
    h, w, _ = rgb.shape
    m = np.empty((h, w), np.uint8)
    m[0::2, 0::2] = rgb[0::2, 0::2, 1]
    m[0::2, 1::2] = rgb[0::2, 1::2, 0]
    m[1::2, 0::2] = rgb[1::2, 0::2, 2]
    m[1::2, 1::2] = rgb[1::2, 1::2, 1]
    return m


def grey_to_rgb_reference(frame: np.ndarray) -> np.ndarray:
    """NumPy reference of the GREY kernel: the value in all three channels, new ``(h, w, 3)`` uint8 array."""
    _check_host_frame(frame, PixelFormat.GREY)
    return np.repeat(frame[:, :, None], 3, axis=2)


_REFERENCES = {
    PixelFormat.YUYV: yuyv_to_rgb_reference,
    PixelFormat.GRBG: grbg_to_rgb_reference,
    PixelFormat.GREY: grey_to_rgb_reference,
}


def to_rgb_reference(frame: np.ndarray, pixel_format: PixelFormat) -> np.ndarray:
    """The NumPy reference conversion of ``frame`` in ``pixel_format`` (allocates; for tests and tools)."""
    return _REFERENCES[_known(pixel_format)](frame)


def opencv_code(pixel_format: PixelFormat) -> int:
    """The ``cv2.cvtColor`` code whose CPU output the kernel of ``pixel_format`` matches exactly."""
    import cv2

    return {
        PixelFormat.YUYV: cv2.COLOR_YUV2RGB_YUYV,
        PixelFormat.GRBG: cv2.COLOR_BayerGB2RGB,  # OpenCV's name for the G R / B G layout (see module doc)
        PixelFormat.GREY: cv2.COLOR_GRAY2RGB,
    }[_known(pixel_format)]


def opencv_to_rgb(frame: np.ndarray, pixel_format: PixelFormat, out: np.ndarray | None = None) -> np.ndarray:
    """OpenCV's CPU conversion of ``frame`` to RGB (into ``out`` when given): the peer the kernels match."""
    import cv2

    _check_host_frame(frame, pixel_format)
    return cv2.cvtColor(frame, opencv_code(pixel_format), dst=out)


class GpuRgbConverter:
    """Converts device frames of one format and size to ``(h, w, 3)`` uint8 RGB with a CUDA kernel.

    The kernel is compiled once per process (NVRTC; CuPy caches the binary on
    disk). :meth:`convert` launches on CuPy's current stream and does not
    wait. Not thread-safe; one converter may serve many cameras of one mode.
    """

    def __init__(self, pixel_format: PixelFormat, height: int, width: int) -> None:
        self.pixel_format = _known(pixel_format)
        self.shape = frame_shape(self.pixel_format, height, width)
        self.height, self.width = check_frame_shape(self.pixel_format, self.shape)
        self._cp = require_cupy()
        self._kernel = load_module(KERNEL_SOURCE).get_function(_KERNEL_NAMES[self.pixel_format])
        pixels = self.height * self.width
        self._args_tail: tuple[np.integer, ...]  # the kernel's arguments after (src, dst)
        if self.pixel_format == PixelFormat.YUYV:
            count = pixels // 2
            self._args_tail = (np.int64(count),)
        elif self.pixel_format == PixelFormat.GRBG:
            count = pixels
            self._args_tail = (np.int32(self.height), np.int32(self.width))
        else:
            count = pixels
            self._args_tail = (np.int64(count),)
        self._grid = (blocks_for(count),)
        self._block = (THREADS_PER_BLOCK,)
        self.out_shape = (self.height, self.width, 3)

    def empty_output(self) -> Any:
        """A new device array of the output shape (allocate once, pass as ``out``)."""
        return self._cp.empty(self.out_shape, dtype=self._cp.uint8)

    def convert(self, frame: Any, out: Any | None = None) -> Any:
        """Launch the conversion of device ``frame`` into ``out`` (or a new array) and return it.

        ``frame`` is a C-contiguous ``cupy.ndarray`` of the converter's frame
        shape and uint8; ``out`` a C-contiguous uint8 ``(h, w, 3)`` device array.
        """
        cp = self._cp
        if not isinstance(frame, cp.ndarray) or frame.dtype != cp.uint8 or frame.shape != self.shape \
                or not frame.flags.c_contiguous:
            raise ValueError(
                f"{self.pixel_format.name} frame must be a C-contiguous uint8 cupy array of shape {self.shape}"
            )
        if out is None:
            out = self.empty_output()
        elif not isinstance(out, cp.ndarray) or out.dtype != cp.uint8 or out.shape != self.out_shape \
                or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous uint8 cupy array of shape {self.out_shape}")
        self._kernel(self._grid, self._block, (frame, out, *self._args_tail))
        return out
