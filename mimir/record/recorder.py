"""Record a running rig into a take folder for as long as asked, as a reader the rig never waits for.

::

    from mimir.record import Recorder
    with Recorder("default", "takes/session-1", video="raw", split_seconds=60) as rec:
        rec.start()
        time.sleep(30)                     # or rec.wait() until the rig stops
    result = rec.result                    # RecordResult: manifest, per-source ledgers, how it ended
    result.published["cam.synthetic.0"] == result.written["cam.synthetic.0"] + result.skipped["cam.synthetic.0"]

Two threads besides the caller's:

* the **reader** (:class:`mimir.record.feed.RigFeed`) walks the reservoir
  every ``poll_s`` with its own cursors, copies each audio block out of its
  ring at once, queues camera frames (still in their rings), stages frames
  its writer has not reached before their rings overwrite them, follows the
  clock segments and publishes the recorder's status board;
* the **writer** takes the queued items in canonical order, copies each
  frame out of its ring (checked by the ring's seqlock after the copy:
  never a torn frame) and hands everything to one
  :class:`~mimir.take.TakeWriter` (video per camera, WAV, XDF, manifest).

Capture never waits: rings are attached as unregistered readers, the
reservoir read-only, and the supervisor does nothing for the recorder.
When the writer falls behind, video is dropped before audio and every item
is either written (bit-exact, at the canonical time the reservoir indexed)
or counted as skipped with its cause and span: per source,
``written + skipped == published`` (:mod:`mimir.record.ledger`).

The recording ends when :meth:`Recorder.stop` is called (the command's
duration, Ctrl-C, SIGTERM): the reader reads what was indexed up to then,
the writer writes it and closes the take; or when the rig stops (its
supervisor closes the reservoir after indexing everything its workers
published): then the take holds, or counts, every item the rig published.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import psutil

from mimir.contract import RigNotRunning, read_plan
from mimir.reservoir import ReservoirView
from mimir.snapshot import RigStopped
from mimir.take import VIDEO_ENCODINGS, DiskFull, Manifest, Missing, TakeExists, TakeWriter
from mimir.take.pixels import frame_of_slot
from mimir.topology import RESERVOIR
from ringbuf import SegmentMissing, StaleItem, process

from .clock import ClockTracker
from .feed import FeedSource, RigFeed, plan_sources
from .ledger import CAUSE_TEXT, Cause, SkipRun, SourceLedger
from .queues import Block, Frame, Queues, Skipped, SourceQueue
from .status import RecorderBoard, RecorderHeader, RecorderState

__all__ = ["Recorder", "RecordResult", "BadRecordRequest", "default_folder", "DEFAULT_STAGE_BYTES",
           "DEFAULT_AUDIO_BYTES"]

DEFAULT_STAGE_BYTES = 512 << 20   # frames copied ahead of a stalled writer (about 2.3 s of the default rig)
DEFAULT_AUDIO_BYTES = 64 << 20    # audio waiting for the writer (40 s of 8 channels at 48 kHz)
BOARD_PERIOD_S = 0.25
IDLE_FLUSH_S = 0.5                # the writer flushes when it has had nothing to write for this long
SHED_KEEP_NS = 1_000_000_000      # audio pressing on its budget: video older than this before the newest goes


class BadRecordRequest(ValueError):
    """A recording that cannot be made as asked (an unknown encoding, a bad split or pre-roll); one line says why."""


def default_folder(rig: str) -> Path:
    return Path(f"record-{rig}-{time.strftime('%Y%m%d-%H%M%S')}")


@dataclass
class RecordResult:
    """What a recording wrote. Per source name: ``published``, ``written``, ``skipped`` (frames or blocks)."""

    path: Path
    manifest: Manifest | None
    ledgers: list[SourceLedger]
    ended_by: str                     # "stop" (duration, signal, caller), "rig stopped", "disk full", "error"
    error: str | None
    wall_s: float
    start_ns: int                     # canonical time the recording started at (after the pre-roll)
    staged_frames: int = 0
    cpu_s: float = 0.0                # the recording process's CPU time (every thread) while it recorded
    take_closed_s: float = 0.0        # from the start to the take closed (the writer's drain included)
    published: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for led in self.ledgers:
            self.published[led.name] = led.published
            self.written[led.name] = led.written
            self.skipped[led.name] = led.skipped_total

    @property
    def bytes(self) -> int:
        """Bytes of the take's files (as the manifest counts them)."""
        return sum(f.bytes for f in self.manifest.files) if self.manifest is not None else 0

    @property
    def payload_bytes(self) -> int:
        """Bytes of the frames and samples written (the rigs' payloads, before encoding)."""
        return sum(led.written_bytes for led in self.ledgers)


@dataclass(frozen=True)
class Progress:
    """A recorder's state for a progress line (any thread may ask)."""

    state: RecorderState
    seconds: float
    written_bytes: int
    mb_per_s: float
    free_bytes: int
    staged_bytes: int
    lag_ms: float
    sources: tuple[tuple[str, int, int, dict[str, int]], ...]   # (name, published, written, skipped by cause)


class Recorder:
    """One recording of one rig into one take folder (see the module docstring).

    Bad input raises before anything is created: :class:`BadRecordRequest`,
    :class:`~mimir.contract.RigNotRunning` / :class:`~mimir.snapshot.RigStopped`,
    :class:`~mimir.take.TakeExists`. ``pre_roll_s`` also records what the
    reservoir holds from that many seconds before :meth:`start` (at most the
    window). ``from_start`` records the rig from its first item: everything
    the reservoir still holds, each source accounted from its ring's item 0
    (what already left the reservoir is counted as evicted): how a recorder
    the supervisor starts with the rig records it from its first frame.
    ``stage_bytes``: memory for frames copied
    ahead of a stalled writer (default: 512 MiB or a quarter of the
    available memory, whichever is less); ``audio_bytes``: audio waiting for
    the writer. ``board``: publish the status board for `mimir status`.
    """

    def __init__(self, rig: str = "default", out: str | os.PathLike | None = None, *, video: str = "raw",
                 split_seconds: float | None = None, pre_roll_s: float = 0.0, from_start: bool = False,
                 stage_bytes: int | None = None,
                 audio_bytes: int = DEFAULT_AUDIO_BYTES, poll_s: float = 0.02, board: bool = True,
                 flush_interval_s: float = 1.0) -> None:
        if video not in VIDEO_ENCODINGS:
            raise BadRecordRequest(f"--video {video!r}: use one of {', '.join(VIDEO_ENCODINGS)}")
        if split_seconds is not None and not (math.isfinite(split_seconds) and split_seconds > 0):
            raise BadRecordRequest(f"--split-seconds {split_seconds:g}: give a number of seconds > 0")
        if not (math.isfinite(pre_roll_s) and pre_roll_s >= 0):
            raise BadRecordRequest(f"--pre-roll {pre_roll_s:g}: give 0 or more seconds")
        self.rig = rig
        self.plan = read_plan(rig)
        window_s = self.plan.window_ns / 1e9
        if pre_roll_s > window_s:
            raise BadRecordRequest(f"--pre-roll {pre_roll_s:g}: rig {rig!r} keeps {window_s:g} s (its reservoir "
                                   f"window); ask for at most {window_s:g}")
        self.path = Path(out) if out is not None else default_folder(rig)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise TakeExists(f"{self.path} exists and is not an empty folder; a recording never writes over files")
        self.video = video
        self.split_seconds = split_seconds
        self.pre_roll_s = pre_roll_s
        self.from_start = from_start
        self.poll_s = poll_s
        if stage_bytes is None:
            stage_bytes = min(DEFAULT_STAGE_BYTES, psutil.virtual_memory().available // 4)
        try:
            self.view = ReservoirView.attach(rig, RESERVOIR)
        except SegmentMissing:
            raise RigNotRunning(f"rig {rig!r} is not running (no reservoir): start it with "
                                "`mimir-supervisor start`") from None
        self.sources: list[FeedSource] = []
        self.board: RecorderBoard | None = None
        self._released = False
        try:
            if not self.view.writer_alive():
                raise RigStopped(f"rig {rig!r} is not running: its supervisor (pid {self.view.writer_pid()}) is "
                                 "gone; `mimir doctor --clean` removes what it left")
            self.sources, self.missing = plan_sources(rig, self.plan, video)
            if not self.sources:
                raise BadRecordRequest(f"rig {rig!r} has no camera or audio source a take can hold")
            self.queues = Queues([s.queue for s in self.sources], stage_bytes=stage_bytes, audio_bytes=audio_bytes)
            self.clock = ClockTracker(rig, self.plan)
            self.feed = RigFeed(rig, self.view, self.sources, self.queues, self.clock)
            self._doc = {"rig": rig,
                         "record": {"video": video, "split_seconds": split_seconds, "pre_roll_s": pre_roll_s,
                                    "from_start": from_start,
                                    "recorder": {"pid": os.getpid(), "identity": process.identity()}},
                         "plan": msgspec.to_builtins(self.plan)}
            if board:
                self.board = RecorderBoard(rig, label=f"{rig}/recorder {os.getpid()}")
            try:
                self.take = TakeWriter(self.path, [s.take for s in self.sources], rig=self._doc,
                                       split_seconds=split_seconds, flush_interval_s=flush_interval_s)
            except TakeExists:
                raise
            except OSError as exc:  # a parent that is a file, no permission, a read-only file system
                raise BadRecordRequest(f"--out {self.path}: cannot make the take folder there: "
                                       f"{exc.strerror or exc}") from None
        except BaseException:
            if self.board is not None:
                self.board.close()
            for src in self.sources:
                for reader in src.readers:
                    reader.close()
            self.view.close()
            raise
        self.state = RecorderState.RECORDING
        self.result: RecordResult | None = None
        self.start_ns = 0
        self.ended_by = "stop"
        self.error: str | None = None
        self._stop = threading.Event()
        self._failed = threading.Event()
        self._started = 0.0
        self._stopped_at: float | None = None
        self._closed_at: float | None = None
        self._rate = (0.0, 0, 0.0)          # (monotonic s, written bytes, MB/s) of the last rate sample
        self._free = (0.0, shutil.disk_usage(self.path).free)
        self._declared: list[int | None] = [None] * len(self.sources)
        self._runs: list[SkipRun | None] = [None] * len(self.sources)
        self._reader = threading.Thread(target=self._read_loop, name="record-reader", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="record-writer", daemon=True)

    # ---- control ------------------------------------------------------------------------------------------------
    def start(self) -> "Recorder":
        """Set the cursors (now, ``pre_roll_s`` back, or the rig's start) and start the reader and writer threads."""
        self.start_ns = self.feed.start(self.pre_roll_s, from_start=self.from_start)
        self.take.manifest.rig["record"]["start_ns"] = self.start_ns
        self.take.manifest.rig["record"]["started_unix_ns"] = time.time_ns()
        self._started = time.monotonic()
        self._cpu0 = sum(psutil.Process().cpu_times()[:2])
        self._writer.start()
        self._reader.start()
        return self

    def stop(self) -> None:
        """End the recording: what the rig indexed up to now is written, then the take is closed. Signal-safe."""
        self._stop.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """True once the take is closed (stopped, the rig stopped, or a failure)."""
        self._writer.join(timeout_s)
        return not self._writer.is_alive()

    @property
    def done(self) -> bool:
        return self._started > 0 and not self._writer.is_alive()

    def close(self) -> RecordResult:
        """Stop (if running), wait for the take to close, release everything; the result."""
        self.stop()
        if self._started:
            self._writer.join()
            self._reader.join()
        if self.result is None:
            self.result = self._result()
        self._release()
        return self.result

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _release(self) -> None:
        """Close the take if the recording never started; unmap the rings and the reservoir; remove the board."""
        if self._released:
            return
        self._released = True
        if not self.take.closed and not self._started:
            self.take.close(missing=[Missing(None, "everything", "the recording never started")])
        self.feed.close()
        if self.board is not None:
            self.board.close()
            self.board = None
        self.view.close()

    # ---- progress ---------------------------------------------------------------------------------------------------
    def progress(self) -> Progress:
        now = time.monotonic()
        end = self._stopped_at or now
        written = sum(s.ledger.written_bytes for s in self.sources)
        t, b, rate = self._rate
        if now - t >= 1.0:
            rate = (written - b) / (now - t) / 1e6 if t else 0.0
            self._rate = (now, written, rate)
        if now - self._free[0] >= 0.5:
            try:
                self._free = (now, shutil.disk_usage(self.path).free)
            except OSError:
                pass
        newest_written = max((s.ledger.last_written_ns or 0 for s in self.sources), default=0)
        lag = (self.feed.newest_ns - newest_written) / 1e6 if newest_written else 0.0
        rows = tuple((s.ledger.name, s.ledger.published, s.ledger.written, s.ledger.by_cause()) for s in self.sources)
        return Progress(self.state, (end - self._started) if self._started else 0.0, written, rate, self._free[1],
                        self.queues.staged_bytes, max(0.0, lag), rows)

    def _publish_board(self) -> None:
        if self.board is None:
            return
        p = self.progress()
        header = RecorderHeader(os.getpid(), int(p.state), self.take.manifest.created_unix_ns, p.seconds,
                                p.written_bytes, p.mb_per_s, p.free_bytes, p.staged_bytes, p.lag_ms,
                                len(self.sources), self.split_seconds or 0.0, self.video.encode(),
                                os.fsencode(self.path.resolve())[-200:], (self.error or "").encode()[:200])
        rows = [(s.ledger.name.encode()[:32], int(s.is_camera), s.ledger.published, s.ledger.written,
                 *s.ledger.skipped) for s in self.sources]
        self.board.publish(header, rows)

    # ---- the reader thread ----------------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        next_board = next_alive = 0.0
        try:
            while True:
                stopping = self._stop.is_set() or self._failed.is_set()
                now = time.monotonic()
                alive = True
                if now >= next_alive:
                    alive = self.view.writer_alive()
                    next_alive = now + 0.1
                self.feed.poll()
                if not alive:  # the supervisor indexed everything and closed the reservoir (or was killed)
                    self.queues.frozen = True
                    self.feed.poll()
                    self.feed.account_tails()
                    self.ended_by = "rig stopped"
                    break
                if stopping:
                    break
                self.queues.stage()
                if now >= next_board:
                    self._publish_board()
                    next_board = now + BOARD_PERIOD_S
                self._stop.wait(self.poll_s)
            self._stopped_at = time.monotonic()
            self._settle_clock(alive)
            self.state = RecorderState.DRAINING
            self.queues.finish()
            while self._writer.is_alive():  # keep staging what the writer has not reached yet
                self.queues.stage()
                if time.monotonic() >= next_board:
                    self._publish_board()
                    next_board = time.monotonic() + BOARD_PERIOD_S
                self._writer.join(self.poll_s)
        except BaseException as exc:  # noqa: BLE001 - the writer must still close the take
            self._fail_reader(exc)
        finally:
            self.queues.finish()

    def _settle_clock(self, rig_alive: bool) -> None:
        deadline = time.monotonic() + (self.clock.fit_wait_ns / 1e9 if rig_alive else 0.0)
        while self.clock.pending and time.monotonic() < deadline:
            time.sleep(0.05)
            self.clock.refresh()
        self.clock.close_pending()

    def _fail_reader(self, exc: BaseException) -> None:
        self.error = f"the recorder's reader failed: {type(exc).__name__}: {exc}"
        self.ended_by = "error"
        self._failed.set()
        self.clock.close_pending()

    # ---- the writer thread ----------------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        take = self.take
        last_write = time.monotonic()
        try:
            while True:
                if self.queues.audio_pressed() and not self.queues.frozen:
                    self._shed_video()
                got = self.queues.next(0.1)
                if got is None:
                    if self.queues.finished and not self.queues.pending():
                        break
                    if time.monotonic() - last_write > IDLE_FLUSH_S:
                        take.flush()
                        last_write = time.monotonic()
                    continue
                q, items = got
                src = self.sources[q.index]
                item = items[0]
                if isinstance(item, Skipped):
                    self._skip(q.index, item.ts_ns, item.last_ns, item.count, Cause(item.cause))
                    continue
                if item.segment is not None and item.segment.index != self._declared[q.index]:
                    segment = item.segment.take
                    assert segment is not None, "the queue hands out items of ready segments only"
                    if self._declared[q.index] is None:  # its step happened before this source's recording began
                        segment = msgspec.structs.replace(segment, step_ns=None)
                    take.begin_clock_segment(q.name, segment)
                    self._declared[q.index] = item.segment.index
                if isinstance(item, Frame):
                    if not self._write_frame(take, q, src, item):
                        continue
                else:
                    self._write_blocks(take, q, src, [b for b in items if isinstance(b, Block)])
                run = self._runs[q.index]
                if run is not None:
                    take.skip(q.name, run.first_ns, run.last_ns, run.count, CAUSE_TEXT[run.cause])
                    self._runs[q.index] = None
                last_write = time.monotonic()
        except DiskFull as exc:
            self._fail_writer(str(exc), "disk full")
        except BaseException as exc:  # noqa: BLE001 - the take is closed and marked incomplete by the writer
            self._fail_writer(f"{type(exc).__name__}: {exc}", "error")
        else:
            self._close_take()

    def _shed_video(self) -> None:
        """Audio presses on its budget: the writer is seconds behind; drop the video older than a second."""
        cut = self.feed.newest_ns - SHED_KEEP_NS
        for index, frames in self.queues.drop_video_before(cut).items():
            self._skip(index, frames[0].ts_ns, frames[-1].ts_ns, len(frames), Cause.BEHIND)

    def _write_frame(self, take: TakeWriter, q: SourceQueue, src: FeedSource, frame: Frame) -> bool:
        """Write one frame: from its staged copy, or straight from its ring slot into the encoder's frame
        (one copy; the ring's seqlock is checked after it, before anything is written)."""
        written = False
        if frame.pixels is not None:
            try:
                written = take.write_frame(q.name, frame_of_slot(frame.pixels, src.frame_shape, frame.stride_bytes),
                                           frame.ts_ns, sequence=frame.sequence, device_time_ns=frame.device_ns,
                                           host_time_ns=frame.host_ns)
            finally:
                self.queues.release(q, frame)
        elif not frame.lost:
            reader, seq = frame.reader, frame.ring_seq
            try:
                slot = reader.payload_view(seq)
            except StaleItem:
                slot = None
            if slot is not None:
                written = take.write_frame(q.name, frame_of_slot(slot, src.frame_shape, frame.stride_bytes),
                                           frame.ts_ns, sequence=frame.sequence, device_time_ns=frame.device_ns,
                                           host_time_ns=frame.host_ns, still_valid=lambda: reader.valid(seq))
        if not written:  # overwritten before anyone copied it: the writer is behind; catch up in one burst
            self._skip(q.index, frame.ts_ns, frame.ts_ns, 1, Cause.LAPPED)
            dropped = self.queues.drop_behind(q)
            if dropped:
                self._skip(q.index, dropped[0].ts_ns, dropped[-1].ts_ns, len(dropped), Cause.BEHIND)
            return False
        led = src.ledger
        led.written += 1
        led.written_bytes += math.prod(src.frame_shape)
        led.last_written_ns = frame.ts_ns
        return True

    def _write_blocks(self, take: TakeWriter, q: SourceQueue, src: FeedSource, blocks: list[Block]) -> None:
        """Consecutive audio blocks of one source and clock segment, in one call into the take."""
        if len(blocks) == 1:
            samples = blocks[0].samples
        else:
            samples = np.concatenate([b.samples for b in blocks])
        take.write_audio_blocks(q.name, samples, [b.ts_ns for b in blocks], [b.start_sample for b in blocks],
                                [b.samples.shape[0] for b in blocks], [b.host_ns for b in blocks])
        led = src.ledger
        led.written += len(blocks)
        led.written_samples += samples.shape[0]
        led.written_bytes += samples.nbytes
        led.last_written_ns = blocks[-1].ts_ns

    def _skip(self, index: int, first_ns: int, last_ns: int, count: int, cause: Cause) -> None:
        """Count skipped items; consecutive skips of one cause become one manifest entry (written when a run ends)."""
        self.sources[index].ledger.skipped[cause] += count
        run = self._runs[index]
        if run is not None and run.cause == cause:
            run.extend(first_ns, last_ns, count)
            return
        if run is not None and not self.take.closed:
            self.take.skip(self.sources[index].ledger.name, run.first_ns, run.last_ns, run.count,
                           CAUSE_TEXT[run.cause])
        self._runs[index] = SkipRun(cause, first_ns, last_ns, count)

    def _close_take(self) -> None:
        take = self.take
        for i, run in enumerate(self._runs):
            if run is not None:
                take.skip(self.sources[i].ledger.name, run.first_ns, run.last_ns, run.count, CAUSE_TEXT[run.cause])
                self._runs[i] = None
        missing = list(self.missing) + list(self.clock.missing)
        if self.error:
            missing.append(Missing(None, "the end of the recording", self.error))
        if not self.clock.available:
            missing.append(Missing(None, "clock segments", "the rig publishes no clock history (no clk board): "
                                                           "every item is in one segment, steps are not marked"))
        for src in self.sources:
            led = src.ledger
            if not src.readers and not led.published:
                missing.append(Missing(led.name, "frames" if src.is_camera else "audio",
                                       f"its ring {src.spec.ring.object_id} never appeared (is its worker "
                                       f"{src.spec.worker} running?)"))
            if led.skipped_total:
                unit = "frames" if src.is_camera else "blocks"
                missing.append(Missing(led.name, f"{led.skipped_total} {unit} of {led.published} published",
                                       "skipped: " + ", ".join(f"{k.replace('_', ' ')} {v}"
                                                               for k, v in led.by_cause().items())
                                       + " (sources[].skipped gives each span and cause)"))
        self._note_accounting()
        self.take.close(missing)
        self._closed_at = time.monotonic()
        self.state = RecorderState.DONE

    def _note_accounting(self) -> None:
        record = self.take.manifest.rig["record"]
        record["ended_by"] = self.ended_by
        record["sources"] = {
            s.ledger.name: {"published": s.ledger.published, "written": s.ledger.written,
                            "skipped": s.ledger.by_cause(),
                            "first_ring_sequence": s.first_seq, "ring_incarnations": max(1, len(s.readers))}
            for s in self.sources}

    def _fail_writer(self, message: str, ended_by: str) -> None:
        """The take failed (it is already closed, readable, incomplete): stop reading, count the rest."""
        self.error = message
        self.ended_by = ended_by
        self._closed_at = time.monotonic()
        self.state = RecorderState.FAILED
        self._failed.set()
        self._stop.set()
        while True:
            got = self.queues.next(0.1)
            if got is None:
                if self.queues.finished and not self.queues.pending():
                    break
                continue
            q, items = got
            for item in items:
                count = item.count if isinstance(item, Skipped) else 1
                cause = Cause(item.cause) if isinstance(item, Skipped) else Cause.FAILED
                self.sources[q.index].ledger.skipped[cause] += count
                if isinstance(item, Frame):
                    self.queues.release(q, item)

    def _result(self) -> RecordResult:
        manifest = self.take.manifest
        started = self._started
        cpu_s = sum(psutil.Process().cpu_times()[:2]) - self._cpu0 if started else 0.0
        wall_s = (self._stopped_at or time.monotonic()) - started if started else 0.0
        closed_s = (self._closed_at or time.monotonic()) - started if started else 0.0
        return RecordResult(self.path, manifest, [s.ledger for s in self.sources], self.ended_by, self.error, wall_s,
                            self.start_ns, staged_frames=self.queues.staged_frames, cpu_s=cpu_s,
                            take_closed_s=closed_s)
