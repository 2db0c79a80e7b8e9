"""One video file of one camera: a Matroska file written with PyAV plus its timestamp table.

Presentation times: FFmpeg's Matroska muxer always stores timestamps in
milliseconds (it fixes the segment's TimestampScale at 1,000,000 ns and sets
every stream's time base to 1/1000, whatever time base the caller asks for).
So each frame's presentation time is its canonical time rounded to the
nearest millisecond, and the exact canonical nanoseconds live in the
timestamp table next to the video (``NNNNN.frames.csv``, one row per frame
in file order, see :data:`FRAME_COLUMNS`). Two frames less than a
millisecond apart would share a millisecond; the later one is then stored at
the next free millisecond (its ``pts`` column says so) because Matroska needs
strictly increasing times. A file never spans a clock step, so canonical
times only grow inside one file.

Crash safety: the muxer writes each Matroska cluster when it closes, and
clusters close every :data:`CLUSTER_MS` of presentation time
(``cluster_time_limit``) or 5 MiB; ``flush_packets`` hands every write
straight to the OS. A file cut anywhere is readable up to its last whole
cluster (Matroska needs no index to be read). The table is flushed by the
take writer at least once a second.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .files import remove_files, size_or_zero
from .manifest import CameraSource
from .pixels import frame_from_payload, layout
from .table import TableWriter

__all__ = ["VideoFile", "FRAME_COLUMNS", "CLUSTER_MS", "TIME_BASE", "pts_ms", "count_video_packets"]

FRAME_COLUMNS = ("frame", "canonical_ns", "pts", "sequence", "device_time_ns", "host_time_ns")
CLUSTER_MS = 500
TIME_BASE = Fraction(1, 1000)  # what FFmpeg's Matroska muxer imposes; see the module docstring


def pts_ms(canonical_ns: int) -> int:
    """Canonical nanoseconds rounded to the nearest millisecond (halves up), in integers."""
    return (canonical_ns + 500_000) // 1_000_000


class VideoFile:
    """Writes one camera's frames into ``<stem>.mkv`` and ``<stem>.frames.csv``.

    Owned by the take writer, used from one thread. Every frame passed to
    :meth:`write` is copied into an encoder frame before the call returns,
    so the caller may reuse or release its payload right after.
    """

    def __init__(self, stem: str | os.PathLike, source: CameraSource) -> None:
        stem = Path(stem)
        self.source = source
        self.video_path = stem.with_name(stem.name + ".mkv")
        self.table_path = stem.with_name(stem.name + ".frames.csv")
        self._layout = layout(source.encoding, source.pixel_format)
        self.frames = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self._last_pts: int | None = None
        self._table = TableWriter(self.table_path, FRAME_COLUMNS)
        options = {"flush_packets": "1", "cluster_time_limit": str(CLUSTER_MS), **self._layout.container_options}
        try:
            container = av.open(os.fspath(self.video_path), "w", format="matroska", container_options=options)
        except BaseException:
            self._table.close_quietly()
            remove_files(self.video_path, self.table_path)
            raise
        try:
            container.metadata["title"] = f"{source.name} ({source.pixel_format})"
            rate = Fraction(source.nominal_rate_hz).limit_denominator(1001)
            stream = container.add_stream(self._layout.codec, rate=rate, options=dict(self._layout.options))
            assert isinstance(stream, av.VideoStream), f"codec {self._layout.codec} makes a video stream"
            stream.width = source.width
            stream.height = source.height
            stream.pix_fmt = self._layout.av_format
            stream.time_base = TIME_BASE
            stream.codec_context.time_base = TIME_BASE
            stream.metadata["mimir_source"] = source.name
            stream.metadata["mimir_pixel_format"] = source.pixel_format
            if self._layout.codec != "rawvideo":
                stream.codec_context.thread_type = "SLICE"
                stream.codec_context.thread_count = 0  # one per core
        except BaseException:
            container.close()
            self._table.close_quietly()
            remove_files(self.video_path, self.table_path)
            raise
        self._container = container
        self._stream = stream

    @property
    def lossless(self) -> bool:
        return self._layout.lossless

    def write(self, payload: np.ndarray, canonical_ns: int, sequence: int, device_time_ns: int,
              host_time_ns: int, still_valid: Callable[[], bool] | None = None) -> bool:
        """Encode and write one frame; False (nothing written) when ``still_valid`` says the payload changed
        while it was copied into the encoder's frame."""
        pts = pts_ms(canonical_ns)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        frame = frame_from_payload(payload, self._layout.av_format)
        if still_valid is not None and not still_valid():
            return False
        frame.pts = pts
        frame.time_base = TIME_BASE
        for packet in self._stream.encode(frame):
            self._container.mux_one(packet)
        self._table.append((self.frames, canonical_ns, pts, sequence, device_time_ns, host_time_ns))
        self._last_pts = pts
        if self.first_ns is None:
            self.first_ns = canonical_ns
        self.last_ns = canonical_ns
        self.frames += 1
        return True

    def flush(self) -> None:
        """Hand the table's rows to the OS (the video flushes itself cluster by cluster)."""
        self._table.flush()

    def close(self) -> None:
        """Drain the encoder, finish the Matroska file (index, duration) and close the table."""
        try:
            for packet in self._stream.encode(None):
                self._container.mux_one(packet)
        finally:
            try:
                self._container.close()
            finally:
                self._table.close()

    def abort(self) -> None:
        """Close after a failure, swallowing every error; what reached the disk stays readable.

        A video file whose Matroska header never reached the disk (the disk
        filled before the first cluster) cannot be opened by any reader: it
        is removed; its table stays, so its rows are counted as lost.
        """
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the first error was already reported by the caller
            pass
        self._table.close_quietly()
        try:
            av.open(os.fspath(self.video_path)).close()
        except av.error.FFmpegError:
            remove_files(self.video_path)

    def bytes(self) -> int:
        return size_or_zero(self.video_path)

    def table_bytes(self) -> int:
        return size_or_zero(self.table_path)


def count_video_packets(path: str | os.PathLike) -> list[int]:
    """Presentation times of the whole packets in a video file, without decoding (stops at a torn end)."""
    pts: list[int] = []
    try:
        with av.open(os.fspath(path)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None and not packet.is_corrupt:
                    pts.append(int(packet.pts))
    except av.error.FFmpegError:
        pass
    return pts
