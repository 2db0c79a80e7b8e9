"""The synthetic pattern (render/verify round trip, tamper detection) and the camera's absolute-deadline pacing."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mimir.descriptors import PixelFormat
from workers.camera.family import CameraMode, DeviceInfo, DiscoveryHints, ModeRequest, UnsupportedMode
from workers.camera.synthetic import (
    FrameMismatch, SyntheticCamera, SyntheticFamily, SyntheticPattern, verify_frame,
)

FORMATS = (PixelFormat.YUYV, PixelFormat.BGR3, PixelFormat.GREY, PixelFormat.GRBG)
SIZES = ((640, 480), (1280, 720), (320, 240), (64, 48), (34, 24))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_stamp_round_trip_and_tamper_detection(fmt, size):
    mode = CameraMode(*size, 60.0, fmt)
    frame = SyntheticPattern(mode).render(2**40 + 17, 123_456_789_012_345)
    assert frame.shape == mode.payload_shape
    assert verify_frame(frame, mode) == (2**40 + 17, 123_456_789_012_345)
    other = SyntheticPattern(mode).render(2**40 + 18, 5)
    rows, other_rows = frame.reshape(mode.height, -1), other.reshape(mode.height, -1)
    torn = rows.copy()
    torn[mode.height // 2:] = other_rows[mode.height // 2:]
    with pytest.raises(FrameMismatch, match="differ from its pattern"):
        verify_frame(torn, mode)
    for index in (0, 7, frame.size // 2, frame.size - 1):
        bad = frame.copy().reshape(-1)
        bad[index] ^= 0x10
        with pytest.raises(FrameMismatch):
            verify_frame(bad, mode)


def test_frames_move_and_repeat_every_256():
    mode = CameraMode(64, 48, 60.0, PixelFormat.GREY)
    p = SyntheticPattern(mode)
    band = p.band_rows
    bodies = [p.render(n, 0)[band:] for n in (0, 1, 256)]
    assert not np.array_equal(bodies[0], bodies[1])
    assert np.array_equal(bodies[0], bodies[2])


def test_too_small_for_the_stamp():
    with pytest.raises(UnsupportedMode, match="too small"):
        SyntheticPattern(CameraMode(16, 16, 30.0, PixelFormat.GREY))


def test_family_modes():
    fam = SyntheticFamily()
    assert [d.source_id for d in fam.discover(DiscoveryHints(count=3))] == ["synthetic:0", "synthetic:1", "synthetic:2"]
    cam = fam.open(fam.discover(DiscoveryHints())[0], ModeRequest(320, 240, 187.0, PixelFormat.GRBG))
    assert cam.mode == CameraMode(320, 240, 187.0, PixelFormat.GRBG)
    assert fam.open(fam.discover(DiscoveryHints())[0], ModeRequest()).mode == CameraMode(640, 480, 60.0, PixelFormat.YUYV)
    with pytest.raises(UnsupportedMode, match="supported modes"):
        fam.open(fam.discover(DiscoveryHints())[0], ModeRequest(pixel_format=PixelFormat.MJPG))


class ListSink:
    """A minimal FrameSink keeping (frame copy, device time, host time) of every publish."""

    def __init__(self, mode: CameraMode, limit: int, stop: threading.Event) -> None:
        self.buf = np.zeros(mode.byte_length, np.uint8)
        self.frames: list[tuple[np.ndarray, int, int]] = []
        self.limit, self.stop = limit, stop

    def claim(self) -> np.ndarray:
        return self.buf

    def publish(self, *, device_time_ns: int, host_time_ns: int, byte_length: int) -> int:
        self.frames.append((self.buf.copy(), device_time_ns, host_time_ns))
        if len(self.frames) >= self.limit:
            self.stop.set()
        return len(self.frames) - 1


def test_camera_paces_on_absolute_deadlines():
    mode = CameraMode(64, 48, 200.0, PixelFormat.YUYV)
    cam = SyntheticCamera(DeviceInfo("synthetic", 0, "0", "t"), mode)
    stop = threading.Event()
    sink = ListSink(mode, 60, stop)
    cam.capture(sink, stop)
    stamps = [verify_frame(f, mode) for f, _, _ in sink.frames]
    seqs = [s for s, _ in stamps]
    t0 = stamps[0][1]
    for (seq, ts), (_, device_ns, host_ns) in zip(stamps, sink.frames):
        assert ts == device_ns == t0 + seq * mode.period_ns  # exact: no accumulated drift
        assert host_ns >= device_ns  # never delivered before its deadline
    assert seqs == sorted(set(seqs))
    assert cam.device_counters() == (seqs[-1] + 1 - len(seqs), 0)
    # A second capture() continues the same timeline (as after a stop/restart of the loop).
    stop.clear()
    sink.limit += 5
    cam.capture(sink, stop)
    assert verify_frame(sink.frames[-1][0], mode)[0] > seqs[-1]


def test_late_frames_are_dropped_like_a_driver_queue(monkeypatch):
    """A stall longer than the 4-frame queue skips the missed deadlines and counts them."""
    mode = CameraMode(64, 48, 100.0, PixelFormat.GREY)
    cam = SyntheticCamera(DeviceInfo("synthetic", 0, "0", "t"), mode)
    stop = threading.Event()
    sink = ListSink(mode, 3, stop)
    real_publish = sink.publish

    def stalling_publish(**kw):
        seq = real_publish(**kw)
        if seq == 0:
            time.sleep(0.1)  # 10 periods
        return seq

    sink.publish = stalling_publish
    cam.capture(sink, stop)
    seqs = [verify_frame(f, mode)[0] for f, _, _ in sink.frames]
    assert seqs[0] == 0 and seqs[1] >= 6, seqs
    assert cam.dropped == seqs[1] - 1
