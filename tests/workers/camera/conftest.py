"""Fixtures of the camera-worker tests: a child worker process, ring attachment, a test video.

Fixture names start with ``cam_`` so they cannot collide with the PS3 Eye
tests' fixtures in ``ps3eye/``.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mimir.descriptors import CameraFrameDescriptor
from ringbuf import RingLayoutMismatch, RingReader, SegmentMissing


class WorkerProcess:
    """``python -m workers.camera ...`` as a child; stopped (SIGTERM, then SIGKILL) at teardown."""

    def __init__(self, args: list[str]) -> None:
        self.args = [sys.executable, "-m", "workers.camera", *args]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout = ""
        self.stderr = ""

    def attach(self, name: str, rig: str, timeout_s: float = 30.0, **kwargs) -> RingReader:
        """Attach to ring ``name`` as soon as the worker has created it."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return RingReader.attach(name, rig=rig, descriptor=CameraFrameDescriptor, **kwargs)
            except (SegmentMissing, RingLayoutMismatch):
                if self.proc.poll() is not None:
                    self.finish()
                    raise AssertionError(f"worker exited with {self.proc.returncode}: {self.stderr}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.finish(timeout_s)

    def finish(self, timeout_s: float = 15.0) -> int:
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.stdout += out or ""
        self.stderr += err or ""
        return self.proc.returncode


@pytest.fixture
def cam_worker(rig):
    """Factory: ``cam_worker([...args])`` starts a worker on ``rig``; all are stopped before the leak check."""
    started: list[WorkerProcess] = []

    def start(args: list[str]) -> WorkerProcess:
        w = WorkerProcess([*args, "--rig", rig])
        started.append(w)
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.stop()


def make_video(path: Path, *, width: int = 160, height: int = 120, fps: int = 50, frames: int = 25) -> Path:
    """A short test clip: ffmpeg's testsrc in H.264 with B-frames (pts reordering), or OpenCV MJPG if no ffmpeg."""
    if shutil.which("ffmpeg"):
        path = path.with_suffix(".mp4")
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate={fps}",
             "-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "2", str(path)],
            check=True,
        )
        return path
    path = path.with_suffix(".avi")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for i in range(frames):
        img = np.zeros((height, width, 3), np.uint8)
        img[:, :] = ((np.arange(width) + 7 * i) % 256).astype(np.uint8)[None, :, None]
        writer.write(img)
    writer.release()
    return path


def decode_all(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of ``path`` decoded directly by OpenCV, with its container timestamp in ns."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames, pts = [], []
    while True:
        ok = cap.grab()
        if not ok:
            break
        pts.append(round(cap.get(cv2.CAP_PROP_POS_MSEC) * 1e6))
        ok, img = cap.retrieve()
        frames.append(img.copy())
    cap.release()
    return frames, pts


def decode_all_av(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of ``path`` decoded by PyAV (the file family's decoder) as BGR, with its pts in ns."""
    import av

    frames, pts = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="bgr24"))
            pts.append(round(frame.pts * stream.time_base * 1_000_000_000))
    return frames, pts


@pytest.fixture(scope="module")
def cam_video(tmp_path_factory) -> tuple[Path, list[np.ndarray], list[int]]:
    """(path, reference frames, reference pts) of a 25-frame 160x120 50 fps clip made for the test."""
    path = make_video(tmp_path_factory.mktemp("video") / "clip")
    frames, pts = decode_all(path)
    assert len(frames) == 25, f"test clip decoded to {len(frames)} frames"
    return path, frames, pts
