"""The plug-in contract: registry, modes, device selection."""

from __future__ import annotations

import pytest

from mimir.descriptors import PixelFormat
from workers.camera import family as fam
from workers.camera.family import (
    CameraMode, DeviceInfo, DeviceNotFound, DiscoveryHints, FamilyUnavailable, ModeRequest, UnknownFamily,
    parse_pixel_format, register_family, resolve_family, select_devices, unregister_family,
)
from workers.camera.synthetic import SyntheticFamily


def test_unknown_family_lists_families():
    with pytest.raises(UnknownFamily) as err:
        resolve_family("gopro")
    assert "'gopro'" in str(err.value)
    for name in ("file", "ks", "ps3eye", "synthetic"):
        assert name in str(err.value)


def test_builtin_families_resolve_lazily():
    assert resolve_family("synthetic").name == "synthetic"
    assert resolve_family("file").name == "file"
    assert resolve_family("ks").name == "ks"


def test_a_missing_plugin_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(fam.BUILTIN_FAMILIES, "later", "workers.camera.not_written_yet:LaterFamily")
    with pytest.raises(FamilyUnavailable, match="not available yet.*workers/camera/not_written_yet.py defining LaterFamily"):
        resolve_family("later")
    monkeypatch.setitem(fam.BUILTIN_FAMILIES, "broken", "workers.camera.synthetic:NoSuchFamily")
    with pytest.raises(FamilyUnavailable, match="defines no NoSuchFamily"):
        resolve_family("broken")


def test_ps3eye_family_resolves():
    family = resolve_family("ps3eye")
    assert family.name == "ps3eye" and type(family).__name__ == "Ps3EyeFamily"
    assert callable(family.discover) and callable(family.open)


def test_a_builtin_family_whose_module_is_missing_says_which_file_to_add(monkeypatch):
    from workers.camera import family as family_module

    monkeypatch.setitem(family_module.BUILTIN_FAMILIES, "ghost", "workers.camera.ghost.family:GhostFamily")
    with pytest.raises(FamilyUnavailable) as info:
        resolve_family("ghost")
    assert "workers/camera/ghost/family.py" in str(info.value) and "GhostFamily" in str(info.value)


def test_register_family_plugs_in_and_overrides():
    class Mine(SyntheticFamily):
        name = "mine"

    register_family("mine", Mine)
    try:
        assert "mine" in fam.family_names()
        assert isinstance(resolve_family("mine"), Mine)
    finally:
        unregister_family("mine")
    with pytest.raises(UnknownFamily):
        resolve_family("mine")


def test_modes_shapes_and_strides():
    assert CameraMode(640, 480, 60, PixelFormat.YUYV).payload_shape == (480, 640, 2)
    bgr = CameraMode(640, 480, 30, PixelFormat.BGR3)
    assert (bgr.payload_shape, bgr.stride_bytes, bgr.byte_length) == ((480, 640, 3), 1920, 921600)
    assert CameraMode(320, 240, 187, PixelFormat.GRBG).payload_shape == (240, 320)
    assert CameraMode(320, 240, 30, PixelFormat.YUYV, payload_shape=(1, 153600)).byte_length == 153600
    assert str(bgr) == "640x480 BGR3 @ 30 fps"
    with pytest.raises(ValueError):
        CameraMode(640, 480, 30, PixelFormat.MJPG)
    with pytest.raises(ValueError):
        CameraMode(0, 480, 30, PixelFormat.GREY)


def test_mode_request_mismatches():
    mode = CameraMode(640, 480, 30.0, PixelFormat.YUYV)
    assert ModeRequest().mismatches(mode) == []
    assert ModeRequest(640, 480, 30.05, PixelFormat.YUYV).mismatches(mode) == []
    assert ModeRequest(1280, None, 60.0, PixelFormat.BGR3).mismatches(mode) == [
        "width 1280 -> 640", "fps 60 -> 30", "format BGR3 -> YUYV"]


def test_pixel_format_names():
    assert parse_pixel_format("yuy2") is PixelFormat.YUYV
    assert parse_pixel_format("BGR") is PixelFormat.BGR3
    assert parse_pixel_format("gray") is PixelFormat.GREY
    with pytest.raises(ValueError, match="known:"):
        parse_pixel_format("NV12")


def test_select_devices():
    found = [DeviceInfo("x", 0, "/dev/a", "A"), DeviceInfo("x", 1, "/dev/b", "B")]
    assert select_devices(found, DiscoveryHints(), "x") == found
    assert select_devices(found, DiscoveryHints(count=1), "x") == found[:1]
    assert select_devices(found, DiscoveryHints(specs=("B", "0")), "x") == [found[1], found[0]]
    with pytest.raises(DeviceNotFound, match=r"2 found: \[0\] /dev/a \(A\); \[1\] /dev/b \(B\)"):
        select_devices(found, DiscoveryHints(count=3), "x")
    with pytest.raises(DeviceNotFound, match=r"no device '/dev/c'; devices found: .*/dev/a.*/dev/b .*\(searched here\)"):
        select_devices(found, DiscoveryHints(specs=("/dev/c",)), "x", "searched here")
    with pytest.raises(DeviceNotFound, match="no devices found"):
        select_devices([], DiscoveryHints(), "x")
