"""``import mimir.gpu`` never needs CuPy; without it every GPU entry point says why in one line."""

from __future__ import annotations

import subprocess
import sys

_WITHOUT_CUPY = """
import sys
sys.modules["cupy"] = None            # as on a machine without the gpu extra
sys.modules["cupy_backends"] = None
import numpy as np
import mimir.gpu
from mimir.descriptors import PixelFormat
from mimir.gpu import CudaUnavailable, GpuFrameCopier, GpuRgbConverter, MotionFeatures, cuda_unavailable_reason
from mimir.gpu.cuda_source import nvrtc_unavailable_reason
assert not any(m == "cupy" or m.startswith("cupy.") for m in sys.modules if sys.modules[m] is not None)
print(cuda_unavailable_reason())
print(nvrtc_unavailable_reason())
for make in (lambda: GpuFrameCopier((2, 2)), lambda: GpuRgbConverter(PixelFormat.GREY, 2, 2)):
    try:
        make()
    except CudaUnavailable as exc:
        print("refused:", exc)
ex = MotionFeatures(PixelFormat.GREY, 2, 2)      # the CPU extractor works without CuPy
ex.update(np.zeros((2, 2), np.uint8), source_id_hash=1, sequence=0, canonical_ns=0)
print(ex.update(np.ones((2, 2), np.uint8), source_id_hash=1, sequence=1, canonical_ns=0).motion_energy)
"""


def test_without_cupy_everything_imports_and_gpu_objects_say_why():
    result = subprocess.run([sys.executable, "-c", _WITHOUT_CUPY], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("CuPy is not installed") and "pip install 'mimir-rig[gpu]'" in lines[0]
    assert lines[1].startswith("CuPy is not installed")
    assert len([line for line in lines if line.startswith("refused: CuPy is not installed")]) == 2
    assert lines[-1] == "1.0"
