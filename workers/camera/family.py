"""The camera-family plug-in contract, the mode and device records, and the family registry.

A **family** is a small plug-in with three jobs:

1. ``discover(hints) -> list[DeviceInfo]``: the devices of that family present now;
2. ``open(device, request) -> Camera``: open one device in the requested mode,
   reporting the mode actually negotiated (``camera.mode``) or raising
   :class:`UnsupportedMode` listing what the device can do;
3. ``camera.capture(sink, stop)``: the capture loop, writing each frame into
   ``sink.claim()`` and calling ``sink.publish(...)`` until ``stop`` is set,
   raising :class:`CameraDisconnected` when the device goes away.

The worker (:mod:`.worker`) owns everything else: rings, statistics,
threads, reconnection, signals. A family never touches a ring.

Registry
    :data:`BUILTIN_FAMILIES` maps a family name to ``"module:attribute"``; the
    attribute is a zero-argument callable (usually the class) returning a
    :class:`CameraFamily`. Modules are imported lazily, so ``synthetic`` never
    imports OpenCV. ``ps3eye`` points at ``workers.camera.ps3eye.family:Ps3EyeFamily``:
    until that module exists, resolving it raises :class:`FamilyUnavailable`.
    :func:`register_family` adds a family at run time (tests, out-of-tree plug-ins).
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from mimir.descriptors import PixelFormat

__all__ = [
    "CameraError", "UnknownFamily", "FamilyUnavailable", "DeviceNotFound", "UnsupportedMode",
    "CameraDisconnected", "CameraMode", "ModeRequest", "DeviceInfo", "DiscoveryHints",
    "FrameSink", "Camera", "CameraFamily", "BUILTIN_FAMILIES", "register_family",
    "family_names", "resolve_family", "parse_pixel_format", "select_devices",
    "BYTES_PER_PIXEL",
]


# ---- errors ------------------------------------------------------------------------------------------------

class CameraError(RuntimeError):
    """A configuration error the worker reports and exits non-zero on (message is for humans)."""


class UnknownFamily(CameraError):
    pass


class FamilyUnavailable(CameraError):
    """The family is known but cannot be loaded (its module is not built yet, or a dependency is missing)."""


class DeviceNotFound(CameraError):
    pass


class UnsupportedMode(CameraError):
    pass


class CameraDisconnected(RuntimeError):
    """Raised by ``Camera.capture`` when the device stops delivering (unplugged, I/O error, end of stream)."""


# ---- modes -------------------------------------------------------------------------------------------------

BYTES_PER_PIXEL: dict[PixelFormat, int] = {
    PixelFormat.YUYV: 2,
    PixelFormat.BGR3: 3,
    PixelFormat.GREY: 1,
    PixelFormat.GRBG: 1,
}

_FORMAT_ALIASES = {
    "YUYV": PixelFormat.YUYV, "YUY2": PixelFormat.YUYV,
    "BGR": PixelFormat.BGR3, "BGR3": PixelFormat.BGR3, "BGR24": PixelFormat.BGR3,
    "GREY": PixelFormat.GREY, "GRAY": PixelFormat.GREY, "Y800": PixelFormat.GREY, "Y8": PixelFormat.GREY,
    "GRBG": PixelFormat.GRBG, "BAYER": PixelFormat.GRBG, "BA81": PixelFormat.GRBG,
    "MJPG": PixelFormat.MJPG, "MJPEG": PixelFormat.MJPG,
}


def parse_pixel_format(name: str) -> PixelFormat:
    """``"YUYV"``, ``"BGR"``, ``"GREY"``... -> :class:`PixelFormat`; ValueError listing the accepted names."""
    try:
        return _FORMAT_ALIASES[name.strip().upper()]
    except KeyError:
        raise ValueError(f"unknown pixel format {name!r}; known: {', '.join(sorted(_FORMAT_ALIASES))}") from None


def format_name(fmt: int) -> str:
    """The 4-character code of a FOURCC integer (``'????'`` if unprintable)."""
    raw = int(fmt).to_bytes(4, "little")
    return raw.decode("ascii") if all(32 <= b < 127 for b in raw) else f"0x{int(fmt):08x}"


@dataclass(frozen=True)
class CameraMode:
    """A fully specified mode: what lands in each ring slot.

    ``payload_shape`` is the numpy shape of one frame in the ring slot (uint8).
    It defaults to ``(h, w, 2)`` for YUYV, ``(h, w, 3)`` for BGR3 and ``(h, w)``
    for 1-byte formats; a family may override it to match what its driver
    hands out (OpenCV's output array shape), so frames land without a copy.
    """

    width: int
    height: int
    fps: float
    pixel_format: PixelFormat
    payload_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or not self.fps > 0:
            raise ValueError(f"invalid mode {self.width}x{self.height} @ {self.fps} fps")
        if not self.payload_shape:
            object.__setattr__(self, "payload_shape", _default_shape(self.width, self.height, self.pixel_format))

    @property
    def bytes_per_pixel(self) -> int:
        return BYTES_PER_PIXEL[self.pixel_format]

    @property
    def stride_bytes(self) -> int:
        return self.width * self.bytes_per_pixel

    @property
    def byte_length(self) -> int:
        return int(np.prod(self.payload_shape))

    @property
    def period_ns(self) -> int:
        return round(1e9 / self.fps)

    def __str__(self) -> str:
        return f"{self.width}x{self.height} {format_name(self.pixel_format)} @ {self.fps:g} fps"


def _default_shape(width: int, height: int, fmt: PixelFormat) -> tuple[int, ...]:
    bpp = BYTES_PER_PIXEL.get(fmt)
    if bpp is None:
        raise ValueError(f"pixel format {format_name(fmt)} has no fixed frame size; it cannot land in a ring slot")
    return (height, width) if bpp == 1 else (height, width, bpp)


@dataclass(frozen=True)
class ModeRequest:
    """What the user asked for; ``None`` means "the family's/device's default"."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    pixel_format: PixelFormat | None = None

    def mismatches(self, mode: CameraMode, *, fps_tolerance: float = 0.005) -> list[str]:
        """Human-readable differences between this request and ``mode`` (empty: satisfied)."""
        out = []
        if self.width is not None and self.width != mode.width:
            out.append(f"width {self.width} -> {mode.width}")
        if self.height is not None and self.height != mode.height:
            out.append(f"height {self.height} -> {mode.height}")
        if self.fps is not None and abs(self.fps - mode.fps) > fps_tolerance * self.fps:
            out.append(f"fps {self.fps:g} -> {mode.fps:g}")
        if self.pixel_format is not None and self.pixel_format != mode.pixel_format:
            out.append(f"format {format_name(self.pixel_format)} -> {format_name(mode.pixel_format)}")
        return out

    def __str__(self) -> str:
        w = self.width if self.width is not None else "?"
        h = self.height if self.height is not None else "?"
        f = format_name(self.pixel_format) if self.pixel_format is not None else "any format"
        r = f"{self.fps:g} fps" if self.fps is not None else "any fps"
        return f"{w}x{h} {f} @ {r}"


# ---- devices -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceInfo:
    """One device a family found.

    ``source_id`` is the rig-wide id hashed into every descriptor
    (``"<family>:<address>"``); ``address`` is what the family opens (a path,
    an index, a bus location); ``modes`` lists the modes the device advertises
    (empty when the platform cannot enumerate them).
    """

    family: str
    index: int
    address: str
    label: str
    modes: tuple[CameraMode, ...] = ()

    @property
    def source_id(self) -> str:
        return f"{self.family}:{self.address}"

    def __str__(self) -> str:
        return f"[{self.index}] {self.address} ({self.label})"


@dataclass(frozen=True)
class DiscoveryHints:
    """What the command line says about devices: families that cannot enumerate use it (synthetic, file)."""

    count: int | None = None
    specs: tuple[str, ...] = ()


def select_devices(found: list[DeviceInfo], hints: DiscoveryHints, family: str, where: str = "") -> list[DeviceInfo]:
    """Pick the devices to open: by spec (index, address, source id or label), else the first ``count``, else all.

    Raises :class:`DeviceNotFound` listing the devices found (``where``: how the family searched).
    """
    listing = ("; ".join(str(d) for d in found) or "none") + (f" ({where})" if where else "")
    if hints.specs:
        chosen = []
        for spec in hints.specs:
            match = next((d for d in found if spec in (str(d.index), d.address, d.source_id, d.label)), None)
            if match is None:
                raise DeviceNotFound(f"{family}: no device {spec!r}; devices found: {listing}")
            chosen.append(match)
        return chosen
    if not found:
        raise DeviceNotFound(f"{family}: no devices found" + (f" ({where})" if where else ""))
    if hints.count is not None:
        if hints.count > len(found):
            raise DeviceNotFound(f"{family}: {hints.count} cameras requested, {len(found)} found: {listing}")
        return found[: hints.count]
    return found


# ---- the plug-in protocols --------------------------------------------------------------------------------

@runtime_checkable
class FrameSink(Protocol):
    """Where a capture loop puts frames. Implemented over a ring by :class:`workers.camera.sink.RingFrameSink`.

    ``claim()`` returns a writable flat uint8 view of the next slot; calling it
    again before ``publish()`` returns the same slot. ``publish()`` makes the
    claimed slot visible with its timestamps and returns its sequence.
    """

    def claim(self) -> np.ndarray: ...

    def publish(self, *, device_time_ns: int, host_time_ns: int, byte_length: int) -> int: ...


@runtime_checkable
class Camera(Protocol):
    """One opened device. Owned by exactly one capture thread after open; closed by the worker."""

    device: DeviceInfo
    mode: CameraMode

    def capture(self, sink: FrameSink, stop: threading.Event) -> None:
        """Capture until ``stop.is_set()``; raise :class:`CameraDisconnected` if the device goes away.

        Hot path: write into ``sink.claim()``, call ``sink.publish``; allocate no
        buffers, take no locks, log nothing.
        """
        ...

    def device_counters(self) -> tuple[int, int]:
        """Cumulative ``(frames_dropped_by_device, frames_discarded_as_corrupt)``; polled off the hot path."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class CameraFamily(Protocol):
    name: str

    def discover(self, hints: DiscoveryHints) -> list[DeviceInfo]: ...

    def open(self, device: DeviceInfo, request: ModeRequest) -> Camera: ...


# ---- registry ----------------------------------------------------------------------------------------------

BUILTIN_FAMILIES: dict[str, str] = {
    "ks": "workers.camera.ks:KsFamily",
    "ps3eye": "workers.camera.ps3eye.family:Ps3EyeFamily",
    "synthetic": "workers.camera.synthetic:SyntheticFamily",
    "file": "workers.camera.file:FileFamily",
}
_registered: dict[str, Callable[[], CameraFamily]] = {}


def register_family(name: str, factory: Callable[[], CameraFamily]) -> None:
    """Make ``name`` resolvable to ``factory()`` (overrides a built-in of that name)."""
    _registered[name] = factory


def unregister_family(name: str) -> None:
    _registered.pop(name, None)


def family_names() -> list[str]:
    return sorted({*BUILTIN_FAMILIES, *_registered})


def resolve_family(name: str) -> CameraFamily:
    """Instantiate family ``name``; :class:`UnknownFamily` lists the families, :class:`FamilyUnavailable` says why."""
    if name in _registered:
        return _registered[name]()
    target = BUILTIN_FAMILIES.get(name)
    if target is None:
        raise UnknownFamily(f"unknown camera family {name!r}; families: {', '.join(family_names())}")
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise FamilyUnavailable(
                f"camera family {name!r} is not available yet: its plug-in module {module_name} "
                f"does not exist (expected {module_name.replace('.', '/')}.py defining {attr})"
            ) from None
        raise FamilyUnavailable(f"camera family {name!r} cannot load: missing dependency {exc.name!r}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise FamilyUnavailable(f"camera family {name!r}: module {module_name} defines no {attr}")
    return factory()
