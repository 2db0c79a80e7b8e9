"""A device clock made in software: blocks delivered from a thread on absolute deadlines.

Block ``k`` after ``start`` (frames ``[F, F + B)`` of this run, ``F = k * B``)
becomes due when its last frame has been "sampled"::

    due_ns(k) = t0_ns + (F + B) * ns_per_frame,   ns_per_frame = 1e9 / (rate * (1 + ppm * 1e-6) * speed)

and its ADC time (first frame, on the stream clock, which for paced
backends *is* the host monotonic clock) is ``t0_ns + F * ns_per_frame``.
Deadlines are absolute, so sleep error never accumulates; a positive
``ppm`` makes the simulated device run fast against the host clock exactly
as a real crystal would. The simulated device has a FIFO of
``max(2 blocks, 20 ms)`` (``FIFO_S``): a block that starts later than that
after it was due is flagged as an input overflow (a real device would have
dropped samples); the paced device never drops, it catches up. (A Python
thread's wake-up jitter on a loaded machine is easily a few ms, so a FIFO of
one block would flag scheduler noise, not the pipeline.)
"""

from __future__ import annotations

import threading
import time
import traceback

import numpy as np

from ..callback import BlockProcessor, lateness
from ..config import EngineConfig
from ..errors import EngineStateError
from ..records import PA_INPUT_OVERFLOW
from .base import DevicePlan, StreamInfo

__all__ = ["PacedBackend", "FIFO_S"]

FIFO_S = 0.020


class PacedBackend:
    """Base of the synthetic and file backends. Subclasses implement ``prepare`` and ``_produce``."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.plan: DevicePlan | None = None
        self.finished = False
        self.failed: str | None = None
        self._proc: BlockProcessor | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ---- subclass hooks ------------------------------------------------------------------------------------
    def _produce(self, slot: np.ndarray, start_frame: int, frames: int) -> int:
        """Write up to ``frames`` input frames into ``slot``; return how many (0: the source ended)."""
        raise NotImplementedError

    def _consume_output(self, out: np.ndarray, start_frame: int, frames: int) -> None:
        """See what the output stage played (the synthetic loopback feeds it back)."""

    def _latencies_s(self) -> tuple[float, float]:
        plan = self._planned()
        block_s = plan.block_frames / plan.sample_rate_hz
        return block_s, block_s

    def _planned(self) -> DevicePlan:
        """The plan :meth:`prepare` made (every step after it needs one)."""
        if self.plan is None:
            raise EngineStateError(f"the {type(self).__name__} has no plan: prepare() first")
        return self.plan

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def open(self, processor: BlockProcessor) -> StreamInfo:
        self._proc = processor
        inp, out = self._latencies_s()
        return StreamInfo(plan=self._planned(), input_latency_s=inp, output_latency_s=out)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        if self._proc is None:
            raise EngineStateError(f"the {type(self).__name__} is not open: open() first")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(self._planned(), self._proc),
                                        name=f"mimir-audio-{self._planned().backend}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def close(self) -> None:
        self.stop()

    def active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- the device thread ------------------------------------------------------------------------------------
    def _run(self, plan: DevicePlan, proc: BlockProcessor) -> None:
        if self.config.realtime_threads:
            from ..health import try_realtime

            try_realtime(10)  # the paced thread is this backend's device thread
        try:
            self._pace(plan, proc)
        except BaseException as exc:  # the device thread must report, never die silently
            self.failed = f"{type(exc).__name__}: {exc}"
            proc.record_failure(self.failed + "\n" + traceback.format_exc())

    def _pace(self, plan: DevicePlan, proc: BlockProcessor) -> None:
        cfg = self.config
        block = plan.block_frames
        ns_per_frame = 1e9 / (plan.sample_rate_hz * (1.0 + cfg.ppm * 1e-6) * cfg.speed)
        fifo_ns = max(2 * block * ns_per_frame, FIFO_S * 1e9)
        claim = proc.claim
        commit = proc.commit
        produce = self._produce
        consume = self._consume_output
        wait = self._stop.wait
        stopped = self._stop.is_set
        monotonic_ns = time.monotonic_ns
        late = lateness(cfg.callback_jitter_us)
        t0 = monotonic_ns()
        done = 0
        while True:
            due = t0 + int((done + block) * ns_per_frame)
            delay = due - monotonic_ns()
            if delay > 0:
                if wait(delay * 1e-9):
                    return
            elif stopped():
                return
            entry = monotonic_ns()
            if late is not None:
                late(entry)
                entry = monotonic_ns()
            pa_flags = PA_INPUT_OVERFLOW if entry - due > fifo_ns else 0
            start = proc.next_sample
            slot = claim()
            frames = produce(slot, start, block)
            if frames <= 0:
                self.finished = True
                return
            # The stream clock of a paced device is the host clock: its ADC time is exact, its callback not.
            out = commit(slot, frames, t0 + int(done * ns_per_frame), entry, pa_flags, entry)
            consume(out, start, frames)
            done += frames
