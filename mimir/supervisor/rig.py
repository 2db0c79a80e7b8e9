"""The rig: workers, rings, reservoir, clock and status under one supervisor process.

Ownership
    The supervisor creates and unlinks the status board (which is also the rig
    lock), the plan object (the rig contract, :mod:`mimir.contract`) and the
    reservoir. Each worker creates and unlinks its own rings; the supervisor
    only attaches to them as a reader. On start, and at stop, objects of this
    rig that are stale (a SIGKILLed process's) are removed.

Loop (one thread; event driven)
    The loop sleeps until something happens: a worker publishes into a ring
    (every ring's reader shares one doorbell), a remote receiver sends a
    report (the listener's socket), or a timer is due. It then indexes what
    is new in every ring, handles the listener, and runs what is due:

    every 50 ms    tick workers (exits, heartbeats, restarts), attach new rings,
                   adopt new clock fits;
    every 200 ms   publish a status snapshot.

    Idle, it wakes only for its timers; under load its cost follows the
    descriptors, not the number of rings. ``coalesce_s`` lets a burst of
    publishes land before the loop indexes them, trading a bounded latency
    for fewer wake-ups (see ``mimir bench pipeline``).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import numpy as np
import psutil

from mimir.config import ConfigError, RigConfig
from mimir.contract import publish_plan
from mimir.descriptors import FitsHeader, SampleKind
from mimir.process_control import go_realtime
from mimir.reservoir import Reservoir
from mimir.supervisor.clock import CanonicalClock, DeviceToCanonical
from mimir.supervisor.clock_board import ClockBoard
from mimir.supervisor.features import FeatureIndexer
from mimir.supervisor.indexer import LatencyWindow, RingIndexer
from mimir.supervisor.processes import SupervisedWorker
from mimir.supervisor.recorder import RecorderRefused, RigRecorder
from mimir.supervisor.reference import ReferenceChooser
from mimir.supervisor.status import (
    MAX_SOURCES, MAX_WORKERS, Health, SourceRow, StatusBoard, StatusSnapshot, SupervisorHeader, WorkerRow, WorkerState,
    read_status,
)
from mimir.topology import (
    FEATURE_RESERVOIR, OBSERVED, RESERVOIR, AudioWorkerSpec, FeatureWorkerSpec, RigPlan, SourceSpec, SyncWorkerSpec,
    plan_rig,
)
from ringbuf import (
    ForeignObject, OutOfSharedMemory, RingReader, SegmentExists, SegmentMissing, SharedObject, dtype_of, remove_stale,
    scan,
)
from ringbuf.platform import PLATFORM, DoorbellListener

if TYPE_CHECKING:  # imported when network.listen is set (zmq)
    from mimir.net import RemoteListener
    from mimir.net.claims import ClaimStore

__all__ = ["Rig", "Source", "RigAlreadyRunning", "RigStartRefused", "check_budget", "reap_orphans"]

TICK_PERIOD_S = 0.1
STATUS_PERIOD_S = 0.2
DEFAULT_COALESCE_S = 0.0006

# What indexes one ring: the same face (poll, reader, indexed, refused, last_error, first/last_host_ns, time_source).
Indexer = RingIndexer | FeatureIndexer


class RigAlreadyRunning(RuntimeError):
    """Another live supervisor runs this rig."""


class RigStartRefused(RuntimeError):
    """The rig cannot start here: something that is not a live supervisor of it holds one of its names."""


@dataclass
class Source:
    """One ring a worker writes and the supervisor indexes, with its counters over every incarnation."""

    spec: SourceSpec
    worker: SupervisedWorker
    indexer: Indexer | None = None
    published_before: int = 0
    indexed_before: int = 0
    lost_before: int = 0
    refused_before: int = 0
    restart_gap: int = 0
    gap_open_since_ns: int = 0          # host time of the last item before a worker restart
    rate_mark: tuple[float, int] = (0.0, 0)
    delivered_hz: float = 0.0
    attach_error: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> SampleKind:
        return SampleKind(self.spec.kind)

    @property
    def indexed(self) -> int:
        return self.indexed_before + (self.indexer.indexed if self.indexer else 0)

    @property
    def refused(self) -> int:
        return self.refused_before + (self.indexer.refused if self.indexer else 0)

    @property
    def lost_overrun(self) -> int:
        return self.lost_before + (self.indexer.reader.lost if self.indexer else 0)

    @property
    def published(self) -> int:
        return self.published_before + (self.indexer.reader.published if self.indexer else 0)


def check_budget(plan: RigPlan) -> None:
    """Refuse a rig whose shared memory cannot fit, before anything is created (the numbers and the knobs)."""
    available = PLATFORM.shm_available_bytes()
    need = plan.budget_bytes
    if available is None or need <= available:
        return
    largest = sorted(plan.budget, key=lambda b: -b.bytes)[:3]
    parts = "; ".join(f"{b.what}: {b.bytes / 2**20:,.0f} MiB" for b in largest)
    raise OutOfSharedMemory(
        f"rig {plan.rig!r} needs {need / 2**20:,.0f} MiB of shared memory, {PLATFORM.shm_where()} has "
        f"{available / 2**20:,.0f} MiB available; largest: {parts}. Shorten reservoir.window_s, lower camera "
        "resolution or count, or give the machine more shared memory (e.g. a larger /dev/shm)"
    )


def reap_orphans(rig: str, *, grace_s: float = 2.0) -> list[int]:
    """Stop the workers of ``rig`` that a killed supervisor left behind; return their pids.

    Called with the rig lock held (our status board exists), so no live
    supervisor runs this rig: a live process still writing one of its worker
    objects is an orphan of a previous supervisor -- typically a worker that
    was stopped (SIGSTOP) when its supervisor was killed, so its parent-death
    signal is still pending. A Mimir worker of this rig (its spec names the
    rig) is continued, asked to stop, then killed; any other live writer is
    refused with what to do.
    """
    from mimir.topology import SPEC_ENV

    me = os.getpid()
    reaped = []
    for obj in scan(rig):
        pid = obj.writer_pid
        if obj.role != "object" or obj.stale or pid in (0, me) or pid in reaped:
            continue
        try:
            proc = psutil.Process(pid)
            spec = proc.environ().get(SPEC_ENV, "")
            is_ours = "mimir_cli.worker_main" in " ".join(proc.cmdline()) and f'"rig":"{rig}"' in spec
        except psutil.Error:
            continue  # gone meanwhile, or another user's: the create that follows says so
        if not is_ours:
            raise SegmentExists(
                f"{obj.name} ({obj.label}) of rig {rig!r} is written by live process {pid}, which is not a worker of "
                f"this rig; stop it (e.g. `kill {pid}`), then start the rig again"
            )
        try:
            proc.resume()  # a stopped process cannot act on a stop request
            proc.terminate()
            try:
                proc.wait(grace_s)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(grace_s)
        except psutil.NoSuchProcess:
            pass
        reaped.append(pid)
    return reaped


def _set_clock(row: np.void, locked: bool, local_sample_at_epoch: float, rate_hz: float, confidence: float,
               mae_samples: float) -> None:
    """Fill the clock-fit fields of one status row (``SourceRow``)."""
    row["clock_locked"] = int(locked)
    row["clock_local_sample_at_epoch"] = local_sample_at_epoch
    row["clock_rate_hz"] = rate_hz
    row["clock_confidence"] = confidence
    row["clock_mae_samples"] = mae_samples


def _set_clock_from_fit_row(row: np.void, fit: np.void) -> None:
    """The same, from one ``FitRow`` of the sync worker's fits snapshot, with the channel's path profile."""
    _set_clock(row, bool(fit["locked"]), float(fit["local_sample_at_epoch"]), float(fit["rate_hz"]),
               float(fit["confidence"]), float(fit["mae_samples"]))
    row["path_strongest_minus_direct_ms"] = fit["strongest_minus_direct_ms"]
    row["path_drr_db"] = fit["drr_db"]
    row["path_rt60_s"] = fit["rt60_s"]


class _Waiter:
    """Sleeps until a doorbell or another descriptor (the listener's socket) is readable, or a timeout.

    zmq's poller, on every OS: it takes the doorbell's descriptor (a FIFO, or
    on Windows a socket, where ``select.poll`` does not exist) and the socket.
    """

    def __init__(self, bell_fd: int, socket=None) -> None:
        import zmq

        self._poller = zmq.Poller()
        self._poller.register(bell_fd, zmq.POLLIN)
        if socket is not None:
            self._poller.register(socket, zmq.POLLIN)

    def wait(self, timeout_s: float) -> None:
        self._poller.poll(max(0, int(timeout_s * 1000 + 0.999)))


class Rig:
    """A running rig. ``Rig(config).run(duration_s)`` blocks until stopped (SIGTERM/SIGINT or duration).

    Constructing it derives the rig contract (:func:`mimir.topology.plan_rig`),
    so a config that cannot run fails here with :class:`ConfigError`.
    """

    def __init__(self, config: RigConfig, *, coalesce_s: float = DEFAULT_COALESCE_S) -> None:
        self.config = config
        self.plan = plan_rig(config)
        self.name = config.rig
        self.coalesce_s = coalesce_s
        self.stop_event = threading.Event()
        self.workers: list[SupervisedWorker] = []
        self.sources: list[Source] = []
        self.clock = CanonicalClock(config.sync.epoch_unix_s)
        self.latency = LatencyWindow()
        self.board: StatusBoard | None = None
        self.clock_board: ClockBoard | None = None
        audio_spec = next((w for w in self.plan.workers if isinstance(w, AudioWorkerSpec)), None)
        self.audio_inputs = audio_spec.inputs if audio_spec is not None else ()
        # which audio channel defines canonical time: declared in the channel map, or found
        self.reference = ReferenceChooser(tuple(i.role for i in self.audio_inputs),
                                          audio_spec.declared_reference if audio_spec is not None else None,
                                          rate_hz=audio_spec.rate_hz if audio_spec is not None else 48_000.0)
        self._fit_channel: int | None = None  # the reference channel of the last fit adopted
        self.reservoir: Reservoir | None = None
        self.feature_reservoir: Reservoir | None = None  # ``fx``: camera features, when the plan has them
        self.plan_object: SharedObject | None = None
        self.fits_reader: RingReader | None = None
        self._fits_seen = (-1, -1)  # (fits published, audio stream pid) at the last adoption: skip when unchanged
        self.sync_worker: SupervisedWorker | None = None
        self.sync_spec: SyncWorkerSpec | None = None
        self.listener: RemoteListener | None = None  # when network.listen is set
        # what defines canonical time: "local" (the reference channel) or a remote source (see _follow_authority)
        self.authority_id = config.sync.authority
        self.authority_index = 0 if self.authority_id == "local" else 1 + [
            s.source_id for s in config.network.sources].index(self.authority_id)
        self.authority_why = "the local reference channel" if self.authority_id == "local" else \
            f"{self.authority_id}: waiting for its time transfer"
        self.authority_uncertainty_ns = 0
        self.claims: ClaimStore | None = None  # the ``obs`` reservoir, when network.listen is set
        self.recorder: RigRecorder | None = None  # `mimir record` of the rig when the config has [record]
        self.refusal = ""     # why the rig stopped at start: a worker refused its spec (mimir-supervisor exits 2)
        self._bell: DoorbellListener | None = None
        self._active: list[Indexer] = []
        self.started_unix_ns = time.time_ns()
        self.final_status: StatusSnapshot | None = None  # the last snapshot published before shutdown (the summary)
        self.realtime = ""        # what go_realtime achieved
        self._cpu_mark = (time.monotonic(), time.process_time())
        self.cpu_pct = 0.0
        self.wakeups = 0
        self.orphans_reaped: list[int] = []
        self._cameras_by_hash: dict[int, Source] = {}  # camera sources by reservoir source hash (for producers)
        if len(self.plan.workers) > MAX_WORKERS or len(self.plan.sources) > MAX_SOURCES:
            raise ConfigError(f"a rig holds at most {MAX_WORKERS} workers and {MAX_SOURCES} sources")

    # ---- setup --------------------------------------------------------------------------------------------------
    def _build_workers(self) -> None:
        policy = self.config.supervision
        by_name: dict[str, SupervisedWorker] = {}
        for spec in self.plan.workers:
            worker = SupervisedWorker.for_spec(spec, policy)
            worker.on_restart = self._on_restart
            by_name[spec.name] = worker
            self.workers.append(worker)
            if isinstance(spec, SyncWorkerSpec):
                self.sync_worker, self.sync_spec = worker, spec
        for source_spec in self.plan.sources:
            self.sources.append(Source(source_spec, by_name[source_spec.worker]))
        self._cameras_by_hash = {s.spec.source_hash: s for s in self.sources if s.kind == SampleKind.CAMERA_FRAME}
        for worker in self.workers:
            worker.heartbeat_ns = self._heartbeat_of(worker)

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
        remove_stale(self.name)  # the previous incarnation's doorbells, if it was killed

    def _detach(self, source: Source, *, final: bool = False) -> None:
        ix = source.indexer
        assert ix is not None, "only an attached source is detached"
        ix.poll()  # whatever the dead writer left is still readable
        source.published_before += ix.reader.published
        source.indexed_before += ix.indexed
        source.lost_before += ix.reader.lost
        source.refused_before += ix.refused
        source.gap_open_since_ns = ix.last_host_ns
        ix.reader.close()
        source.indexer = None
        self._active = [s.indexer for s in self.sources if s.indexer is not None]
        if source.kind == SampleKind.AUDIO_BLOCK and not final:
            self.clock.stream_restarted()  # the next audio ring is a new device clock: hold time until relock

    def _attach(self, source: Source) -> None:
        """Attach the source's ring if its worker's current incarnation made it. Never raises."""
        try:
            reader = RingReader.attach(source.spec.ring.object_id, rig=self.name, doorbell=self._bell)
        except SegmentMissing:  # not created yet, or still being created (RingNotReady is a SegmentMissing)
            return
        except Exception as exc:  # noqa: BLE001 - nothing a worker's ring does may stop the supervisor
            source.attach_error = f"cannot attach ring {source.spec.ring.object_id}: {type(exc).__name__}: {exc}"
            return
        if reader.writer_pid() != source.worker.pid:
            reader.close()  # a previous incarnation's ring, not yet reclaimed
            return
        reservoir = self.reservoir
        assert reservoir is not None, "rings are attached while the rig runs (after start())"
        try:
            if source.kind == SampleKind.CAMERA_FEATURE:
                spec = self.plan.worker(source.spec.worker)
                assert isinstance(spec, FeatureWorkerSpec)
                features = self.feature_reservoir
                assert features is not None, "start() makes the features reservoir when the plan has features"
                source.indexer = FeatureIndexer(source.name, reader, features, spec, self._frame_time,
                                                lambda: reservoir.edge_ns)
            else:
                source.indexer = RingIndexer(source.name, reader, reservoir, self.clock, self.latency,
                                             source_hash=source.spec.source_hash)
        except Exception as exc:  # noqa: BLE001 - e.g. a ring of another layout
            reader.close()
            source.attach_error = f"cannot index ring {source.spec.ring.object_id}: {exc}"
            return
        source.attach_error = ""
        self._active = [s.indexer for s in self.sources if s.indexer is not None]

    def _frame_time(self, camera_hash: int, sequence: int) -> int | None:
        """The canonical ns this rig gave a camera's frame (for producers); indexes that camera first if needed."""
        source = self._cameras_by_hash.get(camera_hash)
        ix = source.indexer if source is not None else None
        if not isinstance(ix, RingIndexer):
            return None
        at = ix.canonical_of(sequence)
        if at is None:
            ix.poll()  # the producer saw the frame before this pass indexed it: index it now
            at = ix.canonical_of(sequence)
        return at

    def _attach_new_rings(self) -> None:
        for source in self.sources:
            ix = source.indexer
            if ix is not None:
                if ix.reader.writer_closed or ix.reader.writer_pid() != source.worker.pid or \
                        source.worker.state not in (WorkerState.STARTING, WorkerState.RUNNING):
                    self._detach(source)
                continue
            if source.worker.state in (WorkerState.STARTING, WorkerState.RUNNING):
                self._attach(source)
        self._attach_fits()

    def _attach_fits(self) -> None:
        worker, spec = self.sync_worker, self.sync_spec
        if worker is None or spec is None:  # both set together by _build_workers, or neither
            return
        if self.fits_reader is not None:
            if self.fits_reader.writer_closed or self.fits_reader.writer_pid() != worker.pid:
                self.fits_reader.close()
                self.fits_reader = None
            return
        if worker.state not in (WorkerState.STARTING, WorkerState.RUNNING):
            return
        try:
            reader = RingReader.attach(spec.fits_ring.object_id, rig=self.name, descriptor=FitsHeader,
                                       register=False)
        except SegmentMissing:
            return
        except Exception as exc:  # noqa: BLE001
            worker.error = f"cannot attach the fits ring: {exc}"
            return
        if reader.writer_pid() == worker.pid:
            self.fits_reader = reader
            self._fits_seen = (-1, -1)
        else:
            reader.close()

    # ---- running ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        check_budget(self.plan)
        try:
            self.board = StatusBoard(self.name)
        except ForeignObject as exc:  # a squatter on the board's name, or another user's rig: never "supervised"
            raise RigStartRefused(f"rig {self.name!r} cannot start: {exc}") from None
        except SegmentExists as exc:
            raise RigAlreadyRunning(f"rig {self.name!r} is already supervised: {exc}") from None
        try:
            self.orphans_reaped = reap_orphans(self.name)  # workers a killed predecessor left running (stopped ones)
            remove_stale(self.name)  # what a killed predecessor left; the board itself is ours and live
            self.clock_board = ClockBoard(self.name)
            self.reservoir = Reservoir.create(self.name, name=RESERVOIR, capacity=self.plan.reservoir_capacity,
                                              duration_ns=self.plan.window_ns)
            if self.plan.feature_capacity:
                self.feature_reservoir = Reservoir.create(self.name, name=FEATURE_RESERVOIR,
                                                          capacity=self.plan.feature_capacity,
                                                          duration_ns=self.plan.window_ns)
            # The plan last: a consumer that can read it finds the reservoirs finished (RigConsumer.attach reads
            # the plan, then attaches them; a plan published first let it meet a reservoir still being created).
            self.plan_object = publish_plan(self.plan)
            self._bell = PLATFORM.doorbell_listener(self.name)
            self._build_workers()
            cfg = self.config
            if cfg.network.listen:
                from mimir.net import RemoteListener
                from mimir.net.claims import ClaimLimits, ClaimStore

                self.claims = ClaimStore.create(self.name, OBSERVED, sources=len(cfg.network.sources),
                                                limits=ClaimLimits(per_second=cfg.network.max_claims_per_s),
                                                window_ns=self.plan.window_ns)
                self.listener = RemoteListener(cfg.network, self.name, codebook=(cfg.sync.codebook_id, cfg.sync.seed),
                                               max_fit_age_s=cfg.network.max_fit_age_s,
                                               time_probe_interval_s=cfg.network.time_probe_interval_s)
            if cfg.record is not None:  # before any worker: the take holds the rig from its first frame
                self.recorder = RigRecorder(self.name, cfg.record, cfg.supervision.max_restarts)
                try:
                    self.recorder.start()
                except RecorderRefused as exc:
                    raise RigStartRefused(f"rig {self.name!r} cannot start: {exc}") from None
            for worker in self.workers:
                worker.start()
        except BaseException:
            self.shutdown()
            raise

    def run(self, duration_s: float | None = None) -> None:
        """Supervise until :attr:`stop_event` is set or ``duration_s`` passes; always shuts down."""
        self.realtime = go_realtime()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        assert self._bell is not None, "run() after start()"
        waiter = _Waiter(self._bell.fileno(), self.listener.socket if self.listener is not None else None)
        next_tick = next_status = 0.0
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                self._index_all()
                if self.listener is not None and self.listener.poll(100):
                    self._index_event_claims()
                if now >= next_tick:
                    next_tick = now + TICK_PERIOD_S
                    self._tick(now)
                    refused = next((w for w in self.workers if w.refused and w.restarts == 0), None)
                    if refused is not None:  # its first start: the rig's config cannot run here; say so, exit 2
                        self.refusal = f"worker {refused.name} {refused.error}"
                        break
                if now >= next_status:
                    next_status = now + STATUS_PERIOD_S
                    self._publish_status(now)
                due = min(next_tick, next_status) if deadline is None else min(next_tick, next_status, deadline)
                self._sleep_until_work(waiter, due - time.monotonic())
        finally:
            self.stop_workers()
            if self.board is not None:
                self._publish_status(time.monotonic())
                self.final_status = read_status(self.name)
            self.shutdown()

    def _index_all(self) -> int:
        total = 0
        for ix in self._active:
            total += ix.poll()
        return total

    def _sleep_until_work(self, waiter: _Waiter, timeout_s: float) -> None:
        """Arm every ring on the shared doorbell and sleep until a publish, a network frame, or ``timeout_s``."""
        if timeout_s <= 0:
            return
        active = self._active
        ready = False
        for ix in active:
            if ix.reader.arm():
                ready = True
                break
        if not ready:
            waiter.wait(timeout_s)
            self.wakeups += 1
        for ix in active:
            ix.reader.disarm()
        assert self._bell is not None  # start() made it; shutdown() clears it after the loop
        self._bell.drain()
        if self.coalesce_s > 0 and not ready:
            time.sleep(self.coalesce_s)  # let the rest of a burst land: one pass indexes it all

    def _tick(self, now: float) -> None:
        for worker in self.workers:
            worker.tick(now)
        self._attach_new_rings()
        self._adopt_fit()
        if self.claims is not None:
            self._index_event_claims()  # moves the observed store's edge to now, so old claims age out
        assert self.clock_board is not None  # start() made it
        self.clock_board.publish(self.clock, time.monotonic_ns())
        if self.recorder is not None:
            self.recorder.tick()  # a recorder that died is started again, into a new take
        for source in self.sources:
            ix = source.indexer
            if ix is not None and source.gap_open_since_ns and ix.first_host_ns:
                # Items a restart cost: the configured rate over the silent span, minus the one we expected anyway.
                missing = (ix.first_host_ns - source.gap_open_since_ns) / 1e9 * source.spec.nominal_hz - 1
                source.restart_gap += max(0, round(missing))
                source.gap_open_since_ns = 0

    def _follow_authority(self) -> None:
        """Follow the configured remote canonical authority while it holds its lock and trust; else fall back."""
        if not self.authority_index or self.listener is None:
            return
        line = self.listener.authority_line(self.authority_id)
        if line is not None:
            origin_host_ns, origin_canonical_ns, scale, uncertainty_ns = line
            self.clock.follow_authority(self.authority_index, (origin_host_ns, origin_canonical_ns, scale))
            self.authority_uncertainty_ns = int(uncertainty_ns)
            self.authority_why = f"{self.authority_id}: followed (time transfer +-{uncertainty_ns / 1e3:.0f} us)"
            return
        source = self.listener.source(self.authority_id)  # configured: validate_rig checked it
        if not source.decision.canonical_authority:
            reason = source.decision.reason
        else:
            reason = f"time transfer: {source.time_transfer.reason}"
        if self.clock.authority:
            self.clock.authority_lost()
            self.authority_why = f"{self.authority_id} LOST ({reason}): back on the local reference"
        elif not self.authority_why.startswith(f"{self.authority_id} LOST"):
            self.authority_why = f"{self.authority_id}: not followed ({reason}); the local reference rules"
        self.authority_uncertainty_ns = 0

    def _adopt_fit(self) -> None:
        """Adopt the reference channel's fit -- only one measured on the audio stream indexed now.

        Under a remote authority the fit is only kept (for the fallback); see :meth:`_follow_authority`.
        """
        self._follow_authority()
        if self.fits_reader is None:
            return
        audio = next((s for s in self.sources if s.kind == SampleKind.AUDIO_BLOCK), None)
        seen = (self.fits_reader.published, audio.indexer.reader.writer_pid() if audio and audio.indexer else 0)
        if seen == self._fits_seen:
            return  # nothing new from the sync worker, and the same audio stream: the same decision as before
        self._fits_seen = seen
        item = self.fits_reader.latest()
        if item is None:
            return
        stream_pid = dict(zip(FitsHeader.__struct_fields__, item.descriptor))["stream_pid"]
        if audio is None or audio.indexer is None or stream_pid != audio.indexer.reader.writer_pid():
            return  # fits of a previous stream, or of none yet
        assert item.payload is not None, "the fits ring is created with a payload of FitRow records"
        now_ns = time.monotonic_ns()
        choice = self.reference.choose(item.payload[: item.descriptor[0]], self.clock.from_host_ns(now_ns) / 1e9)
        if choice.channel is None or choice.channel >= item.descriptor[0]:
            self.clock.lock_lost()  # no channel may define canonical time now: hold the line, visibly
            return
        reference = item.payload[choice.channel]
        if reference["locked"] and reference["rate_hz"] > 0:
            fit = DeviceToCanonical(float(reference["local_sample_at_epoch"]), float(reference["rate_hz"]),
                                    float(reference["confidence"]))
            current = self.clock.fit
            new_reference = self._fit_channel is not None and self._fit_channel != choice.channel
            self._fit_channel = choice.channel
            if current is None or new_reference or \
                    (current.local_sample_at_epoch, current.rate_hz) != (fit.local_sample_at_epoch, fit.rate_hz):
                self.clock.set_fit(fit, new_reference=new_reference)
        else:
            self.clock.lock_lost()

    def _index_event_claims(self) -> None:
        """Remote claims into the observed store (``obs``, :mod:`mimir.net.claims`), never into the reservoir.

        The store's edge is this rig's canonical now: a claim's time is its
        decoded one, stored only inside the window before now; a trust
        decision is stamped with its arrival on this host's canonical clock.
        Packet timestamps never become sample times. Each refusal is counted
        per source and cause (``mimir status``).
        """
        assert self.claims is not None and self.listener is not None, "both made by start() when network.listen is set"
        self.claims.push(self.listener.drain_event_claims(), now_ns=self.clock.from_host_ns(time.monotonic_ns()),
                         canonical_of_arrival=self.clock.from_host_ns)

    # ---- status -------------------------------------------------------------------------------------------------
    def _remote_rows(self, remotes) -> np.ndarray:
        from mimir.net.trust import rank

        assert self.claims is not None, "remote sources exist only when network.listen is set"
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
            row["rate_limited"] = remote.counters.rejected.rate_limited
            row["connections"] = remote.counters.connections
            claims = self.claims.counts(remote.source_id)
            row["claims_stored"] = claims.stored
            row["claims_refused_future"] = claims.after_now
            row["claims_refused_past"] = claims.before_window
            row["claims_refused_rate"] = remote.counters.claims_rate_limited
            row["claims_refused_cap"] = claims.window_cap + claims.store_full
            transfer = remote.time_transfer
            row["transfer_ready"] = int(transfer.ready)
            row["transfer_uncertainty_us"] = (transfer.uncertainty_ns or 0) / 1e3
            row["transfer_round_trip_us"] = transfer.round_trip_us_p50 or 0.0
            fit = remote.clock_fit
            if fit is not None and fit.locked:
                _set_clock(row, True, fit.local_sample_at_epoch or 0.0, fit.rate_hz or 0.0,
                           fit.confidence, fit.mae_samples or 0.0)
        return rows

    def _source_row(self, row: np.void, s: Source, now: float, fits) -> None:
        mark_t, mark_n = s.rate_mark
        if now - mark_t >= 1.0:
            s.delivered_hz = (s.indexed - mark_n) / (now - mark_t) if mark_t else 0.0
            s.rate_mark = (now, s.indexed)
        row["name"] = s.name.encode()[:32]
        row["kind"] = int(s.kind)
        row["worker"] = self.workers.index(s.worker)
        row["configured_hz"] = s.spec.nominal_hz
        row["delivered_hz"] = s.delivered_hz
        row["published"] = s.published
        row["indexed"] = s.indexed
        row["lost_overrun"] = s.lost_overrun
        row["lost_restart_gap"] = s.restart_gap
        row["rejected"] = s.refused
        if isinstance(s.indexer, FeatureIndexer):  # a producer: refused by cause, like a remote source's claims
            r = s.indexer.refusals
            row["claims_stored"] = s.indexer.indexed
            row["claims_refused_past"] = r.unknown_frame + r.past
            row["claims_refused_rate"] = r.repeated  # the producer's rate bound: one record per frame
            row["claims_refused_cap"] = r.full
            row["corrupt"] = r.unknown_camera + r.invalid
        if s.indexer is not None:
            reader = s.indexer.reader
            row["time_source"] = s.indexer.time_source
            lag = reader.available()
            row["reader_lag"] = max(0, lag)
            row["ring_fill"] = min(1.0, max(0, lag) / reader.capacity)
            status = reader.status if reader.layout.status else None
            if status is not None:
                names = status.dtype.names
                assert names is not None, "a ring's status is a Struct record"
                if "dropped_by_device" in names:
                    row["device_dropped"] = int(status["dropped_by_device"])
                    row["corrupt"] = int(status["discarded_corrupt"])
                    row["health"] = Health.GREEN if int(status["state"]) == 1 else Health.RED
                if "health" in names and "xruns" in names:
                    row["health"] = int(status["health"])
        reference = self.reference.current.channel
        if s.kind == SampleKind.AUDIO_BLOCK and fits is not None and reference is not None \
                and reference < fits.descriptor[0]:
            _set_clock_from_fit_row(row, fits.payload[reference])  # the audio source's clock is its reference's

    def _channel_rows(self, fits, room: int) -> np.ndarray:
        """One row per decoded audio channel: every audio source's clock fit is visible."""
        assert self.sync_worker is not None, "fits are read only from the sync worker's ring"
        extra = np.zeros(min(fits.descriptor[0], room), dtype_of(SourceRow))
        for c in range(len(extra)):
            ref = fits.payload[c]
            row = extra[c]
            row["name"] = f"audio.ch{c}".encode()
            if c < len(self.audio_inputs):
                put = self.audio_inputs[c]
                row["label"] = (f"{put.name} ({put.role}, input {put.device_index})" if put.role
                                else f"{put.name} (input {put.device_index})").encode()[:48]
            row["kind"] = int(SampleKind.PHASE_CLAIM)
            row["worker"] = self.workers.index(self.sync_worker)
            _set_clock_from_fit_row(row, ref)
            row["health"] = Health.GREEN if ref["locked"] else Health.UNKNOWN
        return extra

    def _publish_status(self, now: float) -> None:
        cpu_now = time.process_time()
        last_wall, last_cpu = self._cpu_mark
        if now - last_wall >= 1.0:
            self.cpu_pct = (cpu_now - last_cpu) / (now - last_wall) * 100
            self._cpu_mark = (now, cpu_now)
        workers = np.zeros(len(self.workers), dtype_of(WorkerRow))
        for i, w in enumerate(self.workers):
            error = w.error or next((s.attach_error or (s.indexer.last_error if s.indexer else "")
                                     for s in self.sources if s.worker is w
                                     and (s.attach_error or (s.indexer and s.indexer.last_error))), "")
            workers[i] = (w.name.encode()[:24], w.pid, int(w.state), w.restarts, w.last_exit_code, w.started_unix_ns,
                          error.encode()[:120])
        sources = np.zeros(len(self.sources), dtype_of(SourceRow))
        fits = self.fits_reader.latest() if self.fits_reader else None
        for i, s in enumerate(self.sources):
            self._source_row(sources[i], s, now, fits)
        if fits is not None:
            sources = np.concatenate([sources, self._channel_rows(fits, MAX_SOURCES - len(sources))])
        net = self.listener.status() if self.listener is not None else None
        if net is not None:
            sources = np.concatenate([sources, self._remote_rows(net.sources)])[:MAX_SOURCES]
        p50, p99 = self.latency.percentiles_us(50, 99)
        assert self.reservoir is not None and self.board is not None, "status is published while the rig runs"
        res = self.reservoir.status()
        header = SupervisorHeader(
            pid=_pid(), state=int(WorkerState.RUNNING), started_unix_ns=self.started_unix_ns,
            uptime_ns=time.time_ns() - self.started_unix_ns, workers=len(self.workers), sources=len(sources),
            indexed_total=sum(s.indexed for s in self.sources),
            lost_total=sum(s.lost_overrun + s.restart_gap + s.refused for s in self.sources),
            cpu_pct=self.cpu_pct, index_latency_p50_us=p50, index_latency_p99_us=p99,
            reservoir_edge_ns=res.edge_ns, reservoir_window_start_ns=res.window_start_ns,
            reservoir_samples=res.total_sample_count, clock_state=int(self.clock.state),
            clock_segment=self.clock.segment.index, clock_stream=self.clock.stream,
            clock_last_step_ns=self.clock.last_step_ns, clock_relocks=self.clock.relocks,
            clock_reference=-1 if self.reference.current.channel is None else self.reference.current.channel,
            clock_reference_why=self.reference.current.why.encode()[:80],
            clock_authority=self.clock.authority,
            clock_authority_why=self.authority_why.encode()[:96],
            clock_authority_uncertainty_ns=self.authority_uncertainty_ns,
            net_listening=int(net is not None),
            net_handshakes_unknown_key=net.rejected_total.unknown_key if net else 0,
            net_handshakes_refused=net.rejected_total.refused_by_policy if net else 0,
            net_connections_dropped=net.handshakes.disconnected if net else 0,
            net_claims_dropped=net.event_claims_dropped if net else 0,
        )
        self.board.publish(header, workers, sources)

    # ---- stopping -----------------------------------------------------------------------------------------------
    def stop_workers(self) -> None:
        """Stop every worker (consumers first) and index what they published. Idempotent.

        Consumers stop before producers (the sync worker reads the audio ring),
        so no worker outlives the ring it reads. After the workers are gone the
        rings stay mapped here until every item they published is indexed.
        """
        for worker in reversed(self.workers):
            worker.stop()
        for source in self.sources:
            if source.indexer is not None:
                self._detach(source, final=True)  # the final read: nothing published goes unindexed

    def shutdown(self) -> None:
        """Stop the workers, then unlink everything the supervisor made. Idempotent."""
        self.stop_workers()
        if self.fits_reader is not None:
            self.fits_reader.close()
            self.fits_reader = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.claims is not None:
            self.claims.close()
            self.claims = None
        if self._bell is not None:
            self._bell.close()
            self._bell = None
        if self.reservoir is not None:
            self.reservoir.close()
            self.reservoir = None
        if self.feature_reservoir is not None:
            self.feature_reservoir.close()
            self.feature_reservoir = None
        if self.recorder is not None:  # the reservoir is closed: it writes what was indexed and closes its take
            self.recorder.finish()
            self.recorder = None
        if self.clock_board is not None:
            self.clock_board.close()
            self.clock_board = None
        if self.plan_object is not None:
            self.plan_object.close()
            self.plan_object.unmap()
            self.plan_object = None
        if self.board is not None:
            self.board.close()
            self.board = None
            remove_stale(self.name)  # what killed workers left (a SIGKILLed reader's doorbell)


def _pid() -> int:
    return os.getpid()
