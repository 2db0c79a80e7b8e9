"""The ``file`` family: video files replayed as cameras at their native rate, looping, with container timestamps.

Each ``--file PATH`` is one device (index = its position on the command
line). The only mode is the file's own: native width and height, the
container's frame rate, BGR3. Asking for anything else is an
:class:`~workers.camera.family.UnsupportedMode` naming that mode.

Decoding is PyAV's (FFmpeg), which says what OpenCV hides: a packet that
fails to decode, a frame the decoder marks corrupt (concealed errors), and
every frame after such damage until the next key frame (predicted from
damaged pictures, wrong even when they decode cleanly) are **counted as
corrupt and never published**, as the ps3eye path discards a damaged frame.
A file whose every frame fails is a disconnect.

Timing
    ``device_time_ns`` is the frame's presentation time in the container
    plus, after each loop, the length of the file (last timestamp + one
    frame period), so it keeps increasing. Frames are published at
    ``t0 + device_time_ns``: absolute deadlines on the file's own clock. A
    frame more than ``QUEUE_FRAMES`` periods late is skipped and counted as
    dropped by the device.

Landing
    FFmpeg decodes into its own frame pool; each frame is converted to BGR
    and copied once into the ring slot (counted as a fallback copy: a file
    replay is a test source, not a capture path).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import numpy as np

from mimir.descriptors import PixelFormat

from .family import (
    CameraDisconnected, CameraError, CameraMode, DeviceInfo, DeviceNotFound, DiscoveryHints, FrameSink,
    ModeRequest, UnsupportedMode,
)
from .sink import shaped_claim

__all__ = ["FileFamily", "FileCamera", "native_mode", "QUEUE_FRAMES"]

QUEUE_FRAMES = 4


def _open(path: str) -> av.container.InputContainer:
    return av.open(path, mode="r")


def native_mode(container: av.container.InputContainer) -> CameraMode:
    """The file's only mode, from the container (BGR3 at its native size and rate)."""
    if not container.streams.video:
        raise CameraError(f"file: {container.name} has no video stream")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    if width <= 0 or height <= 0 or not fps > 0:
        raise CameraError(f"file: container reports {width}x{height} @ {fps} fps; cannot replay it")
    return CameraMode(width, height, fps, PixelFormat.BGR3)


class FileCamera:
    """One file replayed in a loop. Used by one capture thread."""

    def __init__(self, device: DeviceInfo, mode: CameraMode, container: av.container.InputContainer, *,
                 queue_frames: int = QUEUE_FRAMES) -> None:
        self.device = device
        self.mode = mode
        self.path = device.address
        self._container = container
        self.queue_frames = queue_frames
        self.dropped = 0
        self.corrupt = 0
        self.loops = 0
        self.last_pts_ns = -1  # the latest presentation time of the pass, damaged frames included

    def _frames(self):
        """Decoded frames of one pass over the file, in presentation order; damaged ones counted, not yielded."""
        container = self._container
        stream = container.streams.video[0]
        time_base = stream.time_base
        damaged = False  # after an error, frames predicted from damaged ones look clean to the decoder
        for packet in container.demux(stream):
            if packet.pts is not None:  # the pass's length counts damaged frames too
                self.last_pts_ns = max(self.last_pts_ns, round(packet.pts * time_base * 1_000_000_000))
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                self.corrupt += 1  # the packet's frame is lost to a decode error
                damaged = True
                continue
            for frame in frames:
                if frame.is_corrupt or frame.pts is None:
                    self.corrupt += 1
                    damaged = True
                    continue
                if damaged and not frame.key_frame:
                    self.corrupt += 1  # predicted from a damaged frame: wrong even if it decodes cleanly
                    continue
                damaged = False
                yield round(frame.pts * time_base * 1_000_000_000), frame

    def _rewind(self) -> None:
        """Reopen the file at its first frame (a fresh decoder: exact, whatever the codec)."""
        self._container.close()
        try:
            self._container = _open(self.path)
        except (OSError, av.error.FFmpegError) as exc:
            raise CameraDisconnected(f"{self.path}: cannot reopen to loop ({exc})") from None
        self.loops += 1

    def capture(self, sink: FrameSink, stop: threading.Event) -> None:
        period_ns = self.mode.period_ns
        late_limit_ns = self.queue_frames * period_ns
        byte_length = self.mode.byte_length
        claim_image = shaped_claim(sink, self.mode.payload_shape)
        count_fallback = getattr(sink, "count_fallback_copy", None)
        monotonic_ns = time.monotonic_ns
        sleep = time.sleep
        loop_base_ns = 0
        t0 = -1
        while not stop.is_set():
            self.last_pts_ns = -1
            published_any = False
            for pts_ns, frame in self._frames():
                device_time_ns = loop_base_ns + pts_ns
                published_any = True
                if t0 < 0:
                    t0 = monotonic_ns() - device_time_ns
                deadline = t0 + device_time_ns
                if monotonic_ns() - deadline > late_limit_ns:
                    self.dropped += 1
                    continue
                image = claim_image()
                np.copyto(image, frame.to_ndarray(format="bgr24").reshape(image.shape))
                if count_fallback is not None:
                    count_fallback()
                now = monotonic_ns()
                while now < deadline:
                    sleep(min(deadline - now, 100_000_000) * 1e-9)
                    if stop.is_set():
                        return
                    now = monotonic_ns()
                sink.publish(device_time_ns=device_time_ns, host_time_ns=now, byte_length=byte_length)
                if stop.is_set():
                    return
            if not published_any:
                raise CameraDisconnected(f"{self.path}: no frame could be decoded "
                                         f"({self.corrupt} damaged frames counted as corrupt)")
            loop_base_ns += self.last_pts_ns + period_ns
            self._rewind()

    def device_counters(self) -> tuple[int, int]:
        return self.dropped, self.corrupt

    def close(self) -> None:
        self._container.close()


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
        try:
            container = _open(device.address)
        except (OSError, av.error.FFmpegError) as exc:
            raise DeviceNotFound(f"file: {device.address} is not a video FFmpeg can decode ({exc})") from None
        try:
            mode = native_mode(container)
            wrong = request.mismatches(mode)
            if wrong:
                raise UnsupportedMode(
                    f"file: {device.address} cannot be replayed as {request} ({', '.join(wrong)}); "
                    f"supported modes: {mode} (the file's own)"
                )
        except BaseException:
            container.close()
            raise
        return FileCamera(device, mode, container)
