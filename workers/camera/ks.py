"""The ``ks`` family: UVC / AVStream ("kernel streaming") cameras through the OS capture stack via OpenCV.

Backends, tried in order: Media Foundation then DirectShow on Windows
(``CAP_MSMF``, ``CAP_DSHOW``), V4L2 on Linux (``CAP_V4L2``), AVFoundation on
macOS (``CAP_AVFOUNDATION``).

Discovery
    Linux: the V4L2 capture nodes ``/dev/videoN`` with their advertised modes
    (:mod:`.v4l2` ioctls). Elsewhere OpenCV cannot enumerate, so indices
    ``0..probe_limit-1`` are probed by opening them with the first backend;
    their modes are unknown until negotiated.

Negotiation (:func:`negotiate`)
    Request FOURCC (raw formats only), width, height and fps with
    ``cap.set``, then report what ``cap.get`` returns: that is the negotiated
    mode. What lands in the ring: BGR3 (OpenCV converts; ``CONVERT_RGB`` on)
    unless a raw format (YUYV, GREY, GRBG) was asked for, in which case
    ``CONVERT_RGB`` is turned off and the driver's bytes land as they are.
    One probe frame gives the exact array shape OpenCV hands out, which
    becomes the ring's slot shape so ``retrieve(image=slot)`` writes in place.
    Any requested field the device did not grant is an
    :class:`~workers.camera.family.UnsupportedMode` listing the negotiated
    mode and, where the platform lists them, the supported modes.

Capture loop (:meth:`KsCamera.capture`)
    ``grab()`` (blocks until the driver completes a buffer) -> host receipt
    time -> ``retrieve(image=slot)`` into the claimed ring slot, checking the
    returned array *is* the slot (else one copy, counted) -> publish with the
    driver timestamp ``CAP_PROP_POS_MSEC`` (V4L2 buffer time, Media Foundation
    sample time; 0 if the backend gives none). ``max_failed_grabs``
    consecutive failed grabs mean the device is gone: CameraDisconnected.

The capture object is anything with OpenCV's ``VideoCapture`` interface
(``capture_factory``); tests run the same loop over a file-backed
``cv2.VideoCapture``.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from mimir.descriptors import PixelFormat, fourcc

from .family import (
    BYTES_PER_PIXEL, CameraDisconnected, CameraMode, DeviceInfo, DeviceNotFound, DiscoveryHints,
    FrameSink, ModeRequest, UnsupportedMode, format_name,
)
from .sink import shaped_claim

__all__ = [
    "KsFamily", "KsCamera", "VideoCaptureLike", "open_capture", "Negotiated", "negotiate", "platform_backends",
    "backend_name", "RAW_FORMATS",
]

RAW_FORMATS = (PixelFormat.YUYV, PixelFormat.GREY, PixelFormat.GRBG)
_PLATFORM_BACKENDS = {
    "win32": ("CAP_MSMF", "CAP_DSHOW"),
    "linux": ("CAP_V4L2",),
    "darwin": ("CAP_AVFOUNDATION",),
}


class VideoCaptureLike(Protocol):
    """The subset of ``cv2.VideoCapture`` the ks family uses."""

    def isOpened(self) -> bool: ...
    def set(self, prop: int, value: float) -> bool: ...
    def get(self, prop: int) -> float: ...
    def grab(self) -> bool: ...
    def retrieve(self, image: np.ndarray | None = None, flag: int = 0) -> tuple[bool, np.ndarray | None]: ...
    def read(self, image: np.ndarray | None = None) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...
    def getBackendName(self) -> str: ...


CaptureFactory = Callable[[str | int, int], VideoCaptureLike]


def open_capture(address: str | int, backend: int) -> VideoCaptureLike:
    """``cv2.VideoCapture(address, backend)``: the default :data:`CaptureFactory` (a device index or a path)."""
    if isinstance(address, int):  # cv2's constructor is overloaded per argument type
        return cv2.VideoCapture(address, backend)
    return cv2.VideoCapture(address, backend)


def platform_backends(platform: str = sys.platform) -> tuple[int, ...]:
    """OpenCV backend ids to try on ``platform``, in order."""
    key = "linux" if platform.startswith("linux") else platform
    return tuple(getattr(cv2, name) for name in _PLATFORM_BACKENDS.get(key, ()))


def backend_name(backend: int) -> str:
    try:
        return cv2.videoio_registry.getBackendName(backend)
    except Exception:
        return str(backend)


def _fourcc_str(value: float) -> str:
    code = int(value) & 0xFFFFFFFF
    return format_name(code) if code else "none"


class Negotiated:
    """What a device granted: the mode landing in the ring and the raw values ``cap.get`` returned."""

    def __init__(self, mode: CameraMode, *, backend: str, device_fourcc: str, reported: dict[str, float]) -> None:
        self.mode = mode
        self.backend = backend
        self.device_fourcc = device_fourcc
        self.reported = reported

    def __str__(self) -> str:
        return f"{self.mode} (device FOURCC {self.device_fourcc}, backend {self.backend})"


def negotiate(cap: VideoCaptureLike, request: ModeRequest, *, backend: str) -> Negotiated:
    """Ask ``cap`` for ``request`` and report what it granted (see module docstring).

    Raises UnsupportedMode when the granted output cannot land in a ring slot
    (a compressed or unknown raw format) or a probe frame cannot be read.
    """
    fmt = request.pixel_format
    if fmt is not None and fmt not in (PixelFormat.BGR3, *RAW_FORMATS):
        raise UnsupportedMode(
            f"ks: format {format_name(fmt)} cannot land in a ring slot; use BGR3 (decoded) or a raw "
            f"format ({', '.join(format_name(f) for f in RAW_FORMATS)})"
        )
    raw = fmt in RAW_FORMATS
    if raw and fmt is not None:
        cap.set(cv2.CAP_PROP_FOURCC, float(fourcc(format_name(fmt))))
    if request.width is not None:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(request.width))
    if request.height is not None:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(request.height))
    if request.fps is not None:
        cap.set(cv2.CAP_PROP_FPS, float(request.fps))
    cap.set(cv2.CAP_PROP_CONVERT_RGB, 0.0 if raw else 1.0)
    reported = {
        "width": cap.get(cv2.CAP_PROP_FRAME_WIDTH),
        "height": cap.get(cv2.CAP_PROP_FRAME_HEIGHT),
        "fps": cap.get(cv2.CAP_PROP_FPS),
        "fourcc": cap.get(cv2.CAP_PROP_FOURCC),
        "convert_rgb": cap.get(cv2.CAP_PROP_CONVERT_RGB),
    }
    width, height = int(reported["width"]), int(reported["height"])
    fps = float(reported["fps"]) if reported["fps"] > 0 else float(request.fps or 30.0)
    device_fourcc = _fourcc_str(reported["fourcc"])
    converting = reported["convert_rgb"] != 0.0
    if converting:
        out_fmt = PixelFormat.BGR3
    else:
        code = int(reported["fourcc"]) & 0xFFFFFFFF
        granted = next((f for f in BYTES_PER_PIXEL if int(f) == code), None)
        if granted is None:
            raise UnsupportedMode(
                f"ks: requested {request}; the device negotiated {width}x{height} @ {fps:g} fps in "
                f"FOURCC {device_fourcc} without conversion, which has no fixed frame size"
            )
        out_fmt = granted
    ok, frame = cap.read()
    if not ok or frame is None:
        raise UnsupportedMode(
            f"ks: negotiated {width}x{height} {format_name(out_fmt)} @ {fps:g} fps ({backend}) but no frame could be read"
        )
    if frame.dtype != np.uint8 or frame.nbytes != width * height * BYTES_PER_PIXEL[out_fmt]:
        raise UnsupportedMode(
            f"ks: negotiated {width}x{height} {format_name(out_fmt)} but frames arrive as {frame.dtype}"
            f"{list(frame.shape)} ({frame.nbytes} B)"
        )
    mode = CameraMode(width, height, fps, out_fmt, payload_shape=tuple(frame.shape))
    return Negotiated(mode, backend=backend, device_fourcc=device_fourcc, reported=reported)


class KsCamera:
    """One opened OS camera. Used by one capture thread; the worker closes it."""

    def __init__(self, device: DeviceInfo, cap: VideoCaptureLike, negotiated: Negotiated, *,
                 max_failed_grabs: int = 3) -> None:
        self.device = device
        self.cap = cap
        self.negotiated = negotiated
        self.mode = negotiated.mode
        self.max_failed_grabs = max_failed_grabs

    def capture(self, sink: FrameSink, stop: threading.Event) -> None:
        cap = self.cap
        grab, retrieve, get = cap.grab, cap.retrieve, cap.get
        claim_image = shaped_claim(sink, self.mode.payload_shape)
        count_fallback = getattr(sink, "count_fallback_copy", None)
        byte_length = self.mode.byte_length
        monotonic_ns = time.monotonic_ns
        pos_msec = cv2.CAP_PROP_POS_MSEC
        failures = 0
        while not stop.is_set():
            if not grab():
                failures += 1
                if failures >= self.max_failed_grabs:
                    raise CameraDisconnected(f"{self.device.address}: {failures} grabs failed in a row")
                continue
            host_time_ns = monotonic_ns()
            failures = 0
            msec = get(pos_msec)
            image = claim_image()
            ok, out = retrieve(image=image)
            if not ok or out is None:
                raise CameraDisconnected(f"{self.device.address}: retrieve failed")
            if out is not image:
                np.copyto(image, out.reshape(image.shape))
                if count_fallback is not None:
                    count_fallback()
            sink.publish(
                device_time_ns=int(msec * 1e6) if msec > 0 else 0,
                host_time_ns=host_time_ns, byte_length=byte_length,
            )

    def device_counters(self) -> tuple[int, int]:
        return 0, 0  # OpenCV does not expose the driver's drop counters

    def close(self) -> None:
        self.cap.release()


def _address_arg(address: str) -> str | int:
    return int(address) if address.isdigit() else address


class KsFamily:
    """OS cameras through OpenCV. Constructor arguments exist for other backends and for tests."""

    name = "ks"

    def __init__(self, *, backends: Sequence[int] | None = None,
                 enumerate_devices: Callable[[], list[DeviceInfo]] | None = None,
                 capture_factory: CaptureFactory = open_capture, probe_limit: int = 8) -> None:
        self.backends = tuple(backends) if backends is not None else platform_backends()
        self._enumerate = enumerate_devices
        self._factory = capture_factory
        self.probe_limit = probe_limit

    def search_description(self) -> str:
        """How discovery looked, for error messages."""
        backends = ", ".join(backend_name(b) for b in self.backends) or f"no backend for platform {sys.platform}"
        if self._enumerate is not None:
            return f"backends {backends}, custom enumeration"
        if sys.platform.startswith("linux"):
            return f"backend {backends}; searched /dev/video* for V4L2 capture nodes"
        return f"backends {backends}; probed indices 0-{self.probe_limit - 1}"

    def discover(self, hints: DiscoveryHints) -> list[DeviceInfo]:
        if self._enumerate is not None:
            return self._enumerate()
        if sys.platform.startswith("linux"):
            return self._discover_v4l2()
        return self._probe_indices()

    def _discover_v4l2(self) -> list[DeviceInfo]:
        from . import v4l2

        found = []
        for dev, modes in v4l2.enumerate_devices():
            cam_modes = []
            for m in modes:
                fmt = next((f for f in BYTES_PER_PIXEL if format_name(f) == m.fourcc), None)
                if fmt is not None and m.fps > 0:
                    cam_modes.append(CameraMode(m.width, m.height, m.fps, fmt))
                elif m.fps > 0:  # compressed (MJPG...): deliverable decoded as BGR3
                    cam_modes.append(CameraMode(m.width, m.height, m.fps, PixelFormat.BGR3))
            found.append(DeviceInfo(self.name, dev.index, dev.path, f"{dev.card} ({dev.bus_info})", tuple(cam_modes)))
        return found

    def _probe_indices(self) -> list[DeviceInfo]:
        found: list[DeviceInfo] = []
        if not self.backends:
            return found
        backend = self.backends[0]
        for index in range(self.probe_limit):
            cap = self._factory(index, backend)
            try:
                if cap.isOpened():
                    found.append(DeviceInfo(self.name, index, str(index), f"{backend_name(backend)} camera {index}"))
            finally:
                cap.release()
        return found

    def open(self, device: DeviceInfo, request: ModeRequest) -> KsCamera:
        tried = []
        for backend in self.backends:
            cap = self._factory(_address_arg(device.address), backend)
            if not cap.isOpened():
                cap.release()
                tried.append(backend_name(backend))
                continue
            try:
                negotiated = negotiate(cap, request, backend=backend_name(backend))
                wrong = request.mismatches(negotiated.mode)
                if wrong:
                    supported = "; ".join(str(m) for m in device.modes) or "not listed by this platform"
                    raise UnsupportedMode(
                        f"ks: {device}: requested {request}, the device negotiated {negotiated} "
                        f"({', '.join(wrong)}); supported modes: {supported}"
                    )
            except BaseException:
                cap.release()
                raise
            return KsCamera(device, cap, negotiated)
        raise DeviceNotFound(f"ks: {device} could not be opened with backend(s) {', '.join(tried) or 'none'}")
