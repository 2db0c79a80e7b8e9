"""A fake pyusb backend that emulates PS3 Eye cameras at pyusb's own backend seam.

:class:`FakeUSBBackend` implements :class:`usb.backend.IBackend`, so the real
driver finds and drives a camera with ordinary pyusb calls::

    camera = FakePS3Eye()
    backend = FakeUSBBackend([camera])
    usb.core.find(idVendor=0x1415, idProduct=0x2000, backend=backend)

What :class:`FakePS3Eye` emulates. It follows REFERENCE.md section 3 and
shares only register names and the mode/rate table with the driver (to tell
which mode was programmed); the payload format is written out here on its
own, and the tests pin the register values that matter literally:

* descriptors: interface 0 vendor-specific with bulk IN 0x81, plus the
  microphone's audio interfaces 1 and 2; English string descriptors;
* the OV534 register file over vendor control transfers, with the
  video-format bank at 0x1C/0x1D from which it takes payload and frame size;
* the SCCB master: operations 0x37/0x33/0xF9 at 0xF5, status at 0xF6 reading
  busy (0x03) for ``sccb_busy_polls`` polls, then ok (0x00) or fail (0x04);
* the OV7725 register file: ID 0x7721 at 0x0A/0x0B, reset via COM7 bit 7;
* a bulk stream once 0xE0 is written 0x00 (stopped by 0x08/0x09): frame k
  holds :func:`frame_pixels` ``(k, frame_bytes)``, FID = k & 1, PTS advances by
  one frame interval of the programmed rate at ``pts_clock_hz``. A bulk read
  returns when its buffer is full or at a USB short packet, as on hardware;
* injectable :class:`Fault` s, and :meth:`FakePS3Eye.disconnect`.

Every bridge and sensor write is logged (``bridge_writes``, ``sensor_writes``)
for tests to inspect. The fake is thread-safe for one reader thread plus one
control thread.
"""

from __future__ import annotations

import array
import enum
import errno
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import usb.backend
import usb.core

from . import registers

DEFAULT_PTS_CLOCK_HZ = 48_000_000  # same assumption as the assembler; see assembler.py
_HEADER_BYTES = 12
_EOH, _ERR, _PTS, _EOF, _FID = 0x80, 0x40, 0x04, 0x02, 0x01
_MAX_PACKET_BYTES = 512
_IDLE_TIMEOUT_CAP_S = 0.005  # an idle read "times out" after at most this, to keep tests fast
_PIXEL_MODULUS = 251  # prime, so the ramp never lines up with payload or row sizes

# libusb error codes, as pyusb's libusb1 backend raises them.
_LIBUSB_ERROR_BUSY = -6
_LIBUSB_ERROR_NO_DEVICE = -4
_LIBUSB_ERROR_TIMEOUT = -7
_LIBUSB_ERROR_PIPE = -9


def _no_device() -> usb.core.USBError:
    return usb.core.USBError("No such device (it may have been disconnected)",
                             _LIBUSB_ERROR_NO_DEVICE, errno.ENODEV)


def _timeout() -> usb.core.USBTimeoutError:
    return usb.core.USBTimeoutError("Operation timed out", _LIBUSB_ERROR_TIMEOUT, errno.ETIMEDOUT)


def _pipe_error() -> usb.core.USBError:
    return usb.core.USBError("Pipe error", _LIBUSB_ERROR_PIPE, errno.EPIPE)


def frame_pixels(frame_number: int, frame_bytes: int) -> np.ndarray:
    """The bytes of frame ``frame_number``: a ramp shifted per frame, number stamped in front.

    Bytes 0-3 hold the frame number (u32 little-endian); byte i >= 4 is
    ``(i + 37 * frame_number) % 251``. Tests rebuild this to check every
    delivered frame byte for byte.
    """
    ramp = np.arange(frame_bytes, dtype=np.int64)
    pixels = ((ramp + 37 * frame_number) % _PIXEL_MODULUS).astype(np.uint8)
    pixels[:4] = np.frombuffer((frame_number & 0xFFFFFFFF).to_bytes(4, "little"), np.uint8)
    return pixels


def frame_number_of(frame: np.ndarray) -> int:
    """The frame number stamped by :func:`frame_pixels` into a frame's first bytes."""
    return int.from_bytes(frame[:4].tobytes(), "little")


class FaultKind(enum.Enum):
    ERROR_FLAG = "error_flag"  # payload `payload` carries ERR
    NO_PTS = "no_pts"  # payload `payload` lacks the PTS flag
    BAD_HEADER = "bad_header"  # payload `payload` has header length 11
    MISSING_EOF = "missing_eof"  # last payload lacks EOF
    SHORT_FRAME = "short_frame"  # payload `payload` is dropped: EOF arrives with too few bytes
    LONG_FRAME = "long_frame"  # payload `payload` is sent twice: too many bytes
    FID_TOGGLE = "fid_toggle"  # FID flips from payload `payload` on, PTS unchanged
    READ_TIMEOUT = "read_timeout"  # `count` bulk reads time out before the frame
    DISCONNECT = "disconnect"  # the camera is unplugged before the frame


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault, applied to frame number ``frame`` of the stream."""

    kind: FaultKind
    frame: int
    payload: int = 1
    count: int = 1


class _Descriptor(SimpleNamespace):
    """A descriptor: pyusb reads its fields as attributes."""


def _endpoint(address: int, attributes: int, max_packet: int, interval: int = 0) -> _Descriptor:
    return _Descriptor(bLength=7, bDescriptorType=5, bEndpointAddress=address,
                       bmAttributes=attributes, wMaxPacketSize=max_packet, bInterval=interval,
                       bRefresh=0, bSynchAddress=0, extra_descriptors=[])


def _interface(number: int, alternate: int, cls: int, subclass: int,
               endpoints: Sequence[_Descriptor], string_index: int = 0) -> _Descriptor:
    return _Descriptor(bLength=9, bDescriptorType=4, bInterfaceNumber=number,
                       bAlternateSetting=alternate, bNumEndpoints=len(endpoints),
                       bInterfaceClass=cls, bInterfaceSubClass=subclass, bInterfaceProtocol=0,
                       iInterface=string_index, extra_descriptors=[], endpoints=list(endpoints))


class FakeDevice:
    """A plugged-in USB device with descriptors and strings but no function.

    ``interfaces[i][alt]`` holds interface descriptors (with their
    ``endpoints``) of the single configuration, value 1.
    """

    def __init__(self, vendor_id: int, product_id: int, *, bus: int = 1, address: int = 2,
                 manufacturer: str = "", product: str = "", serial: str = "",
                 interfaces: Sequence[Sequence[_Descriptor]] = ()) -> None:
        self.bus = bus
        self.address = address
        self.strings = {1: manufacturer, 2: product, 3: serial}
        self.interfaces = [list(alts) for alts in interfaces]
        self.device_descriptor = _Descriptor(
            bLength=18, bDescriptorType=1, bcdUSB=0x0200, bDeviceClass=0, bDeviceSubClass=0,
            bDeviceProtocol=0, bMaxPacketSize0=64, idVendor=vendor_id, idProduct=product_id,
            bcdDevice=0x0100, iManufacturer=1 if manufacturer else 0,
            iProduct=2 if product else 0, iSerialNumber=3 if serial else 0,
            bNumConfigurations=1, bus=bus, address=address, port_number=address,
            port_numbers=(address,), speed=3)  # pyusb util.SPEED_HIGH
        self.configuration_descriptor = _Descriptor(
            bLength=9, bDescriptorType=2, wTotalLength=0, bNumInterfaces=len(self.interfaces),
            bConfigurationValue=1, iConfiguration=0, bmAttributes=0x80, bMaxPower=250,
            extra_descriptors=[])
        self.connected = True
        self.configuration = 1  # the OS configured it when it was plugged in
        self.claimed: set[int] = set()
        self.kernel_driver_bound: set[int] = set()

    def check_connected(self) -> None:
        if not self.connected:
            raise _no_device()

    def control(self, request_type: int, request: int, value: int, index: int,
                data: array.array) -> int:
        """Standard requests: only GET_DESCRIPTOR(string); anything else stalls."""
        if request_type == 0x80 and request == 0x06 and value >> 8 == 0x03:
            string_index = value & 0xFF
            if string_index == 0:
                payload = bytes([4, 3, 0x09, 0x04])  # LANGID en-US
            elif self.strings.get(string_index):
                text = self.strings[string_index].encode("utf-16-le")
                payload = bytes([2 + len(text), 3]) + text
            else:
                raise _pipe_error()
            count = min(len(data), len(payload))
            data[:count] = array.array("B", payload[:count])
            return count
        raise _pipe_error()

    def bulk_read(self, endpoint: int, buffer: array.array, timeout_ms: int) -> int:
        raise _pipe_error()


class FakePS3Eye(FakeDevice):
    """Register-level model of one PS3 Eye (OV534 + OV7725); see the module docstring."""

    def __init__(self, *, bus: int = 1, address: int = 4, serial: str = "",
                 faults: Iterable[Fault] = (), frame_limit: int | None = None,
                 realtime: bool = False, pts_clock_hz: int = DEFAULT_PTS_CLOCK_HZ,
                 first_pts: int = 0x1000, sccb_busy_polls: int = 1,
                 sensor_id: int = registers.SENSOR_ID_OV7725) -> None:
        video = [_interface(0, 0, 0xFF, 0x00, [_endpoint(registers.BULK_IN_ENDPOINT, 0x02, 512)])]
        audio_control = [_interface(1, 0, 0x01, 0x01, [])]
        audio_stream = [_interface(2, 0, 0x01, 0x02, []),
                        _interface(2, 1, 0x01, 0x02, [_endpoint(0x84, 0x05, 0x00C4, 1)])]
        super().__init__(registers.VENDOR_ID, registers.PRODUCT_ID, bus=bus, address=address,
                         manufacturer="OmniVision Technologies, Inc.",
                         product="USB Camera-B4.09.24.1", serial=serial,
                         interfaces=[video, audio_control, audio_stream])
        self.faults = list(faults)
        self.frame_limit = frame_limit
        self.realtime = realtime
        self.pts_clock_hz = pts_clock_hz
        self.first_pts = first_pts
        self.sccb_busy_polls = sccb_busy_polls
        self.sensor_id = sensor_id
        self.sensor_nack = False  # set True to make every SCCB operation fail (0x04)
        self.bridge_writes: list[tuple[int, int]] = []
        self.sensor_writes: list[tuple[int, int]] = []
        self.frames_started = 0  # frames whose first byte left the device
        self.timeouts_raised = 0
        self._lock = threading.Lock()
        self._power_on()

    # -- state -----------------------------------------------------------------------

    def _power_on(self) -> None:
        self.bridge = bytearray(256)
        self.bridge[registers.BRIDGE_STREAM_CONTROL] = registers.STREAM_STOP
        self.video_format = bytearray(256)  # the bank behind 0x1C/0x1D
        self._video_format_index = 0
        self._reset_sensor()
        self._sccb_polls_left = 0
        self._sccb_status = registers.SCCB_STATUS_OK
        self.streaming = False
        self.next_frame = 0
        self._stream = np.zeros(0, np.uint8)
        self._stream_pos = 0
        self._stream_boundaries: list[int] = []
        self._pending_timeouts: dict[int, int] = {}
        self._stream_t0 = 0.0
        self._stream_first_frame = 0

    def _reset_sensor(self) -> None:
        self.sensor = bytearray(256)
        self.sensor[registers.SENSOR_PID] = self.sensor_id >> 8
        self.sensor[registers.SENSOR_VER] = self.sensor_id & 0xFF
        self.sensor[registers.SENSOR_COM8] = 0xCF
        self.sensor[registers.SENSOR_AWB_CTRL0] = 0xAA
        self.sensor[registers.SENSOR_DSP_CTRL1] = 0xFF
        self.sensor[registers.SENSOR_COM3] = 0x10

    @property
    def led_on(self) -> bool:
        return bool(self.bridge[registers.BRIDGE_LED_DIRECTION] & registers.LED_BIT
                    and self.bridge[registers.BRIDGE_LED_OUTPUT] & registers.LED_BIT)

    @property
    def payload_bytes(self) -> int:
        """Payload size programmed in the video-format bank (bytes 1-2, times 4)."""
        return ((self.video_format[1] << 8) | self.video_format[2]) * 4

    @property
    def frame_bytes(self) -> int:
        """Frame size programmed in the video-format bank (bytes 3-5, times 4)."""
        vf = self.video_format
        return ((vf[3] << 16) | (vf[4] << 8) | vf[5]) * 4

    @property
    def configured_mode(self) -> registers.Mode | None:
        """The mode whose size and rate registers are all programmed, if any."""
        qvga = bool(self.sensor[registers.SENSOR_COM7] & 0x40)
        size = (320, 240) if qvga else (640, 480)
        if size[0] * size[1] != self.frame_bytes:
            return None
        programmed = registers.RateRegisters(self.sensor[registers.SENSOR_CLKRC],
                                             self.sensor[registers.SENSOR_COM4],
                                             self.bridge[registers.BRIDGE_CAMERA_CLOCK])
        for fps, rate in registers.RATES[size].items():
            if rate == programmed:
                return registers.Mode(size[0], size[1], fps)
        return None

    @property
    def exhausted(self) -> bool:
        """True once all ``frame_limit`` frames have been read out to the last byte."""
        with self._lock:
            return (self.frame_limit is not None and self.next_frame >= self.frame_limit
                    and self._stream_pos >= len(self._stream))

    def disconnect(self) -> None:
        """Unplug: the device leaves enumeration and every call on it fails with ENODEV."""
        with self._lock:
            self.connected = False
            self.streaming = False

    def reconnect(self, address: int | None = None) -> None:
        """Plug back in (power-on state, optionally at a new address)."""
        with self._lock:
            if address is not None:
                self.address = address
                self.device_descriptor.address = address
            self.claimed.clear()
            self.configuration = 1
            self._power_on()
            self.connected = True

    def frame_pts(self, frame_number: int) -> int:
        """The raw 32-bit PTS the fake stamps on frame ``frame_number``."""
        mode = self.configured_mode
        fps = mode.fps if mode is not None else 30
        return (self.first_pts + frame_number * self.pts_clock_hz // fps) & 0xFFFFFFFF

    # -- control endpoint ------------------------------------------------------------

    def control(self, request_type: int, request: int, value: int, index: int,
                data: array.array) -> int:
        if request != registers.REQUEST_REGISTER or request_type not in (
                registers.REQUEST_TYPE_WRITE, registers.REQUEST_TYPE_READ):
            return super().control(request_type, request, value, index, data)
        if value != 0 or index > 0xFF or len(data) != 1:
            raise _pipe_error()
        with self._lock:
            if request_type == registers.REQUEST_TYPE_WRITE:
                self._bridge_write(index, data[0])
            else:
                data[0] = self._bridge_read(index)
        return 1

    def _bridge_read(self, register: int) -> int:
        if register == registers.SCCB_STATUS:
            if self._sccb_polls_left > 0:
                self._sccb_polls_left -= 1
                return registers.SCCB_STATUS_BUSY
            return self._sccb_status
        return self.bridge[register]

    def _bridge_write(self, register: int, value: int) -> None:
        self.bridge_writes.append((register, value))
        self.bridge[register] = value
        if register == registers.BRIDGE_VIDEO_FORMAT_INDEX:
            self._video_format_index = value
        elif register == registers.BRIDGE_VIDEO_FORMAT_DATA:
            self.video_format[self._video_format_index & 0xFF] = value
            self._video_format_index += 1
        elif register == registers.SCCB_OPERATION:
            self._sccb_operation(value)
        elif register == registers.BRIDGE_STREAM_CONTROL:
            if value == registers.STREAM_START:
                self._start_stream()
            else:
                self.streaming = False
                self._stream_pos = len(self._stream)  # the FIFO is flushed

    def _sccb_operation(self, operation: int) -> None:
        ok = (not self.sensor_nack
              and self.bridge[registers.SCCB_ADDRESS] == registers.SENSOR_SCCB_ADDRESS)
        subaddress = self.bridge[registers.SCCB_SUBADDRESS]
        if ok and operation == registers.SCCB_OP_WRITE_3:
            self._sensor_write(subaddress, self.bridge[registers.SCCB_WRITE_DATA])
        elif ok and operation == registers.SCCB_OP_WRITE_2:
            pass  # latches the subaddress for the read that follows
        elif ok and operation == registers.SCCB_OP_READ_2:
            self.bridge[registers.SCCB_READ_DATA] = self.sensor[subaddress]
        else:
            ok = False
        self._sccb_status = registers.SCCB_STATUS_OK if ok else registers.SCCB_STATUS_FAIL
        self._sccb_polls_left = self.sccb_busy_polls

    def _sensor_write(self, register: int, value: int) -> None:
        self.sensor_writes.append((register, value))
        if register in (registers.SENSOR_PID, registers.SENSOR_VER):
            return  # read-only
        if register == registers.SENSOR_COM7 and value & registers.COM7_RESET:
            self._reset_sensor()
            return
        self.sensor[register] = value

    # -- bulk stream -----------------------------------------------------------------

    def _start_stream(self) -> None:
        self.streaming = self.payload_bytes > _HEADER_BYTES and self.frame_bytes > 0
        self._stream_t0 = time.monotonic()
        self._stream_first_frame = self.next_frame
        self._pending_timeouts = {f.frame: f.count for f in self.faults
                                  if f.kind is FaultKind.READ_TIMEOUT}

    def bulk_read(self, endpoint: int, buffer: array.array, timeout_ms: int) -> int:
        """Fill ``buffer`` up to its end or a short packet; time out if nothing comes."""
        if endpoint != registers.BULK_IN_ENDPOINT:
            raise _pipe_error()
        target = memoryview(buffer).cast("B")
        deadline = time.monotonic() + timeout_ms / 1000
        written = 0
        while written < len(target):
            with self._lock:
                self.check_connected()
                if not self.streaming:
                    break
                wait_s = 0.0
                if self._stream_pos >= len(self._stream):
                    next_wait_s = self._prepare_next_frame(may_raise=written == 0)
                    if next_wait_s is None:
                        break
                    wait_s = next_wait_s
                if wait_s == 0.0:
                    written, transfer_ended = self._copy_out(target, written)
                    if transfer_ended:
                        break
                    continue
            # Realtime pacing: the next frame is not due yet; wait outside the lock.
            remaining_s = deadline - time.monotonic()
            if written or remaining_s <= 0:
                break
            time.sleep(min(wait_s, remaining_s))
        if written == 0:
            self.timeouts_raised += 1
            time.sleep(max(0.0, min(deadline - time.monotonic(), _IDLE_TIMEOUT_CAP_S)))
            raise _timeout()
        return written

    def _copy_out(self, target: memoryview, written: int) -> tuple[int, bool]:
        """Copy stream bytes up to the next transfer boundary; True if it was reached."""
        boundary = next(b for b in self._stream_boundaries if b > self._stream_pos)
        take = min(len(target) - written, boundary - self._stream_pos)
        target[written:written + take] = self._stream[self._stream_pos:self._stream_pos + take].data
        self._stream_pos += take
        return written + take, self._stream_pos == boundary

    def _prepare_next_frame(self, *, may_raise: bool) -> float | None:
        """Build the next frame's bytes. None: nothing to send now; > 0: seconds until due.

        Called with the lock held. Raises injected timeouts and disconnects
        only at the start of a read (``may_raise``), as a whole transfer fails.
        """
        number = self.next_frame
        if self.frame_limit is not None and number >= self.frame_limit:
            return None
        if self._pending_timeouts.get(number, 0) > 0:
            if not may_raise:
                return None
            self._pending_timeouts[number] -= 1
            self.timeouts_raised += 1
            raise _timeout()
        if any(f.kind is FaultKind.DISCONNECT and f.frame == number for f in self.faults):
            if not may_raise:
                return None
            self.connected = False
            self.streaming = False
            raise _no_device()
        if self.realtime:
            mode = self.configured_mode
            fps = mode.fps if mode is not None else 30
            due = self._stream_t0 + (number - self._stream_first_frame) / fps
            wait_s = due - time.monotonic()
            if wait_s > 0:
                return wait_s
        self._stream, self._stream_boundaries = self._build_frame(number)
        self._stream_pos = 0
        self.next_frame += 1
        self.frames_started += 1
        return 0.0

    def _build_frame(self, number: int) -> tuple[np.ndarray, list[int]]:
        """Frame ``number`` as payload bytes, and the offsets where a transfer must end."""
        payload_bytes = self.payload_bytes
        data_bytes = payload_bytes - _HEADER_BYTES
        frame_bytes = self.frame_bytes
        count = -(-frame_bytes // data_bytes)
        rows = np.zeros((count, payload_bytes), np.uint8)
        padded = np.zeros(count * data_bytes, np.uint8)
        padded[:frame_bytes] = frame_pixels(number, frame_bytes)
        rows[:, _HEADER_BYTES:] = padded.reshape(count, data_bytes)
        rows[:, 0] = _HEADER_BYTES
        rows[:, 1] = _EOH | _PTS | (number & 1)
        rows[:, 2:6] = np.frombuffer(self.frame_pts(number).to_bytes(4, "little"), np.uint8)
        rows[-1, 1] |= _EOF
        lengths = [payload_bytes] * (count - 1) + [_HEADER_BYTES + frame_bytes - (count - 1) * data_bytes]

        for fault in self.faults:
            if fault.frame != number:
                continue
            p = fault.payload
            if fault.kind is FaultKind.ERROR_FLAG:
                rows[p, 1] |= _ERR
            elif fault.kind is FaultKind.NO_PTS:
                rows[p, 1] &= ~_PTS & 0xFF
            elif fault.kind is FaultKind.BAD_HEADER:
                rows[p, 0] = _HEADER_BYTES - 1
            elif fault.kind is FaultKind.MISSING_EOF:
                rows[-1, 1] &= ~_EOF & 0xFF
            elif fault.kind is FaultKind.FID_TOGGLE:
                rows[p:, 1] ^= _FID
            elif fault.kind is FaultKind.SHORT_FRAME:
                rows = np.delete(rows, p, axis=0)
                del lengths[p]
            elif fault.kind is FaultKind.LONG_FRAME:
                rows = np.insert(rows, p, rows[p], axis=0)
                lengths.insert(p, payload_bytes)

        stream = np.concatenate([rows[i, :length] for i, length in enumerate(lengths)])
        boundaries, offset = [], 0
        for length in lengths:
            offset += length
            if length % _MAX_PACKET_BYTES:
                boundaries.append(offset)
        if not boundaries or boundaries[-1] != offset:
            boundaries.append(offset)  # frame end without a short packet: end the transfer anyway
        return stream, boundaries


class FakeUSBBackend(usb.backend.IBackend):
    """pyusb backend over a list of fake devices; handles are the devices themselves."""

    def __init__(self, devices: Iterable[FakeDevice] = ()) -> None:
        self.devices = list(devices)

    def enumerate_devices(self) -> list[FakeDevice]:
        return [device for device in self.devices if device.connected]

    def get_parent(self, dev: FakeDevice) -> None:
        return None

    def get_device_descriptor(self, dev: FakeDevice) -> _Descriptor:
        return dev.device_descriptor

    def get_configuration_descriptor(self, dev: FakeDevice, config: int) -> _Descriptor:
        if config != 0:
            raise IndexError(config)
        return dev.configuration_descriptor

    def get_interface_descriptor(self, dev: FakeDevice, intf: int, alt: int, config: int) -> _Descriptor:
        if config != 0:
            raise IndexError(config)
        return dev.interfaces[intf][alt]

    def get_endpoint_descriptor(self, dev: FakeDevice, ep: int, intf: int, alt: int,
                                config: int) -> _Descriptor:
        return self.get_interface_descriptor(dev, intf, alt, config).endpoints[ep]

    def open_device(self, dev: FakeDevice) -> FakeDevice:
        dev.check_connected()
        return dev

    def close_device(self, dev_handle: FakeDevice) -> None:
        dev_handle.claimed.clear()

    def set_configuration(self, dev_handle: FakeDevice, config_value: int) -> None:
        dev_handle.check_connected()
        dev_handle.configuration = config_value

    def get_configuration(self, dev_handle: FakeDevice) -> int:
        dev_handle.check_connected()
        return dev_handle.configuration

    def set_interface_altsetting(self, dev_handle: FakeDevice, intf: int, altsetting: int) -> None:
        dev_handle.check_connected()

    def claim_interface(self, dev_handle: FakeDevice, intf: int) -> None:
        dev_handle.check_connected()
        if intf in dev_handle.kernel_driver_bound:
            raise usb.core.USBError("Resource busy", _LIBUSB_ERROR_BUSY, errno.EBUSY)
        dev_handle.claimed.add(intf)

    def release_interface(self, dev_handle: FakeDevice, intf: int) -> None:
        dev_handle.check_connected()
        dev_handle.claimed.discard(intf)

    def is_kernel_driver_active(self, dev_handle: FakeDevice, intf: int) -> bool:
        dev_handle.check_connected()
        return intf in dev_handle.kernel_driver_bound

    def detach_kernel_driver(self, dev_handle: FakeDevice, intf: int) -> None:
        dev_handle.check_connected()
        dev_handle.kernel_driver_bound.discard(intf)

    def attach_kernel_driver(self, dev_handle: FakeDevice, intf: int) -> None:
        dev_handle.check_connected()
        dev_handle.kernel_driver_bound.add(intf)

    def ctrl_transfer(self, dev_handle: FakeDevice, bmRequestType: int, bRequest: int,
                      wValue: int, wIndex: int, data: array.array, timeout: int) -> Any:
        dev_handle.check_connected()
        return dev_handle.control(bmRequestType, bRequest, wValue, wIndex, data)

    def bulk_read(self, dev_handle: FakeDevice, ep: int, intf: int, buff: array.array,
                  timeout: int) -> int:
        dev_handle.check_connected()
        if intf not in dev_handle.claimed:
            raise usb.core.USBError("Interface not claimed", _LIBUSB_ERROR_BUSY, errno.EBUSY)
        return dev_handle.bulk_read(ep, buff, timeout)

    def clear_halt(self, dev_handle: FakeDevice, ep: int) -> None:
        dev_handle.check_connected()

    def reset_device(self, dev_handle: FakeDevice) -> None:
        dev_handle.check_connected()
