"""Output stages: what the duplex stream plays, one block at a time.

The interface is deliberately tiny so the sync analyzer's witness emitter can
plug in unchanged::

    class OutputStage(Protocol):
        def fill(self, out: np.ndarray, start_sample: int) -> None: ...

``out`` is a float32 ``(frames, channels)`` array (C-contiguous) owned by the
engine; ``start_sample`` is the device frame counter of ``out[0]``. ``fill``
runs inside the audio callback: it must write every sample of ``out``, must
not allocate sample memory, take locks or log.

Stages that play the input (pass-through) set ``needs_input = True`` and
implement :class:`InputStage` (``input_view(slot)``, ``set_input(view)``):
the engine hands them the block just converted into the ring slot before it
calls ``fill``.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from mimir.topology import WitnessSpec

from .errors import AudioConfigError, OutputUnavailable

__all__ = [
    "OutputStage", "InputStage", "WitnessSignal", "SilenceOutput", "PassthroughOutput", "ImpulseOutput", "MlsOutput",
    "WitnessOutput", "load_witness_output", "rig_clock_anchor", "mls_sequence",
]


@runtime_checkable
class OutputStage(Protocol):
    def fill(self, out: np.ndarray, start_sample: int) -> None: ...


@runtime_checkable
class InputStage(OutputStage, Protocol):
    """An output stage that plays the input (``needs_input = True``)."""

    def input_view(self, slot: np.ndarray) -> np.ndarray:
        """The part of a ring slot the stage plays (called once per slot, outside the callback)."""
        ...

    def set_input(self, view: np.ndarray) -> None:
        """The input of the block about to be filled (called in the callback, before ``fill``)."""
        ...


class WitnessSignal(Protocol):
    """A mono emitter :class:`WitnessOutput` plays: mimir.sync's WitnessEmitter, or anything with its ``fill``.

    ``start_canonical_seconds`` (the canonical time of emitter sample 0) and
    ``sample_rate_hz`` are read only to anchor the output to the rig's clock.
    """

    @property
    def start_canonical_seconds(self) -> float: ...

    @property
    def sample_rate_hz(self) -> float: ...

    def fill(self, out: np.ndarray, start_sample: int) -> None: ...


class SilenceOutput:
    """Plays zeros."""

    needs_input = False

    def fill(self, out: np.ndarray, start_sample: int) -> None:
        out.fill(0.0)


class PassthroughOutput:
    """Plays the input: every captured channel to the output of the same index, or one chosen input to all.

    ``source_channel=None``: 1:1 (output channel count == captured channel
    count). Otherwise input ``source_channel`` (an index into the captured
    channels) goes to every output channel. Views of each ring slot are
    prepared once (:meth:`prepare`) so the callback only swaps references.
    """

    needs_input = True

    def __init__(self, in_channels: int, out_channels: int, source_channel: int | None = None) -> None:
        if source_channel is None and in_channels != out_channels:
            raise AudioConfigError(
                f"--output passthrough copies {in_channels} input channel(s) 1:1 but the output has "
                f"{out_channels}; choose one input with --through-channel N or match --output-channels"
            )
        if source_channel is not None and not (0 <= source_channel < in_channels):
            raise AudioConfigError(
                f"--through-channel {source_channel}: only {in_channels} channel(s) are captured "
                f"(0..{in_channels - 1})"
            )
        self.source_channel = source_channel
        self._src: np.ndarray | None = None

    def input_view(self, slot: np.ndarray) -> np.ndarray:
        """The part of a ring slot this stage copies from (called once per slot, outside the callback)."""
        if self.source_channel is None:
            return slot
        return slot[:, self.source_channel:self.source_channel + 1]

    def set_input(self, view: np.ndarray) -> None:
        self._src = view

    def fill(self, out: np.ndarray, start_sample: int) -> None:
        src = self._src
        if src is None:
            raise RuntimeError("PassthroughOutput.fill before set_input: the engine sets the input first")
        if src.shape[0] != out.shape[0]:
            src = src[: out.shape[0]]
        np.copyto(out, src)


class ImpulseOutput:
    """A unit impulse of ``amplitude`` on ``channel`` at every ``period_frames``-th frame from ``armed_at``.

    Impulse ``k`` sits at frame ``armed_at + k * period_frames`` (device frame
    counter). ``armed_at`` may be moved forward from another thread (a plain
    int store); until armed (``armed_at < 0``) the stage plays silence.
    """

    needs_input = False

    def __init__(self, period_frames: int, channel: int = 0, amplitude: float = 0.5, armed_at: int = 0) -> None:
        if period_frames < 2:
            raise AudioConfigError("impulse period must be at least 2 frames")
        self.period_frames = int(period_frames)
        self.channel = int(channel)
        self.amplitude = float(amplitude)
        self.armed_at = int(armed_at)

    def fill(self, out: np.ndarray, start_sample: int) -> None:
        out.fill(0.0)
        armed = self.armed_at
        if armed < 0:
            return
        frames = out.shape[0]
        first = armed - start_sample if start_sample < armed else (-(start_sample - armed)) % self.period_frames
        while first < frames:
            out[first, self.channel] = self.amplitude
            first += self.period_frames

    def impulses_between(self, first_sample: int, end_sample: int) -> list[int]:
        """Frames of the impulses played in ``[first_sample, end_sample)`` (analysis side)."""
        armed = self.armed_at
        if armed < 0:
            return []
        k0 = max(0, -(-(first_sample - armed) // self.period_frames))
        out = []
        pos = armed + k0 * self.period_frames
        while pos < end_sample:
            out.append(pos)
            pos += self.period_frames
        return out


def mls_sequence(order: int) -> np.ndarray:
    """A maximum-length sequence of ``2**order - 1`` samples as +-1.0 float32 (scipy's generator)."""
    from scipy.signal import max_len_seq

    bits, _ = max_len_seq(order)
    return (bits.astype(np.float32) * 2.0 - 1.0)


class MlsOutput:
    """A periodic MLS of ``amplitude`` on ``channel`` from frame ``armed_at`` (silence before, and until armed).

    Frame ``n >= armed_at`` plays ``amplitude * mls[(n - armed_at) % L]``.
    Index buffers are preallocated for the engine's block size.
    """

    needs_input = False

    def __init__(self, order: int, max_frames: int, channel: int = 0, amplitude: float = 0.5,
                 armed_at: int = -1) -> None:
        self.sequence = mls_sequence(order) * np.float32(amplitude)
        self.length = len(self.sequence)
        self.channel = int(channel)
        self.armed_at = int(armed_at)
        self._ramp = np.arange(max_frames, dtype=np.int64)
        self._idx = np.empty(max_frames, dtype=np.int64)
        self._col = np.empty(max_frames, dtype=np.float32)

    def fill(self, out: np.ndarray, start_sample: int) -> None:
        out.fill(0.0)
        armed = self.armed_at
        frames = out.shape[0]
        if armed < 0 or start_sample + frames <= armed:
            return
        idx = self._idx[:frames] if frames != len(self._idx) else self._idx
        np.add(self._ramp[:frames] if frames != len(self._ramp) else self._ramp, start_sample - armed, out=idx)
        col = self._col[:frames] if frames != len(self._col) else self._col
        np.take(self.sequence, np.remainder(idx, self.length, out=idx), out=col, mode="clip")
        lead = armed - start_sample
        if lead > 0:
            col[:lead] = 0.0
        out[:, self.channel] = col


class WitnessOutput:
    """Adapts a mono emitter (``fill(out_1d, start_sample)``, e.g. mimir.sync's WitnessEmitter) to the stream.

    The emitter renders into a preallocated mono buffer, which is copied to
    ``channels`` (default: every output channel).

    ``anchor(host_ns) -> canonical seconds`` (the rig's clock, when there is
    one) places the first frame played where the rig's schedule is: at the
    first :meth:`fill` the output is shifted by a whole number of samples so
    that the frame leaving the converter then (``latency_ns`` after the
    callback) plays the canonical time the rig's clock gives it. Later
    callbacks only add that offset. A restarted audio worker therefore
    continues the rig's schedule instead of re-anchoring it to its own start.
    """

    needs_input = False

    def __init__(self, emitter: WitnessSignal, max_frames: int, channels: tuple[int, ...] | None = None,
                 anchor: Callable[[int], float] | None = None) -> None:
        if not callable(getattr(emitter, "fill", None)):
            raise OutputUnavailable(f"witness emitter {emitter!r} has no fill(out, start_sample) method")
        self.emitter = emitter
        self.channels = channels
        self.anchor = anchor
        self.latency_ns = 0          # the stream's output latency, set once the stream is open
        self.offset_samples = 0      # emitter sample = stream sample + offset
        self.anchored_at_ns = 0      # host time the anchor was applied (0: not yet)
        self._mono = np.zeros(max_frames, dtype=np.float32)
        self._mono_col = self._mono.reshape(-1, 1)

    def _apply_anchor(self, anchor: Callable[[int], float], start_sample: int) -> None:
        now = time.monotonic_ns()
        self.anchored_at_ns = now
        emitter = self.emitter
        target_s = anchor(now + self.latency_ns)
        emitter_sample = (target_s - emitter.start_canonical_seconds) * emitter.sample_rate_hz
        self.offset_samples = int(round(emitter_sample)) - start_sample

    def fill(self, out: np.ndarray, start_sample: int) -> None:
        if self.anchor is not None and not self.anchored_at_ns:
            self._apply_anchor(self.anchor, start_sample)
        frames = out.shape[0]
        mono = self._mono if frames == len(self._mono) else self._mono[:frames]
        self.emitter.fill(mono, start_sample + self.offset_samples)
        if self.channels is None:
            np.copyto(out, self._mono_col if frames == len(self._mono) else mono.reshape(-1, 1))
        else:
            out.fill(0.0)
            for ch in self.channels:
                out[:, ch] = mono


def load_witness_output(sample_rate_hz: int, max_frames: int, witness: WitnessSpec,
                        start_canonical_seconds: float | None = None,
                        anchor: Callable[[int], float] | None = None) -> WitnessOutput:
    """The rig's witness (``witness``: codebook id, seed, epoch, level) as an output stage on every channel.

    With ``anchor`` (host monotonic ns -> canonical seconds: the rig's
    clock) the first frame played is placed on the rig's timeline (see
    :class:`WitnessOutput`). Without it, device frame 0 plays canonical second
    ``start_canonical_seconds`` (default: the wall clock now, in seconds since
    the witness epoch).
    """
    from mimir.sync import Codebook, WitnessEmitter

    if start_canonical_seconds is None:
        start_canonical_seconds = anchor(time.monotonic_ns()) if anchor else time.time() - witness.epoch_unix_s
    emitter = WitnessEmitter(Codebook.from_id(witness.codebook_id, witness.seed), float(sample_rate_hz),
                             start_canonical_seconds=start_canonical_seconds, level_dbfs=witness.level_dbfs)
    return WitnessOutput(emitter, max_frames, anchor=anchor)


def rig_clock_anchor(rig: str) -> Callable[[int], float] | None:
    """The rig's canonical clock as ``host_ns -> canonical seconds``, or None when no supervisor publishes one."""
    from mimir.supervisor.clock_board import read_clock

    snapshot = read_clock(rig)
    if snapshot is None:
        return None
    return lambda host_ns: snapshot.canonical_ns_at(host_ns) / 1e9
