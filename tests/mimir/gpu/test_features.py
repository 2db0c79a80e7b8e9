"""Motion features: the definition on frames with known answers, the CPU extractor, the kernel source, the GPU."""

from __future__ import annotations

import numpy as np
import pytest

from mimir.descriptors import PixelFormat
from mimir.gpu.cuda_source import compile_ptx
from mimir.gpu.features import (
    DEFAULT_CHANGED_THRESHOLD, FEATURE_KERNEL_SOURCE, CameraFeature, GpuMotionFeatures, MotionFeatures,
    feature_from_sums,
)
from ringbuf.layout import describe, dtype_of

def _update(ex, frame, sequence, canonical_ns=0):
    return ex.update(frame, source_id_hash=0xC0FFEE, sequence=sequence, canonical_ns=canonical_ns)


def _definition(luma: np.ndarray, previous: np.ndarray, threshold: int) -> tuple[float, float, float]:
    """The docstring's definition, written out independently in float64."""
    d = np.abs(luma.astype(np.int64) - previous.astype(np.int64))
    n = luma.size
    return d.sum() / n, np.count_nonzero(d > threshold) / n, luma.astype(np.int64).sum() / n


def test_feature_is_a_fixed_48_byte_record():
    assert dtype_of(CameraFeature).itemsize == 48
    assert [f.name for f in describe(CameraFeature).fields] == [
        "source_id_hash", "sequence", "canonical_ns", "previous_sequence",
        "motion_energy", "changed_fraction", "mean_luma", "changed_threshold",
    ]


def test_known_answer_grey():
    ex = MotionFeatures(PixelFormat.GREY, 4, 8)
    still = np.full((4, 8), 10, np.uint8)
    moved = still.copy()
    moved[:, 4:] = 60  # half the pixels change by 50
    assert _update(ex, still, 7, 100) is None  # the first frame primes
    f = _update(ex, moved, 9, 200)
    assert f == CameraFeature(source_id_hash=0xC0FFEE, sequence=9, canonical_ns=200, previous_sequence=7,
                              motion_energy=25.0, changed_fraction=0.5, mean_luma=35.0,
                              changed_threshold=DEFAULT_CHANGED_THRESHOLD)
    f = _update(ex, moved, 10, 300)  # compared with the frame before it, not the first one
    assert (f.previous_sequence, f.motion_energy, f.changed_fraction, f.mean_luma) == (9, 0.0, 0.0, 35.0)


def test_threshold_is_exclusive():
    ex = MotionFeatures(PixelFormat.GREY, 1, 4, changed_threshold=16)
    _update(ex, np.array([[100, 100, 100, 100]], np.uint8), 0)
    f = _update(ex, np.array([[116, 84, 117, 83]], np.uint8), 1)  # |d| = 16, 16, 17, 17
    assert f.changed_fraction == 0.5
    assert f.motion_energy == pytest.approx(16.5)


def test_yuyv_features_read_only_luma():
    ex = MotionFeatures(PixelFormat.YUYV, 2, 4)
    a = np.zeros((2, 4, 2), np.uint8)
    a[:, :, 0] = 40
    b = a.copy()
    b[:, :, 1] = 255  # chroma only
    _update(ex, a, 0)
    f = _update(ex, b, 1)
    assert (f.motion_energy, f.changed_fraction, f.mean_luma) == (0.0, 0.0, 40.0)
    c = b.copy()
    c[0, 0, 0] = 240  # one luma sample
    f = _update(ex, c, 2)
    assert f.motion_energy == pytest.approx(200 / 8) and f.changed_fraction == pytest.approx(1 / 8)


@pytest.mark.parametrize("fmt", [PixelFormat.YUYV, PixelFormat.GRBG, PixelFormat.GREY], ids=lambda f: f.name)
def test_random_frames_match_the_definition(fmt):
    rng = np.random.default_rng(int(fmt) & 0xFFFF)
    shape = (48, 64, 2) if fmt == PixelFormat.YUYV else (48, 64)
    ex = MotionFeatures(fmt, 48, 64, changed_threshold=30)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(4)]
    lumas = [f[:, :, 0] if fmt == PixelFormat.YUYV else f for f in frames]
    assert _update(ex, frames[0], 0) is None
    for i in range(1, 4):
        got = _update(ex, frames[i], i)
        want = _definition(lumas[i], lumas[i - 1], 30)
        assert np.float32(got.motion_energy) == np.float32(want[0])
        assert np.float32(got.changed_fraction) == np.float32(want[1])
        assert np.float32(got.mean_luma) == np.float32(want[2])


def test_extractor_keeps_its_own_copy_of_the_previous_frame():
    """A ring slot may be overwritten after update(): the next comparison uses what was read, not the slot."""
    ex = MotionFeatures(PixelFormat.GREY, 2, 2)
    slot = np.full((2, 2), 50, np.uint8)
    _update(ex, slot, 0)
    slot[:] = 0  # the writer reuses the slot
    f = _update(ex, np.full((2, 2), 50, np.uint8), 1)
    assert f.motion_energy == 0.0


def test_reset_primes_again():
    ex = MotionFeatures(PixelFormat.GREY, 2, 2)
    frame = np.zeros((2, 2), np.uint8)
    _update(ex, frame, 0)
    ex.reset()
    assert _update(ex, frame, 5) is None
    assert _update(ex, frame, 6).previous_sequence == 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="changed_threshold"):
        MotionFeatures(PixelFormat.GREY, 2, 2, changed_threshold=300)
    with pytest.raises(ValueError, match="YUYV"):
        MotionFeatures(PixelFormat.YUYV, 2, 3)
    ex = MotionFeatures(PixelFormat.GREY, 2, 2)
    with pytest.raises(ValueError, match="shape"):
        _update(ex, np.zeros((3, 2), np.uint8), 0)


def test_sums_become_values_in_one_place():
    f = feature_from_sums(300, 2, 1000, 10, changed_threshold=5, source_id_hash=1, sequence=2, canonical_ns=3,
                          previous_sequence=1)
    assert (f.motion_energy, f.changed_fraction, f.mean_luma, f.changed_threshold) == (30.0, 0.2, 100.0, 5)


@pytest.mark.parametrize("fmt", [PixelFormat.YUYV, PixelFormat.GRBG, PixelFormat.GREY], ids=lambda f: f.name)
def test_kernel_source_built_for_the_host_equals_cpu_extractor(fmt, host_kernels):
    rng = np.random.default_rng(3)
    shape = (30, 40, 2) if fmt == PixelFormat.YUYV else (30, 40)
    step = 2 if fmt == PixelFormat.YUYV else 1
    ex = MotionFeatures(fmt, 30, 40, changed_threshold=20)
    previous = np.zeros((30, 40), np.uint8)
    for i in range(3):
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        absdiff, changed, luma = host_kernels.motion_sums(frame, previous, step, 20)
        got = _update(ex, frame, i)
        assert np.array_equal(previous, frame[:, :, 0] if step == 2 else frame)  # the kernel stores the luma
        if got is not None:
            want = feature_from_sums(absdiff, changed, luma, 30 * 40, changed_threshold=20, source_id_hash=0xC0FFEE,
                                     sequence=i, canonical_ns=0, previous_sequence=i - 1)
            assert got == want


def test_feature_kernel_compiles_with_nvrtc(nvrtc):
    ptx = compile_ptx(FEATURE_KERNEL_SOURCE, name="features.cu")
    assert ".entry mimir_motion_features(" in ptx
    assert "shfl.sync.down" in ptx
    assert "red.global.add.u64" in ptx or "atom.global.add.u64" in ptx


@pytest.mark.parametrize("fmt", [PixelFormat.YUYV, PixelFormat.GRBG, PixelFormat.GREY], ids=lambda f: f.name)
def test_gpu_extractor_equals_cpu_extractor(fmt, cupy_device):
    cp = cupy_device
    rng = np.random.default_rng(4)
    h, w = 480, 640
    shape = (h, w, 2) if fmt == PixelFormat.YUYV else (h, w)
    cpu = MotionFeatures(fmt, h, w)
    gpu = GpuMotionFeatures(fmt, h, w)
    for i in range(5):
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        want = _update(cpu, frame, i, 1000 * i)
        got = gpu.update(cp.asarray(frame), source_id_hash=0xC0FFEE, sequence=i, canonical_ns=1000 * i)
        assert got == want
