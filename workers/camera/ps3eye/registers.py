"""Register map, init tables and mode table of the PS3 Eye (OV534 bridge + OV7725 sensor).

Pure data: nothing here talks to a device. :mod:`.device` writes these tables,
:mod:`.fake` emulates the registers they touch.

Provenance. The bridge and sensor tables follow PS3EYEDriver's Bayer RAW8
variant (bridge video format RAW8, 2048-byte payloads, frame size
``width * height`` bytes), which is what makes the camera send 8-bit Bayer
GRBG. The frame-rate table (sensor CLKRC 0x11, COM4 0x0D, bridge 0xE5) comes
from the same variant, because rate values only hold for the PLL set up by
the matching sensor table. Linux ``gspca/ov534.c`` sends YUYV with a
different table and is used here only for the control semantics (COM8 bits,
exposure split, flip bits).

Wire facts (REFERENCE.md section 3): a bridge register is one vendor control
transfer, write ``bmRequestType 0x40`` / read ``0xC0``, ``bRequest 0x01``,
``wValue 0``, ``wIndex`` = register, one data byte. The sensor is reached
through the bridge's SCCB master (registers 0xF1-0xF6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# -- USB identity -----------------------------------------------------------------

VENDOR_ID: Final = 0x1415
PRODUCT_ID: Final = 0x2000
VIDEO_INTERFACE: Final = 0
BULK_IN_ENDPOINT: Final = 0x81

REQUEST_TYPE_WRITE: Final = 0x40  # vendor | device | host-to-device
REQUEST_TYPE_READ: Final = 0xC0  # vendor | device | device-to-host
REQUEST_REGISTER: Final = 0x01

# -- OV534 bridge registers -------------------------------------------------------

BRIDGE_LED_DIRECTION: Final = 0x21  # bit 7: LED pin is an output
BRIDGE_LED_OUTPUT: Final = 0x23  # bit 7: LED on
LED_BIT: Final = 0x80
BRIDGE_VIDEO_FORMAT_INDEX: Final = 0x1C  # selects a byte of the video-format bank
BRIDGE_VIDEO_FORMAT_DATA: Final = 0x1D  # writes the selected byte, index auto-increments
BRIDGE_STREAM_CONTROL: Final = 0xE0
STREAM_START: Final = 0x00
STREAM_STOP: Final = 0x09
STREAM_RESET: Final = 0x08
BRIDGE_SYSTEM: Final = 0xE7
SYSTEM_RESET_VALUE: Final = 0x3A
BRIDGE_CAMERA_CLOCK: Final = 0xE5

# SCCB (the sensor's I2C-like bus) through the bridge.
SCCB_ADDRESS: Final = 0xF1
SCCB_SUBADDRESS: Final = 0xF2
SCCB_WRITE_DATA: Final = 0xF3
SCCB_READ_DATA: Final = 0xF4
SCCB_OPERATION: Final = 0xF5
SCCB_STATUS: Final = 0xF6
SCCB_OP_WRITE_3: Final = 0x37  # 3-phase write: address, subaddress, data
SCCB_OP_WRITE_2: Final = 0x33  # 2-phase write: address, subaddress (sets up a read)
SCCB_OP_READ_2: Final = 0xF9  # 2-phase read: address, then data into 0xF4
SCCB_STATUS_OK: Final = 0x00
SCCB_STATUS_BUSY: Final = 0x03
SCCB_STATUS_FAIL: Final = 0x04
SENSOR_SCCB_ADDRESS: Final = 0x42

# -- OV7725 sensor registers ------------------------------------------------------

SENSOR_GAIN: Final = 0x00
SENSOR_AECH: Final = 0x08  # exposure, high bits
SENSOR_PID: Final = 0x0A
SENSOR_VER: Final = 0x0B
SENSOR_COM3: Final = 0x0C  # bit 7: vertical flip off, bit 6: horizontal mirror off
SENSOR_COM4: Final = 0x0D  # PLL
SENSOR_AEC: Final = 0x10  # exposure, low bits
SENSOR_CLKRC: Final = 0x11  # clock divider
SENSOR_COM7: Final = 0x12  # bit 7: reset, bit 6: QVGA, bit 0: raw
SENSOR_COM8: Final = 0x13  # auto-control enables
SENSOR_AWB_CTRL0: Final = 0x63
SENSOR_DSP_CTRL1: Final = 0x64
COM7_RESET: Final = 0x80
COM8_AGC: Final = 0x04
COM8_AWB: Final = 0x02
COM8_AEC: Final = 0x01
COM3_VFLIP_OFF: Final = 0x80  # the sensor is mounted upside down: "off" bits mean no flip
COM3_HFLIP_OFF: Final = 0x40
AWB_CTRL0_ENABLE: Final = 0xC0
DSP_CTRL1_AUTO_GAIN: Final = 0x03
SENSOR_ID_OV7725: Final = 0x7721  # PID 0x77, VER 0x21
SENSOR_FAMILY_OV772X: Final = 0x77

RegisterTable = tuple[tuple[int, int], ...]

BRIDGE_INIT: Final[RegisterTable] = (
    (0xE7, 0x3A),
    (SCCB_ADDRESS, SENSOR_SCCB_ADDRESS),
    (0x92, 0x01), (0x93, 0x18), (0x94, 0x10), (0x95, 0x10),
    (0xE2, 0x00), (0xE7, 0x3E),
    (0x96, 0x00),
    (0x97, 0x20), (0x97, 0x20), (0x97, 0x20), (0x97, 0x0A), (0x97, 0x3F),
    (0x97, 0x4A), (0x97, 0x20), (0x97, 0x15), (0x97, 0x0B),
    (0x8E, 0x40), (0x1F, 0x81), (0xC0, 0x50), (0xC1, 0x3C), (0xC2, 0x01),
    (0xC3, 0x01), (0x50, 0x89), (0x88, 0x08), (0x8D, 0x00), (0x8E, 0x00),
    # Video-format bank, bytes 0..5: format (0x00 = RAW8), payload size / 4
    # (0x0200 -> 2048 B), frame size / 4 (0x012C00 -> 307200 B = 640x480x1).
    (0x1C, 0x00),
    (0x1D, 0x00), (0x1D, 0x02), (0x1D, 0x00), (0x1D, 0x01), (0x1D, 0x2C), (0x1D, 0x00),
    # Bank bytes 0x0A.. : turn on the 12-byte UVC-style payload header.
    (0x1C, 0x0A),
    (0x1D, 0x08), (0x1D, 0x0E),
    (0x34, 0x05), (0xE3, 0x04), (0x89, 0x00), (0x76, 0x00), (0xE7, 0x2E),
    (0x31, 0xF9), (0x25, 0x42), (0x21, 0xF0), (0xE5, 0x04),
)

SENSOR_INIT: Final[RegisterTable] = (
    (0x12, 0x80),  # reset
    (0x3D, 0x00),
    (0x12, 0x01),  # processed Bayer RAW, 8 bit
    (0x11, 0x01), (0x14, 0x40), (0x15, 0x00),
    (0x63, 0xAA), (0x64, 0x87), (0x66, 0x00), (0x67, 0x02),
    (0x17, 0x26), (0x18, 0xA0), (0x19, 0x07), (0x1A, 0xF0),
    (0x29, 0xA0), (0x2A, 0x00), (0x2C, 0xF0), (0x20, 0x10),
    (0x4E, 0x0F), (0x3E, 0xF3), (0x0D, 0x41), (0x32, 0x00),
    (0x13, 0xF0),
    (0x22, 0x7F), (0x23, 0x03), (0x24, 0x40), (0x25, 0x30), (0x26, 0xA1),
    (0x2A, 0x00), (0x2B, 0x00),
    (0x13, 0xF7), (0x0C, 0xC0),
    (0x11, 0x00), (0x0D, 0x41),
    (0x8E, 0x00),  # de-noise threshold
)

# Per-resolution start tables. Bridge: the video-format bank again, with the
# frame size of the mode. Sensor: COM7 (QVGA bit), window and scaling.
BRIDGE_START: Final[dict[tuple[int, int], RegisterTable]] = {
    (640, 480): (
        (0x1C, 0x00),
        (0x1D, 0x00), (0x1D, 0x02), (0x1D, 0x00), (0x1D, 0x01), (0x1D, 0x2C), (0x1D, 0x00),
        (0xC0, 0x50), (0xC1, 0x3C),
    ),
    (320, 240): (
        (0x1C, 0x00),
        (0x1D, 0x00), (0x1D, 0x02), (0x1D, 0x00), (0x1D, 0x00), (0x1D, 0x4B), (0x1D, 0x00),
        (0xC0, 0x28), (0xC1, 0x1E),
    ),
}
SENSOR_START: Final[dict[tuple[int, int], RegisterTable]] = {
    (640, 480): (
        (0x12, 0x01), (0x17, 0x26), (0x18, 0xA0), (0x19, 0x07),
        (0x1A, 0xF0), (0x29, 0xA0), (0x2C, 0xF0), (0x65, 0x20),
    ),
    (320, 240): (
        (0x12, 0x41), (0x17, 0x3F), (0x18, 0x50), (0x19, 0x03),
        (0x1A, 0x78), (0x29, 0x50), (0x2C, 0x78), (0x65, 0x2F),
    ),
}


@dataclass(frozen=True, slots=True)
class RateRegisters:
    """Register values that select one frame rate: sensor CLKRC, COM4, bridge 0xE5."""

    clkrc: int
    com4: int
    camera_clock: int


# Rates the camera delivers clean video at. VGA 83 fps and QVGA >= 205 fps exist
# but are documented as partly corrupt, so they are not offered.
RATES: Final[dict[tuple[int, int], dict[int, RateRegisters]]] = {
    (640, 480): {
        75: RateRegisters(0x01, 0x81, 0x02),
        60: RateRegisters(0x00, 0x41, 0x04),
        50: RateRegisters(0x01, 0x41, 0x02),
        40: RateRegisters(0x02, 0xC1, 0x04),
        30: RateRegisters(0x04, 0x81, 0x02),
        15: RateRegisters(0x09, 0x81, 0x02),
    },
    (320, 240): {
        187: RateRegisters(0x01, 0x81, 0x02),
        150: RateRegisters(0x00, 0x41, 0x04),
        137: RateRegisters(0x02, 0xC1, 0x02),
        125: RateRegisters(0x01, 0x41, 0x02),
        100: RateRegisters(0x02, 0xC1, 0x04),
        90: RateRegisters(0x03, 0x81, 0x02),
        75: RateRegisters(0x04, 0x81, 0x02),
        60: RateRegisters(0x04, 0xC1, 0x04),
        50: RateRegisters(0x04, 0x41, 0x02),
        40: RateRegisters(0x06, 0x81, 0x03),
        37: RateRegisters(0x00, 0x01, 0x04),
        30: RateRegisters(0x04, 0x41, 0x04),
    },
}


@dataclass(frozen=True, slots=True)
class Mode:
    """One supported capture mode: 8-bit Bayer GRBG, one byte per pixel."""

    width: int
    height: int
    fps: int

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height

    @property
    def stride_bytes(self) -> int:
        return self.width

    @property
    def rate(self) -> RateRegisters:
        return RATES[(self.width, self.height)][self.fps]

    def __str__(self) -> str:
        return f"{self.width}x{self.height}@{self.fps}"


SUPPORTED_MODES: Final[tuple[Mode, ...]] = tuple(
    Mode(width, height, fps)
    for (width, height), rates in RATES.items()
    for fps in sorted(rates)
)
FASTEST_FPS: Final = max(mode.fps for mode in SUPPORTED_MODES)


def describe_modes() -> str:
    """Human-readable list of the supported modes, e.g. for error messages."""
    parts = []
    for (width, height), rates in RATES.items():
        fps_list = "/".join(str(fps) for fps in sorted(rates))
        parts.append(f"{width}x{height} at {fps_list} fps")
    return "; ".join(parts)


def find_mode(width: int, height: int, fps: int) -> Mode:
    """The supported mode with exactly this size and rate.

    Raises ValueError naming every supported mode otherwise: a rig asks for a
    rate and must get that rate, never a silently different one.
    """
    mode = Mode(width, height, fps)
    if mode not in SUPPORTED_MODES:
        raise ValueError(
            f"PS3 Eye does not support {width}x{height} at {fps} fps; "
            f"supported modes: {describe_modes()}"
        )
    return mode


def encoded_frame_bytes(table: RegisterTable) -> int:
    """Frame size programmed by a video-format bank sequence (bytes 3..5, times 4).

    Used by tests to pin that each start table matches its resolution.
    """
    data = [value for register, value in table if register == BRIDGE_VIDEO_FORMAT_DATA]
    return ((data[3] << 16) | (data[4] << 8) | data[5]) * 4
