"""Shared helpers for the PS3 Eye tests: a verifying in-memory sink and camera factories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from workers.camera.ps3eye.device import PS3Eye, open_camera
from workers.camera.ps3eye.fake import FakeDevice, FakePS3Eye, FakeUSBBackend, frame_number_of, frame_pixels

SENTINEL = 0xEE
SLACK_BYTES = 64  # slots are larger than a frame; the slack must stay untouched


@dataclass(frozen=True)
class Delivered:
    frame_number: int
    device_time_ns: int
    host_time_ns: int
    byte_length: int
    pixels_ok: bool
    slack_ok: bool


class RecordingSink:
    """A ring of preallocated slots that checks every published frame against the fake's pattern.

    Follows the FrameSink contract: claim() returns the same slot until
    publish(), which advances to the next slot.
    """

    def __init__(self, frame_bytes: int, slots: int = 3) -> None:
        self.frame_bytes = frame_bytes
        self.slots = np.full((slots, frame_bytes + SLACK_BYTES), SENTINEL, np.uint8)
        self.index = 0
        self.claims = 0
        self.delivered: list[Delivered] = []

    def claim(self) -> np.ndarray:
        self.claims += 1
        return self.slots[self.index]

    def publish(self, *, device_time_ns: int, host_time_ns: int, byte_length: int) -> None:
        slot = self.slots[self.index]
        frame = slot[:byte_length]
        number = frame_number_of(frame)
        self.delivered.append(Delivered(
            frame_number=number,
            device_time_ns=device_time_ns,
            host_time_ns=host_time_ns,
            byte_length=byte_length,
            pixels_ok=bool(np.array_equal(frame, frame_pixels(number, byte_length))),
            slack_ok=bool((slot[self.frame_bytes:] == SENTINEL).all()),
        ))
        self.index = (self.index + 1) % len(self.slots)

    @property
    def frame_numbers(self) -> list[int]:
        return [d.frame_number for d in self.delivered]

    def all_verified(self) -> bool:
        return all(d.pixels_ok and d.slack_ok for d in self.delivered)


def _other_devices() -> list[FakeDevice]:
    return [
        FakeDevice(0x046D, 0xC52B, address=3, manufacturer="Logitech", product="USB Receiver"),
        FakeDevice(0x1D6B, 0x0002, address=1, product="EHCI Host Controller"),
    ]


@pytest.fixture
def other_devices() -> Callable[[], list[FakeDevice]]:
    """Factory of things plugged in besides cameras, so discovery errors have something to list."""
    return _other_devices


@pytest.fixture
def recording_sink() -> type[RecordingSink]:
    return RecordingSink


@pytest.fixture
def make_camera() -> Callable[..., tuple[FakePS3Eye, PS3Eye]]:
    """``make_camera(width, height, fps, **fake_options)`` -> (fake, opened & initialised camera)."""
    opened: list[PS3Eye] = []

    def make(width: int = 320, height: int = 240, fps: int = 187,
             **fake_options: object) -> tuple[FakePS3Eye, PS3Eye]:
        fake = FakePS3Eye(**fake_options)
        camera = open_camera(FakeUSBBackend([*_other_devices(), fake]), width=width, height=height,
                             fps=fps, bridge_reset_wait_s=0.0, sensor_reset_wait_s=0.0)
        opened.append(camera)
        return fake, camera

    yield make
    for camera in opened:
        camera.close()
