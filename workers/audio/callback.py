"""The hot path: one call per audio block, shared by every backend.

A backend's callback does, per block::

    slot = processor.claim()                 # the ring's next payload slot (preallocated view)
    <write `frames` input frames into slot>  # convert once, straight into shared memory
    out = processor.commit(slot, frames, adc_time_ns, entry_ns, pa_flags, stream_time_ns)
    <copy `out` to the device>               # the output stage's samples

``commit`` runs the output stage, publishes the block's
:class:`~mimir.descriptors.AudioBlockRecord`, updates the counters and
publishes one :class:`~workers.audio.records.CallbackMetric` into the metrics
ring.

Discipline (what keeps the callback deterministic): everything is
preallocated in ``__init__``; per block there is no numpy allocation on the
fixed-size path, no lock, no logging, no container growth. What Python
itself creates per block (ints and floats of the arithmetic, the argument
tuple of ``publish``) is freed at once and never reaches the cyclic GC, which
the worker freezes and disables anyway. When frames differ from
``block_frames`` (host-native block size) slicing creates small view objects.

Ownership: the processor belongs to the device thread between ``start`` and
``stop``; other threads only read its int counters (atomic under the GIL).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from mimir.descriptors import SampleFormat
from ringbuf import Ring

from .outputs import InputStage, OutputStage, PassthroughOutput
from .records import (
    FLAG_DEADLINE_MISS, FLAG_INPUT_OVERFLOW, FLAG_OUTPUT_UNDERFLOW, FLAG_TRUNCATED, PA_FLAGS_TO_MIMIR, XRUN_MASK,
)

__all__ = ["BlockProcessor", "U32_MAX"]

U32_MAX = 0xFFFF_FFFF
_F32 = int(SampleFormat.F32_INTERLEAVED)


class BlockProcessor:
    """Converts, publishes and measures one block per call. See the module docstring for the protocol.

    ``block_frames`` is the expected frames per callback (0: variable);
    ``slot_frames`` the rows of a ring slot (>= any block). Counters are plain
    ints owned by the device thread.
    """

    def __init__(
        self,
        *,
        ring: Ring,
        metrics: Ring,
        sample_rate_hz: int,
        block_frames: int,
        slot_frames: int,
        channels: int,
        output: OutputStage,
        output_channels: int,
        channel_layout_hash: int,
    ) -> None:
        self.ring = ring
        self.sample_rate_hz = int(sample_rate_hz)
        self.block_frames = int(block_frames)
        self.slot_frames = int(slot_frames)
        self.channels = int(channels)
        self.output = output
        self.output_channels = int(output_channels)
        self.channel_layout_hash = int(channel_layout_hash)
        self.deadline_ns = (self.block_frames * 1_000_000_000) // self.sample_rate_hz if self.block_frames else 0
        # Preallocated output staging buffer: the output stage writes here, the backend copies it to the device.
        self.out_stage = np.zeros((self.slot_frames, max(1, self.output_channels)), dtype=np.float32)
        self._out_block = self.out_stage[: self.block_frames] if self.block_frames else self.out_stage
        # The stage that plays the input (needs_input), handed each block's input before it fills.
        self._input_stage: InputStage | None = None
        if getattr(output, "needs_input", False):
            if not isinstance(output, InputStage):
                raise TypeError(f"output stage {output!r} sets needs_input but has no input_view/set_input")
            self._input_stage = output
        # 1:1 pass-through needs no copy at all: the device plays the ring slot the input was converted into.
        self._zero_copy = (
            isinstance(output, PassthroughOutput) and output.source_channel is None
            and self.output_channels == self.channels
        )
        self._fill = output.fill
        # Per-slot input views for pass-through, made on the first lap of the ring, then only swapped.
        self._cap = ring.capacity
        self._input_views: list[np.ndarray | None] = [None] * self._cap
        self._claim = ring.claim
        self._publish = ring.publish
        self._mpublish = metrics.publish
        self._handle_base = ring.ring_id << 48
        self._seq = self._seq0 = ring.published
        # Counters (device thread writes, anyone reads).
        self.next_sample = 0
        self.xruns = 0
        self.input_overflows = 0
        self.output_underflows = 0
        self.deadline_misses = 0
        self.truncated = 0
        self.failures = 0
        self.max_callback_ns = 0
        self.last_entry_ns = 0
        self.last_bad_ns = 0
        self.cpu_load = 0.0
        self.last_error: str | None = None
        # Hooks.
        self.cpu_load_fn: Callable[[], float] | None = None  # the stream's CPU load (PortAudio); None: own estimate
        self.simulate_load_ns = 0          # busy-wait per callback (tests, diagnosis)

    @property
    def callbacks(self) -> int:
        """Callbacks committed so far (every commit publishes exactly one block)."""
        return self._seq - self._seq0

    # ---- setup (outside the callback) -------------------------------------------------------------------------
    def claim(self) -> np.ndarray:
        """The next ring slot, writable, shape ``(slot_frames, channels)``."""
        return self._claim()

    def _input_view_of(self, stage: InputStage, slot: np.ndarray) -> np.ndarray:
        view = stage.input_view(slot)
        return view if view.shape[0] == self.block_frames else view[: self.block_frames]

    def record_failure(self, message: str) -> None:
        """Called by a backend when its callback raised (outside the normal path)."""
        self.failures += 1
        self.last_error = message
        self.last_bad_ns = time.monotonic_ns()

    # ---- the hot path ------------------------------------------------------------------------------------------
    def commit(self, slot: np.ndarray, frames: int, adc_time_ns: int, entry_ns: int, pa_flags: int,
               stream_time_ns: int = 0, _map: tuple = PA_FLAGS_TO_MIMIR, _now=time.monotonic_ns) -> np.ndarray:
        """Play, publish and measure the block whose ``frames`` input frames are in ``slot``; return the output.

        The returned array is what the device must play (``frames`` rows): the
        output staging block, or, for 1:1 pass-through, the ring slot itself.
        """
        start = self.next_sample
        seq = self._seq
        flags = _map[pa_flags & 31]
        if frames == self.block_frames:
            deadline_ns = self.deadline_ns
            if self._zero_copy:
                out = slot
            else:
                out = self._out_block
                stage = self._input_stage
                if stage is not None:
                    index = seq % self._cap
                    view = self._input_views[index]
                    if view is None:
                        view = self._input_views[index] = self._input_view_of(stage, slot)
                    stage.set_input(view)
                self._fill(out, start)
        else:
            frames, flags, out, deadline_ns = self._odd_block(slot, frames, flags, start)
        if flags:
            self._count_flags(flags, entry_ns)
        if self.simulate_load_ns:
            until = entry_ns + self.simulate_load_ns
            while _now() < until:
                pass
        so_far = _now() - entry_ns
        if so_far > U32_MAX:
            so_far = U32_MAX
        self._publish(
            self._handle_base | seq, frames, self.channels, self.sample_rate_hz, _F32, start,
            self.channel_layout_hash, adc_time_ns, entry_ns, flags, so_far, stream_time_ns,
        )
        self._seq = seq + 1
        self.next_sample = start + frames
        last = self.last_entry_ns
        self.last_entry_ns = entry_ns
        end = _now()
        duration = end - entry_ns
        if duration > deadline_ns:
            self.deadline_misses += 1
            self.last_bad_ns = end
            flags |= FLAG_DEADLINE_MISS
        if duration > self.max_callback_ns:
            self.max_callback_ns = duration
        interval = entry_ns - last if last else 0
        if duration > U32_MAX or interval > U32_MAX:
            duration, interval = min(duration, U32_MAX), min(interval, U32_MAX)
        # Measurement overhead from here on (excluded from duration_ns).
        if self.cpu_load_fn is not None:
            if not seq & 15:
                self.cpu_load = self.cpu_load_fn()
        elif deadline_ns:
            self.cpu_load += 0.01 * (duration / deadline_ns - self.cpu_load)
        self._mpublish(seq, start, entry_ns, duration, interval, flags, frames, self.cpu_load)
        return out

    def _odd_block(self, slot: np.ndarray, frames: int, flags: int, start: int) -> tuple[int, int, np.ndarray, int]:
        """A block of other than ``block_frames`` frames (host-native size, a file's last block): slices views."""
        if frames > self.slot_frames:
            frames = self.slot_frames
            flags |= FLAG_TRUNCATED
            self.truncated += 1
        if self._zero_copy:
            out = slot[:frames]
        else:
            out = self.out_stage[:frames]
            stage = self._input_stage
            if stage is not None:
                stage.set_input(stage.input_view(slot)[:frames])
            self._fill(out, start)
        return frames, flags, out, (frames * 1_000_000_000) // self.sample_rate_hz

    def _count_flags(self, flags: int, entry_ns: int) -> None:
        if flags & XRUN_MASK:
            self.xruns += 1
            if flags & FLAG_INPUT_OVERFLOW:
                self.input_overflows += 1
            if flags & FLAG_OUTPUT_UNDERFLOW:
                self.output_underflows += 1
            self.last_bad_ns = entry_ns


def lateness(jitter_us: float, *, seed: int = 1):
    """A test and benchmark hook: ``late(entry_ns)`` busy-waits until a pseudo-random time up to ``jitter_us``
    after ``entry_ns`` -- a callback invoked late, as on a loaded machine. None for no jitter.

    The delays are drawn once (4096 of them, cycled), so the hook allocates
    nothing per call.
    """
    if not jitter_us > 0:
        return None
    delays = [int(d) for d in np.random.default_rng(seed).uniform(0, jitter_us * 1000, 4096)]
    state = [0]
    now = time.monotonic_ns

    def late(entry_ns: int) -> None:
        i = state[0]
        state[0] = (i + 1) & 4095
        until = entry_ns + delays[i]
        while now() < until:
            pass

    return late
