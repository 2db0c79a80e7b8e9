"""Pixel formats to RGB: the NumPy references equal OpenCV byte for byte; the kernel source computes the same.

Evidence chain (this machine has no GPU): reference == OpenCV on real, random
and structured frames (runs everywhere, CI included); the kernel source's
per-pixel functions, built as host C++, == reference; the same source
compiles with NVRTC; on a CUDA device the launched kernels == reference.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mimir.descriptors import PixelFormat
from mimir.gpu.convert import (
    FORMATS, KERNEL_SOURCE, GpuRgbConverter, check_frame_shape, frame_shape, grbg_to_rgb_reference, mosaic_grbg,
    opencv_code, opencv_to_rgb, to_rgb_reference, yuyv_to_rgb_reference,
)
from mimir.gpu.cuda_source import compile_ptx


def _mismatch(a: np.ndarray, b: np.ndarray) -> str:
    bad = np.argwhere(a != b)
    if not len(bad):
        return "equal"
    first = tuple(int(v) for v in bad[0])
    return f"{len(bad)} bytes differ, first at {first}: {a[first]} vs {b[first]}"


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_reference_equals_opencv(fmt, frames):
    assert len(frames[fmt]) >= 10
    for label, frame in frames[fmt]:
        ref = to_rgb_reference(frame, fmt)
        cv = opencv_to_rgb(frame, fmt)
        assert ref.shape == cv.shape == (*frame.shape[:2], 3)
        assert np.array_equal(ref, cv), f"{fmt.name} {label}: {_mismatch(ref, cv)}"


def test_opencv_code_for_grbg():
    """On a flat-colour GRBG mosaic only COLOR_BayerGB2RGB gives the colour back (OpenCV's shifted name)."""
    rgb = np.empty((8, 10, 3), np.uint8)
    rgb[:] = (200, 100, 50)
    mosaic = mosaic_grbg(rgb)
    assert mosaic[0, :4].tolist() == [100, 200, 100, 200] and mosaic[1, :4].tolist() == [50, 100, 50, 100]
    assert np.array_equal(grbg_to_rgb_reference(mosaic), rgb)  # the reference, independently of OpenCV
    right = [name for name in ("BG", "GB", "RG", "GR")
             if np.array_equal(cv2.cvtColor(mosaic, getattr(cv2, f"COLOR_Bayer{name}2RGB")), rgb)]
    assert right == ["GB"]
    assert opencv_code(PixelFormat.GRBG) == cv2.COLOR_BayerGB2RGB
    assert np.array_equal(cv2.cvtColor(mosaic, cv2.COLOR_BayerGB2BGR), rgb[:, :, ::-1])  # REFERENCE.md's code
    if hasattr(cv2, "COLOR_BayerGRBG2RGB"):  # OpenCV 5 names codes by layout; it is the same constant
        assert cv2.COLOR_BayerGRBG2RGB == cv2.COLOR_BayerGB2RGB


def test_yuyv_reference_is_bt601_video_range():
    """The fixed-point result is within one level of the real-valued BT.601 formula (independent of OpenCV)."""
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (64, 64, 2), dtype=np.uint8)
    y = np.maximum(frame[:, :, 0].astype(float) - 16, 0)
    u = np.repeat(frame[:, 0::2, 1], 2, axis=1).astype(float) - 128
    v = np.repeat(frame[:, 1::2, 1], 2, axis=1).astype(float) - 128
    exact = np.stack([1.164 * y + 1.596 * v, 1.164 * y - 0.813 * v - 0.391 * u, 1.164 * y + 2.018 * u], axis=-1)
    expected = np.clip(np.floor(exact + 0.5), 0, 255)
    assert np.abs(yuyv_to_rgb_reference(frame).astype(float) - expected).max() <= 1


def test_demosaic_keeps_the_recorded_samples(photo_rgb):
    """Every photosite's own colour passes through unchanged in the interior."""
    mosaic = mosaic_grbg(photo_rgb)
    out = grbg_to_rgb_reference(mosaic)
    assert np.array_equal(out[2:-2:2, 3:-2:2, 0], mosaic[2:-2:2, 3:-2:2])  # red sites
    assert np.array_equal(out[3:-2:2, 2:-2:2, 2], mosaic[3:-2:2, 2:-2:2])  # blue sites
    assert np.array_equal(out[2:-2:2, 2:-2:2, 1], mosaic[2:-2:2, 2:-2:2])  # greens


@pytest.mark.parametrize(("fmt", "shape", "message"), [
    (PixelFormat.YUYV, (4, 5, 2), "w even"),
    (PixelFormat.YUYV, (4, 6), "(h, w, 2)"),
    (PixelFormat.GRBG, (2, 8), "h, w >= 3"),
    (PixelFormat.GREY, (4, 4, 1), "(h, w)"),
])
def test_bad_shapes_are_refused_with_the_expected_shape(fmt, shape, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_frame_shape(fmt, shape)
    with pytest.raises(ValueError):
        to_rgb_reference(np.zeros(shape, np.uint8), fmt)


def test_formats_without_a_conversion_are_refused():
    with pytest.raises(ValueError, match="YUYV, GRBG, GREY"):
        frame_shape(PixelFormat.BGR3, 4, 4)
    with pytest.raises(ValueError, match="uint8"):
        to_rgb_reference(np.zeros((4, 4), np.uint16), PixelFormat.GREY)


def test_frame_shapes_are_the_ring_slot_shapes():
    assert frame_shape(PixelFormat.YUYV, 480, 640) == (480, 640, 2)
    assert frame_shape(PixelFormat.GRBG, 480, 640) == (480, 640)
    assert frame_shape(PixelFormat.GREY, 480, 640) == (480, 640)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_kernel_source_built_for_the_host_equals_reference(fmt, frames, host_kernels):
    for label, frame in frames[fmt]:
        ref = to_rgb_reference(frame, fmt)
        got = host_kernels.to_rgb(frame, fmt)
        assert np.array_equal(got, ref), f"{fmt.name} {label}: {_mismatch(got, ref)}"


def test_kernel_source_compiles_with_nvrtc(nvrtc):
    ptx = compile_ptx(KERNEL_SOURCE, name="convert.cu")
    for entry in ("mimir_yuyv_to_rgb", "mimir_grbg_to_rgb", "mimir_grey_to_rgb"):
        assert f".entry {entry}(" in ptx


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_gpu_kernel_equals_reference(fmt, frames, cupy_device):
    cp = cupy_device
    for label, frame in frames[fmt]:
        h, w = frame.shape[:2]
        conv = GpuRgbConverter(fmt, h, w)
        out = conv.empty_output()
        assert conv.convert(cp.asarray(frame), out) is out
        got = out.get()
        ref = to_rgb_reference(frame, fmt)
        assert np.array_equal(got, ref), f"{fmt.name} {label}: {_mismatch(got, ref)}"
        assert np.array_equal(conv.convert(cp.asarray(frame)).get(), ref)  # out=None allocates


def test_gpu_converter_refuses_wrong_arrays(cupy_device):
    cp = cupy_device
    conv = GpuRgbConverter(PixelFormat.YUYV, 4, 6)
    with pytest.raises(ValueError, match="shape"):
        conv.convert(cp.zeros((4, 6), cp.uint8))
    with pytest.raises(ValueError, match="shape"):
        conv.convert(np.zeros((4, 6, 2), np.uint8))  # a host array is not a device frame
    with pytest.raises(ValueError, match="out"):
        conv.convert(cp.zeros((4, 6, 2), cp.uint8), out=cp.zeros((4, 6, 4), cp.uint8))
