"""Frames from the rings into GPU memory, pixel formats to RGB on the GPU, and per-camera features.

Optional: the GPU parts need the ``gpu`` extra (``pip install 'mimir-rig[gpu]'``:
CuPy and NVRTC) and a CUDA device. Nothing here imports CuPy until a GPU
object is created, so ``import mimir.gpu`` works everywhere; the NumPy
references and the CPU feature extractor need only NumPy.

* :mod:`mimir.gpu.arena`    - :class:`RegisteredArena`: ``cudaHostRegister`` of a ring's payload arena;
* :mod:`mimir.gpu.copy`     - :class:`GpuFrameCopier`: seqlock-checked async slot copies into a device pool;
* :mod:`mimir.gpu.convert`  - YUYV, Bayer GRBG and GREY to RGB (CUDA kernels + NumPy references = OpenCV);
* :mod:`mimir.gpu.features` - :class:`CameraFeature` motion features, CPU and GPU extractors;
* :mod:`mimir.gpu.device`   - whether CUDA is usable here (:func:`cuda_unavailable_reason`).

See docs/gpu.md.
"""

from .arena import RegisteredArena
from .convert import GpuRgbConverter, opencv_to_rgb, to_rgb_reference
from .copy import CupyBackend, DeviceFrame, GpuFrameCopier, HostBackend, PendingCopy, PoolExhausted
from .device import CudaUnavailable, cuda_unavailable_reason, require_cupy
from .features import CameraFeature, GpuMotionFeatures, MotionFeatures

__all__ = [
    "RegisteredArena", "GpuFrameCopier", "DeviceFrame", "PendingCopy", "PoolExhausted", "CupyBackend", "HostBackend",
    "GpuRgbConverter", "to_rgb_reference", "opencv_to_rgb", "CameraFeature", "MotionFeatures", "GpuMotionFeatures",
    "CudaUnavailable", "cuda_unavailable_reason", "require_cupy",
]
