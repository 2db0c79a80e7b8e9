"""``mimir bench take``: can the take writer keep up with the default rig, per video encoding?

What is measured, per encoding (``raw``, ``ffv1``, ``h264``), in one run:

* the **take**: six 640x480 YUYV cameras at 60 fps plus one 8-channel
  float32 audio source (48 kHz, 256-sample blocks), ``--seconds`` of media
  (default 5), handed to one :class:`mimir.take.TakeWriter` as fast as it
  takes them (round robin, in canonical-time order), then closed and every
  file fsynced;
* the writer's **fixed cost per frame**: a 64x48 camera in steady state,
  where encoding and bytes are negligible, against an ``os.write`` of the
  same 6 KiB (``small_frame_us`` / ``small_frame_plain_us``);
* the **plain write** of the same bytes (every camera frame and audio block,
  one ``os.write`` each, one ``fdatasync`` at the end, ``fsync`` on macOS and
  Windows) to the same folder,
  measured right before the take so both meet the same disk.

Figures are ratios measured in the same run (absolute times drift on a
shared machine): ``wall_ratio_vs_plain`` = take wall time / plain-write wall
time; ``per_frame_us`` vs ``plain_per_frame_us`` (the encode-and-write cost
of one frame against writing its bytes); ``realtime_factor`` = media seconds
/ take wall seconds: at 1.0 or more the writer keeps up with the rig on this
machine (with no capture running beside it: the margin above 1.0 is what
capture and everything else may use). ``cpu_cores_used`` counts the
encoders' threads too.

Content: camera-like frames (a smooth ramp plus sensor noise of a few levels,
16 distinct frames cycled), so lossless codecs see what a real sensor gives
them rather than a flat or a random image.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.common import fsync_tree, plain_write_s
from mimir.take import AudioSource, CameraSource, TakeWriter

__all__ = ["Config", "QUICK", "VideoEncoding", "run", "format_table", "camera_like_frames"]

# The values of mimir.take.CameraSource.encoding (mimir.take.manifest.VIDEO_ENCODINGS), as its annotation spells them.
VideoEncoding = Literal["ffv1", "raw", "h264"]
T0_NS = 31_536_000_000_000_000
AUDIO_RATE = 48_000
AUDIO_BLOCK = 256


@dataclass(frozen=True)
class Config:
    cameras: int = 6
    width: int = 640
    height: int = 480
    fps: float = 60.0
    seconds: float = 5.0
    audio_channels: int = 8
    encodings: tuple[VideoEncoding, ...] = ("raw", "ffv1", "h264")
    directory: str | None = None  # where takes and the plain write go (default: the system temp folder)
    distinct_frames: int = 16


QUICK = Config(cameras=2, width=64, height=48, seconds=0.5, distinct_frames=4)


def camera_like_frames(width: int, height: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """YUYV frames (h, w, 2): luma ramp plus noise of +-3 levels, chroma near grey with +-2 of noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    ramp = ((x + 2 * y) * 200 // (width + 2 * height) + 28).astype(np.int16)
    frames = []
    for _ in range(count):
        frame = np.empty((height, width, 2), np.uint8)
        frame[:, :, 0] = np.clip(ramp + rng.integers(-3, 4, (height, width)), 0, 255)
        frame[:, :, 1] = np.clip(128 + (x % 2) * 6 - 3 + rng.integers(-2, 3, (height, width)), 0, 255)
        frames.append(frame)
    return frames


def _schedule(cfg: Config) -> list[tuple[int, int, int]]:
    """(canonical_ns, source index (-1 audio), item index) of every item, in canonical-time order."""
    items = []
    period = round(1e9 / cfg.fps)
    for n in range(round(cfg.seconds * cfg.fps)):
        for c in range(cfg.cameras):
            items.append((T0_NS + n * period + c * period // cfg.cameras, c, n))
    for b in range(round(cfg.seconds * AUDIO_RATE / AUDIO_BLOCK)):
        items.append((T0_NS + b * AUDIO_BLOCK * 1_000_000_000 // AUDIO_RATE, -1, b))
    items.sort()
    return items


def _cpu_s() -> float:
    """User + system CPU seconds of this process, every thread (the encoders' too)."""
    return time.process_time()


def _take_write(folder: str, cfg: Config, encoding: VideoEncoding, schedule, frames, audio) -> tuple[float, float, float, int]:
    cams = [CameraSource(f"cam{c}", cfg.width, cfg.height, "YUYV", cfg.fps, encoding=encoding)
            for c in range(cfg.cameras)]
    mic = AudioSource("mic", cfg.audio_channels, AUDIO_RATE, "float32")
    names = [c.name for c in cams]
    cpu0 = _cpu_s()
    start = time.perf_counter()
    with TakeWriter(folder, [*cams, mic], rig={"bench": "take", "encoding": encoding}) as take:
        for t, src, n in schedule:
            if src < 0:
                take.write_audio("mic", audio, t, start_sample=n * AUDIO_BLOCK)
            else:
                take.write_frame(names[src], frames[n % len(frames)], t, sequence=n)
    closed = time.perf_counter() - start
    fsync_tree(folder)
    wall = time.perf_counter() - start
    cpu = _cpu_s() - cpu0
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)
    written = sum(r.written for r in take.manifest.sources if isinstance(r.source, CameraSource))
    assert written == sum(1 for _, s, _ in schedule if s >= 0), "the writer lost frames"
    return wall, closed, cpu, size


def _fixed_overhead(folder: str, encoding: VideoEncoding, frames: int) -> tuple[float, float]:
    """Steady-state wall us per frame of a 64x48 YUYV camera (encoding and bytes are then negligible: what is
    left is the writer's own work per frame), and of a plain ``os.write`` of the same 6 KiB."""
    cam = CameraSource("cam", 64, 48, "YUYV", 60.0, encoding=encoding)
    pixels = camera_like_frames(64, 48, 4)
    with TakeWriter(os.path.join(folder, "overhead"), [cam]) as take:
        for n in range(50):  # warm-up: files open, encoder started
            take.write_frame("cam", pixels[n % 4], T0_NS + n * 16_666_667, sequence=n)
        start = time.perf_counter()
        for n in range(50, 50 + frames):
            take.write_frame("cam", pixels[n % 4], T0_NS + n * 16_666_667, sequence=n)
        take_us = (time.perf_counter() - start) / frames * 1e6
    shutil.rmtree(os.path.join(folder, "overhead"))
    path = os.path.join(folder, "plain-small.bin")
    blobs = [p.data for p in pixels]  # the frames' own bytes (memoryviews), no copy
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        start = time.perf_counter()
        for n in range(frames):
            os.write(fd, blobs[n % 4])
        plain_us = (time.perf_counter() - start) / frames * 1e6
    finally:
        os.close(fd)
        os.unlink(path)
    return take_us, plain_us


def run(cfg: Config = Config(), progress: Callable[[str], None] = lambda m: None) -> list[dict]:
    """One record per encoding (flat dicts, units in the keys)."""
    frames = camera_like_frames(cfg.width, cfg.height, cfg.distinct_frames)
    audio = np.random.default_rng(1).standard_normal((AUDIO_BLOCK, cfg.audio_channels)).astype(np.float32)
    schedule = _schedule(cfg)
    n_frames = sum(1 for _, s, _ in schedule if s >= 0)
    raw_bytes = n_frames * frames[0].nbytes + (len(schedule) - n_frames) * audio.nbytes
    root = tempfile.mkdtemp(prefix="mimir-bench-take-", dir=cfg.directory)
    records = []
    try:
        for encoding in cfg.encodings:
            progress(f"take bench: plain write of {raw_bytes / 1e6:.0f} MB")
            plain = plain_write_s(os.path.join(root, "plain.bin"),
                                  ((audio if src < 0 else frames[n % len(frames)]).data for _, src, n in schedule))
            progress(f"take bench: {encoding}, {n_frames} frames of {cfg.cameras} cameras")
            folder = os.path.join(root, encoding)
            wall, closed, cpu, size = _take_write(folder, cfg, encoding, schedule, frames, audio)
            shutil.rmtree(folder)
            small_us, small_plain_us = _fixed_overhead(root, encoding, 200 if cfg is QUICK else 2000)
            needed = cfg.cameras * cfg.fps
            records.append({
                "encoding": encoding,
                "lossless": encoding != "h264",
                "cameras": cfg.cameras, "width": cfg.width, "height": cfg.height, "fps": cfg.fps,
                "media_s": cfg.seconds, "frames": n_frames, "raw_mb": round(raw_bytes / 1e6, 1),
                "file_mb": round(size / 1e6, 1), "size_ratio": round(size / raw_bytes, 3),
                "take_wall_s": round(wall, 3), "take_until_close_s": round(closed, 3), "plain_wall_s": round(plain, 3),
                "wall_ratio_vs_plain": round(wall / plain, 2),
                "per_frame_us": round(wall / n_frames * 1e6, 1),
                "plain_per_frame_us": round(plain / n_frames * 1e6, 1),
                "take_fps": round(n_frames / wall, 1), "needed_fps": needed,
                "realtime_factor": round(cfg.seconds / wall, 2), "keeps_up": cfg.seconds / wall >= 1.0,
                "cpu_s": round(cpu, 2), "cpu_per_frame_us": round(cpu / n_frames * 1e6, 1),
                "cpu_cores_used": round(cpu / wall, 2),
                "small_frame_us": round(small_us, 1), "small_frame_plain_us": round(small_plain_us, 1),
            })
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return records


def format_table(records: list[dict]) -> str:
    if not records:
        return "no records"
    r0 = records[0]
    lines = [f"{r0['cameras']} cameras {r0['width']}x{r0['height']} YUYV @ {r0['fps']:g} fps + 8 ch audio, "
             f"{r0['media_s']:g} s of media ({r0['frames']} frames, {r0['raw_mb']} MB); plain write of the same bytes "
             f"measured before each take",
             f"{'encoding':<9}{'lossless':>9}{'size':>7}{'take s':>8}{'plain s':>8}{'x plain':>8}{'us/frame':>10}"
             f"{'plain us':>9}{'cpu us':>8}{'cores':>6}{'realtime':>9}  keeps up"]
    for r in records:
        lines.append(f"{r['encoding']:<9}{'yes' if r['lossless'] else 'no':>9}{r['size_ratio']:>7.2f}"
                     f"{r['take_wall_s']:>8.2f}{r['plain_wall_s']:>8.2f}{r['wall_ratio_vs_plain']:>8.2f}"
                     f"{r['per_frame_us']:>10.0f}{r['plain_per_frame_us']:>9.0f}{r['cpu_per_frame_us']:>8.0f}"
                     f"{r['cpu_cores_used']:>6.2f}{r['realtime_factor']:>9.2f}  {'yes' if r['keeps_up'] else 'NO'}")
    lines.append("writer's own cost per frame (64x48 YUYV, steady state) vs a plain write of its 6 KiB: "
                 + ", ".join(f"{r['encoding']} {r['small_frame_us']:.0f} us vs {r['small_frame_plain_us']:.0f} us"
                             for r in records))
    return "\n".join(lines)


def main() -> None:
    """``python -m bench.take [--seconds N] [--dir DIR] [--quick] [--json]`` (the same as ``mimir bench take``)."""
    import typer

    from bench.cli import bench_take

    typer.run(bench_take)


if __name__ == "__main__":
    main()
