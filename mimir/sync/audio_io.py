"""Reading audio files for ``mimir decode`` and saying what is wrong with them.

Unreadable input raises :class:`UnreadableAudio` (the only input problem that
makes ``decode`` fail). Everything else (empty, too short, silent, clipped,
NaN/inf) is decoded anyway and described by :func:`inspect_audio`.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

__all__ = ["AudioInput", "UnreadableAudio", "read_audio", "inspect_audio", "MIN_USEFUL_SECONDS"]

MIN_USEFUL_SECONDS = 2.0  # a lock needs about ten events (0.2 s each)


class UnreadableAudio(Exception):
    pass


@dataclass
class AudioInput:
    samples: np.ndarray  # (frames,) float32, the chosen channel
    rate_hz: float
    channels: int
    channel: int
    warnings: list[str] = field(default_factory=list)


def _read_with_ffmpeg(path: str) -> tuple[np.ndarray, int]:
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", path, "-f", "wav", "-c:a", "pcm_f32le", "-"],
        capture_output=True,
        timeout=600,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise UnreadableAudio(proc.stderr.decode(errors="replace").strip() or "ffmpeg could not decode it")
    data, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return data, int(rate)


def read_audio(path: str, channel: int = 0) -> AudioInput:
    """Read one channel of an audio file (libsndfile formats; others through ffmpeg if installed).

    Raises :class:`UnreadableAudio` when the file cannot be read at all and
    ``ValueError`` when ``channel`` does not exist.
    """
    if not os.path.exists(path):
        raise UnreadableAudio("no such file")
    if os.path.isdir(path):
        raise UnreadableAudio("it is a directory")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as first:  # libsndfile's errors are not one class across versions
        if shutil.which("ffmpeg") is None:
            raise UnreadableAudio(str(first)) from first
        try:
            data, rate = _read_with_ffmpeg(path)
        except (UnreadableAudio, OSError, subprocess.SubprocessError, RuntimeError) as second:
            raise UnreadableAudio(f"{first}; ffmpeg: {second}") from second
    if rate <= 0:
        raise UnreadableAudio(f"invalid sample rate {rate}")
    channels = int(data.shape[1])
    if not 0 <= channel < max(channels, 1):
        raise ValueError(f"channel {channel} does not exist (the file has {channels} channel(s): 0..{channels - 1})")
    samples = data[:, channel] if channels else np.zeros(0, dtype=np.float32)
    return AudioInput(samples=np.ascontiguousarray(samples), rate_hz=float(rate), channels=channels, channel=channel)


def inspect_audio(samples: np.ndarray, rate_hz: float) -> list[str]:
    """Plain-language problems with the audio (empty list when it looks fine)."""
    notes: list[str] = []
    n = int(samples.size)
    if n == 0:
        return ["the file contains no samples"]
    seconds = n / rate_hz
    if seconds < MIN_USEFUL_SECONDS:
        notes.append(f"only {seconds:.2f} s of audio; locking needs about {MIN_USEFUL_SECONDS:g} s")
    finite = np.isfinite(samples)
    bad = n - int(finite.sum())
    if bad:
        notes.append(f"{bad} sample(s) are NaN or infinite; they were treated as silence")
    clean = np.where(finite, samples, 0.0)
    peak = float(np.max(np.abs(clean))) if n else 0.0
    if peak == 0.0:
        notes.append("the audio is digital silence")
    elif peak < 1e-6:
        notes.append(f"the audio is practically silent (peak {20 * np.log10(peak):.0f} dBFS)")
    clipped = int(np.count_nonzero(np.abs(clean) >= 0.999))
    if peak > 0 and clipped > max(3, n // 10000):
        notes.append(f"{clipped} sample(s) ({100.0 * clipped / n:.2f}%) are clipped at full scale")
    return notes
