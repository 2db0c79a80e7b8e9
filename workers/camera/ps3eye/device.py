"""PS3 Eye control over pyusb: discovery, bridge and sensor registers, init, modes, controls.

Typical use (the backend is ``None`` for the system's libusb, or a
:class:`~.fake.FakeUSBBackend` in tests)::

    camera = open_camera(backend, index=0, width=320, height=240, fps=187)
    camera.set_gain(20)
    ...                      # stream with stream.CameraStream(camera, sink)
    camera.close()

Ownership: a :class:`PS3Eye` owns its pyusb device handle and the claim on
interface 0 from :meth:`PS3Eye.open` until :meth:`PS3Eye.close`. Register
access is serialised by a lock, so controls may be set from another thread
while the reader thread streams; bulk reads do not take the lock.
"""

from __future__ import annotations

import array
import errno
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import usb.core
import usb.util

from . import registers as r
from .registers import Mode, RegisterTable

CONTROL_TIMEOUT_MS = 500
SCCB_STATUS_POLLS = 5
_LIBUSB_ERROR_NO_DEVICE = -4


class CameraNotFoundError(LookupError):
    """No PS3 Eye matched; the message lists the USB devices that were found."""


class SensorError(IOError):
    """The sensor did not answer over SCCB, or is not an OV772x."""


def is_disconnect(error: BaseException) -> bool:
    """True if a pyusb error means the device is gone (libusb NO_DEVICE / ENODEV)."""
    return isinstance(error, usb.core.USBError) and (
        error.errno == errno.ENODEV or error.backend_error_code == _LIBUSB_ERROR_NO_DEVICE)


# -- discovery -------------------------------------------------------------------------

def describe_device(device: usb.core.Device) -> str:
    """``vvvv:pppp bus B address A`` plus the product string when it can be read."""
    text = f"{device.idVendor:04x}:{device.idProduct:04x} bus {device.bus} address {device.address}"
    try:
        product = usb.util.get_string(device, device.iProduct) if device.iProduct else None
    except (usb.core.USBError, ValueError, NotImplementedError):
        product = None  # no permission to open it, or no strings: the ids are enough
    finally:
        usb.util.dispose_resources(device)
    return f"{text} ({product})" if product else text


def list_usb_devices(backend: Any = None) -> list[str]:
    """One description per USB device the backend sees (for error messages)."""
    try:
        devices = list(usb.core.find(find_all=True, backend=backend))
    except usb.core.NoBackendError:
        return []
    return [describe_device(device) for device in devices]


def find_cameras(backend: Any = None) -> list[usb.core.Device]:
    """All PS3 Eyes (1415:2000), ordered by bus and port path so indexes are stable."""
    try:
        found = usb.core.find(find_all=True, idVendor=r.VENDOR_ID, idProduct=r.PRODUCT_ID,
                              backend=backend)
    except usb.core.NoBackendError as error:
        raise CameraNotFoundError(
            "no PS3 Eye: pyusb found no USB backend (install libusb-1.0)") from error
    return sorted(found, key=lambda d: (d.bus or 0, tuple(d.port_numbers or ()), d.address or 0))


def open_camera(backend: Any = None, *, index: int = 0, width: int = 640, height: int = 480,
                fps: int = 60, **options: Any) -> PS3Eye:
    """Find the ``index``-th PS3 Eye, open it, initialise it and select the mode.

    The mode is validated first (ValueError listing supported modes) so a bad
    request never touches the device. ``options`` go to :class:`PS3Eye`.
    Raises CameraNotFoundError listing the USB devices present.
    """
    mode = r.find_mode(width, height, fps)
    cameras = find_cameras(backend)
    if index >= len(cameras):
        present = list_usb_devices(backend)
        listing = "; ".join(present) if present else "no USB devices at all"
        raise CameraNotFoundError(
            f"PS3 Eye #{index} (USB {r.VENDOR_ID:04x}:{r.PRODUCT_ID:04x}) not found: "
            f"{len(cameras)} PS3 Eye(s) present. USB devices found: {listing}")
    camera = PS3Eye(cameras[index], **options)
    try:
        camera.open()
        camera.initialize()
        camera.set_mode(mode.width, mode.height, mode.fps)
    except BaseException:
        camera.close()
        raise
    return camera


# -- the camera ------------------------------------------------------------------------

@dataclass(slots=True)
class CameraControls:
    """Control values, kept across start/stop and applied at every start."""

    gain: int = 20  # 0..63
    exposure: int = 120  # 0..255
    auto_gain: bool = False  # sensor AGC + AEC
    auto_white_balance: bool = False
    flip_horizontal: bool = False
    flip_vertical: bool = False


@dataclass(slots=True)
class _State:
    opened: bool = False
    initialized: bool = False
    streaming: bool = False
    sensor_id: int | None = None
    register_buffer: array.array = field(default_factory=lambda: array.array("B", [0]))


class PS3Eye:
    """One PS3 Eye: register access, init, mode, controls, start/stop, bulk reads."""

    def __init__(self, device: usb.core.Device, *, control_timeout_ms: int = CONTROL_TIMEOUT_MS,
                 bridge_reset_wait_s: float = 0.1, sensor_reset_wait_s: float = 0.01) -> None:
        self.device = device
        self.control_timeout_ms = control_timeout_ms
        self.bridge_reset_wait_s = bridge_reset_wait_s
        self.sensor_reset_wait_s = sensor_reset_wait_s
        self.mode: Mode = r.find_mode(640, 480, 60)
        self.controls = CameraControls()
        self._state = _State()
        self._lock = threading.RLock()
        self._endpoint: Any = None

    @property
    def port_path(self) -> str:
        """``bus-port.port...``: the stable identity of a camera (PS3 Eyes have no serial)."""
        ports = ".".join(str(p) for p in (self.device.port_numbers or ()))
        return f"{self.device.bus}-{ports}" if ports else f"{self.device.bus}-@{self.device.address}"

    @property
    def sensor_id(self) -> int | None:
        return self._state.sensor_id

    @property
    def streaming(self) -> bool:
        return self._state.streaming

    def __enter__(self) -> PS3Eye:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- lifecycle --------------------------------------------------------------------

    def open(self) -> None:
        """Configure if needed, take interface 0 from any kernel driver, claim it."""
        try:
            self.device.get_active_configuration()
        except usb.core.USBError:
            self.device.set_configuration()
        try:
            if self.device.is_kernel_driver_active(r.VIDEO_INTERFACE):
                self.device.detach_kernel_driver(r.VIDEO_INTERFACE)  # gspca_ov534 on Linux
        except NotImplementedError:
            pass  # backends without kernel drivers (Windows, macOS)
        usb.util.claim_interface(self.device, r.VIDEO_INTERFACE)
        interface = self.device.get_active_configuration()[(r.VIDEO_INTERFACE, 0)]
        self._endpoint = usb.util.find_descriptor(
            interface,
            custom_match=lambda e: (
                usb.util.endpoint_direction(e.bEndpointAddress) == usb.util.ENDPOINT_IN
                and usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK))
        if self._endpoint is None:
            raise IOError(f"PS3 Eye {self.port_path}: no bulk IN endpoint on interface 0")
        self._state.opened = True

    def initialize(self) -> None:
        """Reset bridge and sensor, check the sensor id, load both init tables.

        Leaves the stream stopped (0xE0 = 0x09) and the LED off.
        """
        with self._lock:
            self.bridge_write(r.BRIDGE_SYSTEM, r.SYSTEM_RESET_VALUE)
            self.bridge_write(r.BRIDGE_STREAM_CONTROL, r.STREAM_RESET)
            time.sleep(self.bridge_reset_wait_s)
            self.bridge_write(r.SCCB_ADDRESS, r.SENSOR_SCCB_ADDRESS)
            self.sccb_write(r.SENSOR_COM7, r.COM7_RESET)
            time.sleep(self.sensor_reset_wait_s)
            # Both reference drivers read each id register twice: the first read
            # after a sensor reset may return a stale byte.
            self.sccb_read(r.SENSOR_PID)
            pid = self.sccb_read(r.SENSOR_PID)
            self.sccb_read(r.SENSOR_VER)
            sensor_id = pid << 8 | self.sccb_read(r.SENSOR_VER)
            self._state.sensor_id = sensor_id
            if pid != r.SENSOR_FAMILY_OV772X:
                raise SensorError(f"PS3 Eye {self.port_path}: sensor id 0x{sensor_id:04x}, "
                                  f"expected an OV772x (0x77xx, OV7725 = 0x{r.SENSOR_ID_OV7725:04x})")
            self.write_bridge_table(r.BRIDGE_INIT)
            self.set_led(True)
            self.write_sensor_table(r.SENSOR_INIT)
            self.bridge_write(r.BRIDGE_STREAM_CONTROL, r.STREAM_STOP)
            self.set_led(False)
            self._state.initialized = True

    def set_mode(self, width: int, height: int, fps: int) -> Mode:
        """Select a supported mode (ValueError lists them); applied at the next start."""
        mode = r.find_mode(width, height, fps)
        if self._state.streaming:
            raise RuntimeError(f"PS3 Eye {self.port_path}: stop the stream before changing mode")
        self.mode = mode
        return mode

    def start(self) -> None:
        """Program the mode, apply the controls, light the LED and start the stream."""
        with self._lock:
            if self._state.streaming:
                return
            if not self._state.initialized:
                raise RuntimeError(f"PS3 Eye {self.port_path}: initialize() before start()")
            size = (self.mode.width, self.mode.height)
            self.write_bridge_table(r.BRIDGE_START[size])
            self.write_sensor_table(r.SENSOR_START[size])
            rate = self.mode.rate
            self.sccb_write(r.SENSOR_CLKRC, rate.clkrc)
            self.sccb_write(r.SENSOR_COM4, rate.com4)
            self.bridge_write(r.BRIDGE_CAMERA_CLOCK, rate.camera_clock)
            self._apply_auto_gain()
            self._apply_auto_white_balance()
            self._apply_flip()
            self.set_led(True)
            self.bridge_write(r.BRIDGE_STREAM_CONTROL, r.STREAM_START)
            self._state.streaming = True

    def stop(self) -> None:
        """Stop the stream and turn the LED off; a vanished device is not an error here."""
        with self._lock:
            if not self._state.streaming:
                return
            self._state.streaming = False
            try:
                self.bridge_write(r.BRIDGE_STREAM_CONTROL, r.STREAM_STOP)
                self.set_led(False)
            except usb.core.USBError as error:
                if not is_disconnect(error):
                    raise

    def close(self) -> None:
        """Stop, release interface 0 and free pyusb's handle. Safe to call twice."""
        try:
            self.stop()
        finally:
            if self._state.opened:
                self._state.opened = False
                try:
                    usb.util.release_interface(self.device, r.VIDEO_INTERFACE)
                except usb.core.USBError:
                    pass  # already gone
            usb.util.dispose_resources(self.device)

    def read(self, buffer: array.array, timeout_ms: int) -> int:
        """One bulk read from endpoint 0x81 into ``buffer``; returns the byte count.

        Raises usb.core.USBTimeoutError when nothing arrived in time and
        usb.core.USBError otherwise (see :func:`is_disconnect`).
        """
        return self._endpoint.read(buffer, timeout_ms)

    # -- controls -----------------------------------------------------------------------

    def set_gain(self, gain: int) -> None:
        """Manual analog gain, 0..63 (used while auto gain is off)."""
        _check_range("gain", gain, 0, 63)
        self.controls.gain = gain
        self._apply_if_live(self._apply_gain)

    def set_exposure(self, exposure: int) -> None:
        """Manual exposure, 0..255 (used while auto gain is off)."""
        _check_range("exposure", exposure, 0, 255)
        self.controls.exposure = exposure
        self._apply_if_live(self._apply_exposure)

    def set_auto_gain(self, enabled: bool) -> None:
        """Sensor automatic gain and exposure; turning it off restores the manual values."""
        self.controls.auto_gain = enabled
        self._apply_if_live(self._apply_auto_gain)

    def set_auto_white_balance(self, enabled: bool) -> None:
        self.controls.auto_white_balance = enabled
        self._apply_if_live(self._apply_auto_white_balance)

    def set_flip(self, *, horizontal: bool, vertical: bool) -> None:
        self.controls.flip_horizontal = horizontal
        self.controls.flip_vertical = vertical
        self._apply_if_live(self._apply_flip)

    def _apply_if_live(self, apply: Any) -> None:
        with self._lock:
            if self._state.initialized:
                apply()

    def _apply_gain(self) -> None:
        # The top two bits of the 6-bit gain select a coarse range, which the
        # sensor takes as a thermometer code in bits 4-7 (ov534.c setgain).
        gain = self.controls.gain
        coarse = {0x00: 0x00, 0x10: 0x30, 0x20: 0x70, 0x30: 0xF0}[gain & 0x30]
        self.sccb_write(r.SENSOR_GAIN, coarse | (gain & 0x0F))

    def _apply_exposure(self) -> None:
        # The 8-bit value is half of the 16-bit AEC value: MSB in AECH, LSB in AEC.
        exposure = self.controls.exposure
        self.sccb_write(r.SENSOR_AECH, exposure >> 7)
        self.sccb_write(r.SENSOR_AEC, (exposure << 1) & 0xFF)

    def _apply_auto_gain(self) -> None:
        enabled = self.controls.auto_gain
        self._sccb_update(r.SENSOR_COM8, r.COM8_AGC | r.COM8_AEC, enabled)
        self._sccb_update(r.SENSOR_DSP_CTRL1, r.DSP_CTRL1_AUTO_GAIN, enabled)
        if not enabled:
            self._apply_gain()
            self._apply_exposure()

    def _apply_auto_white_balance(self) -> None:
        enabled = self.controls.auto_white_balance
        self._sccb_update(r.SENSOR_COM8, r.COM8_AWB, enabled)
        self._sccb_update(r.SENSOR_AWB_CTRL0, r.AWB_CTRL0_ENABLE, enabled)

    def _apply_flip(self) -> None:
        value = self.sccb_read(r.SENSOR_COM3) & ~(r.COM3_VFLIP_OFF | r.COM3_HFLIP_OFF)
        if not self.controls.flip_horizontal:
            value |= r.COM3_HFLIP_OFF
        if not self.controls.flip_vertical:
            value |= r.COM3_VFLIP_OFF
        self.sccb_write(r.SENSOR_COM3, value)

    def set_led(self, on: bool) -> None:
        """The red LED: bridge 0x21 bit 7 makes the pin an output, 0x23 bit 7 drives it."""
        with self._lock:
            self.bridge_write(r.BRIDGE_LED_DIRECTION,
                              self.bridge_read(r.BRIDGE_LED_DIRECTION) | r.LED_BIT)
            output = self.bridge_read(r.BRIDGE_LED_OUTPUT)
            self.bridge_write(r.BRIDGE_LED_OUTPUT,
                              output | r.LED_BIT if on else output & ~r.LED_BIT)
            if not on:
                self.bridge_write(r.BRIDGE_LED_DIRECTION,
                                  self.bridge_read(r.BRIDGE_LED_DIRECTION) & ~r.LED_BIT)

    # -- registers ------------------------------------------------------------------------

    def bridge_write(self, register: int, value: int) -> None:
        with self._lock:
            buffer = self._state.register_buffer
            buffer[0] = value & 0xFF
            sent = self.device.ctrl_transfer(r.REQUEST_TYPE_WRITE, r.REQUEST_REGISTER, 0,
                                             register, buffer, self.control_timeout_ms)
            if sent != 1:
                raise IOError(f"PS3 Eye {self.port_path}: bridge write 0x{register:02x} sent {sent} bytes")

    def bridge_read(self, register: int) -> int:
        with self._lock:
            buffer = self._state.register_buffer
            received = self.device.ctrl_transfer(r.REQUEST_TYPE_READ, r.REQUEST_REGISTER, 0,
                                                 register, buffer, self.control_timeout_ms)
            if received != 1:
                raise IOError(f"PS3 Eye {self.port_path}: bridge read 0x{register:02x} got {received} bytes")
            return buffer[0]

    def sccb_write(self, register: int, value: int) -> None:
        with self._lock:
            self.bridge_write(r.SCCB_SUBADDRESS, register)
            self.bridge_write(r.SCCB_WRITE_DATA, value)
            self.bridge_write(r.SCCB_OPERATION, r.SCCB_OP_WRITE_3)
            self._sccb_wait(f"write 0x{register:02x}")

    def sccb_read(self, register: int) -> int:
        with self._lock:
            self.bridge_write(r.SCCB_SUBADDRESS, register)
            self.bridge_write(r.SCCB_OPERATION, r.SCCB_OP_WRITE_2)
            self._sccb_wait(f"read 0x{register:02x} (address phase)")
            self.bridge_write(r.SCCB_OPERATION, r.SCCB_OP_READ_2)
            self._sccb_wait(f"read 0x{register:02x} (data phase)")
            return self.bridge_read(r.SCCB_READ_DATA)

    def _sccb_wait(self, what: str) -> None:
        """Poll the SCCB status: 0x00 done, 0x04 failed, 0x03 (or other) still busy."""
        status = r.SCCB_STATUS_BUSY
        for _ in range(SCCB_STATUS_POLLS):
            status = self.bridge_read(r.SCCB_STATUS)
            if status == r.SCCB_STATUS_OK:
                return
            if status == r.SCCB_STATUS_FAIL:
                raise SensorError(f"PS3 Eye {self.port_path}: SCCB {what} failed (status 0x04)")
        raise SensorError(f"PS3 Eye {self.port_path}: SCCB {what} still busy after "
                          f"{SCCB_STATUS_POLLS} polls (status 0x{status:02x})")

    def _sccb_update(self, register: int, bits: int, enabled: bool) -> None:
        value = self.sccb_read(register)
        self.sccb_write(register, value | bits if enabled else value & ~bits & 0xFF)

    def write_bridge_table(self, table: RegisterTable) -> None:
        for register, value in table:
            self.bridge_write(register, value)

    def write_sensor_table(self, table: RegisterTable) -> None:
        for register, value in table:
            self.sccb_write(register, value)


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")
