"""A small XDF 1.0 writer (the Lab Streaming Layer file format), read back by ``pyxdf``.

No Python library writes XDF (pyxdf, mne and ezmsg only read it;
LabRecorder's writer is C++), so this module writes the container itself,
following the specification in the sccn/xdf repository:

* the file starts with the magic ``XDF:``;
* then chunks: ``[NumLengthBytes: 1 byte = 1, 4 or 8][Length: that many bytes, little-endian]
  [Tag: uint16][Content]``, where Length counts the tag and the content;
* tags: 1 FileHeader (XML), 2 StreamHeader (uint32 stream id + XML),
  3 Samples (stream id, varlen sample count, then per sample a timestamp
  byte count 0 or 8, the timestamp as a little-endian double in seconds
  when present, and the channel values little-endian), 4 ClockOffset,
  5 Boundary (a fixed 16-byte UUID that lets a reader resynchronise after
  a damaged chunk), 6 StreamFooter (stream id + XML).

A sample without a timestamp is read as the previous sample's timestamp
plus ``1 / nominal_srate`` (this is how audio carries one timestamp per
block). Timestamps are canonical seconds as float64: :func:`seconds` rounds
canonical nanoseconds once, so a timestamp is within half a unit in the last
place of the exact value: 3.7 ns a year after the epoch, 0.12 us at 1.8e9 s,
under 1 us for any int64 nanosecond count (tested).

Clock offsets: every timestamp is already on the canonical timeline, so
each stream gets exactly one ClockOffset chunk with offset 0.0 (at its first
timestamp). pyxdf then adds exactly 0.0 to every timestamp and reports one
clock segment per stream. More offsets would not carry a clock step: pyxdf
fits a line through a stream's offsets and adds it to the timestamps, which
blurs a step over the whole stream. A clock step starts a new stream
instead (see docs/take.md).

Chunks are assembled in memory and reach the file only in :meth:`XdfWriter.flush`,
one ``write`` per flush, each flush followed by a Boundary chunk; a file cut
by a crash ends in at most one torn chunk, which pyxdf skips (a torn Samples
chunk) and :func:`truncate_torn_tail` removes.
"""

from __future__ import annotations

import mmap
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any, overload

import numpy as np

__all__ = [
    "XdfWriter", "StreamInfo", "seconds", "chunk", "varlen", "samples_records", "block_records",
    "truncate_torn_tail", "walk_chunks", "BOUNDARY_UUID", "CHANNEL_FORMATS",
]

MAGIC = b"XDF:"
TAG_FILE_HEADER, TAG_STREAM_HEADER, TAG_SAMPLES, TAG_CLOCK_OFFSET, TAG_BOUNDARY, TAG_STREAM_FOOTER = 1, 2, 3, 4, 5, 6
BOUNDARY_UUID = bytes([0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4])
#: numpy dtype -> XDF channel_format
CHANNEL_FORMATS = {np.dtype("float32"): "float32", np.dtype("float64"): "double64", np.dtype("int8"): "int8",
                   np.dtype("int16"): "int16", np.dtype("int32"): "int32", np.dtype("int64"): "int64"}
_NS_PER_S = 1_000_000_000


@overload
def seconds(canonical_ns: int | np.integer) -> float: ...
@overload
def seconds(canonical_ns: np.ndarray) -> np.ndarray: ...
def seconds(canonical_ns: np.ndarray | int | np.integer) -> np.ndarray | float:
    """Canonical nanoseconds -> float64 seconds with one rounding (whole seconds are exact below 2**53 s)."""
    if isinstance(canonical_ns, (int, np.integer)):
        return int(canonical_ns) / _NS_PER_S  # Python's int / int is correctly rounded
    ns = np.asarray(canonical_ns, dtype=np.int64)
    whole, frac = np.divmod(ns, _NS_PER_S)
    return whole.astype(np.float64) + frac.astype(np.float64) / 1e9


def varlen(n: int) -> bytes:
    """XDF variable-length integer: a byte giving the width (1, 4 or 8), then the value."""
    if n < 1 << 8:
        return b"\x01" + struct.pack("<B", n)
    if n < 1 << 32:
        return b"\x04" + struct.pack("<I", n)
    return b"\x08" + struct.pack("<Q", n)


def chunk(tag: int, content: bytes) -> bytes:
    return varlen(len(content) + 2) + struct.pack("<H", tag) + content


def _xml(root: str, fields: Mapping[str, Any]) -> bytes:
    element = ET.Element(root)
    _fill(element, fields)
    return b'<?xml version="1.0"?>' + ET.tostring(element, encoding="utf-8", xml_declaration=False)


def _fill(element: ET.Element, value: Any) -> None:
    """Mappings become child elements, lists repeat their element, None stays empty, the rest becomes text."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            for one in item if isinstance(item, list) else [item]:
                _fill(ET.SubElement(element, key), one)
    elif value is not None:
        element.text = repr(value) if isinstance(value, float) else str(value)


def samples_records(values: np.ndarray, timestamps_s: np.ndarray) -> bytes:
    """Samples-chunk body (without stream id and count) for rows that each carry a timestamp."""
    values = np.ascontiguousarray(values)
    n, c = values.shape
    record = np.dtype([("tsbytes", "u1"), ("ts", "<f8"), ("values", values.dtype.newbyteorder("<"), (c,))])
    out = np.empty(n, record)
    out["tsbytes"] = 8
    out["ts"] = timestamps_s
    out["values"] = values
    return out.tobytes()


def block_records(values: np.ndarray, first_timestamp_s: float) -> bytes:
    """Samples-chunk body for one block: the first row stamped, the others implied (+1/srate each)."""
    values = np.ascontiguousarray(values)
    n, c = values.shape
    le = values.dtype.newbyteorder("<")
    head = struct.pack("<Bd", 8, first_timestamp_s) + values[0].astype(le, copy=False).tobytes()
    if n == 1:
        return head
    rest = np.empty(n - 1, np.dtype([("tsbytes", "u1"), ("values", le, (c,))]))
    rest["tsbytes"] = 0
    rest["values"] = values[1:]
    return head + rest.tobytes()


def blocks_records(values: np.ndarray, first_timestamps_s: Sequence[float], frames: Sequence[int]) -> bytes:
    """:func:`block_records` of consecutive blocks (their rows back to back in ``values``), in one buffer.

    Blocks of one length (the usual case) are packed in one vectorised
    copy; otherwise block by block.
    """
    values = np.ascontiguousarray(values)
    m = frames[0]
    if m < 2 or any(n != m for n in frames):
        parts, start = [], 0
        for t, n in zip(first_timestamps_s, frames, strict=True):
            parts.append(block_records(values[start:start + n], t))
            start += n
        return b"".join(parts)
    c = values.shape[1]
    le = values.dtype.newbyteorder("<")
    block = np.dtype([("tsbytes", "u1"), ("ts", "<f8"), ("first", le, (c,)),
                      ("rest", np.dtype([("tsbytes", "u1"), ("values", le, (c,))]), (m - 1,))])
    out = np.empty(len(frames), block)
    shaped = values.reshape(len(frames), m, c)
    out["tsbytes"] = 8
    out["ts"] = first_timestamps_s
    out["first"] = shaped[:, 0]
    out["rest"]["tsbytes"] = 0
    out["rest"]["values"] = shaped[:, 1:]
    return out.tobytes()


class StreamInfo:
    """The header fields of one XDF stream (``desc`` is free-form: nested mappings/lists of scalars)."""

    def __init__(self, name: str, type: str, channel_count: int, nominal_srate: float, channel_format: str,
                 source_id: str, desc: Mapping[str, Any] | None = None) -> None:
        self.name, self.type, self.channel_count = name, type, channel_count
        self.nominal_srate, self.channel_format, self.source_id = nominal_srate, channel_format, source_id
        self.desc = desc or {}

    def xml(self) -> bytes:
        return _xml("info", {
            "name": self.name, "type": self.type, "channel_count": self.channel_count,
            "nominal_srate": float(self.nominal_srate), "channel_format": self.channel_format,
            "source_id": self.source_id, "version": 1.1, "desc": self.desc,
        })


class _Stream:
    __slots__ = ("info", "first_s", "last_s", "count", "offset_at_s")

    def __init__(self, info: StreamInfo, offset_at_s: float) -> None:
        self.info = info
        self.offset_at_s = offset_at_s
        self.first_s: float | None = None
        self.last_s: float | None = None
        self.count = 0


class XdfWriter:
    """Writes one XDF file; chunks are queued in memory and written by :meth:`flush` (one write call).

    Owned by one thread. Stream ids are 1, 2, ... in the order of
    :meth:`add_stream` (continued by :meth:`reopen`). ``chunks`` counts
    chunks written to the file.
    """

    def __init__(self, path: str | os.PathLike, file_info: Mapping[str, Any] | None) -> None:
        self.path = os.fspath(path)
        self._file = open(self.path, "xb" if file_info is not None else "ab", buffering=0)
        self._pending: list[bytes] = []
        self._pending_chunks = 0
        self.chunks = 0
        self._streams: dict[int, _Stream] = {}
        self._open: set[int] = set()
        self._first_id = 1
        if file_info is None:
            return
        try:  # the header goes out at once: from here on the file is a valid (empty) XDF file
            self._write(MAGIC + chunk(TAG_FILE_HEADER, _xml("info", {"version": "1.0", **file_info})))
        except BaseException:
            self.abort()
            raise
        self.chunks = 1

    @classmethod
    def reopen(cls, path: str | os.PathLike, *, streams: int, chunks: int) -> XdfWriter:
        """Append to an XDF file this class wrote and closed, which holds ``streams`` streams and ``chunks`` chunks.

        XDF is a sequence of chunks with no end marker: new streams (ids from
        ``streams + 1``, so none merges with an earlier one) and their samples
        and footers simply follow the old ones.
        """
        writer = cls(path, None)
        writer.chunks = chunks
        writer._first_id = streams + 1
        return writer

    @property
    def streams(self) -> int:
        """Streams in the file (those of earlier openings included)."""
        return self._first_id - 1 + len(self._streams)

    def add_stream(self, info: StreamInfo, first_timestamp_s: float) -> int:
        """Queue a StreamHeader and its one zero ClockOffset (measured at ``first_timestamp_s``); returns the id."""
        stream_id = self._first_id + len(self._streams)
        self._streams[stream_id] = _Stream(info, first_timestamp_s)
        self._open.add(stream_id)
        sid = struct.pack("<I", stream_id)
        self._queue(chunk(TAG_STREAM_HEADER, sid + info.xml()))
        self._queue(chunk(TAG_CLOCK_OFFSET, sid + struct.pack("<dd", first_timestamp_s, 0.0)))
        return stream_id

    def append(self, stream_id: int, body: bytes, count: int, first_s: float, last_s: float) -> None:
        """Queue one Samples chunk: ``body`` from :func:`samples_records` / :func:`block_records` (or joined)."""
        self._queue(chunk(TAG_SAMPLES, struct.pack("<I", stream_id) + varlen(count) + body))
        stream = self._streams[stream_id]
        if stream.first_s is None:
            stream.first_s = first_s
        stream.last_s = last_s
        stream.count += count

    def end_stream(self, stream_id: int) -> None:
        """Queue the stream's footer (first/last timestamp and sample count); the stream takes no more samples."""
        if stream_id not in self._open:
            return
        self._open.discard(stream_id)
        s = self._streams[stream_id]
        footer = {"first_timestamp": s.first_s, "last_timestamp": s.last_s, "sample_count": s.count,
                  "clock_offsets": {"offset": {"time": s.offset_at_s, "value": 0.0}}}
        self._queue(chunk(TAG_STREAM_FOOTER, struct.pack("<I", stream_id) + _xml("info", footer)))

    def _queue(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_chunks += 1

    def flush(self) -> None:
        """Write every queued chunk and a Boundary chunk with one ``write`` call (no-op when nothing is queued)."""
        if not self._pending:
            return
        self._pending.append(chunk(TAG_BOUNDARY, BOUNDARY_UUID))
        data = b"".join(self._pending)
        written = self._pending_chunks + 1
        self._pending.clear()
        self._pending_chunks = 0
        self._write(data)
        self.chunks += written

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # a regular file takes it all at once unless the disk fills (then write raises)
            view = view[self._file.write(view):]

    def close(self) -> None:
        """Footers for the streams still open, a last flush, close."""
        try:
            for stream_id in sorted(self._open):
                self.end_stream(stream_id)
            self.flush()
        finally:
            self._file.close()

    def abort(self) -> None:
        """Close without writing what is queued, cut a torn last chunk, and remove the file if not even
        its header made it (used after a failed write)."""
        self._pending.clear()
        try:
            self._file.close()
        except OSError:
            pass
        truncate_torn_tail(self.path)
        if os.path.getsize(self.path) == 0:
            os.unlink(self.path)

    def bytes(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0


def _read_varlen(buf: memoryview, pos: int) -> tuple[int, int] | None:
    if pos >= len(buf):
        return None
    width = buf[pos]
    if width not in (1, 4, 8) or pos + 1 + width > len(buf):
        return None
    return int.from_bytes(buf[pos + 1:pos + 1 + width], "little"), pos + 1 + width


def walk_chunks(path: str | os.PathLike) -> tuple[list[tuple[int, int, int]], int]:
    """``([(tag, content_offset, content_length), ...], end of the last whole chunk)`` of an XDF file.

    Stops at the first chunk that does not fit in the file (a torn tail) or
    whose length byte is invalid.
    """
    with open(path, "rb") as f:
        magic = f.read(4)
        if magic != MAGIC:
            if MAGIC.startswith(magic):  # empty, or cut inside the magic
                return [], 0
            raise ValueError(f"{os.fspath(path)} is not an XDF file (no 'XDF:' magic)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            data = memoryview(mapped)
            try:
                chunks: list[tuple[int, int, int]] = []
                pos = good = 4
                while True:
                    head = _read_varlen(data, pos)
                    if head is None:
                        break
                    length, body = head
                    if length < 2 or body + length > len(data):
                        break
                    tag = int.from_bytes(data[body:body + 2], "little")
                    chunks.append((tag, body + 2, length - 2))
                    pos = good = body + length
            finally:
                data.release()
    return chunks, good


def truncate_torn_tail(path: str | os.PathLike) -> int:
    """Cut anything after the last whole chunk (a crash mid-write); returns the bytes removed."""
    _, good = walk_chunks(path)
    size = os.path.getsize(path)
    if size > good:
        os.truncate(path, good)
    return size - good
