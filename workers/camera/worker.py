"""One camera worker process per family: a capture thread per camera, each camera into its own ring.

Lifecycle (:func:`run_worker`)
    1. resolve the family, discover devices, select them, open every camera in
       the requested mode. Any failure here is a :class:`CameraError` (unknown
       family, missing device, unsupported mode) raised before a ring exists;
    2. create one ring per camera, named by the rig contract
       (:mod:`mimir.topology`: object ``c<k>``, readable name
       ``cam.<family>.<i>``), payload slots shaped as the negotiated mode and
       pre-faulted, the :class:`~workers.camera.stats.CameraStatus` record in
       its header;
    3. freeze the GC (everything allocated so far is permanent), start one
       :class:`CameraRunner` thread per camera;
    4. on the calling thread, refresh every ring's status record each
       ``status_period_s`` until ``stop`` is set (SIGTERM/SIGINT in
       :func:`serve`) or ``duration_s`` elapses;
    5. stop and join the runners, close the cameras, close (unlink) the rings.

Ownership
    The worker creates and closes every ring. A runner thread is the only
    writer of its ring's slots and descriptors (through its sink); the
    worker's thread is the only writer of status records. A camera object is
    used by its runner thread only.

Unplugged cameras
    ``capture`` raising :class:`CameraDisconnected` (or any error) marks the
    camera RECONNECTING and counts a disconnect; the runner retries opening
    the same device in the same negotiated mode with backoff (0.25 s up to
    2 s) while the other cameras keep running. A reopened camera continues in
    the same ring, sequence numbers continuing.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from mimir.descriptors import CameraFrameDescriptor
from mimir.signals import stop_on_signals
from mimir.topology import CameraSpec, CameraWorkerSpec, camera_specs, source_hash
from ringbuf import OutOfSharedMemory, Ring, SegmentExists

from .family import (
    Camera, CameraDisconnected, CameraError, CameraFamily, CameraMode, DeviceInfo, DiscoveryHints,
    ModeRequest, parse_pixel_format, resolve_family, select_devices,
)
from .sink import RingFrameSink
from .stats import CameraState, CameraStatus, FrameStats, init_status

__all__ = ["WorkerConfig", "CameraRunner", "Worker", "run_worker", "serve", "serve_spec", "DEFAULT_CAPACITY"]

DEFAULT_CAPACITY = 16
RETRY_INITIAL_S = 0.25
RETRY_MAX_S = 2.0


@dataclass(frozen=True)
class WorkerConfig:
    """What one camera worker runs: the cameras of the rig contract (:func:`mimir.topology.camera_specs`).

    ``cameras`` name each camera's source and ring and say which device or
    file it opens; ``request`` is the mode every camera is opened in.
    """

    rig: str = "default"
    request: ModeRequest = field(default_factory=ModeRequest)
    cameras: tuple[CameraSpec, ...] = ()
    duration_s: float | None = None
    status_period_s: float = 0.5
    join_timeout_s: float = 5.0
    prefault: bool = True

    @classmethod
    def from_spec(cls, spec: CameraWorkerSpec, **more) -> "WorkerConfig":
        request = ModeRequest(spec.width, spec.height, spec.fps, parse_pixel_format(spec.pixel_format))
        return cls(rig=spec.rig, request=request, cameras=spec.cameras, **more)

    @classmethod
    def for_family(cls, family: str, count: int, *, rig: str = "default", capacity: int = DEFAULT_CAPACITY,
                   devices: tuple[str, ...] = (), files: tuple[str, ...] = (), **more) -> "WorkerConfig":
        """A worker of ``count`` cameras of ``family`` outside a rig plan (tests, `mimir-worker camera`)."""
        return cls(rig=rig, cameras=camera_specs(family, count, capacity, devices=devices, files=files), **more)

    @property
    def hints(self) -> DiscoveryHints:
        """What discovery needs: the cameras' devices (or files) when they name them, else how many."""
        specs = tuple(spec for c in self.cameras if (spec := c.device or c.file))
        return DiscoveryHints(count=len(self.cameras), specs=specs)


def _log(out: TextIO | None, message: str) -> None:
    if out is not None:
        print(f"mimir-worker camera: {message}", file=out, flush=True)


class CameraRunner(threading.Thread):
    """Runs one camera's capture loop into its ring; reopens the device after a disconnect."""

    def __init__(self, family: CameraFamily, camera: Camera, ring: Ring, stop: threading.Event,
                 log: TextIO | None = None, *, source: str) -> None:
        super().__init__(name=f"capture-{ring.name}", daemon=True)
        self.family = family
        self.device: DeviceInfo = camera.device
        self.mode: CameraMode = camera.mode
        self.ring = ring
        self.stop = stop
        self.log = log
        self.source = source
        self.stats = FrameStats()
        self.sink = RingFrameSink(ring, source_hash=source_hash(source), mode=self.mode, stats=self.stats)
        self.state = CameraState.STARTING
        self.disconnects = 0
        self.reconnects = 0
        self.last_error = ""
        # (current camera or None, dropped and corrupt counts of the cameras closed before it), swapped as
        # one attribute so the worker thread never sees a half-updated total.
        self._current: tuple[Camera | None, int, int] = (camera, 0, 0)
        init_status(ring.status, mode=self.mode, source_id_hash=source_hash(source))

    @property
    def camera(self) -> Camera | None:
        return self._current[0]

    def device_counters(self) -> tuple[int, int]:
        """Cumulative (dropped_by_device, discarded_corrupt) over every camera this runner opened."""
        camera, dropped_before, corrupt_before = self._current
        dropped, corrupt = camera.device_counters() if camera is not None else (0, 0)
        return dropped_before + dropped, corrupt_before + corrupt

    def run(self) -> None:
        backoff = RETRY_INITIAL_S
        while not self.stop.is_set():
            camera = self.camera
            if camera is None:
                camera = self._reopen()
                if camera is None:
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, RETRY_MAX_S)
                    continue
                backoff = RETRY_INITIAL_S
            self.state = CameraState.STREAMING
            try:
                camera.capture(self.sink, self.stop)
            except CameraDisconnected as exc:
                self._disconnected(f"disconnected: {exc}")
            except Exception as exc:  # a driver error: treat like an unplug, keep the others running
                self._disconnected(f"capture failed: {type(exc).__name__}: {exc}")
            else:
                if not self.stop.is_set():
                    self._disconnected("capture loop ended without a stop request")
        self.state = CameraState.STOPPED

    def _disconnected(self, why: str) -> None:
        self.disconnects += 1
        self.last_error = why
        self.state = CameraState.RECONNECTING
        self.stats.break_interval()
        _log(self.log, f"{self.device.source_id} ({self.ring.name}) {why}; retrying")
        camera = self.camera
        if camera is not None:
            self._current = (None, *self.device_counters())
            try:
                camera.close()
            except Exception:
                pass

    def _reopen(self) -> Camera | None:
        request = ModeRequest(self.mode.width, self.mode.height, self.mode.fps, self.mode.pixel_format)
        try:
            camera = self.family.open(self.device, request)
        except Exception as exc:
            self.last_error = f"reopen failed: {exc}"
            return None
        if camera.mode.payload_shape != self.mode.payload_shape or camera.mode.pixel_format != self.mode.pixel_format:
            self.last_error = f"reopened in mode {camera.mode}, the ring holds {self.mode}"
            camera.close()
            return None
        self.reconnects += 1
        self._current = (camera, *self._current[1:])
        _log(self.log, f"{self.device.source_id} ({self.ring.name}) reconnected in {camera.mode}")
        return camera

    def close_camera(self) -> None:
        camera = self.camera
        if camera is not None:
            self._current = (None, *self.device_counters())
            camera.close()

    def publish_status(self, now_ns: int) -> None:
        """Refresh the ring's status record (worker thread only)."""
        status = self.ring.status
        lost = max((r.lost for r in self.ring.readers() if r.alive), default=0)
        dropped, corrupt = self.device_counters()
        self.stats.flush(status, now_ns=now_ns, lost_to_overrun=lost,
                         dropped_by_device=dropped, discarded_corrupt=corrupt)
        status["disconnects"] = self.disconnects
        status["reconnects"] = self.reconnects
        status["state"] = int(self.state)


class Worker:
    """The cameras and rings of one family in this process (see module docstring)."""

    def __init__(self, family: CameraFamily, config: WorkerConfig, *, log: TextIO | None = sys.stderr) -> None:
        self.family = family
        self.config = config
        self.log = log
        self.stop = threading.Event()
        self.runners: list[CameraRunner] = []
        self._rings: list[Ring] = []
        self._cameras: list[Camera] = []

    def open(self) -> None:
        """Discover, open every camera, create every ring. On error everything opened so far is closed."""
        cfg = self.config
        try:
            found = self.family.discover(cfg.hints)
            describe = getattr(self.family, "search_description", None)
            devices = select_devices(found, cfg.hints, self.family.name, describe() if describe else "")
            if len(devices) != len(cfg.cameras):
                raise CameraError(f"{self.family.name}: {len(cfg.cameras)} cameras configured, "
                                  f"{len(devices)} devices selected")
            for device in devices:
                self._cameras.append(self.family.open(device, cfg.request))
            specs = list(cfg.cameras)
            while self._cameras:  # hand each camera to its runner, which owns it from then on
                camera, spec = self._cameras[0], specs.pop(0)
                ring = Ring.create(
                    spec.ring.object_id, rig=cfg.rig, label=f"{cfg.rig}/{spec.source}",
                    descriptor=CameraFrameDescriptor, capacity=spec.ring.capacity,
                    payload_shape=camera.mode.payload_shape, status=CameraStatus, prefault=cfg.prefault,
                )
                self._rings.append(ring)
                self.runners.append(CameraRunner(self.family, camera, ring, self.stop, self.log, source=spec.source))
                self._cameras.pop(0)
        except BaseException:
            self.close()
            raise
        for runner in self.runners:
            _log(self.log, f"{runner.device.source_id} -> {runner.source} (ring {runner.ring.name}, rig {cfg.rig}, "
                           f"{runner.ring.capacity} frames): {runner.mode}")

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        for runner in self.runners:
            runner.start()

    def publish_status(self) -> None:
        now = time.monotonic_ns()
        for runner in self.runners:
            runner.publish_status(now)

    def run_until_stopped(self) -> None:
        cfg = self.config
        deadline = time.monotonic() + cfg.duration_s if cfg.duration_s is not None else None
        while True:
            wait = cfg.status_period_s
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            if self.stop.wait(wait):
                break
            self.publish_status()
            if deadline is not None and time.monotonic() >= deadline:
                break

    def close(self) -> None:
        """Stop runners, publish a final status, close cameras and rings. Idempotent."""
        self.stop.set()
        for runner in self.runners:
            if runner.is_alive():
                runner.join(self.config.join_timeout_s)
                if runner.is_alive():
                    _log(self.log, f"{runner.ring.name}: capture thread did not stop in {self.config.join_timeout_s:g} s")
        for runner in self.runners:
            try:
                runner.publish_status(time.monotonic_ns())
            except Exception:
                pass
        for runner in self.runners:
            if not runner.is_alive():  # a thread that did not stop may still be inside its camera
                runner.close_camera()
        for camera in self._cameras:  # opened, not yet handed to a runner
            camera.close()
        self._cameras = []
        for ring in self._rings:
            ring.close()
        self._rings = []
        gc.unfreeze()


def run_worker(family: CameraFamily | str, config: WorkerConfig, *, stop: threading.Event | None = None,
               log: TextIO | None = sys.stderr, on_started=None) -> Worker:
    """Open, run until ``stop`` (or the duration), close; returns the closed worker (for its counters).

    Raises :class:`CameraError` on configuration errors, before any ring exists.
    """
    fam = resolve_family(family) if isinstance(family, str) else family
    worker = Worker(fam, config, log=log)
    if stop is not None:
        worker.stop = stop
    worker.open()
    try:
        worker.start()
        if on_started is not None:
            on_started(worker)
        worker.run_until_stopped()
    finally:
        worker.close()
    return worker


def serve(family: str, config: WorkerConfig, *, log: TextIO = sys.stderr) -> int:
    """Process entry: run the worker with SIGTERM/SIGINT stopping it cleanly. Returns the exit code."""
    try:
        with stop_on_signals(threading.Event()) as stop:
            worker = run_worker(family, config, stop=stop, log=log)
    except CameraError as exc:
        print(f"mimir-worker camera: error: {exc}", file=log, flush=True)
        return 2
    except OutOfSharedMemory as exc:
        print(f"mimir-worker camera: error: {exc}", file=log, flush=True)
        return 2
    except SegmentExists as exc:
        print(f"mimir-worker camera: error: {exc}", file=log, flush=True)
        return 1
    for runner in worker.runners:
        s = runner.stats
        _log(log, f"{runner.source}: {s.frames} frames, {runner.disconnects} disconnects, "
                  f"dropped by device {runner.device_counters()[0]}")
    return 0


def serve_spec(spec: CameraWorkerSpec, *, log: TextIO = sys.stderr) -> int:
    """Process entry of a rig's camera worker (its spec from the rig contract); returns the exit code."""
    return serve(spec.family, WorkerConfig.from_spec(spec), log=log)
