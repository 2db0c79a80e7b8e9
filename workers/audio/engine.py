"""The audio engine: the seed's C ABI (init, start, stop, shutdown) as a Python object.

::

    from workers.audio import AudioEngine, EngineConfig
    engine = AudioEngine(EngineConfig(backend="sounddevice", host_api="jack", rig="lab"))
    info = engine.init(sample_rate_hz=48000, block_frames=64)   # rings created, stream opened
    engine.start()                                              # callbacks flow into the ring
    engine.stop()                                               # may start() again
    engine.shutdown()                                           # stream closed, rings unlinked

Module-level :func:`init`, :func:`start`, :func:`stop`, :func:`shutdown`
drive one process-wide engine, mirroring ``mixx_engine_init(sample_rate,
buffer_size)`` and friends.

Ownership: the engine creates and is the only writer of two rings, ``<ring>``
(audio blocks + :class:`AudioStatus`) and ``<ring>.metrics``
(:class:`CallbackMetric`), and unlinks both in :meth:`shutdown` (also when
``init`` fails half-way). Timing model: every block carries ``start_sample``
(the device frame counter: frames delivered since ``init``),
``adc_time_ns`` (the first frame's ADC time on the stream clock) and
``host_time_ns`` (host monotonic at callback entry).
"""

from __future__ import annotations

import gc
import math
import threading
import time
from typing import Any

import numpy as np

from mimir.descriptors import AudioBlockRecord
from ringbuf import Ring
from ringbuf.hashing import fnv1a_64
from ringbuf.layout import record_fields

from .backends import make_backend
from .backends.base import Backend, StreamInfo
from .callback import BlockProcessor
from .config import EngineConfig
from .errors import AudioConfigError, EngineStateError
from .health import HealthMonitor
from .outputs import (
    ImpulseOutput, MlsOutput, OutputStage, PassthroughOutput, SilenceOutput, WitnessOutput, load_witness_output,
    rig_clock_anchor,
)
from .records import AudioStatus, BackendKind, CallbackMetric, EngineState, OutputKind, metrics_ring_name

__all__ = ["AudioEngine", "init", "start", "stop", "shutdown", "default_engine", "channel_layout_hash"]

_BACKEND_KIND = {"sounddevice": BackendKind.SOUNDDEVICE, "synthetic": BackendKind.SYNTHETIC, "file": BackendKind.FILE}
_OUTPUT_KIND = {"passthrough": OutputKind.PASSTHROUGH, "silence": OutputKind.SILENCE, "witness": OutputKind.WITNESS,
                "impulse": OutputKind.IMPULSE, "mls": OutputKind.MLS}


def channel_layout_hash(device_label: str, channels: tuple[int, ...]) -> int:
    """FNV-1a 64 of ``"<device>|in:<c0>,<c1>,..."``; 0 is remapped to 1 (the upstream rule)."""
    h = fnv1a_64(f"{device_label}|in:{','.join(map(str, channels))}")
    return h or 1


class AudioEngine:
    """One audio stream feeding one ring. Not thread-safe: drive it from one thread."""

    def __init__(self, config: EngineConfig | None = None, *, backend_factory=None) -> None:
        """``backend_factory(config) -> Backend`` replaces the backend chosen by ``config.backend`` (tests, bench)."""
        self.config = config or EngineConfig()
        self._backend_factory = backend_factory or make_backend
        self._state = EngineState.NEW
        self.info: StreamInfo | None = None
        self.backend: Backend | None = None
        self.processor: BlockProcessor | None = None
        self.output: OutputStage | None = None
        self.ring: Ring | None = None
        self.metrics: Ring | None = None
        self.monitor: HealthMonitor | None = None
        self._gc_was_enabled = True
        self._gc_frozen = False

    # ---- the C-ABI mirror ------------------------------------------------------------------------------------
    def init(self, sample_rate_hz: int | None = None, block_frames: int | None = None, **changes: Any) -> StreamInfo:
        """Resolve the device, create the rings, open the stream (not started). Raises on bad input."""
        if self._state not in (EngineState.NEW, EngineState.CLOSED):
            raise EngineStateError(f"init: the engine is {self._state.name}; shutdown() first")
        if sample_rate_hz is not None:
            changes["sample_rate_hz"] = int(sample_rate_hz)
        if block_frames is not None:
            changes["block_frames"] = int(block_frames)
        cfg = self.config.with_(**changes) if changes else self.config
        cfg.validate()
        self.config = cfg
        try:
            info, monitor = self._init(cfg)
        except BaseException:
            self._teardown()
            raise
        self._state = EngineState.INITIALIZED
        monitor.update()
        return info

    def _init(self, cfg: EngineConfig) -> tuple[StreamInfo, HealthMonitor]:
        """Make the backend, rings, processor, stream and monitor (kept on ``self``); return the info and monitor."""
        backend = self.backend = self._backend_factory(cfg)
        plan = backend.prepare()
        n_in = len(plan.input_channels)
        rate = plan.sample_rate_hz
        capacity = cfg.ring_capacity or max(8, math.ceil(cfg.ring_seconds * rate / plan.expected_frames))
        metrics_capacity = cfg.metrics_capacity or max(64, math.ceil(cfg.metrics_seconds * rate / plan.expected_frames))
        output = self.output = self._make_output(cfg, plan.sample_rate_hz, n_in, plan.output_channels, plan.slot_frames)
        self.ring = Ring.create(
            cfg.ring, rig=cfg.rig, descriptor=AudioBlockRecord, capacity=capacity, label=f"{cfg.rig}/{cfg.source}",
            payload_shape=(plan.slot_frames, n_in), payload_dtype=np.float32, status=AudioStatus, prefault=True,
        )
        self.metrics = Ring.create(metrics_ring_name(cfg.ring), rig=cfg.rig, descriptor=CallbackMetric,
                                   capacity=metrics_capacity, label=f"{cfg.rig}/{cfg.source}.metrics")
        proc = self.processor = BlockProcessor(
            ring=self.ring, metrics=self.metrics, sample_rate_hz=rate, block_frames=plan.block_frames,
            slot_frames=plan.slot_frames, channels=n_in, output=output, output_channels=plan.output_channels,
            channel_layout_hash=channel_layout_hash(plan.device_label, plan.input_channels),
        )
        proc.simulate_load_ns = int(cfg.simulate_load_us * 1000)
        info = self.info = backend.open(proc)
        if isinstance(output, WitnessOutput):
            output.latency_ns = int(round(info.output_latency_s * 1e9))
        status = self.ring.status
        status["backend"] = int(_BACKEND_KIND[cfg.backend])
        status["output_kind"] = int(_OUTPUT_KIND[cfg.output] if plan.output_channels else OutputKind.NONE)
        status["sample_rate_hz"] = rate
        status["block_frames"] = plan.block_frames
        status["slot_frames"] = plan.slot_frames
        status["channels"] = n_in
        status["output_channels"] = plan.output_channels
        status["input_latency_ns"] = int(round(info.input_latency_s * 1e9))
        status["output_latency_ns"] = int(round(info.output_latency_s * 1e9))
        monitor = self.monitor = HealthMonitor(proc, status, window_s=cfg.health_window_s, state_fn=self.poll,
                                               realtime=cfg.realtime_threads)
        return info, monitor

    @staticmethod
    def _make_output(cfg: EngineConfig, rate: int, n_in: int, n_out: int, max_frames: int) -> OutputStage:
        if n_out == 0 or cfg.output == "silence":
            return SilenceOutput()
        if cfg.output == "passthrough":
            return PassthroughOutput(n_in, n_out, cfg.through_channel)
        if cfg.output == "witness":
            return load_witness_output(rate, max_frames, cfg.witness, anchor=rig_clock_anchor(cfg.rig))
        if not (0 <= cfg.probe_channel < n_out):
            raise AudioConfigError(f"probe channel {cfg.probe_channel}: the output has {n_out} channel(s)")
        if cfg.output == "impulse":
            return ImpulseOutput(cfg.impulse_period_frames or rate // 2, channel=cfg.probe_channel)
        return MlsOutput(cfg.mls_order, max_frames, channel=cfg.probe_channel, armed_at=0)

    def start(self) -> None:
        """Start the stream. Freezes and disables the cyclic GC if ``config.freeze_gc``."""
        if self._state not in (EngineState.INITIALIZED, EngineState.STOPPED):
            raise EngineStateError(f"start: the engine is {self._state.name}; init() first")
        backend, monitor, ring = self._opened()
        if self.config.freeze_gc and not self._gc_frozen:
            self._gc_was_enabled = gc.isenabled()
            gc.collect()
            gc.freeze()
            gc.disable()
            self._gc_frozen = True
        ring.status["started_host_ns"] = time.monotonic_ns()
        self._state = EngineState.RUNNING
        try:
            backend.start()
        except Exception as exc:
            self._state = EngineState.FAILED
            raise AudioConfigError(f"the stream did not start: {exc}") from None
        monitor.start()

    def stop(self) -> None:
        """Stop the stream (callbacks end before this returns). The rings stay; start() resumes."""
        if self._state in (EngineState.NEW, EngineState.INITIALIZED, EngineState.STOPPED, EngineState.CLOSED):
            return
        backend, monitor, _ = self._opened()
        final = self.poll()
        self._state = final if final in (EngineState.FINISHED, EngineState.FAILED) else EngineState.STOPPED
        backend.stop()
        monitor.stop()
        self._release_gc()

    def shutdown(self) -> None:
        """Stop, close the stream, publish the final status, unlink the rings. Idempotent."""
        if self._state == EngineState.CLOSED:
            return
        try:
            self.stop()
        finally:
            self._teardown()
            self._state = EngineState.CLOSED

    # ---- state ---------------------------------------------------------------------------------------------------
    @property
    def state(self) -> EngineState:
        return self.poll()

    def poll(self) -> EngineState:
        """The engine state, noticing a finished source or a failed callback/stream."""
        b = self.backend
        if self._state == EngineState.RUNNING and b is not None:  # running: init() made the backend
            if b.failed or (self.processor is not None and self.processor.failures):
                self._state = EngineState.FAILED
            elif b.finished:
                self._state = EngineState.FINISHED
            elif not b.active() and self.processor is not None and self.processor.callbacks:
                self._state = EngineState.FAILED
                b.failed = b.failed or "the stream stopped on its own (device lost or server gone)"
        return self._state

    def failure(self) -> str | None:
        """Why the stream failed: the backend's reason, else the callback's last error; None when neither."""
        backend_failed = self.backend.failed if self.backend is not None else None
        return backend_failed or (self.processor.last_error if self.processor is not None else None)

    def ended(self) -> bool:
        """True once the source finished or the stream failed (the worker's loop exits on it)."""
        return self.poll() in (EngineState.FINISHED, EngineState.FAILED)

    def status(self) -> dict:
        """A snapshot of the status record as a dict (refreshed first)."""
        if self.monitor is not None and self.ring is not None:
            self.monitor.update()
        if self.ring is None:
            return {"state": int(self._state)}
        rec = self.ring.status
        return {name: rec[name].item() for name in record_fields(rec.dtype)}

    @property
    def ring_names(self) -> tuple[str, str]:
        return self.config.ring, metrics_ring_name(self.config.ring)

    # ---- internals -----------------------------------------------------------------------------------------------
    def _opened(self) -> tuple[Backend, HealthMonitor, Ring]:
        """The open stream's backend, monitor and ring: they exist from a successful init() to shutdown()."""
        if self.backend is None or self.monitor is None or self.ring is None:
            raise EngineStateError(f"the engine is {self._state.name} and has no open stream; init() first")
        return self.backend, self.monitor, self.ring

    def _release_gc(self) -> None:
        if self._gc_frozen:
            gc.unfreeze()
            if self._gc_was_enabled:
                gc.enable()
            self._gc_frozen = False

    def _teardown(self) -> None:
        errors = []
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception as exc:  # keep tearing down; report after
                errors.append(exc)
        if self.monitor is not None and self.ring is not None:
            self._state = EngineState.CLOSED
            self.monitor.stop()
        self._release_gc()
        self.processor = None
        for ring in (self.metrics, self.ring):
            if ring is not None:
                ring.close()
        self.ring = self.metrics = None
        self.monitor = None
        if errors:
            raise errors[0]

    def __enter__(self) -> "AudioEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


# ---- the process-wide engine (C-ABI style) -------------------------------------------------------------------------
_default: AudioEngine | None = None
_default_lock = threading.Lock()


def default_engine() -> AudioEngine:
    global _default
    with _default_lock:
        if _default is None:
            _default = AudioEngine()
        return _default


def init(sample_rate: int, block_size: int, **config: Any) -> StreamInfo:
    """``mixx_engine_init(sample_rate, buffer_size)``: configure and open the process-wide engine."""
    engine = default_engine()
    if config:
        engine.config = engine.config.with_(**config)
    return engine.init(sample_rate_hz=sample_rate, block_frames=block_size)


def start() -> None:
    default_engine().start()


def stop() -> None:
    default_engine().stop()


def shutdown() -> None:
    default_engine().shutdown()
