"""Per-camera motion features: one definition, a NumPy implementation and a CUDA one that agree exactly.

Definition (for each frame after the first of a camera)
    ``luma`` is the frame's 8-bit luma plane: the Y bytes of YUYV, the grey
    values of GREY, the raw mosaic samples of Bayer GRBG (each photosite's
    own value; no demosaic). With ``d = |luma - previous luma|`` per pixel
    over the ``n = h * w`` pixels:

    * ``motion_energy``    = ``sum(d) / n``, the mean absolute luma change (0..255);
    * ``changed_fraction`` = ``count(d > changed_threshold) / n`` (0..1);
    * ``mean_luma``        = ``sum(luma) / n`` of the current frame (0..255).

    The sums are exact integers (uint64) in both implementations, so the
    GPU and CPU give the same float32 values for the same frames. The
    "previous" frame is the one given to the extractor before (its
    sequence is ``previous_sequence``): when frames were skipped the motion
    spans the gap, which ``sequence - previous_sequence`` tells. The first
    frame only primes the extractor and yields no feature.

Output: :class:`CameraFeature`, a fixed 48-byte binary Struct (the
``ringbuf.layout`` types), carrying the frame's ``source_id_hash``,
``sequence`` and ``canonical_ns`` so it can be published through a producer
ring and indexed as a ``SampleKind.CAMERA_FEATURE`` sample on the frame's
canonical time. Neither extractor allocates per frame except the Struct it
returns; neither is thread-safe (one per camera).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mimir.descriptors import CameraFeature, PixelFormat

from .convert import check_frame_shape, frame_shape
from .cuda_source import THREADS_PER_BLOCK, blocks_for, load_module, module_source
from .device import require_cupy

__all__ = [
    "CameraFeature", "DEFAULT_CHANGED_THRESHOLD", "FEATURE_KERNEL_SOURCE", "MotionFeatures", "GpuMotionFeatures",
    "feature_from_sums",
]

DEFAULT_CHANGED_THRESHOLD = 16  # luma levels: above sensor noise of a still scene, below any real edge moving
_MAX_GPU_BLOCKS = 1024  # grid-stride loop: enough blocks to fill a large GPU, few atomics


def feature_from_sums(
    absdiff_sum: int, changed_count: int, luma_sum: int, pixels: int, *, changed_threshold: int,
    source_id_hash: int, sequence: int, canonical_ns: int, previous_sequence: int,
) -> CameraFeature:
    """The one place the integer sums become the published values (both extractors call it)."""
    return CameraFeature(
        source_id_hash=source_id_hash,
        sequence=sequence,
        canonical_ns=canonical_ns,
        previous_sequence=previous_sequence,
        motion_energy=absdiff_sum / pixels,
        changed_fraction=changed_count / pixels,
        mean_luma=luma_sum / pixels,
        changed_threshold=changed_threshold,
    )


def _luma_step(pixel_format: PixelFormat) -> int:
    """Bytes from one pixel's luma to the next in the frame: 2 for YUYV, 1 for GREY and GRBG."""
    return 2 if pixel_format == PixelFormat.YUYV else 1


class _MotionState:
    """What both extractors share: the frame geometry, the threshold and the previous frame's sequence."""

    def __init__(self, pixel_format: PixelFormat, height: int, width: int, changed_threshold: int) -> None:
        self.pixel_format = PixelFormat(pixel_format)
        self.shape = frame_shape(self.pixel_format, height, width)
        check_frame_shape(self.pixel_format, self.shape)
        if not 0 <= changed_threshold <= 255:
            raise ValueError(f"changed_threshold must be 0..255 luma levels, got {changed_threshold}")
        self.height, self.width = height, width
        self.pixels = height * width
        self.changed_threshold = int(changed_threshold)
        self.previous_sequence: int | None = None

    def reset(self) -> None:
        """Forget the previous frame (the next frame primes again), e.g. after the camera restarted."""
        self.previous_sequence = None

    def _emit(self, sums: tuple[int, int, int], source_id_hash: int, sequence: int, canonical_ns: int) -> CameraFeature | None:
        previous = self.previous_sequence
        self.previous_sequence = sequence
        if previous is None:
            return None
        absdiff, changed, luma = sums
        return feature_from_sums(
            absdiff, changed, luma, self.pixels, changed_threshold=self.changed_threshold,
            source_id_hash=source_id_hash, sequence=sequence, canonical_ns=canonical_ns, previous_sequence=previous,
        )


class MotionFeatures(_MotionState):
    """The NumPy (CPU) extractor for one camera: frames are host arrays (ring slot views or copies).

    Reads ``frame`` once and copies its luma into its own buffer, so the
    caller may re-check the ring's seqlock after :meth:`update` returns and
    discard the result if the slot was overwritten meanwhile.
    """

    def __init__(self, pixel_format: PixelFormat, height: int, width: int, *,
                 changed_threshold: int = DEFAULT_CHANGED_THRESHOLD) -> None:
        super().__init__(pixel_format, height, width, changed_threshold)
        self._previous = np.zeros((height, width), np.uint8)
        self._luma = np.empty((height, width), np.uint8)
        self._diff = np.empty((height, width), np.int16)
        self._changed = np.empty((height, width), np.bool_)

    def luma_of(self, frame: np.ndarray) -> np.ndarray:
        """The luma plane of ``frame`` as a view (no copy)."""
        if frame.dtype != np.uint8 or frame.shape != self.shape:
            raise ValueError(f"{self.pixel_format.name} frame must be uint8 of shape {self.shape}, got {frame.dtype} {frame.shape}")
        return frame[:, :, 0] if self.pixel_format == PixelFormat.YUYV else frame

    def update(self, frame: np.ndarray, *, source_id_hash: int, sequence: int, canonical_ns: int) -> CameraFeature | None:
        """Features of ``frame`` against the previous frame; None for the first frame (it primes)."""
        luma = self._luma
        np.copyto(luma, self.luma_of(frame))
        diff = self._diff
        np.subtract(luma, self._previous, out=diff, dtype=np.int16)
        np.abs(diff, out=diff)
        np.greater(diff, self.changed_threshold, out=self._changed)
        sums = (int(diff.sum(dtype=np.int64)), int(np.count_nonzero(self._changed)), int(luma.sum(dtype=np.int64)))
        self._luma, self._previous = self._previous, luma  # swap: no copy
        return self._emit(sums, source_id_hash, sequence, canonical_ns)


_FEATURE_BODY = r"""
/* One pixel i: accumulate |luma - previous|, whether it exceeds the threshold, and luma; store luma as previous. */
MIMIR_FN void mimir_motion_pixel(mimir_i64 i, const mimir_u8* frame, mimir_u8* previous, int luma_step, int threshold,
                                 mimir_u64* absdiff, mimir_u64* changed, mimir_u64* luma) {
    const int y = frame[i * luma_step];
    int d = y - (int)previous[i];
    d = d < 0 ? -d : d;
    *absdiff += (mimir_u64)d;
    *changed += (mimir_u64)(d > threshold);
    *luma += (mimir_u64)y;
    previous[i] = (mimir_u8)y;
}

#ifdef __CUDACC__
__device__ __forceinline__ mimir_u64 mimir_warp_sum(mimir_u64 v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

/* Grid-stride loop; every lane of every warp reaches the shuffles (blockDim is a multiple of 32),
   lane 0 of each warp adds its warp's sums. sums[0..2] must be zero before the launch. */
extern "C" __global__ void mimir_motion_features(const mimir_u8* frame, mimir_u8* previous, mimir_i64 pixels,
                                                 int luma_step, int threshold, mimir_u64* sums) {
    mimir_u64 absdiff = 0, changed = 0, luma = 0;
    const mimir_i64 stride = (mimir_i64)gridDim.x * blockDim.x;
    for (mimir_i64 i = (mimir_i64)blockIdx.x * blockDim.x + threadIdx.x; i < pixels; i += stride)
        mimir_motion_pixel(i, frame, previous, luma_step, threshold, &absdiff, &changed, &luma);
    absdiff = mimir_warp_sum(absdiff);
    changed = mimir_warp_sum(changed);
    luma = mimir_warp_sum(luma);
    if ((threadIdx.x & 31) == 0) {
        atomicAdd(&sums[0], absdiff);
        atomicAdd(&sums[1], changed);
        atomicAdd(&sums[2], luma);
    }
}
#endif
"""

FEATURE_KERNEL_SOURCE = module_source(_FEATURE_BODY)


class GpuMotionFeatures(_MotionState):
    """The CUDA extractor for one camera: frames are device arrays (e.g. :attr:`DeviceFrame.array`).

    Owns its device buffers (previous luma, three uint64 sums) and a pinned
    host buffer for the sums, all allocated here. :meth:`update` runs on
    CuPy's current stream and waits for that stream before returning the
    feature (it reads three integers back).
    """

    def __init__(self, pixel_format: PixelFormat, height: int, width: int, *,
                 changed_threshold: int = DEFAULT_CHANGED_THRESHOLD) -> None:
        super().__init__(pixel_format, height, width, changed_threshold)
        cp = self._cp = require_cupy()
        self._runtime = cp.cuda.runtime
        self._kernel = load_module(FEATURE_KERNEL_SOURCE).get_function("mimir_motion_features")
        self._previous = cp.zeros((height, width), cp.uint8)
        self._sums = cp.zeros(3, cp.uint64)
        import cupyx

        self._host_sums = cupyx.empty_pinned((3,), np.uint64)  # page-locked: the read-back is a real async DMA
        self._grid = (min(blocks_for(self.pixels), _MAX_GPU_BLOCKS),)
        self._block = (THREADS_PER_BLOCK,)
        self._args_tail = (np.int64(self.pixels), np.int32(_luma_step(self.pixel_format)),
                           np.int32(self.changed_threshold), self._sums)

    def update(self, frame: Any, *, source_id_hash: int, sequence: int, canonical_ns: int) -> CameraFeature | None:
        """Features of device ``frame`` (C-contiguous uint8, the camera's shape); None for the first frame."""
        cp = self._cp
        if not isinstance(frame, cp.ndarray) or frame.dtype != cp.uint8 or frame.shape != self.shape \
                or not frame.flags.c_contiguous:
            raise ValueError(f"{self.pixel_format.name} frame must be a C-contiguous uint8 cupy array of shape {self.shape}")
        rt = self._runtime
        stream = cp.cuda.get_current_stream()
        rt.memsetAsync(self._sums.data.ptr, 0, 3 * 8, stream.ptr)
        self._kernel(self._grid, self._block, (frame, self._previous, *self._args_tail))
        rt.memcpyAsync(self._host_sums.ctypes.data, self._sums.data.ptr, 3 * 8, rt.memcpyDeviceToHost, stream.ptr)
        stream.synchronize()
        host = self._host_sums
        return self._emit((int(host[0]), int(host[1]), int(host[2])), source_id_hash, sequence, canonical_ns)
