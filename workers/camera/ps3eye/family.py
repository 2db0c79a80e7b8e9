"""The ps3eye camera family: PS3 Eye cameras over raw USB (pyusb), plugged into the camera worker."""

from __future__ import annotations

import threading

from mimir.descriptors import PixelFormat
from workers.camera.family import (
    CameraDisconnected, CameraMode, DeviceInfo, DeviceNotFound, DiscoveryHints, ModeRequest, UnsupportedMode,
)
from . import CameraNotFoundError, CameraStream, PS3Eye, StreamCounters, StreamState, SUPPORTED_MODES
from .device import find_cameras, open_camera

_MODES = tuple(CameraMode(m.width, m.height, float(m.fps), PixelFormat.GRBG) for m in SUPPORTED_MODES)


def _port_path(d) -> str:
    return f"{d.bus}-{'.'.join(map(str, d.port_numbers or ())) or d.address}"


class Ps3EyeCamera:
    def __init__(self, device: DeviceInfo, eye: PS3Eye) -> None:
        self.device, self.eye, self.counters = device, eye, StreamCounters()
        self.mode = CameraMode(eye.mode.width, eye.mode.height, float(eye.mode.fps), PixelFormat.GRBG)

    def capture(self, sink, stop: threading.Event) -> None:
        stream = CameraStream(self.eye, sink, counters=self.counters)
        self.eye.start()
        try:
            state = stream.run(stop)
        finally:
            self.eye.stop()
        if state is not StreamState.STOPPED:
            raise CameraDisconnected(f"PS3 Eye {self.device.address}: {state.value} ({stream.error})")

    def device_counters(self) -> tuple[int, int]:
        return 0, self.counters.frames_discarded

    def close(self) -> None:
        self.eye.close()


class Ps3EyeFamily:
    name = "ps3eye"

    def __init__(self, backend=None) -> None:
        self.backend = backend

    def discover(self, hints: DiscoveryHints) -> list[DeviceInfo]:
        return [DeviceInfo(self.name, i, _port_path(d), "PS3 Eye", _MODES)
                for i, d in enumerate(find_cameras(self.backend))]

    def open(self, device: DeviceInfo, request: ModeRequest) -> Ps3EyeCamera:
        if request.pixel_format not in (None, PixelFormat.GRBG):
            raise UnsupportedMode("ps3eye: only GRBG (8-bit Bayer) lands in the ring")
        ports = [_port_path(d) for d in find_cameras(self.backend)]  # reopen by port, not by stale index
        if device.address not in ports:
            raise DeviceNotFound(f"ps3eye: {device} is not plugged in; present: {ports or 'none'}")
        try:
            eye = open_camera(self.backend, index=ports.index(device.address), width=request.width or 640,
                              height=request.height or 480, fps=int(request.fps or 60))
        except ValueError as exc:  # find_mode lists the supported modes
            raise UnsupportedMode(str(exc)) from None
        except CameraNotFoundError as exc:
            raise DeviceNotFound(str(exc)) from None
        return Ps3EyeCamera(device, eye)
