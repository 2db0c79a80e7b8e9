"""Open a take folder back into numpy: frames and timestamps (PyAV), audio (soundfile), streams (pyxdf).

::

    from mimir.take import open_take

    take = open_take("takes/2026-12-01T10-00")
    take.manifest.complete, [s.source.name for s in take.manifest.sources]
    cam = take.frames("cam0")            # every frame, in order, across files (file=N: one file)
    cam.pixels[i]                        # the ring payload, bit-exact for ffv1 and raw
    cam.canonical_ns[i], cam.sequence[i] # from the timestamp tables; cam.pts_ms[i] from the video file
    for run in take.audio("mic"):        # one run per file: contiguous samples
        run.samples, run.first_ns, run.blocks["canonical_ns"]
    for stream in take.xdf():            # pyxdf's stream dicts, every part, dejitter off
        stream["info"]["name"][0], stream["time_stamps"], stream["time_series"]

Reads go through the manifest's file list (run :func:`mimir.take.repair`
first on a take whose writer was killed: it lists the files written after
the last flush). Each video frame is checked against its table row: the
presentation time in the file must be the table's ``pts``; a mismatch
raises :class:`TakeError`. A file cut by a crash is read up to its last
whole frame; frames and table rows are paired up to the shorter of the two.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pyxdf
import soundfile

from .audio import BLOCK_COLUMNS
from .errors import NotATake, TakeError
from .manifest import (
    MANIFEST_NAME,
    AudioSource,
    CameraSource,
    FileEntry,
    Manifest,
    read_manifest,
)
from .pixels import payload_from_frame
from .table import read_table
from .video import FRAME_COLUMNS, count_video_packets

__all__ = ["Take", "Frames", "AudioRun", "open_take", "iter_video", "count_video_packets", "load_xdf"]


@dataclass
class Frames:
    """Every frame of one camera in writing order; all arrays have one row per frame."""

    pixels: np.ndarray          # (n, height, width[, bytes per pixel]) uint8: the payload layout
    canonical_ns: np.ndarray    # int64, exact (from the timestamp tables)
    pts_ms: np.ndarray          # int64, the presentation time stored in the video file (milliseconds)
    sequence: np.ndarray
    device_time_ns: np.ndarray
    host_time_ns: np.ndarray
    file: np.ndarray            # the file number (NNNNN) each frame is in
    frame: np.ndarray           # its index in that file


@dataclass
class AudioRun:
    """One audio file: contiguous samples; sample ``k`` is device sample ``start_sample + k``."""

    path: Path
    samples: np.ndarray         # (frames, channels), the source's sample format, bit-exact
    sample_rate_hz: int
    first_ns: int               # canonical time of sample 0
    start_sample: int
    blocks: dict[str, np.ndarray]  # the block table (see mimir.take.audio.BLOCK_COLUMNS)
    clock_segment: int | None


def iter_video(path: str | os.PathLike, pixel_format: str) -> Iterator[tuple[np.ndarray, int]]:
    """``(payload, pts)`` of every decodable frame of one video file; stops quietly at a torn end."""
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
                frames = packet.decode()  # the demuxer's last (empty) packet drains the decoder
            except StopIteration:
                return
            except av.error.FFmpegError:
                break  # a file cut by a crash: stop at the cut ...
            for frame in frames:
                yield payload_from_frame(frame, pixel_format), int(frame.pts)
        try:  # ... and hand out what the decoder still holds (threaded decoders keep a few frames)
            for frame in stream.codec_context.decode(None):
                assert frame.pts is not None, "every frame of a take's video has a pts (the writer sets each one)"
                yield payload_from_frame(frame, pixel_format), int(frame.pts)
        except av.error.FFmpegError:
            pass


def load_xdf(path: str | os.PathLike) -> list[dict]:
    """pyxdf's streams of one XDF file, with the stored timestamps (``dejitter_timestamps=False``)."""
    streams, _ = pyxdf.load_xdf(os.fspath(path), dejitter_timestamps=False)
    return streams


class Take:
    """A take folder opened for reading (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        if not (self.directory / MANIFEST_NAME).is_file():
            raise NotATake(f"{self.directory} holds no take ({MANIFEST_NAME} is missing)")
        self.manifest: Manifest = read_manifest(self.directory)

    def _files(self, source: str | None, role: str) -> list[FileEntry]:
        if source is not None:
            self.manifest.source(source)  # KeyError with the known names
        return self.manifest.files_of(source, role)

    def frames(self, camera: str, file: int | None = None) -> Frames:
        """Decode every frame of ``camera`` (all files in order, or only file number ``file``) with its table row.

        Everything is decoded into memory: for a long take read it file by
        file (``file=`` each number in ``manifest.files_of(camera, "video")``).
        """
        spec = self.manifest.source(camera).source
        if not isinstance(spec, CameraSource):
            raise TypeError(f"{camera!r} is not a camera")
        pixels: list[np.ndarray] = []
        columns: dict[str, list[np.ndarray]] = {c: [] for c in FRAME_COLUMNS}
        file_numbers: list[np.ndarray] = []
        pts_file: list[int] = []
        for entry in self._files(camera, "video"):
            if file is not None and entry.file != file:
                continue
            video = self.directory / entry.path
            table = read_table(video.with_name(video.stem + ".frames.csv"), FRAME_COLUMNS)
            decoded = list(iter_video(video, spec.pixel_format))
            n = min(len(decoded), len(table["frame"]))
            for name in FRAME_COLUMNS:
                columns[name].append(table[name][:n])
            for payload, pts in decoded[:n]:
                pixels.append(payload)
                pts_file.append(pts)
            file_numbers.append(np.full(n, entry.file, np.int64))
        cat = {name: np.concatenate(parts) if parts else np.zeros(0, np.int64) for name, parts in columns.items()}
        pts_ms = np.asarray(pts_file, np.int64)
        bad = np.flatnonzero(pts_ms != cat["pts"])
        if bad.size:
            i = int(bad[0])
            raise TakeError(f"{camera}: frame {i} has presentation time {pts_ms[i]} ms in the video "
                            f"but {cat['pts'][i]} in its timestamp table")
        stack = np.stack(pixels) if pixels else np.zeros((0, *spec.shape), np.uint8)
        return Frames(stack, cat["canonical_ns"], pts_ms, cat["sequence"], cat["device_time_ns"],
                      cat["host_time_ns"], np.concatenate(file_numbers) if file_numbers else np.zeros(0, np.int64),
                      cat["frame"])

    def audio(self, source: str) -> list[AudioRun]:
        """Every audio file of ``source`` in order, samples in the source's own dtype."""
        spec = self.manifest.source(source).source
        if not isinstance(spec, AudioSource):
            raise TypeError(f"{source!r} is not an audio source")
        runs = []
        for entry in self._files(source, "audio"):
            wav = self.directory / entry.path
            blocks = read_table(wav.with_name(wav.stem + ".blocks.csv"), BLOCK_COLUMNS)
            samples, rate = soundfile.read(wav, dtype=spec.sample_format, always_2d=True)
            if len(blocks["block"]) == 0:
                continue
            runs.append(AudioRun(wav, samples, rate, int(blocks["canonical_ns"][0]), int(blocks["start_sample"][0]),
                                 blocks, entry.clock_segment))
        return runs

    def xdf(self) -> list[dict]:
        """pyxdf's streams of every XDF part (dejitter off); each dict gets ``"part"`` (its file's part)."""
        out = []
        for entry in self._files(None, "xdf"):
            for stream in load_xdf(self.directory / entry.path):
                stream["part"] = entry.part
                out.append(stream)
        return out


def open_take(directory: str | os.PathLike) -> Take:
    return Take(directory)
