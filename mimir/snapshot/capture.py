"""Save the last N seconds of a running rig into a take folder, as a reader the rig never waits for.

::

    from mimir.snapshot import take_snapshot
    result = take_snapshot("default", seconds=5.0, out="takes/now", video="raw")
    result.manifest.complete, result.written, result.lost

What happens, in order (the order matters: the oldest payloads of the
window are the next ones the rings overwrite):

1. the rig contract (the published plan) and the reservoir, read-only;
2. the span is ``[edge - N, edge]`` at that moment; the edge is the newest
   item of any source, so the snapshot waits (at most :data:`CATCH_UP_S`)
   until every other source has indexed its items up to it too (an audio
   block published a few milliseconds after a camera frame) and lists a
   source still short after that in the manifest;
3. the audio view of the reservoir with its descriptors (one vectorised
   copy); every audio block of the span is copied out of its ring in one
   gather and checked;
4. the camera view with its descriptors; a :class:`~mimir.snapshot.stage.FrameStager`
   thread starts rescuing the frames closest to being overwritten;
5. a :class:`mimir.take.TakeWriter` writes everything in canonical-time
   order (video per camera, one multichannel WAV, XDF, manifest), with a
   new clock segment wherever the rig's clock started one
   (:mod:`mimir.snapshot.segments`).

Nothing here writes to the rig: rings are attached as unregistered readers
(no reader slot, no cursor), the reservoir as a read-only view. A frame or
block the rig overwrote before the snapshot copied it is counted and listed
(``skipped`` in the manifest, with its span and cause), never written torn.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from mimir.contract import RigNotRunning, read_plan
from mimir.descriptors import HANDLE_SEQUENCE_MASK, AudioBlockRecord, SampleKind
from mimir.reservoir import ReservoirView
from mimir.supervisor.clock import ClockState
from mimir.take import (
    VIDEO_ENCODINGS,
    AudioSource,
    CameraSource,
    ClockSegment,
    DiskFull,
    Manifest,
    Missing,
    TakeExists,
    TakeWriter,
)
from mimir.take.manifest import VideoEncoding, is_pixel_format, is_video_encoding
from mimir.take.pixels import frame_of_slot
from mimir.topology import RESERVOIR, AudioWorkerSpec, CameraWorkerSpec, RigPlan
from ringbuf import RingReader, SegmentMissing, StaleItem

from .segments import Fit, assign, predates, take_segment
from .stage import FrameStager, copy_blocks, copy_of

__all__ = ["take_snapshot", "SnapshotResult", "BadSnapshotRequest", "RigStopped", "default_folder"]

_CAMERA = int(SampleKind.CAMERA_FRAME)
_AUDIO = int(SampleKind.AUDIO_BLOCK)
_SEQ = np.uint64(HANDLE_SEQUENCE_MASK)
_SEQ_INT = HANDLE_SEQUENCE_MASK
_HOST = AudioBlockRecord.__struct_fields__.index("host_time_ns")
_LOST = "overwritten in the rig's ring before the snapshot copied it"
CATCH_UP_S = 0.25  # how long a snapshot waits for sources still publishing their items up to the span's end


class BadSnapshotRequest(ValueError):
    """A snapshot that cannot be made as asked (too many seconds, an unknown encoding); one line says why."""


class RigStopped(RigNotRunning):
    """The rig's shared memory is there but its supervisor is gone."""


@dataclass
class SnapshotResult:
    """What a snapshot wrote. ``written``/``lost`` count frames (cameras) or blocks (audio) per source."""

    path: Path
    manifest: Manifest
    span_ns: tuple[int, int]
    written: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    staged_frames: int = 0      # frames the stager had to rescue into memory before the writer reached them
    wall_s: float = 0.0
    bytes: int = 0


def default_folder(rig: str) -> Path:
    return Path(f"snapshot-{rig}-{time.strftime('%Y%m%d-%H%M%S')}")


@dataclass
class _Camera:
    name: str
    source: CameraSource | None     # None: a payload the take format cannot hold (MJPG), or its ring is gone
    reader: RingReader | None       # attached whenever source is not None
    rate_hz: float
    rows: np.ndarray = field(init=False)         # the span's samples and descriptors (reservoir; _select_frames)
    descriptors: np.ndarray = field(init=False)

    def ring(self) -> RingReader:
        """The ring of a camera the take holds (``source`` is not None)."""
        assert self.reader is not None, "_sources attaches the ring of every camera it keeps a source for"
        return self.reader


@dataclass
class _Audio:
    name: str
    source: AudioSource
    reader: RingReader | None
    block_ns: int                                # one block's duration (the item period the catch-up waits on)
    rows: np.ndarray = field(init=False)         # set by _copy_audio, as are descriptors, valid and host_ns
    descriptors: np.ndarray = field(init=False)
    valid: np.ndarray = field(init=False)
    host_ns: np.ndarray = field(init=False)
    blocks: np.ndarray | None = None             # copies of the span's payloads (None: nothing copied)


def take_snapshot(rig: str = "default", seconds: float | None = None, out: str | os.PathLike | None = None,
                  video: str = "raw", *, margin_s: float = 1.0,
                  progress: Callable[[str], None] | None = None) -> SnapshotResult:
    """Copy the last ``seconds`` (default: the whole window) of every source of ``rig`` into take folder ``out``.

    Raises (one line each): :class:`BadSnapshotRequest` (``seconds`` beyond
    the window, an unknown encoding), :class:`~mimir.contract.RigNotRunning`
    / :class:`RigStopped`, :class:`~mimir.take.TakeExists` (``out`` exists
    and is not empty), :class:`~mimir.take.DiskFull` (the take is then
    closed, readable and marked incomplete; the rig is not affected).
    """
    started = time.perf_counter()
    if not is_video_encoding(video):
        raise BadSnapshotRequest(f"--video {video!r}: use one of {', '.join(VIDEO_ENCODINGS)}")
    plan = read_plan(rig)
    window_s = plan.window_ns / 1e9
    seconds = window_s if seconds is None else float(seconds)
    if not 0 < seconds <= window_s:
        raise BadSnapshotRequest(
            f"--seconds {seconds:g}: rig {rig!r} keeps {window_s:g} s (its reservoir window); ask for 0 < N <= "
            f"{window_s:g}, or raise reservoir.window_s in the rig config"
        )
    folder = Path(out) if out is not None else default_folder(rig)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise TakeExists(f"{folder} exists and is not an empty folder; a snapshot never writes over files")
    try:
        view = ReservoirView.attach(rig, RESERVOIR)
    except SegmentMissing:
        raise RigNotRunning(
            f"rig {rig!r} is not running (no reservoir): start it with `mimir-supervisor start`"
        ) from None
    cameras: list[_Camera] = []
    audios: list[_Audio] = []
    try:
        if not view.writer_alive():
            raise RigStopped(f"rig {rig!r} is not running: its supervisor (pid {view.writer_pid()}) is gone; "
                             "`mimir doctor --clean` removes what it left")
        cameras, audios, missing = _sources(rig, plan, video)
        edge_ns = view.edge_ns
        span = (edge_ns - round(seconds * 1e9), edge_ns)
        _catch_up(view, plan, cameras, audios, edge_ns, missing)
        _copy_audio(view, plan, audios, span)  # first: audio rings keep the least headroom
        _select_frames(view, plan, cameras, span)
        items = sorted((int(t), ci, k) for ci, c in enumerate(cameras) if c.source is not None
                       for k, t in enumerate(c.rows["timestamp_ns"].tolist()))
        live = [c for c in cameras if c.source is not None]
        order = {id(c): i for i, c in enumerate(live)}
        stage_items = [(order[id(cameras[ci])], int(cameras[ci].descriptors["payload_handle"][k]) & _SEQ_INT)
                       for _, ci, k in items]  # the writer takes frames in this order
        with FrameStager([c.ring() for c in live], [c.rate_hz for c in live], stage_items, margin_s=margin_s) as stager:
            result = _write(folder, rig, plan, cameras, audios, items, stager, span, seconds, video, missing, progress)
            result.staged_frames = stager.staged
    finally:
        for c in cameras:
            if c.reader is not None:
                c.reader.close()
        for a in audios:
            if a.reader is not None:
                a.reader.close()
        view.close()
    result.wall_s = time.perf_counter() - started
    result.bytes = sum(f.bytes for f in result.manifest.files)
    return result


def _attach(rig: str, object_id: str) -> RingReader | None:
    try:
        return RingReader.attach(object_id, rig=rig, register=False)
    except SegmentMissing:
        return None


def _sources(rig: str, plan: RigPlan, video: VideoEncoding) -> tuple[list[_Camera], list[_Audio], list[Missing]]:
    cameras: list[_Camera] = []
    audios: list[_Audio] = []
    missing: list[Missing] = []
    for worker in plan.workers:
        if isinstance(worker, CameraWorkerSpec):
            for cam in worker.cameras:
                source = None
                if worker.pixel_format == "MJPG":
                    missing.append(Missing(cam.source, "frames", "MJPG frames are compressed by the camera; the take "
                                                                 "format holds raw pixels"))
                else:
                    pixel_format = worker.pixel_format
                    assert is_pixel_format(pixel_format), f"the rig config admits {pixel_format} (not MJPG)"
                    source = CameraSource(cam.source, worker.width, worker.height, pixel_format, worker.fps,
                                          encoding=video)
                reader = _attach(rig, cam.ring.object_id) if source is not None else None
                if source is not None and reader is None:
                    missing.append(Missing(cam.source, "frames", f"its ring {cam.ring.object_id} is gone (is the "
                                                                 f"{worker.name} worker running?)"))
                    source = None
                cameras.append(_Camera(cam.source, source, reader, worker.fps))
        elif isinstance(worker, AudioWorkerSpec):
            reader = _attach(rig, worker.ring.object_id)
            audio_source = AudioSource(worker.source, worker.channels, worker.rate_hz, "float32")
            if reader is None:
                missing.append(Missing(worker.source, "audio", f"its ring {worker.ring.object_id} is gone (is the "
                                                               "audio worker running?)"))
            audios.append(_Audio(worker.source, audio_source, reader, round(worker.block_frames * 1e9 / worker.rate_hz)))
    return cameras, audios, missing


def _catch_up(view: ReservoirView, plan: RigPlan, cameras: list[_Camera], audios: list[_Audio], end_ns: int,
              missing: list[Missing], timeout_s: float = CATCH_UP_S) -> None:
    """Wait until every source has indexed its items up to ``end_ns``, at most ``timeout_s``.

    ``end_ns`` is the reservoir's edge: the newest timestamp of *any* source.
    The others may still be publishing theirs: under load an audio worker's
    blocks arrive tens of milliseconds after a camera's frame. Without the wait
    the take ends short for them while the manifest says complete. A source is
    caught up when its newest item plus one item period passes ``end_ns`` (the
    next item falls outside the span). One still short after ``timeout_s``
    (stalled, or its worker gone) is listed in ``missing`` with how far behind
    it is; one with no item at all is listed later ("no frame in the span").
    """
    waiting: dict[str, tuple[int, int, int]] = {}  # name -> (kind, source hash, item period ns)
    for c in cameras:
        if c.source is not None:
            waiting[c.name] = (_CAMERA, plan.source(c.name).source_hash, round(1e9 / c.rate_hz))
    for a in audios:
        if a.reader is not None:
            waiting[a.name] = (_AUDIO, plan.source(a.name).source_hash, a.block_ns)
    deadline = time.monotonic() + timeout_s
    behind_ns: dict[str, int] = {}
    while True:
        for name, (kind, source_hash, period_ns) in list(waiting.items()):
            latest = view.latest_for_sensor(kind, source_hash)
            if latest is None or latest.timestamp_ns + period_ns > end_ns:
                del waiting[name]
                behind_ns.pop(name, None)
            else:
                behind_ns[name] = end_ns - latest.timestamp_ns
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.002)
    for name, behind in behind_ns.items():
        missing.append(Missing(name, "items up to the span's end",
                               f"its newest item was {behind / 1e6:.1f} ms before the span's end after waiting "
                               f"{timeout_s * 1e3:.0f} ms (stalled, or its worker behind)"))


def _copy_audio(view: ReservoirView, plan: RigPlan, audios: list[_Audio], span: tuple[int, int]) -> None:
    """Every audio block in ``span`` copied (``valid`` marks the good copies).

    The oldest blocks of a full window are a few milliseconds from being
    overwritten, so every live item of each audio ring is copied first, in one
    gather, and matched to the reservoir's descriptors afterwards.
    """
    rings = {}
    for a in audios:
        if a.reader is not None:
            published = a.reader.published
            first = max(0, published - a.reader.capacity)
            rings[a.name] = (first, *copy_blocks(a.reader, np.arange(first, published, dtype=np.uint64)))
    rows, descriptors = view.typed_snapshot(_AUDIO)
    t0, t1 = span
    ts = rows["timestamp_ns"].astype(np.int64)
    for a in audios:
        mine = (rows["sensor_id_hash"] == plan.source(a.name).source_hash) & (ts >= t0) & (ts <= t1)
        a.rows, a.descriptors = rows[mine], descriptors[mine]
        n = len(a.rows)
        a.valid, a.host_ns = np.zeros(n, bool), np.zeros(n, np.int64)
        if a.name not in rings or n == 0:
            continue
        reader = a.reader
        assert reader is not None, "rings holds the copies of attached rings only"
        first, copies, valid = rings[a.name]
        sequences = (a.descriptors["data_handle"] & _SEQ).astype(np.int64)
        index = sequences - first
        copied = (index >= 0) & (index < len(copies))
        a.blocks = copies[np.where(copied, index, 0)]
        a.valid = copied & valid[np.where(copied, index, 0)]
        for i in np.flatnonzero(index >= len(copies)).tolist():  # published after the gather: the newest, safe
            block = copy_of(reader, int(sequences[i]))
            if block is not None:
                a.blocks[i] = block
                a.valid[i] = True
        for i, seq in enumerate(sequences.tolist()):  # the ring's own record: the host time of each block
            try:
                record = reader.descriptor_of(seq)
            except StaleItem:
                continue
            if reader.valid(seq):
                a.host_ns[i] = record[_HOST]


def _select_frames(view: ReservoirView, plan: RigPlan, cameras: list[_Camera], span: tuple[int, int]) -> None:
    rows, descriptors = view.typed_snapshot(_CAMERA)
    ts = rows["timestamp_ns"].astype(np.int64)
    for c in cameras:
        mine = (rows["sensor_id_hash"] == plan.source(c.name).source_hash) & (ts >= span[0]) & (ts <= span[1])
        if c.source is None:
            mine[:] = False
        c.rows, c.descriptors = rows[mine], descriptors[mine]


def _witness(plan: RigPlan) -> str:
    w = plan.witness
    return f"codebook {w.codebook_id} seed {w.seed} (epoch {w.epoch_unix_s:.0f} s)"


def _fit_now(rig: str) -> Fit | None:
    """The rig's clock fit now (the reference channel's, as the status board shows it), None if not locked."""
    from mimir.supervisor.status import read_status

    try:
        status = read_status(rig)
    except SegmentMissing:
        return None
    reference = status.header.get("clock_reference", 0)
    for row in status.sources:
        if row["name"] == f"audio.ch{reference}" and row["clock_locked"]:
            return Fit(float(row["clock_local_sample_at_epoch"]), float(row["clock_rate_hz"]),
                       float(row["clock_confidence"]))
    return None


def _segments(rig: str, plan: RigPlan, cameras: list[_Camera], audios: list[_Audio],
              missing: list[Missing]) -> dict[str, list[tuple[int, ClockSegment]]]:
    """Per source: ``[(first item index, ClockSegment), ...]`` from the rig's clock history (segments.py)."""
    from mimir.supervisor.clock_board import read_clock

    clock = read_clock(rig)
    out: dict[str, list[tuple[int, ClockSegment]]] = {}
    if clock is None or not clock.segments:
        missing.append(Missing(None, "clock segments", "the rig publishes no clock history (no clk board): every "
                                                       "item is in one segment, steps are not marked"))
        return out
    fit_now = _fit_now(rig) if clock.state == ClockState.LOCKED else None
    witness = _witness(plan)
    early = False
    holdovers: set[tuple[int, str]] = set()
    for name, rows in [(c.name, c.rows) for c in cameras if c.source is not None] + [(a.name, a.rows) for a in audios]:
        arrival = rows["arrival_ns"]
        early |= predates(arrival, clock.segments)
        pieces = assign(arrival, clock.segments)
        out[name] = [(first, take_segment(seg, first_in_span=k == 0, current_index=clock.segment, fit_now=fit_now,
                                          witness=witness, remote_sources=plan.remote_sources)) for k, (first, seg) in enumerate(pieces)]
        holdovers.update((seg.index, seg.reason.name.lower().replace("_", " ")) for _, seg in pieces
                         if seg.state == ClockState.HOLDOVER)
    for index, reason in sorted(holdovers):
        missing.append(Missing(None, f"a witness fit for clock segment {index}",
                               f"holdover after a {reason}: canonical time continued on the last line; written as "
                               "provisional"))
    if early:
        missing.append(Missing(None, "clock history of the span's beginning",
                               f"the rig publishes its newest {len(clock.segments)} clock segments; items indexed "
                               "before the oldest are put in it"))
    return out


def _write(folder: Path, rig: str, plan: RigPlan, cameras: list[_Camera], audios: list[_Audio],
           items: list[tuple[int, int, int]], stager: FrameStager, span: tuple[int, int], seconds: float, video: str,
           missing: list[Missing], progress: Callable[[str], None] | None) -> SnapshotResult:
    segments = _segments(rig, plan, cameras, audios, missing)
    unfitted = sorted({seg.index for segs in segments.values() for _, seg in segs
                       if seg.state == "locked" and seg.rate_hz is None})
    for index in unfitted:
        missing.append(Missing(None, f"the witness fit of clock segment {index}",
                               "the rig publishes the fit in effect now, not earlier ones (the segment's "
                               "timestamps are exact)"))
    sources = [c.source for c in cameras if c.source is not None] + [a.source for a in audios]
    doc = {"rig": rig, "snapshot": {"seconds": seconds, "span_ns": list(span), "video": video},
           "plan": msgspec.to_builtins(plan)}
    lost = {s.name: 0 for s in sources}
    lost_runs: dict[str, list[list[int]]] = {}  # source -> [[first_ns, last_ns, count, last item index], ...]

    def lose(name: str, ts: int, index: int) -> None:
        lost[name] += 1
        runs = lost_runs.setdefault(name, [])
        if runs and runs[-1][3] == index - 1:
            runs[-1][1], runs[-1][2], runs[-1][3] = ts, runs[-1][2] + 1, index
        else:
            runs.append([ts, ts, 1, index])

    next_segment = {s.name: 0 for s in sources}  # a source without segments (no clock history) declares none
    with TakeWriter(folder, sources, rig=doc) as take:
        def segment_for(name: str, index: int) -> None:
            # Declare every segment that starts at or before this item (a lost first item moves it to the next).
            segs = segments.get(name, [])
            while next_segment[name] < len(segs) and segs[next_segment[name]][0] <= index:
                take.begin_clock_segment(name, segs[next_segment[name]][1])
                next_segment[name] += 1

        events = [(t, 0, ci, k) for t, ci, k in items]
        for a_index, a in enumerate(audios):
            events += [(int(t), 1, a_index, k) for k, t in enumerate(a.rows["timestamp_ns"].tolist())]
        events.sort()
        frame_index = 0
        last_note = time.monotonic()
        try:
            for n, (ts, is_audio, which, k) in enumerate(events):
                if not is_audio:
                    c = cameras[which]
                    pixels = stager.take(frame_index)
                    frame_index += 1
                    if pixels is None:
                        lose(c.name, ts, k)
                        continue
                    segment_for(c.name, k)
                    d = c.descriptors[k]
                    assert c.source is not None, "items holds the frames of cameras with a source only"
                    take.write_frame(c.name, frame_of_slot(pixels, c.source.shape, int(d["stride_bytes"])), ts,
                                     sequence=int(d["sequence"]), device_time_ns=int(d["device_time_ns"]),
                                     host_time_ns=int(d["host_time_ns"]))
                else:
                    a = audios[which]
                    if not a.valid[k]:
                        lose(a.name, ts, k)
                        continue
                    segment_for(a.name, k)
                    d = a.descriptors[k]
                    assert a.blocks is not None, "a valid block was copied"
                    take.write_audio(a.name, a.blocks[k][: int(d["frame_count"])], ts,
                                     start_sample=int(d["start_sample"]), host_time_ns=int(a.host_ns[k]))
                if progress is not None and time.monotonic() - last_note > 0.5:
                    last_note = time.monotonic()
                    progress(f"snapshot: {n + 1:,} of {len(events):,} frames and blocks written")
        except DiskFull:
            raise  # the writer has closed the take and marked it incomplete
        if progress is not None:  # the last word: a line stopped short of the total would read as loss
            progress(f"snapshot: all {len(events):,} frames and blocks handled, {sum(lost.values()):,} lost")
        for name, runs in lost_runs.items():
            for first_ns, last_ns, count, _ in runs:
                take.skip(name, first_ns, last_ns, count, _LOST)
            missing.append(Missing(name, f"{lost[name]} items", _LOST))
        for c in cameras:
            if c.source is not None and not len(c.rows):
                missing.append(Missing(c.name, "frames", "no frame in the span (is the camera delivering?)"))
        for a in audios:
            if a.reader is not None and not len(a.rows):
                missing.append(Missing(a.name, "audio", "no block in the span (is the audio worker running?)"))
        result = SnapshotResult(folder, take.close(missing), span, lost=lost)
    for record in result.manifest.sources:
        result.written[record.source.name] = record.written
    return result
