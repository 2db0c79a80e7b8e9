"""The rig: workers, rings, reservoir, clock and status under one supervisor process.

Ownership
    The supervisor creates and unlinks the status board (which is also the rig
    lock) and the reservoir. Each worker creates and unlinks its own rings; the
    supervisor only attaches to them as a reader. On start, objects of this
    rig that no live process maps (a SIGKILLed predecessor's) are removed.

Loop (one thread, nothing blocks for long)
    every ~0.5 ms  index new descriptors of every attached ring into the reservoir;
    every 50 ms    tick workers (exits, heartbeats, restarts), attach new rings,
                   adopt new clock fits, advance the reservoir edge;
    every 200 ms   publish a status snapshot.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass

import msgspec
import numpy as np

from mimir.config import RigConfig
from mimir.descriptors import SampleKind
from ringbuf import remove_stale
from mimir.reservoir import Reservoir, capacity_for
from mimir.supervisor.clock import CanonicalClock, DeviceToCanonical
from mimir.supervisor.indexer import LatencyWindow, RingIndexer
from mimir.supervisor.processes import SupervisedWorker
from mimir.supervisor.status import (
    MAX_SOURCES, MAX_WORKERS, Health, SourceRow, StatusBoard, SupervisorHeader, WorkerRow, WorkerState, read_status,
)
from mimir.sync.fits import FITS_RING, FitsHeader
from ringbuf import RingError, RingReader, SegmentExists, SegmentMissing, dtype_of

__all__ = ["Rig", "Source", "RigAlreadyRunning"]

INDEX_PERIOD_S = 0.0005
REALTIME_PRIORITY = 1  # SCHED_FIFO, the lowest realtime level: above every normal process, below audio callbacks
TICK_PERIOD_S = 0.05
STATUS_PERIOD_S = 0.2


class RigAlreadyRunning(RuntimeError):
    """Another live supervisor runs this rig."""


@dataclass
class Source:
    """One ring a worker writes and the supervisor indexes."""

    name: str
    kind: SampleKind
    worker: SupervisedWorker
    configured_hz: float
    indexer: RingIndexer | None = None
    published_before: int = 0
    indexed_before: int = 0
    lost_before: int = 0
    restart_gap: int = 0
    gap_open_since_ns: int = 0          # host time of the last item before a worker restart
    rate_mark: tuple[float, int] = (0.0, 0)
    delivered_hz: float = 0.0

    @property
    def indexed(self) -> int:
        return self.indexed_before + (self.indexer.indexed if self.indexer else 0)

    @property
    def lost_overrun(self) -> int:
        return self.lost_before + (self.indexer.reader.lost if self.indexer else 0)

    @property
    def published(self) -> int:
        return self.published_before + (self.indexer.reader.published if self.indexer else 0)


def _go_realtime() -> str:
    """Move the calling thread (the index loop) to SCHED_FIFO; return what happened, for the log.

    The loop sleeps every iteration, so it cannot starve anything; at normal
    priority a busy 2-core machine delays it by tens of milliseconds (p99),
    at SCHED_FIFO 1 by about one. ``SCHED_RESET_ON_FORK`` keeps workers that
    the loop restarts at normal priority.
    """
    policy = getattr(os, "SCHED_FIFO", None)
    if policy is None:
        return "realtime scheduling not available on this OS"
    try:
        os.sched_setscheduler(0, policy | getattr(os, "SCHED_RESET_ON_FORK", 0), os.sched_param(REALTIME_PRIORITY))
    except PermissionError:
        return ("realtime priority refused (grant CAP_SYS_NICE or an rtprio limit): "
                "index latency may suffer when the machine is busy")
    return f"index loop at SCHED_FIFO {REALTIME_PRIORITY}"


def _set_clock(row: np.void, locked: bool, local_sample_at_epoch: float, rate_hz: float, confidence: float,
               mae_samples: float) -> None:
    """Fill the clock-fit fields of one status row (``SourceRow``)."""
    row["clock_locked"] = int(locked)
    row["clock_local_sample_at_epoch"] = local_sample_at_epoch
    row["clock_rate_hz"] = rate_hz
    row["clock_confidence"] = confidence
    row["clock_mae_samples"] = mae_samples


def _set_clock_from_fit_row(row: np.void, fit: np.void) -> None:
    """The same, from one ``FitRow`` of the sync worker's ``sync.fits`` snapshot."""
    _set_clock(row, bool(fit["locked"]), float(fit["local_sample_at_epoch"]), float(fit["effective_sample_rate"]),
               float(fit["confidence"]), float(fit["mean_abs_error_samples"]))


def _worker_argv(*args: object) -> list[str]:
    return [sys.executable, "-m", "mimir.worker_main", *map(str, args)]


class Rig:
    """A running rig. ``Rig(config).run(duration_s)`` blocks until stopped (SIGTERM/SIGINT or duration)."""

    def __init__(self, config: RigConfig) -> None:
        self.config = config
        self.name = config.rig
        self.stop_event = threading.Event()
        self.workers: list[SupervisedWorker] = []
        self.sources: list[Source] = []
        self.clock = CanonicalClock(config.sync.epoch_unix_s)
        self.latency = LatencyWindow()
        self.board: StatusBoard | None = None
        self.reservoir: Reservoir | None = None
        self.fits_reader: RingReader | None = None
        self.sync_worker: SupervisedWorker | None = None
        self.listener = None  # mimir.net.RemoteListener when network.listen is set
        self._claim_producers: dict[int, object] = {}
        self.audio_source: Source | None = None
        self.started_unix_ns = time.time_ns()
        self.final_status = None  # the last snapshot published before shutdown (for the closing summary)
        self.realtime = ""        # what _go_realtime achieved
        self._cpu_mark = (time.monotonic(), time.process_time())
        self.cpu_pct = 0.0

    # ---- setup --------------------------------------------------------------------------------------------------
    def _plan(self) -> None:
        cfg = self.config
        policy = cfg.supervision
        for cam in cfg.cameras:
            argv = _worker_argv("camera", "--family", cam.family, "--count", cam.count, "--width", cam.width,
                                "--height", cam.height, "--fps", cam.fps, "--format", cam.format, "--rig", self.name,
                                "--capacity", cam.ring_capacity)
            for device in cam.devices:
                argv += ["--device", device]
            for path in cam.files:
                argv += ["--file", path]
            worker = SupervisedWorker(f"camera.{cam.family}", argv, policy)
            self.workers.append(worker)
            for i in range(cam.count):
                self.sources.append(Source(f"cam.{cam.family}.{i}", SampleKind.CAMERA_FRAME, worker, cam.fps))
        if cfg.audio:
            a = cfg.audio
            argv = _worker_argv("audio", "--backend", a.backend, "--rate", a.rate_hz, "--block", a.block_frames,
                                "--channels", a.channels, "--output", a.output, "--rig", self.name,
                                "--ring-seconds", a.ring_seconds)
            if a.backend == "synthetic":
                argv += ["--signal", "room"]  # channel 0 the electrical loopback, 1..7 microphones in a room
            if a.host_api:
                argv += ["--host-api", a.host_api]
            if a.device:
                argv += ["--device", a.device]
            if a.file:
                argv += ["--file", a.file]
            worker = SupervisedWorker("audio", argv, policy)
            self.workers.append(worker)
            self.audio_source = Source("audio", SampleKind.AUDIO_BLOCK, worker, a.rate_hz / a.block_frames)
            self.sources.append(self.audio_source)
            s = cfg.sync
            self.sync_worker = SupervisedWorker(
                "sync", _worker_argv("sync", "--rig", self.name, "--codebook-id", s.codebook_id, "--seed", s.seed,
                                     "--epoch-unix-s", s.epoch_unix_s), policy)
            self.workers.append(self.sync_worker)
        if len(self.workers) > MAX_WORKERS or len(self.sources) > MAX_SOURCES:
            raise ValueError(f"a rig holds at most {MAX_WORKERS} workers and {MAX_SOURCES} sources")
        for worker in self.workers:
            worker.heartbeat_ns = self._heartbeat_of(worker)
            worker.on_restart = self._on_restart

    def _heartbeat_of(self, worker: SupervisedWorker):
        def newest() -> int:
            beats = [s.indexer.reader.heartbeat_ns for s in self.sources
                     if s.worker is worker and s.indexer and s.indexer.reader.writer_pid() == worker.pid]
            if worker is self.sync_worker and self.fits_reader and self.fits_reader.writer_pid() == worker.pid:
                beats.append(self.fits_reader.heartbeat_ns)
            return max(beats, default=0)
        return newest

    def _on_restart(self, worker: SupervisedWorker) -> None:
        for source in self.sources:
            if source.worker is worker and source.indexer is not None:
                self._detach(source)

    def _detach(self, source: Source) -> None:
        ix = source.indexer
        ix.poll()  # whatever the dead writer left is still readable
        source.published_before += ix.reader.published
        source.indexed_before += ix.indexed
        source.lost_before += ix.reader.lost
        source.gap_open_since_ns = ix.last_host_ns
        ix.reader.close()
        source.indexer = None

    def _attach_new_rings(self) -> None:
        for source in self.sources:
            if source.indexer is not None:
                if not source.indexer.reader.writer_alive():
                    self._detach(source)
                continue
            if source.worker.state not in (WorkerState.STARTING, WorkerState.RUNNING):
                continue
            try:
                reader = RingReader.attach(source.name, rig=self.name)
            except SegmentMissing:  # not created yet, or still being created
                continue
            except RingError as exc:  # e.g. a worker of another Mimir version: say so, keep supervising
                source.worker.error = f"cannot attach ring {source.name}: {exc}"
                continue
            if reader.writer_pid() != source.worker.pid:
                reader.close()  # a previous incarnation's ring, not yet reclaimed
                continue
            source.indexer = RingIndexer(source.name, reader, self.reservoir, self.clock, self.latency)
        if self.sync_worker and self.fits_reader is None and self.sync_worker.state in (WorkerState.STARTING, WorkerState.RUNNING):
            try:
                reader = RingReader.attach(FITS_RING, rig=self.name, descriptor=FitsHeader, register=False)
            except SegmentMissing:
                return
            if reader.writer_pid() == self.sync_worker.pid:
                self.fits_reader = reader
            else:
                reader.close()
        elif self.fits_reader is not None and not self.fits_reader.writer_alive():
            self.fits_reader.close()
            self.fits_reader = None

    # ---- running ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self.board = StatusBoard(self.name)
        except SegmentExists as exc:
            raise RigAlreadyRunning(f"rig {self.name!r} is already supervised: {exc}") from None
        try:
            remove_stale(self.name)  # what a killed predecessor left; the board itself is ours and live
            cfg = self.config
            rates = {SampleKind.CAMERA_FRAME: sum(c.fps * c.count for c in cfg.cameras)}
            if cfg.audio:
                rates[SampleKind.AUDIO_BLOCK] = cfg.audio.rate_hz / cfg.audio.block_frames
            window_ns = int(cfg.reservoir.window_s * 1e9)
            self.reservoir = Reservoir.create(
                self.name, capacity=capacity_for(rates, window_ns=window_ns, margin=cfg.reservoir.capacity_margin),
                duration_ns=window_ns,
            )
            self._plan()
            if cfg.network.listen:
                from mimir.net import RemoteListener

                self.listener = RemoteListener(cfg.network, self.name, codebook=(cfg.sync.codebook_id, cfg.sync.seed))
            for worker in self.workers:
                worker.start()
        except BaseException:
            self.shutdown()
            raise

    def run(self, duration_s: float | None = None) -> None:
        """Supervise until :attr:`stop_event` is set or ``duration_s`` passes; always shuts down."""
        self.realtime = _go_realtime()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_tick = next_status = 0.0
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                for source in self.sources:
                    if source.indexer is not None:
                        source.indexer.poll()
                if self.listener is not None and self.listener.poll(100):
                    self._index_event_claims()
                if now >= next_tick:
                    next_tick = now + TICK_PERIOD_S
                    self._tick(now)
                if now >= next_status:
                    next_status = now + STATUS_PERIOD_S
                    self._publish_status(now)
                time.sleep(INDEX_PERIOD_S)
        finally:
            if self.board is not None:
                self._publish_status(time.monotonic())
                self.final_status = read_status(self.name)
            self.shutdown()

    def _tick(self, now: float) -> None:
        for worker in self.workers:
            worker.tick(now)
        self._attach_new_rings()
        self._adopt_fit()
        for source in self.sources:
            ix = source.indexer
            if ix is not None and source.gap_open_since_ns and ix.first_host_ns:
                # Items a restart cost: the configured rate over the silent span, minus the one we expected anyway.
                missing = (ix.first_host_ns - source.gap_open_since_ns) / 1e9 * source.configured_hz - 1
                source.restart_gap += max(0, round(missing))
                source.gap_open_since_ns = 0

    def _adopt_fit(self) -> None:
        if self.fits_reader is None:
            return
        item = self.fits_reader.latest()
        if item is None:
            return
        rows = item.payload
        reference = rows[0]  # channel 0: the loopback / reference input
        if reference["locked"] and reference["effective_sample_rate"] > 0:
            fit = DeviceToCanonical(float(reference["local_sample_at_epoch"]), float(reference["effective_sample_rate"]),
                                    float(reference["confidence"]))
            current = self.clock.fit
            if current is None or (current.local_sample_at_epoch, current.rate_hz) != (fit.local_sample_at_epoch, fit.rate_hz):
                self.clock.set_fit(fit)

    def _index_event_claims(self) -> None:
        """Remote anchors, fits and trust decisions into the reservoir as EVENT_CLAIM samples.

        Their canonical time is the decoded one; a trust decision has none, so
        it is stamped with its arrival on this host's canonical clock.
        Packet timestamps never become sample times.
        """
        for claim in self.listener.drain_event_claims():
            producer = self._claim_producers.get(claim.sensor_id_hash)
            if producer is None:
                producer = self.reservoir.producer(SampleKind.EVENT_CLAIM, sensor_id_hash=claim.sensor_id_hash)
                self._claim_producers[claim.sensor_id_hash] = producer
            canonical_ns = claim.canonical_ns if claim.canonical_ns is not None else self.clock.from_host_ns(claim.arrival_ns)
            producer.push(max(0, canonical_ns), claim.arrival_ns)

    def _remote_rows(self) -> np.ndarray:
        from mimir.net.trust import rank

        remotes = self.listener.sources() if self.listener is not None else []
        rows = np.zeros(len(remotes), dtype_of(SourceRow))
        for row, remote in zip(rows, remotes):
            row["name"] = f"remote.{remote.source_id}".encode()[:32]
            row["kind"] = int(SampleKind.EVENT_CLAIM)
            row["worker"] = MAX_WORKERS  # no local worker
            row["indexed"] = remote.counters.event_claims
            row["published"] = remote.counters.accepted
            row["lost_overrun"] = remote.counters.lost
            row["health"] = Health.GREEN if remote.connected else Health.RED
            row["trust_level"] = rank(remote.trust) + 1
            row["influences_canonical"] = int(remote.influences_canonical)
            row["rejected"] = sum(msgspec.structs.astuple(remote.counters.rejected))
            fit = remote.clock_fit
            if fit is not None and fit.locked:
                _set_clock(row, True, fit.local_sample_at_epoch or 0.0, fit.effective_rate_hz or 0.0,
                           fit.confidence, fit.mean_abs_error_samples or 0.0)
        return rows

    def _publish_status(self, now: float) -> None:
        cpu_now = time.process_time()
        last_wall, last_cpu = self._cpu_mark
        if now - last_wall >= 1.0:
            self.cpu_pct = (cpu_now - last_cpu) / (now - last_wall) * 100
            self._cpu_mark = (now, cpu_now)
        workers = np.zeros(len(self.workers), dtype_of(WorkerRow))
        for i, w in enumerate(self.workers):
            workers[i] = (w.name.encode()[:24], w.pid, int(w.state), w.restarts, w.last_exit_code, w.started_unix_ns,
                          w.error.encode()[:120])
        sources = np.zeros(len(self.sources), dtype_of(SourceRow))
        fits = self.fits_reader.latest() if self.fits_reader else None
        for i, s in enumerate(self.sources):
            mark_t, mark_n = s.rate_mark
            if now - mark_t >= 1.0:
                s.delivered_hz = (s.indexed - mark_n) / (now - mark_t) if mark_t else 0.0
                s.rate_mark = (now, s.indexed)
            row = sources[i]
            row["name"] = s.name.encode()[:32]
            row["kind"] = int(s.kind)
            row["worker"] = self.workers.index(s.worker)
            row["configured_hz"] = s.configured_hz
            row["delivered_hz"] = s.delivered_hz
            row["published"] = s.published
            row["indexed"] = s.indexed
            row["lost_overrun"] = s.lost_overrun
            row["lost_restart_gap"] = s.restart_gap
            if s.indexer is not None:
                reader = s.indexer.reader
                lag = reader.available()
                row["reader_lag"] = max(0, lag)
                row["ring_fill"] = min(1.0, max(0, lag) / reader.capacity)
                status = reader.status if reader.layout.status else None
                if status is not None:
                    names = status.dtype.names
                    if "dropped_by_device" in names:
                        row["device_dropped"] = int(status["dropped_by_device"])
                        row["corrupt"] = int(status["discarded_corrupt"])
                        row["health"] = Health.GREEN if int(status["state"]) == 1 else Health.RED
                    if "health" in names and "xruns" in names:
                        row["health"] = int(status["health"])
            if s.kind == SampleKind.AUDIO_BLOCK and fits is not None and fits.descriptor[0]:
                _set_clock_from_fit_row(row, fits.payload[0])
        # One more row per decoded audio channel: every audio source's clock fit is visible.
        if fits is not None:
            extra = np.zeros(min(fits.descriptor[0], MAX_SOURCES - len(sources)), dtype_of(SourceRow))
            for c in range(len(extra)):
                ref = fits.payload[c]
                row = extra[c]
                row["name"] = f"audio.ch{c}".encode()
                row["kind"] = int(SampleKind.PHASE_CLAIM)
                row["worker"] = self.workers.index(self.sync_worker)
                _set_clock_from_fit_row(row, ref)
                row["health"] = Health.GREEN if ref["locked"] else Health.UNKNOWN
            sources = np.concatenate([sources, extra])
        if self.listener is not None:
            sources = np.concatenate([sources, self._remote_rows()])[:MAX_SOURCES]
        p50, p99 = self.latency.percentiles_us(50, 99)
        res = self.reservoir.status()
        header = SupervisorHeader(
            pid=os.getpid(), state=int(WorkerState.RUNNING), started_unix_ns=self.started_unix_ns,
            uptime_ns=time.time_ns() - self.started_unix_ns, workers=len(self.workers), sources=len(sources),
            indexed_total=sum(s.indexed for s in self.sources),
            lost_total=sum(s.lost_overrun + s.restart_gap for s in self.sources),
            cpu_pct=self.cpu_pct, index_latency_p50_us=p50, index_latency_p99_us=p99,
            reservoir_edge_ns=res.edge_ns, reservoir_window_start_ns=res.window_start_ns,
            reservoir_samples=res.total_sample_count,
        )
        self.board.publish(header, workers, sources)

    def shutdown(self) -> None:
        """Stop workers (SIGTERM, then SIGKILL), detach, unlink the reservoir and the board. Idempotent.

        Consumers stop before producers (the sync worker reads the audio ring),
        so no worker outlives the ring it reads.
        """
        for worker in reversed(self.workers):
            worker.stop()
        for source in self.sources:
            if source.indexer is not None:
                source.indexer.reader.close()
                source.indexer = None
        if self.fits_reader is not None:
            self.fits_reader.close()
            self.fits_reader = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.reservoir is not None:
            self.reservoir.close()
            self.reservoir = None
        if self.board is not None:
            self.board.close()
            self.board = None
            remove_stale(self.name)  # what killed workers left (a SIGKILLed reader's doorbell)
