"""Count what a take folder's files really hold: the ground truth behind ``repair`` and the writer's failure path.

:func:`scan` walks every source folder and XDF file and returns per-source
records and file entries built from the files themselves:

* video: whole frames in ``NNNNN.mkv`` (demuxed, not decoded) paired with
  the rows of ``NNNNN.frames.csv``: a frame counts when both hold it;
* audio: whole blocks, i.e. block-table rows whose samples are all in the
  WAV; samples after the last such row have no timestamp;
* XDF: whole chunks.

With ``fix=False`` nothing is modified (the writer uses this on a full
disk); with ``fix=True`` (``repair``) tables are cut to the counted rows,
WAVs rewritten with exact headers, and torn XDF tails cut. With
``trust_closed``, files the manifest lists as closed keep their recorded
count (a closed file was finished by its writer), which spares demuxing
them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from .audio import BLOCK_COLUMNS, SUBTYPES
from .manifest import (
    AudioSource,
    CameraSource,
    FileEntry,
    FileRole,
    Gap,
    Manifest,
    Missing,
    Skip,
    SourceRecord,
    Span,
)
from .table import TableWriter, read_table
from .video import FRAME_COLUMNS, count_video_packets
from .xdf import truncate_torn_tail, walk_chunks

__all__ = ["scan", "Scan"]

_FILE = re.compile(r"^(\d{5})\.(mkv|wav|frames\.csv|blocks\.csv)$")
_XDF = re.compile(r"^take_(\d{5})\.xdf$")


@dataclass
class Scan:
    sources: list[SourceRecord]
    files: list[FileEntry]
    missing: list[Missing] = field(default_factory=list)


def scan(directory: str | os.PathLike, base: Manifest, *, fix: bool, trust_closed: bool) -> Scan:
    """Records and file entries of every source in ``base`` (and every XDF part) as the files are now."""
    directory = Path(directory)
    known = {f.path: f for f in base.files}
    out = Scan([], [])
    for record in base.sources:
        _Source(directory, base, known, fix, trust_closed, record, out).run()
    for path in sorted(directory.glob("take_*.xdf")):
        m = _XDF.match(path.name)
        if not m:
            continue
        if fix:
            truncate_torn_tail(path)
        chunks, _ = walk_chunks(path)
        part = int(m.group(1))
        before = known.get(path.name)
        out.files.append(FileEntry(path=path.name, role="xdf", source=None, file=part, part=part, clock_segment=None,
                                   count=len(chunks), bytes=path.stat().st_size,
                                   closed=bool(before and before.closed)))
    return out


class _Source:
    """Scans one source's folder (one job per instance; results go into ``out``)."""

    def __init__(self, directory: Path, base: Manifest, known: dict[str, FileEntry], fix: bool, trust_closed: bool,
                 record: SourceRecord, out: Scan) -> None:
        self.directory, self.base, self.known, self.fix, self.trust = directory, base, known, fix, trust_closed
        self.record, self.out = record, out
        self.skipped = list(record.skipped)
        self.gaps: list[Gap] = []
        self.written = self.samples = 0
        self.first: int | None = None     # canonical span of the media files counted so far
        self.last: int | None = None
        self.prev_next: int | None = None  # the sequence / start sample the next item continues from, and the
        self.prev_ns: int | None = None    # canonical time of the item before it (both set together)

    def run(self) -> None:
        source = self.record.source
        camera = isinstance(source, CameraSource)
        folder = self.directory / source.name
        # A file number counts when its media file or its table exists (a media file the disk never took
        # was removed by the writer; its table's rows are then lost items).
        numbers = sorted({int(m.group(1)) for p in (folder.iterdir() if folder.is_dir() else ())
                          if (m := _FILE.match(p.name)) and (m.group(2) in ("mkv", "frames.csv")) == camera})
        for number in numbers:
            if isinstance(source, CameraSource):
                self._video(number, folder / f"{number:05d}.mkv")
            else:
                self._audio(number, folder / f"{number:05d}.wav", source)
        span = None
        if self.first is not None:
            assert self.last is not None, "_add sets last with first"
            span = Span(self.first, self.last)
        self.out.sources.append(SourceRecord(
            source=source, written=self.written, written_samples=self.samples,
            span=span, skipped=self.skipped, gaps=self.gaps,
            clock_segments=list(self.record.clock_segments)))

    def _trusted(self, path: Path) -> FileEntry | None:
        entry = self.known.get(str(path.relative_to(self.directory)))
        return entry if self.trust and entry is not None and entry.closed else None

    def _video(self, number: int, video: Path) -> None:
        table_path = video.with_name(video.stem + ".frames.csv")
        table = _table(table_path, FRAME_COLUMNS)
        rows = len(table["frame"])
        trusted = self._trusted(video)
        frames = trusted.count if trusted else len(count_video_packets(video)) if video.exists() else 0
        n = min(frames, rows)
        if n < rows:
            self.skipped.append(Skip(int(table["canonical_ns"][n]), int(table["canonical_ns"][-1]), rows - n,
                                     f"lost in the crash: in {table_path.name} but not in {video.name}"))
            if self.fix:
                _rewrite_table(table_path, FRAME_COLUMNS, table, n)
        ns, seq = table["canonical_ns"][:n], table["sequence"][:n]
        for i in range(n):
            if self.prev_next is not None and int(seq[i]) != self.prev_next:
                assert self.prev_ns is not None, "prev_ns is set with prev_next"
                self.gaps.append(Gap(self.prev_ns, int(ns[i]), int(seq[i]) - self.prev_next, "frames"))
            self.prev_next, self.prev_ns = int(seq[i]) + 1, int(ns[i])
        if video.exists():
            self._add(number, video, "video", n, ns)
        if table_path.exists():
            self._add(number, table_path, "frames", n, ns)
        self.written += n

    def _audio(self, number: int, wav: Path, source: AudioSource) -> None:
        table_path = wav.with_name(wav.stem + ".blocks.csv")
        table = _table(table_path, BLOCK_COLUMNS)
        trusted = self._trusted(wav)
        have = trusted.count if trusted else _wav_frames(wav)
        ends = table["first_sample"] + table["frames"]
        blocks = int(np.searchsorted(ends, have, side="right"))  # whole blocks only (ends grow)
        keep = int(ends[blocks - 1]) if blocks else 0
        if have > keep:
            self.out.missing.append(Missing(
                source.name, f"{have - keep} samples at the end of {wav.relative_to(self.directory)}",
                "in the WAV without a block-table row (the writer stopped before flushing it): no timestamp"))
        if len(table["block"]) > blocks:
            self.skipped.append(Skip(int(table["canonical_ns"][blocks]), int(table["canonical_ns"][-1]),
                                     len(table["block"]) - blocks,
                                     f"lost in the crash: in {table_path.name} but not in {wav.name}"))
        if self.fix and not trusted and wav.exists():
            _rewrite_wav(wav, source, keep)
            if len(table["block"]) > blocks:
                _rewrite_table(table_path, BLOCK_COLUMNS, table, blocks)
        ns = table["canonical_ns"][:blocks]
        for i in range(blocks):
            start = int(table["start_sample"][i])
            if self.prev_next is not None and start != self.prev_next:
                assert self.prev_ns is not None, "prev_ns is set with prev_next"
                self.gaps.append(Gap(self.prev_ns, int(ns[i]), start - self.prev_next, "samples"))
            self.prev_next, self.prev_ns = start + int(table["frames"][i]), int(ns[i])
        if wav.exists():
            self._add(number, wav, "audio", keep, ns)
        if table_path.exists():
            self._add(number, table_path, "blocks", blocks, ns)
        self.written += blocks
        self.samples += keep

    def _add(self, number: int, path: Path, role: FileRole, count: int, ns: np.ndarray) -> None:
        rel = str(path.relative_to(self.directory))
        before = self.known.get(rel)
        f_ns = int(ns[0]) if len(ns) else None
        l_ns = int(ns[-1]) if len(ns) else None
        if f_ns is not None and role in ("video", "audio"):
            self.first = f_ns if self.first is None else self.first
            self.last = l_ns
        part = before.part if before is not None else _part(self.base, f_ns)
        self.out.files.append(FileEntry(
            path=rel, role=role, source=self.record.source.name, file=number, part=part,
            clock_segment=before.clock_segment if before is not None else None, count=count, first_ns=f_ns,
            last_ns=l_ns, bytes=path.stat().st_size, closed=bool(before and before.closed)))


def _wav_frames(wav: Path) -> int:
    """Whole sample frames in a WAV (libsndfile counts them from the file size when the header is stale)."""
    if not wav.exists():
        return 0
    try:
        return soundfile.info(os.fspath(wav)).frames
    except (soundfile.LibsndfileError, RuntimeError):
        return 0


def _table(path: Path, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    if path.exists():
        return read_table(path, columns)
    return {c: np.zeros(0, np.int64) for c in columns}


def _part(base: Manifest, first_ns: int | None) -> int:
    if base.split_seconds is None or base.origin_ns is None or first_ns is None:
        return 0
    return max(0, (first_ns - base.origin_ns) // round(base.split_seconds * 1e9))


def _rewrite_table(path: Path, columns: tuple[str, ...], table: dict[str, np.ndarray], rows: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    writer = TableWriter(tmp, columns)
    for i in range(rows):
        writer.append([int(table[c][i]) for c in columns])
    writer.close()
    os.replace(tmp, path)


def _rewrite_wav(wav: Path, source: AudioSource, keep: int) -> None:
    """Copy the first ``keep`` sample frames into a fresh WAV (exact header, same comment), then replace."""
    tmp = wav.with_name(wav.stem + ".repair.wav")
    tmp.unlink(missing_ok=True)
    with soundfile.SoundFile(os.fspath(wav)) as src:
        comment = src.comment
        with soundfile.SoundFile(os.fspath(tmp), "x", samplerate=src.samplerate, channels=src.channels,
                                 subtype=SUBTYPES[source.sample_format], format="WAV") as dst:
            if comment:
                dst.comment = comment
            left = keep
            while left > 0:
                block = src.read(min(left, 1 << 20), dtype=source.sample_format, always_2d=True)
                if not len(block):
                    break
                dst.write(block)
                left -= len(block)
    os.replace(tmp, wav)
