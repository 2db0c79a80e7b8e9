"""The schema of a take folder: sources, clock segments and ``manifest.json`` (declared once, here).

Every structure a take records is a msgspec Struct below; the writer, the
repair tool, the readers and the docs derive from these declarations. Times
are canonical nanoseconds (int) unless a field name says otherwise. The
manifest is JSON (``msgspec.json``), written atomically (temporary file,
then rename), so a reader sees either the previous or the new manifest,
never a torn one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeGuard

import msgspec

__all__ = [
    "FORMAT", "VERSION", "MANIFEST_NAME", "RESERVE_NAME", "PIXEL_FORMATS", "SAMPLE_FORMATS", "VIDEO_ENCODINGS",
    "CameraSource", "AudioSource", "Source", "ClockSegment", "Span", "Skip", "Gap", "FileEntry", "Missing",
    "SourceRecord", "Manifest", "encode_manifest", "decode_manifest", "write_manifest", "read_manifest",
    "PixelFormatName", "VideoEncoding", "FileRole", "is_pixel_format", "is_video_encoding",
]

FORMAT = "mimir-take"
VERSION = 1
MANIFEST_NAME = "manifest.json"
RESERVE_NAME = ".manifest-reserve"  # space the writer keeps free for its last manifest on a full disk

#: Camera payload layouts (the names of ``mimir.descriptors.PixelFormat``) and their numpy shapes.
PIXEL_FORMATS = {"YUYV": 2, "GRBG": 1, "GREY": 1, "BGR3": 3}  # bytes per pixel
#: Audio sample formats: numpy dtype names of the ring payload.
SAMPLE_FORMATS = ("float32", "int32", "int16")
#: Video encodings a camera can be written with (see docs/take.md for what each stores).
VIDEO_ENCODINGS = ("ffv1", "raw", "h264")
#: The same names as types (the keys of :data:`PIXEL_FORMATS`, :data:`VIDEO_ENCODINGS`) and a file's role.
PixelFormatName = Literal["YUYV", "GRBG", "GREY", "BGR3"]
VideoEncoding = Literal["ffv1", "raw", "h264"]
FileRole = Literal["video", "frames", "audio", "blocks", "xdf"]


def is_pixel_format(value: str) -> TypeGuard[PixelFormatName]:
    """True when ``value`` is a pixel format a take holds (a key of :data:`PIXEL_FORMATS`)."""
    return value in PIXEL_FORMATS


def is_video_encoding(value: str) -> TypeGuard[VideoEncoding]:
    """True when ``value`` is one of :data:`VIDEO_ENCODINGS`."""
    return value in VIDEO_ENCODINGS


class CameraSource(msgspec.Struct, frozen=True, tag="camera", tag_field="kind"):
    """A camera: every frame is a uint8 array of ``shape`` (height, width[, bytes per pixel])."""

    name: str
    width: int
    height: int
    pixel_format: PixelFormatName
    nominal_rate_hz: float
    encoding: VideoEncoding = "ffv1"

    @property
    def shape(self) -> tuple[int, ...]:
        bpp = PIXEL_FORMATS[self.pixel_format]
        return (self.height, self.width) if bpp == 1 else (self.height, self.width, bpp)


class AudioSource(msgspec.Struct, frozen=True, tag="audio", tag_field="kind"):
    """A multichannel audio source: every block is an array (frames, channels) of ``sample_format``."""

    name: str
    channels: int
    sample_rate_hz: int
    sample_format: Literal["float32", "int32", "int16"]
    channel_labels: list[str] | None = None

    @property
    def nominal_rate_hz(self) -> float:
        return float(self.sample_rate_hz)


Source = CameraSource | AudioSource


class ClockSegment(msgspec.Struct, frozen=True):
    """One stretch of a source's canonical timeline with one clock fit (what the rig reported).

    A new segment starts when the rig's mapping to canonical time changes
    (the provisional clock locks to the witness, or a relock). Timestamps of
    one segment are never rewritten by a later one: the step between them
    is kept, as ``step_ns`` and as a file/stream boundary.

    ``local_sample_at_epoch`` and ``rate_hz`` are the sync fit
    ``device_sample = local_sample_at_epoch + canonical_s * rate_hz``;
    ``witness`` names the active witness (codebook and emitter) the fit was
    decoded from. All are None for the provisional (wall-clock) segment.
    """

    index: int
    state: Literal["provisional", "locked"] = "provisional"
    local_sample_at_epoch: float | None = None
    rate_hz: float | None = None
    confidence: float | None = None
    witness: str | None = None
    step_ns: int | None = None
    first_ns: int | None = None  # filled by the writer: canonical time of the segment's first item
    reason: str | None = None     # why the rig began it: start, lock, step, stream restart, lock lost, authority
    authority: str | None = None  # what defined canonical time in it: "local" (the reference channel) or a
    #                               remote source id (a canonical-authority receiver followed by time transfer)


class Span(msgspec.Struct, frozen=True):
    """A closed canonical interval ``[first_ns, last_ns]``."""

    first_ns: int
    last_ns: int


class Skip(msgspec.Struct, frozen=True):
    """Items the producer lost before they reached the writer (``count`` frames or blocks), with why."""

    first_ns: int
    last_ns: int
    count: int
    cause: str


class Gap(msgspec.Struct, frozen=True):
    """A discontinuity the written data itself shows.

    Cameras: frame ``sequence`` numbers jumped (``missing`` frames). Audio:
    the device sample counter jumped (``missing`` samples; negative when it
    went back). ``after_ns`` is the canonical time of the last item before
    the gap, ``before_ns`` of the first after it.
    """

    after_ns: int
    before_ns: int
    missing: int
    unit: Literal["frames", "samples"]


class FileEntry(msgspec.Struct):
    """One file of the take (path relative to the take folder).

    ``role``: ``video`` (Matroska), ``frames`` (its timestamp table),
    ``audio`` (WAV), ``blocks`` (its block table) or ``xdf``. ``count`` is
    frames (video, frames), sample frames (audio), blocks (blocks) or chunks
    (xdf). ``file`` is the source's file number (the ``NNNNN`` in the path),
    ``part`` the split part, ``clock_segment`` the segment index (None for xdf).
    """

    path: str
    role: FileRole
    source: str | None
    file: int
    part: int
    clock_segment: int | None
    count: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    bytes: int = 0
    closed: bool = False


class Missing(msgspec.Struct, frozen=True):
    """Something the take should hold and does not, with its cause (``source`` None: the whole take)."""

    source: str | None
    what: str
    cause: str


class SourceRecord(msgspec.Struct):
    """Per source: what it is, what was written, what was skipped, its gaps and clock segments.

    ``written`` counts frames (camera) or blocks (audio); ``written_samples``
    counts audio sample frames (0 for cameras). ``span`` covers the written
    items (audio: first sample of the first block to first sample of the last).
    """

    source: Source
    written: int = 0
    written_samples: int = 0
    span: Span | None = None
    skipped: list[Skip] = msgspec.field(default_factory=list)
    gaps: list[Gap] = msgspec.field(default_factory=list)
    clock_segments: list[ClockSegment] = msgspec.field(default_factory=list)


class Manifest(msgspec.Struct):
    """``manifest.json``: everything needed to read and trust a take folder.

    ``complete`` is true only when the writer closed every file itself and
    the caller declared nothing missing; skipped items are listed per source
    either way. ``rig`` is the caller's configuration, stored as given.
    ``video_time_base`` is the presentation-time unit of every video file
    (Matroska as written by FFmpeg stores milliseconds; the exact canonical
    nanoseconds are in each video's timestamp table).
    """

    created_unix_ns: int
    rig: dict[str, Any]
    sources: list[SourceRecord]
    files: list[FileEntry] = msgspec.field(default_factory=list)
    complete: bool = False
    missing: list[Missing] = msgspec.field(default_factory=list)
    split_seconds: float | None = None
    origin_ns: int | None = None
    video_time_base: str = "1/1000"
    closed_unix_ns: int | None = None
    repaired: bool = False
    format: str = FORMAT
    version: int = VERSION

    def source(self, name: str) -> SourceRecord:
        for record in self.sources:
            if record.source.name == name:
                return record
        raise KeyError(f"no source {name!r} in this take (sources: {', '.join(r.source.name for r in self.sources)})")

    def files_of(self, source: str | None, role: str) -> list[FileEntry]:
        """The files of ``source`` (None: take-wide, i.e. XDF) with ``role``, in writing order."""
        return [f for f in self.files if f.source == source and f.role == role]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Manifest)


def encode_manifest(manifest: Manifest, *, compact: bool = False) -> bytes:
    data = _encoder.encode(manifest)
    return (data if compact else msgspec.json.format(data, indent=2)) + b"\n"


def decode_manifest(data: bytes) -> Manifest:
    return _decoder.decode(data)


def write_manifest(take_dir: str | os.PathLike, manifest: Manifest, *, sync: bool = False,
                   compact: bool = False) -> int:
    """Write ``manifest.json`` atomically (temporary file, then rename); return its size in bytes.

    The rename makes it safe against a crash of the writing process. ``sync``
    also fsyncs the file first (survives power loss); the writer asks for it
    only at close, because an fsync on some file systems (ext4 ordered mode)
    forces out every dirty page of the take's other files too. ``compact``
    drops the indentation (the writer's last resort on a full disk).
    """
    data = encode_manifest(manifest, compact=compact)
    final = Path(take_dir) / MANIFEST_NAME
    tmp = final.with_name(MANIFEST_NAME + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(data)


def read_manifest(take_dir: str | os.PathLike) -> Manifest:
    """Read a take's ``manifest.json`` (raises ``FileNotFoundError`` when there is none)."""
    return decode_manifest((Path(take_dir) / MANIFEST_NAME).read_bytes())
