"""Linux V4L2 device and mode enumeration (what OpenCV cannot list), through the kernel's ioctls.

Reads only: ``VIDIOC_QUERYCAP`` (is it a capture node? its card name),
``VIDIOC_ENUM_FMT``, ``VIDIOC_ENUM_FRAMESIZES``, ``VIDIOC_ENUM_FRAMEINTERVALS``.
Nothing is configured and no stream is started. The ``ioctl`` callable is a
parameter so the parsing can be exercised without a device (tests pass a fake
that answers from a table); by default it is :func:`fcntl.ioctl` on the node.

Struct layouts (linux/videodev2.h, all little-endian u32 unless noted):
``v4l2_capability`` 104 B (driver[16], card[32], bus_info[32], version,
capabilities, device_caps, reserved[3]); ``v4l2_fmtdesc`` 64 B (index, type,
flags, description[32], pixelformat, mbus_code, reserved[3]);
``v4l2_frmsizeenum`` 44 B (index, pixel_format, type, 6 u32 union,
reserved[2]); ``v4l2_frmivalenum`` 52 B (index, pixel_format, width, height,
type, 6 u32 union, reserved[2]).
"""

from __future__ import annotations

import errno
import os
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = [
    "V4l2Device", "V4l2Mode", "IoctlFn", "enumerate_devices", "query_device", "list_modes",
    "VIDIOC_QUERYCAP", "VIDIOC_ENUM_FMT", "VIDIOC_ENUM_FRAMESIZES", "VIDIOC_ENUM_FRAMEINTERVALS",
]


def _iowr(nr: int, size: int, *, read_only: bool = False) -> int:
    direction = 2 if read_only else 3  # _IOC_READ = 2, _IOC_READ | _IOC_WRITE = 3
    return (direction << 30) | (size << 16) | (ord("V") << 8) | nr


CAPABILITY = struct.Struct("<16s32s32sIII12x")
FMTDESC = struct.Struct("<III32sII12x")
FRMSIZE = struct.Struct("<III6I8x")
FRMIVAL = struct.Struct("<IIIII6I8x")
assert (CAPABILITY.size, FMTDESC.size, FRMSIZE.size, FRMIVAL.size) == (104, 64, 44, 52)

VIDIOC_QUERYCAP = _iowr(0, CAPABILITY.size, read_only=True)
VIDIOC_ENUM_FMT = _iowr(2, FMTDESC.size)
VIDIOC_ENUM_FRAMESIZES = _iowr(74, FRMSIZE.size)
VIDIOC_ENUM_FRAMEINTERVALS = _iowr(75, FRMIVAL.size)

BUF_TYPE_VIDEO_CAPTURE = 1
CAP_VIDEO_CAPTURE = 0x00000001
CAP_DEVICE_CAPS = 0x80000000
FRMSIZE_DISCRETE = 1
FRMIVAL_DISCRETE = 1
_MAX_ENTRIES = 256

IoctlFn = Callable[[int, bytearray], None]
"""``ioctl(request, buffer)``: fills ``buffer`` in place; raises OSError(EINVAL) past the last entry."""


@dataclass(frozen=True)
class V4l2Mode:
    fourcc: str
    width: int
    height: int
    fps: float  # 0.0 when the driver reports a stepwise/continuous interval range

    def __str__(self) -> str:
        rate = f"{self.fps:g} fps" if self.fps else "any fps"
        return f"{self.width}x{self.height} {self.fourcc} @ {rate}"


@dataclass(frozen=True)
class V4l2Device:
    path: str
    index: int
    card: str
    driver: str
    bus_info: str


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _fourcc(code: int) -> str:
    return code.to_bytes(4, "little").decode("ascii", "replace")


def query_device(ioctl: IoctlFn) -> tuple[str, str, str, bool]:
    """``(driver, card, bus_info, is_capture)`` from VIDIOC_QUERYCAP."""
    buf = bytearray(CAPABILITY.size)
    ioctl(VIDIOC_QUERYCAP, buf)
    driver, card, bus, _version, caps, device_caps = CAPABILITY.unpack(buf)
    effective = device_caps if caps & CAP_DEVICE_CAPS else caps
    return _cstr(driver), _cstr(card), _cstr(bus), bool(effective & CAP_VIDEO_CAPTURE)


def _enumerate(ioctl: IoctlFn, request: int, layout: struct.Struct, head: tuple) -> list[tuple]:
    out = []
    for index in range(_MAX_ENTRIES):
        buf = bytearray(layout.size)  # zeroed; the leading u32s are the query (index, then head)
        struct.pack_into(f"<{1 + len(head)}I", buf, 0, index, *head)
        try:
            ioctl(request, buf)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                break
            raise
        out.append(layout.unpack(buf))
    return out


def list_modes(ioctl: IoctlFn) -> list[V4l2Mode]:
    """Every discrete (format, size, frame interval) the capture node advertises."""
    modes = []
    for _i, _type, _flags, _desc, pixfmt, _mbus in _enumerate(ioctl, VIDIOC_ENUM_FMT, FMTDESC, (BUF_TYPE_VIDEO_CAPTURE,)):
        for size in _enumerate(ioctl, VIDIOC_ENUM_FRAMESIZES, FRMSIZE, (pixfmt,)):
            if size[2] != FRMSIZE_DISCRETE:
                _min_w, max_w, _step_w, _min_h, max_h, _step_h = size[3:9]
                modes.append(V4l2Mode(_fourcc(pixfmt), max_w, max_h, 0.0))  # stepwise: report the largest
                continue
            width, height = size[3], size[4]
            rates = []
            for ival in _enumerate(ioctl, VIDIOC_ENUM_FRAMEINTERVALS, FRMIVAL, (pixfmt, width, height)):
                if ival[4] == FRMIVAL_DISCRETE and ival[5]:
                    rates.append(ival[6] / ival[5])  # interval num/den seconds -> fps den/num
            for fps in sorted(set(rates), reverse=True) or [0.0]:
                modes.append(V4l2Mode(_fourcc(pixfmt), width, height, round(fps, 3)))
    return modes


def _fd_ioctl(fd: int) -> IoctlFn:
    if sys.platform == "win32":  # no fcntl, and no V4L2 node to call it on
        raise OSError(errno.ENOSYS, "ioctl does not exist on Windows")
    import fcntl

    def call(request: int, buf: bytearray) -> None:
        fcntl.ioctl(fd, request, buf, True)

    return call


def enumerate_devices(root: str = "/dev") -> list[tuple[V4l2Device, list[V4l2Mode]]]:
    """Video capture nodes under ``root`` (``videoN``) with their modes; metadata/output nodes are skipped.

    Empty on every OS but Linux: V4L2 is Linux's (no ``/dev/video*`` elsewhere).
    """
    found: list[tuple[V4l2Device, list[V4l2Mode]]] = []
    if sys.platform != "linux":
        return found
    for path in sorted(Path(root).glob("video*"), key=lambda p: _node_index(p.name)):
        index = _node_index(path.name)
        if index < 0:
            continue
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            ioctl = _fd_ioctl(fd)
            driver, card, bus, is_capture = query_device(ioctl)
            if not is_capture:
                continue
            modes = list_modes(ioctl)
        except OSError:
            continue
        finally:
            os.close(fd)
        found.append((V4l2Device(str(path), index, card, driver, bus), modes))
    return found


def _node_index(name: str) -> int:
    match = re.fullmatch(r"video(\d+)", name)
    return int(match.group(1)) if match else -1
