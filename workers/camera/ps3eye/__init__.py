"""PS3 Eye (OV534 bridge + OV7725 sensor) over raw USB with pyusb.

Modules, each with one job:

* :mod:`.registers` - register map, init tables, supported modes (pure data);
* :mod:`.device` - discovery, register/SCCB access, init, modes, controls;
* :mod:`.assembler` - payload parsing and frame assembly into a FrameSink;
* :mod:`.stream` - the reader thread that keeps bulk reads back to back;
* :mod:`.fake` - a pyusb backend emulating the camera, for tests and benches.
"""

from .assembler import FrameAssembler, FrameSink, StreamCounters
from .device import (
    CameraControls, CameraNotFoundError, PS3Eye, SensorError, find_cameras, is_disconnect,
    list_usb_devices, open_camera,
)
from .registers import SUPPORTED_MODES, Mode, describe_modes, find_mode
from .stream import CameraStream, StreamState

__all__ = [
    "CameraControls", "CameraNotFoundError", "CameraStream", "FrameAssembler", "FrameSink",
    "Mode", "PS3Eye", "SUPPORTED_MODES", "SensorError", "StreamCounters", "StreamState",
    "describe_modes", "find_cameras", "find_mode", "is_disconnect", "list_usb_devices",
    "open_camera",
]
