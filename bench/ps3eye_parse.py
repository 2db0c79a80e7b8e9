"""PS3 Eye payload parsing and frame assembly throughput, frames/s per core.

For each mode (QVGA@187, VGA@75) the fake camera is driven through the real
driver and pyusb to record 32 frames of bulk reads; the timed loop then feeds
those reads to a :class:`FrameAssembler` writing into a 4-slot in-memory ring,
on one thread. Rate = frames delivered / thread CPU seconds, so it is per
core regardless of other load; the goal is >= 10x the fastest mode (187 fps).
USB transfer time and the fake's frame generation are not in the figure.
The 4 slots stay in cache; a ring larger than the cache adds DRAM write time.

Run: ``.venv/bin/python -m bench.ps3eye_parse [seconds]``.
"""

from __future__ import annotations

import array
import json
import sys
import time

import numpy as np
import usb.core

from workers.camera.ps3eye.assembler import PAYLOAD_BYTES, FrameAssembler, StreamCounters
from workers.camera.ps3eye.device import open_camera
from workers.camera.ps3eye.fake import FakePS3Eye, FakeUSBBackend
from workers.camera.ps3eye.registers import FASTEST_FPS, Mode
from workers.camera.ps3eye.stream import default_read_bytes

RECORDED_FRAMES = 32
GOAL_RATIO = 10.0
MODES = (Mode(320, 240, 187), Mode(640, 480, 75))


class _RingSink:
    """Rotating preallocated slots, like the shared-memory ring the worker writes into."""

    def __init__(self, frame_bytes: int, slots: int = 4) -> None:
        self._slots = np.zeros((slots, frame_bytes), np.uint8)
        self._next = 0
        self.published = 0

    def claim(self) -> np.ndarray:
        return self._slots[self._next]

    def publish(self, *, device_time_ns: int, host_time_ns: int, byte_length: int) -> None:
        self._next = (self._next + 1) % len(self._slots)
        self.published += 1


def record_reads(mode: Mode, frames: int = RECORDED_FRAMES) -> list[np.ndarray]:
    """Bulk reads of ``frames`` frames as the fake camera delivers them through pyusb."""
    fake = FakePS3Eye(frame_limit=frames)
    camera = open_camera(FakeUSBBackend([fake]), width=mode.width, height=mode.height,
                         fps=mode.fps, bridge_reset_wait_s=0.0, sensor_reset_wait_s=0.0)
    read_buffer = array.array("B", bytes(default_read_bytes(mode.frame_bytes)))
    reads = []
    try:
        camera.start()
        while True:
            try:
                nbytes = camera.read(read_buffer, 20)
            except usb.core.USBTimeoutError:
                break  # the fake sent its `frames` frames
            reads.append(np.frombuffer(read_buffer, np.uint8)[:nbytes].copy())
    finally:
        camera.close()
    return reads


def measure(mode: Mode, seconds: float, *, per_payload: bool = False) -> dict:
    """Assembly rate of ``mode``; ``per_payload`` feeds one payload per call (worst case)."""
    reads = record_reads(mode)
    if per_payload:
        reads = [r[i:i + PAYLOAD_BYTES] for r in reads for i in range(0, len(r), PAYLOAD_BYTES)]
    sink = _RingSink(mode.frame_bytes)
    counters = StreamCounters()
    assembler = FrameAssembler(sink, mode.frame_bytes, counters)
    sizes = [len(r) for r in reads]
    cpu_start = time.thread_time()
    wall_deadline = time.perf_counter() + seconds
    while time.perf_counter() < wall_deadline:
        for data, nbytes in zip(reads, sizes):
            assembler.feed(data, nbytes)
    cpu_s = time.thread_time() - cpu_start
    frames_per_s = counters.frames_delivered / cpu_s
    return {
        "case": "ps3eye-assembly-per-payload" if per_payload else "ps3eye-assembly",
        "mode": f"{mode.width}x{mode.height}",
        "camera_fps": mode.fps,
        "frames_per_s": round(frames_per_s, 1),
        "payloads_per_s": round(counters.payloads_seen / cpu_s, 1),
        "mbytes_per_s": round(counters.frames_delivered * mode.frame_bytes / cpu_s / 1e6, 1),
        "ratio_vs_187fps": round(frames_per_s / FASTEST_FPS, 2),
        "goal_met": frames_per_s >= GOAL_RATIO * FASTEST_FPS,
        "discarded": counters.frames_discarded,
    }


def run(seconds: float = 3.0) -> list[dict]:
    """Records for both modes: as streamed (one frame per read), then one payload per feed.

    ``seconds`` is split evenly between the four measurements. The first two
    are the figure of merit; the per-payload ones bound the cost of a stream
    so broken up that no payload run can be copied in one go.
    """
    cases = [(mode, per_payload) for per_payload in (False, True) for mode in MODES]
    return [measure(mode, seconds / len(cases), per_payload=per_payload) for mode, per_payload in cases]


if __name__ == "__main__":
    print(json.dumps(run(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0), indent=2))
