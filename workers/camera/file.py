"""The ``file`` family: video files replayed as cameras at their native rate, looping, with container timestamps.

Each ``--file PATH`` is one device (index = its position on the command
line). The only mode is the file's own: native width and height, the
container's frame rate, BGR3 (OpenCV's decoded layout). Asking for anything
else is an :class:`~workers.camera.family.UnsupportedMode` naming that mode.

Timing
    ``device_time_ns`` is the container timestamp of the frame
    (``CAP_PROP_POS_MSEC`` after ``grab()``) plus, after each loop, the
    length of the file (last timestamp + one frame period), so it keeps
    increasing. Frames are published at ``t0 + device_time_ns``: absolute
    deadlines on the file's own clock. A frame more than ``QUEUE_FRAMES``
    periods late is skipped and counted as dropped by the device.

Landing
    Frames are decoded straight into the ring slot with
    ``retrieve(image=slot)``; if OpenCV returns another array the frame is
    copied into the slot and counted as a fallback copy.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from mimir.descriptors import PixelFormat

from .family import (
    CameraDisconnected, CameraError, CameraMode, DeviceInfo, DeviceNotFound, DiscoveryHints, FrameSink,
    ModeRequest, UnsupportedMode,
)
from .sink import shaped_claim

__all__ = ["FileFamily", "FileCamera", "native_mode", "QUEUE_FRAMES"]

QUEUE_FRAMES = 4
_MAX_SLEEP_S = 0.1


def _open(path: str) -> cv2.VideoCapture:
    return cv2.VideoCapture(path, cv2.CAP_FFMPEG)


def native_mode(cap: cv2.VideoCapture) -> CameraMode:
    """The file's only mode, from the container (BGR3 at its native size and rate)."""
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    if width <= 0 or height <= 0 or not fps > 0:
        raise CameraError(f"file: container reports {width}x{height} @ {fps} fps; cannot replay it")
    return CameraMode(width, height, fps, PixelFormat.BGR3)


class FileCamera:
    """One file replayed in a loop. Used by one capture thread."""

    def __init__(self, device: DeviceInfo, mode: CameraMode, cap: cv2.VideoCapture, *,
                 queue_frames: int = QUEUE_FRAMES) -> None:
        self.device = device
        self.mode = mode
        self.path = device.address
        self._cap = cap
        self.queue_frames = queue_frames
        self.dropped = 0
        self.loops = 0

    def _rewind(self) -> None:
        """Reopen the file at its first frame (a fresh decoder: exact, whatever the codec)."""
        self._cap.release()
        self._cap = _open(self.path)
        if not self._cap.isOpened():
            raise CameraDisconnected(f"{self.path}: cannot reopen to loop")
        self.loops += 1

    def capture(self, sink: FrameSink, stop: threading.Event) -> None:
        period_ns = self.mode.period_ns
        late_limit_ns = self.queue_frames * period_ns
        byte_length = self.mode.byte_length
        claim_image = shaped_claim(sink, self.mode.payload_shape)
        count_fallback = getattr(sink, "count_fallback_copy", None)
        monotonic_ns = time.monotonic_ns
        sleep = time.sleep
        pos_msec = cv2.CAP_PROP_POS_MSEC
        loop_base_ns = 0
        last_pts_ns = -1
        frames_this_loop = 0
        t0 = -1
        while not stop.is_set():
            cap = self._cap
            if not cap.grab():
                if frames_this_loop == 0:
                    raise CameraDisconnected(f"{self.path}: no frame could be decoded")
                loop_base_ns += last_pts_ns + period_ns
                frames_this_loop = 0
                self._rewind()
                continue
            pts_ns = round(cap.get(pos_msec) * 1e6)
            device_time_ns = loop_base_ns + pts_ns
            last_pts_ns = pts_ns
            frames_this_loop += 1
            if t0 < 0:
                t0 = monotonic_ns() - device_time_ns
            deadline = t0 + device_time_ns
            if monotonic_ns() - deadline > late_limit_ns:
                self.dropped += 1
                continue
            image = claim_image()
            ok, out = cap.retrieve(image=image)
            if not ok:
                raise CameraDisconnected(f"{self.path}: decode failed at {pts_ns / 1e6:.3f} ms")
            if out is not image:
                np.copyto(image, out.reshape(image.shape))
                if count_fallback is not None:
                    count_fallback()
            now = monotonic_ns()
            while now < deadline:
                sleep(min(deadline - now, 100_000_000) * 1e-9)
                if stop.is_set():
                    return
                now = monotonic_ns()
            sink.publish(device_time_ns=device_time_ns, host_time_ns=now, byte_length=byte_length)

    def device_counters(self) -> tuple[int, int]:
        return self.dropped, 0

    def close(self) -> None:
        self._cap.release()


class FileFamily:
    """Devices are the files named by ``--file`` (or ``--device``)."""

    name = "file"

    def search_description(self) -> str:
        return "a file device is a --file path that exists"

    def discover(self, hints: DiscoveryHints) -> list[DeviceInfo]:
        if not hints.specs:
            raise DeviceNotFound("file: no files given; pass --file PATH (once per camera)")
        found = []
        for index, spec in enumerate(hints.specs):
            path = Path(spec)
            if path.is_file():
                found.append(DeviceInfo(self.name, index, spec, path.name))
        return found

    def open(self, device: DeviceInfo, request: ModeRequest) -> FileCamera:
        cap = _open(device.address)
        if not cap.isOpened():
            raise DeviceNotFound(f"file: {device.address} is not a video OpenCV's FFMPEG backend can decode")
        try:
            mode = native_mode(cap)
            wrong = request.mismatches(mode)
            if wrong:
                raise UnsupportedMode(
                    f"file: {device.address} cannot be replayed as {request} ({', '.join(wrong)}); "
                    f"supported modes: {mode} (the file's own)"
                )
        except BaseException:
            cap.release()
            raise
        return FileCamera(device, mode, cap)
