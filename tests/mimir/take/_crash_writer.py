"""Run as ``python _crash_writer.py TAKE_DIR LOG_PATH``: write a take in real time until killed.

Two cameras (60 fps YUYV FFV1 and 30 fps GREY raw, synthetic stamped frames)
and one float32 audio source (480-sample blocks at 48 kHz) are written at
wall-clock pace, with the writer's default flush interval (1 s). After every
write call one line ``monotonic_ns cam0_frames cam1_frames mic_blocks`` is
appended to LOG_PATH with an unbuffered write, so the parent knows what had
been written at any moment before it sends SIGKILL. Stops by itself after
30 s (a safety net; the test kills it long before).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from mimir.descriptors import PixelFormat
from mimir.take import AudioSource, CameraSource, TakeWriter
from workers.camera.family import CameraMode
from workers.camera.synthetic import SyntheticPattern

T0_NS = 31_536_000_000_000_000
RATE = 48_000
BLOCK = 480
CAMS = {"cam0": (60.0, "YUYV", "ffv1"), "cam1": (30.0, "GREY", "raw")}


def audio_block(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((BLOCK, 2)).astype(np.float32)


def main(take_dir: str, log_path: str) -> None:
    sources = [CameraSource(name, 32, 24, fmt, fps, encoding=enc) for name, (fps, fmt, enc) in CAMS.items()]
    sources.append(AudioSource("mic", 2, RATE, "float32"))
    pats = {name: SyntheticPattern(CameraMode(32, 24, fps, PixelFormat[fmt])) for name, (fps, fmt, _) in CAMS.items()}
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    counts = {"cam0": 0, "cam1": 0, "mic": 0}
    take = TakeWriter(take_dir, sources, rig={"test": "kill -9"})
    start = time.monotonic_ns()
    while time.monotonic_ns() - start < 30_000_000_000:
        elapsed = time.monotonic_ns() - start
        for name, (fps, _, _) in CAMS.items():
            n = counts[name]
            t = round(n * 1e9 / fps)
            if t <= elapsed:
                take.write_frame(name, pats[name].render(n, T0_NS + t), T0_NS + t, sequence=n)
                counts[name] += 1
        b = counts["mic"]
        t = b * BLOCK * 1_000_000_000 // RATE
        if t <= elapsed:
            take.write_audio("mic", audio_block(b), T0_NS + t, start_sample=b * BLOCK)
            counts["mic"] += 1
        os.write(log, f"{time.monotonic_ns()} {counts['cam0']} {counts['cam1']} {counts['mic']}\n".encode())
        time.sleep(0.002)
    take.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
