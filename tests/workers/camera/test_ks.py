"""The ks family: OpenCV capture loop, device enumeration and mode negotiation, without camera hardware.

* The worker's real capture loop (``KsCamera.capture`` inside ``run_worker``)
  runs over a real ``cv2.VideoCapture`` on a clip (FFMPEG backend), behind a
  thin wrapper that paces ``grab()`` at the clip's rate as a driver would.
  The end of the clip looks like an unplugged device: the worker counts the
  disconnect, reopens the device and keeps streaming.
* Negotiation is exercised twice: against the file-backed ``VideoCapture``
  (whose ``set`` refuses everything, so ``get`` reports the clip's own mode),
  and against a scripted device emulating a UVC camera's property table.
* Enumeration: V4L2 ioctl parsing against a fake ioctl table, index probing
  through the capture factory, backend choice per platform.
"""

from __future__ import annotations

import os

import errno
import struct
import threading
import time

import cv2
import numpy as np
import pytest

from mimir.descriptors import CameraFrameDescriptor, PixelFormat, fourcc
from ringbuf import Ring, RingLayoutMismatch, RingReader, SegmentMissing
from workers.camera import v4l2
from workers.camera.family import (
    CameraMode, DeviceInfo, DeviceNotFound, DiscoveryHints, ModeRequest, UnsupportedMode, select_devices,
)
from workers.camera.ks import KsCamera, KsFamily, negotiate, platform_backends
from workers.camera.sink import RingFrameSink
from workers.camera.stats import FrameStats
from workers.camera.worker import WorkerConfig, run_worker

PERIOD_NS = 20_000_000


class PacedFileCapture:
    """A real ``cv2.VideoCapture`` on a file whose ``grab()`` waits for the next frame period, like a driver."""

    def __init__(self, address, backend: int) -> None:
        self._cap = cv2.VideoCapture(str(address), backend)
        self._next = None
        self.retrieve_calls = 0

    def grab(self) -> bool:
        now = time.monotonic()
        if self._next is not None and now < self._next:
            time.sleep(self._next - now)
        self._next = max(now, self._next or now) + 0.02
        return self._cap.grab()

    def retrieve(self, image=None, flag: int = 0):
        self.retrieve_calls += 1
        return self._cap.retrieve(image=image)

    def __getattr__(self, name):  # isOpened, set, get, read, release, getBackendName: OpenCV's own
        return getattr(self._cap, name)


def _clip_family(path) -> KsFamily:
    return KsFamily(
        backends=(cv2.CAP_FFMPEG,),
        enumerate_devices=lambda: [DeviceInfo("ks", 0, str(path), "test clip")],
        capture_factory=PacedFileCapture,
    )


def _attach(name: str, rig: str, timeout_s: float = 10.0) -> RingReader:
    end = time.monotonic() + timeout_s
    while True:
        try:
            return RingReader.attach(name, rig=rig, descriptor=CameraFrameDescriptor)
        except (SegmentMissing, RingLayoutMismatch):
            if time.monotonic() > end:
                raise
            time.sleep(0.01)


def test_worker_capture_loop_over_opencv_file_capture(rig, cam_video):
    path, reference, ref_pts = cam_video
    stop = threading.Event()
    workers = []
    thread = threading.Thread(
        target=lambda: workers.append(run_worker(_clip_family(path), WorkerConfig.for_family("ks", 1, rig=rig, capacity=64),
                                                 stop=stop, log=None)),
        daemon=True,
    )
    thread.start()
    try:
        reader = _attach("c0", rig)
        frames = []
        end = time.monotonic() + 20
        while len(frames) < 40:  # the 24 frames after the probe, then the next pass
            assert time.monotonic() < end and thread.is_alive()
            if reader.wait(0.2):
                seq, d, pixels = reader.read()
                frames.append((seq, d))
                index, rem = divmod(d[2], PERIOD_NS)  # device time = CAP_PROP_POS_MSEC of the frame
                assert rem == 0
                np.testing.assert_array_equal(pixels, reference[index], err_msg=f"ks frame {seq} != clip frame {index}")
        time.sleep(0.6)
        status = {k: reader.status[k].item() for k in reader.status.dtype.names}
        reader.close()
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert [s for s, _ in frames] == list(range(len(frames)))
    indices = [d[2] // PERIOD_NS for _, d in frames]
    # negotiate() consumed frame 0 as its probe; the loop delivered 1..24, then (reopened) 1..
    assert indices[:24] == list(range(1, 25))
    assert indices[24:] == list(range(1, len(indices) - 23))
    assert status["disconnects"] >= 1 and status["reconnects"] >= 1, status
    assert status["fallback_copies"] == 0, "retrieve(image=slot) did not write in place"
    assert (status["width"], status["height"], status["pixel_format"]) == (160, 120, int(PixelFormat.BGR3))
    assert workers and workers[0].runners[0].disconnects >= 1


class StopAfter:
    """A plain FrameSink (claim/publish only, plus the fallback counter) that sets ``stop`` after ``n`` frames."""

    def __init__(self, sink: RingFrameSink, n: int, stop: threading.Event) -> None:
        self.sink, self.n, self.stop = sink, n, stop

    def claim(self) -> np.ndarray:
        return self.sink.claim()

    def publish(self, *, device_time_ns: int, host_time_ns: int, byte_length: int) -> int:
        seq = self.sink.publish(device_time_ns=device_time_ns, host_time_ns=host_time_ns, byte_length=byte_length)
        if seq + 1 >= self.n:
            self.stop.set()
        return seq

    def count_fallback_copy(self) -> None:
        self.sink.count_fallback_copy()


def test_capture_loop_copies_when_opencv_returns_a_new_array(rig, cam_video):
    """The ``out is slot`` check: a driver that ignores the buffer gets its frame copied in, and counted."""
    path, reference, _ = cam_video

    class Allocating(PacedFileCapture):
        def retrieve(self, image=None, flag: int = 0):
            return self._cap.retrieve()  # ignores image=

    family = KsFamily(backends=(cv2.CAP_FFMPEG,), capture_factory=Allocating,
                      enumerate_devices=lambda: [DeviceInfo("ks", 0, str(path), "clip")])
    device = family.discover(DiscoveryHints())[0]
    camera = family.open(device, ModeRequest())
    stats = FrameStats()
    with Ring.create("c0", rig=rig, descriptor=CameraFrameDescriptor, capacity=32,
                     payload_shape=camera.mode.payload_shape) as ring:
        stop = threading.Event()
        sink = StopAfter(RingFrameSink(ring, source_hash=7, mode=camera.mode, stats=stats), 5, stop)
        camera.capture(sink, stop)
        camera.close()
        assert stats.fallback_copies == 5
        with RingReader.attach("c0", rig=rig) as reader:
            for _ in range(5):
                seq, d, pixels = reader.read()
                np.testing.assert_array_equal(pixels, reference[d[2] // PERIOD_NS])


def test_negotiation_reports_what_the_file_capture_grants(cam_video):
    path, _, _ = cam_video
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        got = negotiate(cap, ModeRequest(width=320, height=240, fps=30), backend="FFMPEG")
        assert got.reported["width"] == cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 160
        assert got.reported["height"] == cap.get(cv2.CAP_PROP_FRAME_HEIGHT) == 120
        assert got.reported["fps"] == cap.get(cv2.CAP_PROP_FPS) == 50
        assert got.mode == CameraMode(160, 120, 50.0, PixelFormat.BGR3)
        assert got.mode.payload_shape == (120, 160, 3)
    finally:
        cap.release()
    family = _clip_family(path)
    device = family.discover(DiscoveryHints())[0]
    with pytest.raises(UnsupportedMode) as err:
        family.open(device, ModeRequest(width=320, height=240))
    message = str(err.value)
    assert "negotiated 160x120 BGR3 @ 50 fps" in message and "width 320 -> 160" in message
    assert "supported modes" in message


class ScriptedUvcDevice:
    """A UVC camera's property table as OpenCV exposes it: ``set`` snaps to supported modes, ``get`` reports."""

    MODES = {("YUYV", 640, 480): (30.0, 15.0), ("YUYV", 320, 240): (60.0, 30.0), ("MJPG", 1280, 720): (30.0,)}

    def __init__(self, address, backend) -> None:
        self.props = {cv2.CAP_PROP_FOURCC: float(fourcc("YUYV")), cv2.CAP_PROP_FRAME_WIDTH: 640.0,
                      cv2.CAP_PROP_FRAME_HEIGHT: 480.0, cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_CONVERT_RGB: 1.0}
        self.set_calls = []

    def isOpened(self):
        return True

    def _fourcc(self):
        return int(self.props[cv2.CAP_PROP_FOURCC]).to_bytes(4, "little").decode()

    def set(self, prop, value):
        """Like OpenCV's V4L2 backend: a width waits for its height, then the pair is tried (S_FMT)."""
        self.set_calls.append((prop, value))
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            self.pending_width = value
            return True
        p = dict(self.props)
        p[prop] = value
        if prop == cv2.CAP_PROP_FRAME_HEIGHT and getattr(self, "pending_width", None) is not None:
            p[cv2.CAP_PROP_FRAME_WIDTH] = self.pending_width
            self.pending_width = None
        key = (int(p[cv2.CAP_PROP_FOURCC]).to_bytes(4, "little").decode(), int(p[cv2.CAP_PROP_FRAME_WIDTH]),
               int(p[cv2.CAP_PROP_FRAME_HEIGHT]))
        if prop == cv2.CAP_PROP_CONVERT_RGB:
            self.props[prop] = value
            return True
        if key in self.MODES:
            rates = self.MODES[key]
            p[cv2.CAP_PROP_FPS] = min(rates, key=lambda r: abs(r - p[cv2.CAP_PROP_FPS]))
            self.props = p
            return True
        return False

    def get(self, prop):
        return self.props.get(prop, 0.0)

    def read(self, image=None):
        w, h = int(self.props[cv2.CAP_PROP_FRAME_WIDTH]), int(self.props[cv2.CAP_PROP_FRAME_HEIGHT])
        shape = (h, w, 3) if self.props[cv2.CAP_PROP_CONVERT_RGB] else (h, w, 2)
        return True, np.zeros(shape, np.uint8)

    def release(self):
        pass


def _uvc_family():
    modes = tuple(CameraMode(w, h, r, PixelFormat.YUYV if f == "YUYV" else PixelFormat.BGR3)
                  for (f, w, h), rates in ScriptedUvcDevice.MODES.items() for r in rates)
    return KsFamily(backends=(cv2.CAP_V4L2,), capture_factory=ScriptedUvcDevice,
                    enumerate_devices=lambda: [DeviceInfo("ks", 0, "/dev/video0", "Scripted UVC", modes)])


def test_negotiation_with_a_uvc_like_device():
    family = _uvc_family()
    device = family.discover(DiscoveryHints())[0]
    raw = family.open(device, ModeRequest(320, 240, 60.0, PixelFormat.YUYV))
    assert raw.mode == CameraMode(320, 240, 60.0, PixelFormat.YUYV, payload_shape=(240, 320, 2))
    assert raw.negotiated.reported["convert_rgb"] == 0.0 and raw.negotiated.device_fourcc == "YUYV"
    decoded = family.open(device, ModeRequest(640, 480, None, PixelFormat.BGR3))
    assert decoded.mode == CameraMode(640, 480, 30.0, PixelFormat.BGR3)
    assert isinstance(decoded, KsCamera)
    # 640x480 exists, but only up to 30 fps: the device snaps to 30 and the error lists the modes.
    with pytest.raises(UnsupportedMode) as err:
        family.open(device, ModeRequest(640, 480, 60.0, PixelFormat.YUYV))
    message = str(err.value)
    assert "fps 60 -> 30" in message
    assert "320x240 YUYV @ 60 fps" in message and "640x480 YUYV @ 15 fps" in message
    # An unknown size is refused by set(); get() still reports the previous mode.
    with pytest.raises(UnsupportedMode, match="width 800 -> 640"):
        family.open(device, ModeRequest(800, 600, None, PixelFormat.YUYV))
    with pytest.raises(UnsupportedMode, match="cannot land in a ring slot"):
        family.open(device, ModeRequest(pixel_format=PixelFormat.MJPG))


def test_missing_device_lists_the_devices_found():
    family = _uvc_family()
    found = family.discover(DiscoveryHints())
    with pytest.raises(DeviceNotFound) as err:
        select_devices(found, DiscoveryHints(specs=("/dev/video7",)), "ks", family.search_description())
    assert "/dev/video7" in str(err.value) and "[0] /dev/video0 (Scripted UVC)" in str(err.value)
    assert select_devices(found, DiscoveryHints(specs=("0",)), "ks") == found
    assert select_devices(found, DiscoveryHints(specs=("ks:/dev/video0",)), "ks") == found


def test_index_probing_goes_through_the_capture_factory():
    opened = []

    class Probe:
        def __init__(self, index, backend):
            opened.append((index, backend))
            self.ok = index in (0, 2)

        def isOpened(self):
            return self.ok

        def release(self):
            pass

    family = KsFamily(backends=(cv2.CAP_MSMF, cv2.CAP_DSHOW), capture_factory=Probe, probe_limit=4)
    found = family._probe_indices()
    assert [d.index for d in found] == [0, 2]
    assert opened == [(i, cv2.CAP_MSMF) for i in range(4)]


def test_platform_backends():
    assert platform_backends("win32") == (cv2.CAP_MSMF, cv2.CAP_DSHOW)
    assert platform_backends("linux") == (cv2.CAP_V4L2,)
    assert platform_backends("darwin") == (cv2.CAP_AVFOUNDATION,)
    assert KsFamily().backends == platform_backends()


class FakeV4l2:
    """Answers the four enumeration ioctls from a table, like a UVC node would."""

    def __init__(self, card: str, capture: bool, formats: dict) -> None:
        self.card, self.capture, self.formats = card, capture, formats

    def __call__(self, request: int, buf: bytearray) -> None:
        if request == v4l2.VIDIOC_QUERYCAP:
            caps = 0x80000000 | 0x04000001
            device_caps = 0x04000001 if self.capture else 0x00800000  # capture | streaming / metadata
            v4l2.CAPABILITY.pack_into(buf, 0, b"uvcvideo", self.card.encode(), b"usb-0000:00:14.0-1", 0x60100,
                                      caps, device_caps)
            return
        fmts = list(self.formats)
        if request == v4l2.VIDIOC_ENUM_FMT:
            index, buf_type = struct.unpack_from("<II", buf)
            if buf_type != 1 or index >= len(fmts):
                raise OSError(errno.EINVAL, "end")
            v4l2.FMTDESC.pack_into(buf, 0, index, 1, 0, fmts[index].encode(), fourcc(fmts[index]), 0)
        elif request == v4l2.VIDIOC_ENUM_FRAMESIZES:
            index, pixfmt = struct.unpack_from("<II", buf)
            sizes = list(self.formats[_name(pixfmt)])
            if index >= len(sizes):
                raise OSError(errno.EINVAL, "end")
            v4l2.FRMSIZE.pack_into(buf, 0, index, pixfmt, 1, *sizes[index], 0, 0, 0, 0)
        elif request == v4l2.VIDIOC_ENUM_FRAMEINTERVALS:
            index, pixfmt, w, h = struct.unpack_from("<IIII", buf)
            rates = self.formats[_name(pixfmt)][(w, h)]
            if index >= len(rates):
                raise OSError(errno.EINVAL, "end")
            v4l2.FRMIVAL.pack_into(buf, 0, index, pixfmt, w, h, 1, 1, rates[index], 0, 0, 0, 0)
        else:
            raise OSError(errno.ENOTTY, "unknown ioctl")


def _name(code: int) -> str:
    return code.to_bytes(4, "little").decode()


def test_v4l2_enumeration_parses_the_kernel_structs():
    assert v4l2.VIDIOC_QUERYCAP == 0x80685600
    assert v4l2.VIDIOC_ENUM_FMT == 0xC0405602
    assert v4l2.VIDIOC_ENUM_FRAMESIZES == 0xC02C564A
    assert v4l2.VIDIOC_ENUM_FRAMEINTERVALS == 0xC034564B
    dev = FakeV4l2("Razer Kiyo", True, {"YUYV": {(640, 480): (30, 15), (320, 240): (60,)},
                                        "MJPG": {(1920, 1080): (30,)}})
    assert v4l2.query_device(dev) == ("uvcvideo", "Razer Kiyo", "usb-0000:00:14.0-1", True)
    modes = [str(m) for m in v4l2.list_modes(dev)]
    assert modes == ["640x480 YUYV @ 30 fps", "640x480 YUYV @ 15 fps", "320x240 YUYV @ 60 fps",
                     "1920x1080 MJPG @ 30 fps"]
    meta = FakeV4l2("Razer Kiyo", False, {})
    assert v4l2.query_device(meta)[3] is False


def test_v4l2_enumeration_opens_video_nodes_and_keeps_only_capture_devices(tmp_path, monkeypatch):
    """enumerate_devices walks <root>/videoN in numeric order, skips what is not a node or not a capture device,
    and lists each capture device's modes (the ioctls are faked at the fd seam: no /dev/video* here)."""
    cards = {"video0": FakeV4l2("Razer Kiyo", True, {"YUYV": {(640, 480): (30,)}}),
             "video1": FakeV4l2("Kiyo metadata", False, {}),
             "video10": FakeV4l2("Leap", True, {"YUYV": {(640, 240): (110,)}})}
    for name in [*cards, "video-bad", "vbi0"]:
        (tmp_path / name).write_bytes(b"")
    opened = {}

    def fake_fd_ioctl(fd):
        return cards[opened[fd]]

    real_open = v4l2.os.open

    def fake_open(path, flags, *args):
        fd = real_open(path, os.O_RDONLY)
        opened[fd] = os.path.basename(path)
        return fd

    monkeypatch.setattr(v4l2, "_fd_ioctl", fake_fd_ioctl)
    monkeypatch.setattr(v4l2.os, "open", fake_open)
    found = v4l2.enumerate_devices(str(tmp_path))
    assert [(d.path.rsplit("/", 1)[1], d.index, d.card) for d, _ in found] == [("video0", 0, "Razer Kiyo"),
                                                                             ("video10", 10, "Leap")]
    assert [str(m) for m in found[1][1]] == ["640x240 YUYV @ 110 fps"]
    assert v4l2.enumerate_devices(str(tmp_path / "missing")) == []
