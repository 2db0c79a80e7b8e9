"""The take writer: streams camera frames and audio blocks into a take folder (see docs/take.md).

::

    from mimir.take import TakeWriter, CameraSource, AudioSource, ClockSegment

    sources = [CameraSource("cam0", 640, 480, "YUYV", 60.0, encoding="ffv1"),
               AudioSource("mic", channels=2, sample_rate_hz=48_000, sample_format="float32")]
    with TakeWriter("takes/2026-12-01T10-00", sources, rig={"name": "lab"}, split_seconds=60) as take:
        take.begin_clock_segment("mic", ClockSegment(1, "locked", local_sample_at_epoch=..., rate_hz=48000.02,
                                                     witness="codebook 7 / emitter A", step_ns=-1_200))
        take.write_frame("cam0", frame, canonical_ns, sequence=n, device_time_ns=d, host_time_ns=h)
        take.write_audio("mic", block, canonical_ns, start_sample=s, host_time_ns=h)
        take.skip("cam0", first_ns, last_ns, count=3, cause="lapped by the ring")
    # leaving the block closes the take: manifest.json has complete = true

Ownership and threads: one writer object per take, used from one thread
(the recorder's or the snapshot's; never a capture process). Every payload
is copied (encoded, or written) before the call returns. The writer flushes
from inside its write calls at least every ``flush_interval_s`` of wall
time; a caller that may stay idle longer calls :meth:`TakeWriter.flush`.

Invariants:

* every item handed to a write call is in exactly one file (no loss, no
  duplication), also across split boundaries and clock steps;
* with ``split_seconds``, every item is in a file (and XDF file) of its own
  part, whatever order the sources come in: a source that comes back to a
  part whose XDF file was closed (late, or after a backward clock step)
  reopens it;
* a file holds one source, one split part and one clock segment; an audio
  file also holds one contiguous run of device samples (a gap starts a new
  file and is listed in the manifest);
* after any failure (disk full included) every file is closed and readable
  and the manifest says ``complete = false`` with the cause.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import shutil
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

import av
import msgspec
import numpy as np
import soundfile

from .audio import AudioFile
from .errors import DiskFull, TakeClosed, TakeExists
from .manifest import (
    FORMAT,
    MANIFEST_NAME,
    RESERVE_NAME,
    VERSION,
    AudioSource,
    CameraSource,
    ClockSegment,
    FileEntry,
    FileRole,
    Gap,
    Manifest,
    Missing,
    Skip,
    Source,
    SourceRecord,
    Span,
    write_manifest,
)
from .scan import scan
from .video import VideoFile
from .xdf import (
    CHANNEL_FORMATS,
    StreamInfo,
    XdfWriter,
    block_records,
    blocks_records,
    samples_records,
    seconds,
)

__all__ = ["TakeWriter", "xdf_name"]

_RESERVE_MIN_BYTES = 64 << 10
_ENTRY_BYTES = 400  # an upper bound of one file entry in the pretty-printed manifest (about 315 B)
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_T = TypeVar("_T")
_Args = TypeVarTuple("_Args")


def xdf_name(part: int) -> str:
    return f"take_{part:05d}.xdf"


class _State:
    """What the writer tracks for one source (mutated only by the writer)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.is_camera = isinstance(source, CameraSource)
        self.written = 0
        self.written_samples = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.last_sequence: int | None = None
        self.skipped: list[Skip] = []
        self.gaps: list[Gap] = []
        self.segments: list[ClockSegment] = []
        self.segment = ClockSegment(0)
        self.segment_changed = False
        self.file_index = -1
        self.part = 0
        self.current: VideoFile | AudioFile | None = None
        self.entries: tuple[FileEntry, FileEntry] | None = None
        self.xdf_stream: int | None = None
        self.xdf_part: int | None = None
        # XDF samples not yet handed to the XdfWriter: camera rows (ns, file, frame, sequence) or audio bodies.
        self.rows: list[tuple[int, int, int, int]] = []
        self.bodies: list[bytes] = []
        self.body_samples = 0
        self.body_first_s = 0.0
        self.body_last_s = 0.0

    def span(self) -> Span | None:
        """The canonical span of what was written; None before the first item."""
        if self.first_ns is None:
            return None
        assert self.last_ns is not None, "_count sets last_ns with first_ns"
        return Span(self.first_ns, self.last_ns)


class TakeWriter:
    """Writes one take folder. See the module docstring for usage, ownership and invariants.

    ``directory`` must not exist or be empty. ``sources`` are
    :class:`CameraSource` / :class:`AudioSource` with unique names (each
    becomes a sub-folder). ``rig`` is stored in the manifest as given.
    ``split_seconds`` rolls every file over at ``origin_ns + k * split``
    (origin: the first item written, unless given). ``flush_interval_s``
    bounds how much a crash can lose (see docs/take.md, "Crash safety").
    """

    def __init__(self, directory: str | os.PathLike, sources: Sequence[Source], *, rig: Mapping[str, Any] | None = None,
                 split_seconds: float | None = None, origin_ns: int | None = None,
                 flush_interval_s: float = 1.0) -> None:
        self.directory = Path(directory)
        if split_seconds is not None and not split_seconds > 0:
            raise ValueError(f"split_seconds must be > 0, got {split_seconds}")
        if not 0 < flush_interval_s <= 1.0:
            raise ValueError(f"flush_interval_s must be in (0, 1], got {flush_interval_s}")
        names = [s.name for s in sources]
        if not names:
            raise ValueError("a take needs at least one source")
        for name in names:
            if not _NAME_OK.match(name):
                raise ValueError(f"source name {name!r} is not a plain file name (letters, digits, '.', '_', '-')")
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        for s in sources:
            odd_yuyv = isinstance(s, CameraSource) and s.pixel_format == "YUYV" and s.width % 2
            if isinstance(s, CameraSource) and (odd_yuyv or s.width <= 0 or s.height <= 0):
                raise ValueError(f"camera {s.name!r}: bad frame size {s.width}x{s.height}")
            if isinstance(s, AudioSource) and (s.channels <= 0 or s.sample_rate_hz <= 0):
                raise ValueError(f"audio source {s.name!r}: needs channels > 0 and sample_rate_hz > 0")
        if self.directory.exists() and (not self.directory.is_dir() or any(self.directory.iterdir())):
            raise TakeExists(f"{self.directory} exists and is not an empty folder; a take never writes over files")
        self._states = {s.name: _State(s) for s in sources}
        self._split_ns = None if split_seconds is None else round(split_seconds * 1e9)
        self._origin_ns = origin_ns
        self._flush_interval_ns = round(flush_interval_s * 1e9)
        self._next_flush_ns = 0
        self._xdf: dict[int, XdfWriter] = {}
        self._xdf_entries: dict[int, FileEntry] = {}   # the open parts' manifest entries
        self._files_xdf: dict[int, FileEntry] = {}     # every part's
        self._xdf_streams: dict[int, int] = {}         # parts whose XDF file is closed -> its streams (for a reopen)
        self._newest_part = 0
        self._files: list[FileEntry] = []
        self._closed = False
        self._failure: Missing | None = None
        self._reserve_bytes = 0
        self._manifest_bytes = 0
        self._entries_since_write = 0
        self.manifest = Manifest(created_unix_ns=time.time_ns(), rig=dict(rig or {}), sources=[],
                                 split_seconds=split_seconds, origin_ns=origin_ns)
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in names:
            (self.directory / name).mkdir()
        self._io(self.directory / MANIFEST_NAME, self._write_manifest)
        self._next_flush_ns = time.monotonic_ns() + self._flush_interval_ns

    # ------------------------------------------------------------------ public API

    def write_frame(self, camera: str, frame: np.ndarray, canonical_ns: int, *, sequence: int,
                    device_time_ns: int = 0, host_time_ns: int = 0,
                    still_valid: Callable[[], bool] | None = None) -> bool:
        """Append one camera frame (the ring payload array) at its canonical time; True when written.

        ``still_valid`` lets a caller hand in a view of memory another process
        may overwrite (a ring slot): it is called once the frame has been
        copied into the encoder's frame, and when it returns False nothing is
        written (the copy may be torn) and False is returned.
        """
        st = self._state(camera, CameraSource)
        source = st.source
        assert isinstance(source, CameraSource), "_state checked the kind"
        if frame.dtype != np.uint8 or frame.shape != source.shape:
            raise ValueError(f"camera {camera!r}: frame is {frame.dtype} {frame.shape}, expected uint8 {source.shape}")
        canonical_ns, sequence = int(canonical_ns), int(sequence)
        part = self._part_for(st, canonical_ns)
        if st.current is None or part != st.part or st.segment_changed:
            self._roll(st, part, canonical_ns)
        video = st.current
        assert isinstance(video, VideoFile), "_roll opens a video file for a camera"
        if not self._io(video.video_path, video.write, frame, canonical_ns, sequence, int(device_time_ns),
                        int(host_time_ns), still_valid):
            return False  # a gap, if any, is measured at the next frame that is written
        if st.last_sequence is not None and sequence != st.last_sequence + 1:
            assert st.last_ns is not None, "a written frame set last_ns with last_sequence"
            st.gaps.append(Gap(st.last_ns, canonical_ns, sequence - st.last_sequence - 1, "frames"))
        st.rows.append((canonical_ns, st.file_index, video.frames - 1, sequence))
        st.last_sequence = sequence
        self._count(st, canonical_ns, 0)
        self._tick()
        return True

    def write_audio(self, source: str, block: np.ndarray, canonical_ns: int, *, start_sample: int,
                    host_time_ns: int = 0) -> None:
        """Append one audio block ``(frames, channels)``; ``canonical_ns`` is the time of its first sample.

        ``start_sample`` is the device sample counter of the first sample:
        when it is not where the previous block ended, the writer records a
        gap and starts a new file (the gap is never closed up).
        """
        st = self._state(source, AudioSource)
        spec = st.source
        assert isinstance(spec, AudioSource), "_state checked the kind"
        if block.ndim != 2 or block.shape[1] != spec.channels or block.dtype != np.dtype(spec.sample_format) \
                or block.shape[0] == 0:
            raise ValueError(f"audio {source!r}: block is {block.dtype} {block.shape}, expected "
                             f"{spec.sample_format} (frames > 0, {spec.channels})")
        canonical_ns, start_sample, n = int(canonical_ns), int(start_sample), block.shape[0]
        part = self._part_for(st, canonical_ns)
        audio = st.current
        assert audio is None or isinstance(audio, AudioFile), "an audio source's open file is an AudioFile"
        expected = audio.next_start_sample if audio is not None else None
        gap = expected is not None and start_sample != expected
        if gap:
            assert expected is not None and st.last_ns is not None, "a gap follows a written block"
            st.gaps.append(Gap(st.last_ns, canonical_ns, start_sample - expected, "samples"))
        if audio is None or part != st.part or st.segment_changed or gap or audio.room_samples() < n:
            self._roll(st, part, canonical_ns)
            audio = st.current
            assert isinstance(audio, AudioFile), "_roll opens an audio file for an audio source"
        self._io(audio.audio_path, audio.write, block, canonical_ns, start_sample, int(host_time_ns))
        first_s = seconds(canonical_ns)
        st.bodies.append(block_records(block, first_s))
        if st.body_samples == 0:
            st.body_first_s = first_s
        st.body_last_s = first_s + (n - 1) / spec.sample_rate_hz
        st.body_samples += n
        self._count(st, canonical_ns, n)
        self._tick()

    def write_audio_blocks(self, source: str, samples: np.ndarray, canonical_ns: Sequence[int],
                           start_sample: Sequence[int], frames: Sequence[int],
                           host_time_ns: Sequence[int] | None = None) -> None:
        """Append consecutive blocks in one call: exactly what :meth:`write_audio` writes block by block (the
        same files, rows, XDF samples, gaps and split parts), at a fraction of the cost per block.

        ``samples`` holds the blocks back to back, ``(sum(frames), channels)``;
        the other arguments have one entry per block. Runs of blocks that go
        into one file are written with one call into libsndfile.
        """
        st = self._state(source, AudioSource)
        spec = st.source
        assert isinstance(spec, AudioSource)
        n = len(frames)
        counts = [int(f) for f in frames]
        times = [int(t) for t in canonical_ns]
        starts = [int(x) for x in start_sample]
        hosts = [0] * n if host_time_ns is None else [int(h) for h in host_time_ns]
        if samples.ndim != 2 or samples.shape[1] != spec.channels or samples.dtype != np.dtype(spec.sample_format) \
                or n == 0 or min(counts) <= 0 or sum(counts) != samples.shape[0] \
                or not len(times) == len(starts) == len(hosts) == n:
            raise ValueError(f"audio {source!r}: {n} blocks of {samples.dtype} {samples.shape}: expected "
                             f"{spec.sample_format} (sum(frames), {spec.channels}) with frames > 0 and one time, "
                             "start sample and host time per block")
        offsets = [0]
        for c in counts:
            offsets.append(offsets[-1] + c)
        run = 0             # first block of the pending run (blocks that go into the current file together)
        current = st.current
        expected = current.next_start_sample if isinstance(current, AudioFile) else None
        room = current.room_samples() if isinstance(current, AudioFile) else 0
        for k in range(n):
            part = self._part_for(st, times[k])
            gap = expected is not None and starts[k] != expected
            if st.current is None or part != st.part or st.segment_changed or gap or room < counts[k]:
                if k > run:
                    self._audio_run(st, spec, samples, offsets, times, starts, counts, hosts, run, k)
                if gap and expected is not None and st.last_ns is not None:
                    st.gaps.append(Gap(st.last_ns, times[k], starts[k] - expected, "samples"))
                self._roll(st, part, times[k])
                run = k
                current = st.current
                assert isinstance(current, AudioFile)
                room = current.room_samples()
            expected = starts[k] + counts[k]
            room -= counts[k]
        self._audio_run(st, spec, samples, offsets, times, starts, counts, hosts, run, n)
        self._tick()

    def _audio_run(self, st: _State, spec: AudioSource, samples: np.ndarray, offsets: list[int], times: list[int],
                   starts: list[int], counts: list[int], hosts: list[int], a: int, b: int) -> None:
        """Blocks ``a .. b-1`` into the source's current file, its table and its pending XDF samples."""
        audio = st.current
        assert isinstance(audio, AudioFile)
        values = samples[offsets[a]:offsets[b]]
        self._io(audio.audio_path, audio.write_blocks, values, times[a:b], starts[a:b], counts[a:b], hosts[a:b])
        firsts = [float(seconds(t)) for t in times[a:b]]
        st.bodies.append(blocks_records(values, firsts, counts[a:b]))
        if st.body_samples == 0:
            st.body_first_s = firsts[0]
        st.body_last_s = firsts[-1] + (counts[b - 1] - 1) / spec.sample_rate_hz
        st.body_samples += offsets[b] - offsets[a]
        for k in range(a, b):
            self._count(st, times[k], counts[k])

    def begin_clock_segment(self, source: str, segment: ClockSegment) -> None:
        """The items of ``source`` written from now on belong to ``segment`` (a new clock fit).

        Its index must be above the current one. The next item starts a new
        file and a new XDF stream; nothing already written is changed.
        """
        st = self._state(source, None)
        used = bool(st.segments) or st.segment_changed
        if segment.index < 0 or used and segment.index <= st.segment.index:
            raise ValueError(f"{source!r}: clock segment {segment.index} does not follow segment {st.segment.index}")
        st.segment = segment
        st.segment_changed = bool(st.segments)  # before the first item the declared segment is simply the first

    def skip(self, source: str, first_ns: int, last_ns: int, count: int, cause: str) -> None:
        """Record ``count`` items of ``source`` lost before the writer (with their canonical span and cause)."""
        st = self._state(source, None)
        if count <= 0 or last_ns < first_ns:
            raise ValueError(f"{source!r}: a skip needs count > 0 and first_ns <= last_ns")
        st.skipped.append(Skip(int(first_ns), int(last_ns), int(count), str(cause)))

    def flush(self) -> None:
        """Hand everything buffered to the OS and rewrite the manifest (write calls do it at least once a second)."""
        self._check_open()
        self._flush()

    def close(self, missing: Sequence[Missing] = ()) -> Manifest:
        """Finish every file and write the final manifest; returns it.

        ``missing``: what the caller knows the take lacks (a stopped camera,
        a span it could not read); any entry makes ``complete`` false.
        Closing twice returns the same manifest.
        """
        if self._closed:
            return self.manifest
        try:
            for st in self._states.values():
                self._drain(st)
                if st.current is not None:
                    self._io(self._media_path(st), st.current.close)
                    self._update_entries(st, closed=True)
                    st.current = None
            for part in sorted(self._xdf):
                self._close_xdf(part)
        except BaseException as exc:
            if not self._closed:  # _io has already closed the take after an I/O error
                self._fail(f"{type(exc).__name__} while closing: {_one_line(exc)}")
            raise
        self._closed = True
        self.manifest.missing.extend(missing)
        self.manifest.complete = not self.manifest.missing
        self.manifest.closed_unix_ns = time.time_ns()
        self._release_reserve()
        self._write_manifest(sync=True)
        return self.manifest

    def __enter__(self) -> TakeWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        elif not self._closed:
            self._fail(f"the writer was left by {exc_type.__name__}: {_one_line(exc)}")

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ internals

    def _state(self, name: str, kind: type | None) -> _State:
        self._check_open()
        st = self._states.get(name)
        if st is None:
            raise KeyError(f"unknown source {name!r}; this take has {', '.join(self._states)}")
        if kind is not None and not isinstance(st.source, kind):
            raise TypeError(f"{name!r} is {'a camera' if st.is_camera else 'an audio source'}")
        return st

    def _check_open(self) -> None:
        if self._closed:
            cause = f" ({self._failure.cause})" if self._failure else ""
            raise TakeClosed(f"the take in {self.directory} is closed{cause}")

    def _part_for(self, st: _State, canonical_ns: int) -> int:
        if self._split_ns is None:
            return 0
        if self._origin_ns is None:
            self._origin_ns = canonical_ns
            self.manifest.origin_ns = canonical_ns
        # Always the item's own part, also when the source comes back to a part it left (a clock step backwards, or
        # items delivered after the other sources moved on): the part's XDF file is reopened if it was closed.
        return max(0, (canonical_ns - self._origin_ns) // self._split_ns)

    def _count(self, st: _State, canonical_ns: int, samples: int) -> None:
        st.written += 1
        st.written_samples += samples
        if st.first_ns is None:
            st.first_ns = canonical_ns
        st.last_ns = canonical_ns
        if st.segments[-1].first_ns is None:
            st.segments[-1] = msgspec.structs.replace(st.segments[-1], first_ns=canonical_ns)

    def _media_path(self, st: _State) -> Path:
        cur = st.current
        assert cur is not None, "only a source with an open file has a media path"
        return cur.video_path if isinstance(cur, VideoFile) else cur.audio_path

    def _roll(self, st: _State, part: int, canonical_ns: int) -> None:
        """Close the source's current file (and XDF stream when the part or segment changes); open the next."""
        new_stream = st.current is None or part != st.part or st.segment_changed
        if st.current is not None:
            self._io(self._media_path(st), st.current.close)
            self._update_entries(st, closed=True)
            st.current = None
        if new_stream:
            self._end_stream(st)
        if st.segment_changed or not st.segments:
            st.segments.append(st.segment)
            st.segment_changed = False
        st.part = part
        st.file_index += 1
        folder = self.directory / st.source.name
        stem = folder / f"{st.file_index:05d}"
        segment = st.segments[-1].index

        def entry(role: FileRole, path: Path) -> FileEntry:
            return FileEntry(path=str(path.relative_to(self.directory)), role=role, source=st.source.name,
                             file=st.file_index, part=part, clock_segment=segment)

        if isinstance(st.source, CameraSource):
            video = self._io(stem, VideoFile, stem, st.source)
            st.current, st.entries = video, (entry("video", video.video_path), entry("frames", video.table_path))
        else:
            audio = self._io(stem, AudioFile, stem, st.source, canonical_ns)
            st.current, st.entries = audio, (entry("audio", audio.audio_path), entry("blocks", audio.table_path))
        self._files.extend(st.entries)
        self._entries_since_write += 2
        self._xdf_for(part)  # opened eagerly: every part a source is in has its XDF file open
        self._newest_part = max(self._newest_part, part)
        self._retire_parts()

    def _update_entries(self, st: _State, closed: bool = False) -> None:
        cur = st.current
        assert st.entries is not None and cur is not None, "_roll sets a source's entries with its open file"
        media, table = st.entries
        if isinstance(cur, VideoFile):
            media.count = table.count = cur.frames
        else:
            media.count, table.count = cur.samples, cur.blocks
        for entry in (media, table):
            entry.first_ns, entry.last_ns = cur.first_ns if cur.last_ns is not None else None, cur.last_ns
            entry.closed = closed
        media.bytes = cur.bytes()
        table.bytes = cur.table_bytes()

    # ---- XDF

    def _stream_info(self, st: _State) -> StreamInfo:
        seg = st.segments[-1]
        clock = {k: v for k, v in msgspec.to_builtins(seg).items() if v is not None}
        common = {"take_format": FORMAT, "take_version": VERSION, "source": st.source.name,
                  "clock_segment": seg.index}
        if isinstance(st.source, CameraSource):
            cam = st.source
            columns = ("file", "frame", "sequence")
            desc = {"mimir": common, "clock": clock,
                    "channels": {"channel": [{"label": lab, "type": "index"} for lab in columns]},
                    "video": {"folder": cam.name, "file_pattern": "NNNNN.mkv (NNNNN = channel 'file', 5 digits)",
                              "timestamp_table": "NNNNN.frames.csv",
                              "frame": "channel 'frame' = frame index in the file",
                              "encoding": cam.encoding, "width": cam.width, "height": cam.height,
                              "pixel_format": cam.pixel_format}}
            return StreamInfo(cam.name, "VideoFrameIndex", 3, cam.nominal_rate_hz, "int64",
                              f"mimir:{cam.name}", desc)
        mic = st.source
        labels = mic.channel_labels or [f"ch{i}" for i in range(mic.channels)]
        desc = {"mimir": common, "clock": clock,
                "channels": {"channel": [{"label": lab, "type": "Audio"} for lab in labels]},
                "audio": {"folder": mic.name, "file_pattern": "NNNNN.wav", "block_table": "NNNNN.blocks.csv",
                          "timestamps": "first sample of each block; the others at +1/nominal_srate"}}
        return StreamInfo(mic.name, "Audio", mic.channels, mic.sample_rate_hz,
                          CHANNEL_FORMATS[np.dtype(mic.sample_format)], f"mimir:{mic.name}", desc)

    def _xdf_for(self, part: int) -> XdfWriter:
        xdf = self._xdf.get(part)
        if xdf is None and part in self._xdf_streams:  # closed before: a late source appends its stream to it
            path = self.directory / xdf_name(part)
            entry = self._files_xdf[part]
            streams = self._xdf_streams.pop(part)
            xdf = self._io(path, lambda: XdfWriter.reopen(path, streams=streams, chunks=entry.count))
            self._xdf[part] = xdf
            self._xdf_entries[part] = entry
            entry.closed = False
        elif xdf is None:
            path = self.directory / xdf_name(part)
            info = {"datetime": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                    "mimir": {"take_format": FORMAT, "take_version": VERSION, "part": part,
                              "split_seconds": self.manifest.split_seconds,
                              "timestamps": "canonical seconds since the rig's epoch"}}
            xdf = self._io(path, XdfWriter, path, info)
            self._xdf[part] = xdf
            entry = FileEntry(path=xdf_name(part), role="xdf", source=None, file=part, part=part, clock_segment=None)
            self._xdf_entries[part] = entry
            self._files_xdf[part] = entry
            self._files.append(entry)
            self._entries_since_write += 1
            self._io(self.directory / RESERVE_NAME, self._ensure_reserve)  # the manifest grows with every file
        return xdf

    def _drain(self, st: _State) -> None:
        """Move the source's pending XDF samples into its stream (in the source's current part)."""
        if not st.rows and not st.bodies:
            return
        xdf = self._xdf_for(st.part)
        if st.is_camera:
            rows = np.array(st.rows, dtype=np.int64)
            stamps = seconds(rows[:, 0])
            body, count = samples_records(rows[:, 1:], stamps), len(rows)
            first_s, last_s = float(stamps[0]), float(stamps[-1])
            st.rows.clear()
        else:
            body, count, first_s, last_s = b"".join(st.bodies), st.body_samples, st.body_first_s, st.body_last_s
            st.bodies.clear()
            st.body_samples = 0
        if st.xdf_stream is None:
            st.xdf_stream = xdf.add_stream(self._stream_info(st), first_s)
            st.xdf_part = st.part
        xdf.append(st.xdf_stream, body, count, first_s, last_s)

    def _end_stream(self, st: _State) -> None:
        self._drain(st)
        if st.xdf_stream is not None:
            assert st.xdf_part is not None, "_drain sets xdf_part with xdf_stream"
            self._xdf[st.xdf_part].end_stream(st.xdf_stream)
            st.xdf_stream = st.xdf_part = None

    def _retire_parts(self) -> None:
        """Close the XDF parts no source is expected to write again; never one a source with an open file is in.

        A part closes when every source with an open file has moved past it, or
        when no source is in it and it is two parts behind the newest (a source
        stalled in an older part keeps that one part open). A source that comes
        back to a closed part later (delivered late, or stepped back by its
        clock) reopens its XDF file: every item is in its own part, none is lost
        or written twice, and at most two parts plus one per stalled source are open.
        """
        active = [st for st in self._states.values() if st.current is not None]
        for part in sorted(self._xdf):
            occupied = any(st.part == part for st in active)
            passing = any(st.part < part for st in active)  # a source behind it will pass through it
            if occupied or (passing and part >= self._newest_part - 1):
                continue
            self._close_xdf(part)

    def _close_xdf(self, part: int) -> None:
        for st in self._states.values():
            if st.part == part:
                self._end_stream(st)  # drains into this part's file while it is still open
        xdf = self._xdf.pop(part)
        self._io(xdf.path, xdf.close)
        entry = self._xdf_entries.pop(part)
        entry.count, entry.bytes, entry.closed = xdf.chunks, xdf.bytes(), True
        self._xdf_streams[part] = xdf.streams

    # ---- flushing, manifest, failure

    def _tick(self) -> None:
        if time.monotonic_ns() >= self._next_flush_ns:
            self._flush()

    def _flush(self) -> None:
        for st in self._states.values():
            self._drain(st)
            if st.current is not None:
                self._io(st.current.table_path, st.current.flush)
                self._update_entries(st)
        for part, xdf in self._xdf.items():
            self._io(xdf.path, xdf.flush)
            entry = self._xdf_entries[part]
            entry.count, entry.bytes = xdf.chunks, xdf.bytes()
        self._io(self.directory / MANIFEST_NAME, self._write_manifest)
        self._next_flush_ns = time.monotonic_ns() + self._flush_interval_ns

    def _build_manifest(self) -> Manifest:
        m = self.manifest
        m.sources = [SourceRecord(source=st.source, written=st.written, written_samples=st.written_samples,
                                  span=st.span(),
                                  skipped=list(st.skipped), gaps=list(st.gaps), clock_segments=list(st.segments))
                     for st in self._states.values()]
        m.files = list(self._files)
        return m

    def _write_manifest(self, sync: bool = False) -> None:
        self._manifest_bytes = write_manifest(self.directory, self._build_manifest(), sync=sync)
        self._entries_since_write = 0
        if not self._closed:
            self._ensure_reserve()

    def _ensure_reserve(self) -> None:
        """Keep a file of twice the manifest's (estimated) size: deleting it frees room for the last manifest.

        Grown when the manifest is written and whenever a part's files are
        added (a manifest grows by a few hundred bytes per file, and a short
        split period adds files faster than flushes rewrite the manifest).
        """
        estimate = self._manifest_bytes + _ENTRY_BYTES * (self._entries_since_write + 2 * len(self._states))
        want = max(_RESERVE_MIN_BYTES, 2 * estimate)
        if want <= self._reserve_bytes:
            return
        fd = os.open(self.directory / RESERVE_NAME, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            if hasattr(os, "posix_fallocate"):  # Linux: blocks allocated, not a sparse promise
                os.posix_fallocate(fd, 0, want)
            else:  # macOS, Windows: write the zeros
                size = os.fstat(fd).st_size
                if want > size:
                    os.pwrite(fd, b"\0" * (want - size), size) if hasattr(os, "pwrite") else _append_zeros(fd, want - size)
        finally:
            os.close(fd)
        self._reserve_bytes = want

    def _release_reserve(self) -> None:
        (self.directory / RESERVE_NAME).unlink(missing_ok=True)
        self._reserve_bytes = 0

    def _io(self, path: os.PathLike | str, fn: Callable[[*_Args], _T], *args: *_Args) -> _T:
        """Run one file operation; on failure close the take (incomplete) and raise (DiskFull when out of space)."""
        try:
            return fn(*args)
        except (OSError, soundfile.LibsndfileError, av.error.FFmpegError, MemoryError) as exc:
            if self._closed:
                raise
            if _is_disk_full(exc, self.directory):
                free = _free_bytes(self.directory)
                message = f"disk full writing {path} ({free} bytes free); the take is closed and marked incomplete"
                self._fail(f"disk full writing {path}")
                raise DiskFull(message, os.fspath(path)) from exc
            self._fail(f"{type(exc).__name__} writing {path}: {_one_line(exc)}")
            raise

    def _fail(self, cause: str) -> None:
        """Close every file without raising, mark the take incomplete with ``cause``, write the manifest."""
        self._closed = True
        self._failure = Missing(None, "everything after the failure", cause)
        for st in self._states.values():
            st.rows.clear()
            st.bodies.clear()
            if st.current is not None:
                st.current.abort()
                self._update_entries(st)
                st.current = None
        for part, xdf in list(self._xdf.items()):
            xdf.abort()
            entry = self._xdf_entries[part]
            entry.count, entry.bytes = xdf.chunks, xdf.bytes()
        self._xdf.clear()
        manifest = self._build_manifest()
        try:  # what the files really hold now (the last writes may not have reached them); modifies nothing
            found = scan(self.directory, manifest, fix=False, trust_closed=True)
            manifest.sources, manifest.files = found.sources, found.files
            manifest.missing.extend(found.missing)
        except Exception:  # noqa: BLE001 - keep the writer's own counts rather than no manifest
            pass
        manifest.complete = False
        manifest.missing.append(self._failure)
        manifest.closed_unix_ns = time.time_ns()
        self._release_reserve()  # frees room for the manifest below on a full disk
        for compact in (False, True):  # compact JSON is about a third smaller
            try:
                write_manifest(self.directory, manifest, sync=True, compact=compact)
                break
            except OSError:
                pass  # if both fail the manifest of the last flush (complete = false) stays; repair() rebuilds it


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _free_bytes(directory: Path) -> int:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return -1


def _append_zeros(fd: int, count: int) -> None:
    os.lseek(fd, 0, os.SEEK_END)
    os.write(fd, b"\0" * count)


def _is_disk_full(exc: BaseException, directory: Path) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, soundfile.LibsndfileError):  # libsndfile reports a failed write as a "System error"
        return 0 <= _free_bytes(directory) < _RESERVE_MIN_BYTES
    return False



