"""The synthetic backend: a clocked generator at the exact nominal rate (optionally off by ``ppm``).

Signals: ``ramp`` (sample counter, see :mod:`workers.audio.signals`),
``sine``, ``noise``, ``impulse``, ``silence``, and ``loopback``: the input is
the output stage's signal ``L`` frames later (``L`` =
``loopback_latency_frames``, default two blocks), a perfect digital loop
whose reported latency (one block in, ``L - B`` out) equals its real one;
``room``: the same loop, but input channel ``k`` hears output channel 0
through a simulated acoustic path: channel 0 is the electrical loopback (the
rig's reference), channel ``k >= 1`` a microphone ``ROOM_DISTANCES_M[k]``
away (delay ``distance / 343 m/s``, whole samples; gain ``0.5 / distance``);
``reverb-room``: the same loop, but microphone ``k >= 1`` hears output
channel 0 through the impulse response of a reverberant room
(:data:`REVERB_ROOM`: image-source method, RT60 0.45 s, microphones at
fractional distances 0.8-6.1 m); the direct path's delay in fractional
samples is :func:`reverb_room_path` (the truth, from geometry). The room is
rendered ahead by FFT convolution in chunks of :func:`room_chunk_frames`
output frames (4096 at 48 kHz), one microphone per device block (never per
callback sample by sample), so the loop's latency is at least one chunk plus
a block per channel. Cost, 8 channels (measured on a loaded 2-core VM): 6-11 % of a core at 48 kHz,
about 30 % at 192 kHz, in the audio worker's device thread.
"""

from __future__ import annotations

import numpy as np

from ..config import EngineConfig
from ..errors import AudioConfigError, EngineStateError
from ..signals import SignalGenerator
from .base import DevicePlan
from .paced import PacedBackend

__all__ = ["SyntheticBackend", "ROOM_DISTANCES_M", "room_channel", "room_path", "reverb_room_path", "reverb_room",
           "RoomRenderer", "ROOM_CHUNK_FRAMES", "room_chunk_frames"]

SPEED_OF_SOUND_M_S = 343.0
ROOM_DISTANCES_M = (0.0, 0.6, 1.1, 1.7, 2.2, 2.9, 3.4, 4.1)


def room_channel(device_input: int, loopback_input: int = 0) -> int:
    """The room channel a device input hears: 0 for the loopback input, microphone 1, 2, .. for the others in order.

    ``loopback_input`` (``--loopback-input``) lets the synthetic interface
    put its electrical loopback where a real one does (the Scarlett Solo 4th
    Gen: inputs 0-1 are the front, 2-3 the loopback): device inputs below it
    are microphones 1.., the ones above it continue the count.
    """
    if device_input == loopback_input:
        return 0
    return device_input + 1 if device_input < loopback_input else device_input


def room_path(channel: int, rate_hz: int) -> tuple[int, float]:
    """(extra delay in frames, gain) of input ``channel`` in the ``room`` signal."""
    distance_m = ROOM_DISTANCES_M[channel % len(ROOM_DISTANCES_M)]
    if distance_m == 0.0:
        return 0, 1.0
    return round(distance_m / SPEED_OF_SOUND_M_S * rate_hz), 0.5 / distance_m


# A small studio: 7.3 x 5.1 x 2.9 m, RT60 0.45 s; the speaker near a wall, microphones at fractional distances,
# two of them near walls or a corner (their early reflections arrive within a few samples of the direct path).
REVERB_ROOM_DIMS_M = (7.3, 5.1, 2.9)
REVERB_ROOM_RT60_S = 0.45
REVERB_ROOM_SOURCE_M = (0.9, 2.3, 1.25)
REVERB_ROOM_MICS_M = (
    (1.55, 2.75, 1.4),   # 0.8 m
    (2.35, 1.55, 1.5),   # 1.6 m
    (3.3, 3.6, 1.2),     # 2.7 m
    (4.4, 4.75, 1.7),    # near the far wall
    (5.2, 0.35, 1.1),    # near a side wall
    (6.2, 3.0, 2.5),     # 5.5 m, near the ceiling
    (6.95, 4.8, 0.3),    # a corner, 6.1 m
)
ROOM_CHUNK_FRAMES = 4096  # at 48 kHz; scaled with the rate (16384 at 192 kHz): the FFT work per frame stays small


def room_chunk_frames(rate_hz: int) -> int:
    return ROOM_CHUNK_FRAMES * max(1, int(rate_hz) // 48000)


def reverb_room():
    """The ``reverb-room`` signal's room (:class:`mimir.sync.rooms.Room`): its geometry and RT60 are the truth."""
    from mimir.sync.rooms import Room

    return Room(REVERB_ROOM_DIMS_M, REVERB_ROOM_RT60_S, REVERB_ROOM_SOURCE_M, REVERB_ROOM_MICS_M, model="image",
                name="synthetic reverb-room")


def reverb_room_path(channel: int) -> float:
    """Geometry truth of the ``reverb-room`` signal: input ``channel``'s direct-path delay (seconds) after channel 0.

    Channel 0 is the electrical loopback (0); channel ``k >= 1`` is microphone
    ``(k - 1) mod 7`` of :data:`REVERB_ROOM_MICS_M`: ``distance / 343 m/s``.
    Multiply by the rate for (fractional) samples.
    """
    if channel == 0:
        return 0.0
    from mimir.sync.rooms import SPEED_OF_SOUND_M_S

    room = reverb_room()
    return float(room.distances_m()[(channel - 1) % len(REVERB_ROOM_MICS_M)] / SPEED_OF_SOUND_M_S)


class RoomRenderer:
    """Input channel ``c`` = output channel 0 convolved with ``impulses[c]``, ``latency`` frames later.

    Output frames are collected into chunks of ``chunk`` frames; each full
    chunk is convolved (one FFT multiply per channel, overlap-add into a ring)
    one channel per :meth:`read` call, ahead of the frames that need it.
    Invariant: ``latency >= chunk + (channels + 2) * max_frames`` so every
    input frame's contributions are rendered before it is read.
    Allocation: one FFT's arrays per chunk and channel; :meth:`read` and
    :meth:`write` copy into preallocated buffers.
    """

    def __init__(self, impulses: list[np.ndarray], latency: int, chunk: int, max_frames: int) -> None:
        from scipy import fft as sfft

        self._fft = sfft
        self.channels = len(impulses)
        self.latency = int(latency)
        self.chunk = int(chunk)
        if self.latency < self.chunk + (self.channels + 2) * max_frames:
            raise ValueError("room latency too short for the chunked renderer")
        longest = max(h.size for h in impulses)
        self.n_fft = sfft.next_fast_len(self.chunk + longest - 1, real=True)
        self._spectra = [sfft.rfft(h, self.n_fft) for h in impulses]
        self._size = self.latency + self.n_fft + 2 * max_frames
        self._acc = np.zeros((self._size, self.channels), dtype=np.float64)
        self._pending_chunk = np.zeros(self.chunk, dtype=np.float64)
        self._filled = 0
        self._chunk_start: int | None = None  # output frame of the chunk being collected
        self._jobs: list[tuple[int, int]] = []  # (channel, chunk start) still to render
        self._chunks: dict[int, np.ndarray] = {}

    def write(self, out_ch0: np.ndarray, start_frame: int) -> None:
        """Output frames ``[start_frame, start_frame + len)`` of channel 0 (what the speaker played)."""
        chunk_start = self._chunk_start
        if chunk_start is None:
            chunk_start = start_frame - start_frame % self.chunk
            self._filled = start_frame - chunk_start
        at = 0
        n = out_ch0.shape[0]
        while at < n:
            take = min(n - at, self.chunk - self._filled)
            self._pending_chunk[self._filled:self._filled + take] = out_ch0[at:at + take]
            self._filled += take
            at += take
            if self._filled == self.chunk:
                self._chunks[chunk_start] = self._pending_chunk.copy()
                self._jobs.extend((c, chunk_start) for c in range(self.channels))
                chunk_start += self.chunk
                self._filled = 0
                self._pending_chunk[:] = 0.0
        self._chunk_start = chunk_start

    def _render_one(self) -> None:
        channel, start = self._jobs.pop(0)
        x = self._chunks[start]
        y = self._fft.irfft(self._fft.rfft(x, self.n_fft) * self._spectra[channel], self.n_fft)
        first = start + self.latency
        pos = np.arange(first, first + self.n_fft) % self._size
        self._acc[pos, channel] += y
        if not any(s == start for _, s in self._jobs):
            del self._chunks[start]

    def read(self, slot: np.ndarray, start_frame: int, frames: int) -> None:
        """Input frames ``[start_frame, start_frame + frames)`` into ``slot[:frames]`` (float32, all channels)."""
        if self._jobs:
            self._render_one()  # one channel per block: the work is spread, never a burst
        while self._jobs and self._jobs[0][1] + self.latency < start_frame + frames:
            self._render_one()  # (only if a block was starved: correctness first)
        pos = start_frame % self._size
        head = min(frames, self._size - pos)
        slot[:head, : self.channels] = self._acc[pos:pos + head]
        self._acc[pos:pos + head] = 0.0
        if head < frames:
            slot[head:frames, : self.channels] = self._acc[: frames - head]
            self._acc[: frames - head] = 0.0


class SyntheticBackend(PacedBackend):
    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._gen: SignalGenerator | None = None
        self._hist: np.ndarray | None = None
        self._latency_frames = 0

    def prepare(self) -> DevicePlan:
        cfg = self.config
        rate = cfg.rate_or_default()
        block = cfg.block_frames
        spec = cfg.channels
        available = (max(spec.selectors) + 1) if spec.selectors is not None else (spec.count or 2)
        selected = spec.resolve(available)
        n_in = len(selected)
        n_out = cfg.output_channels if cfg.output_channels is not None else n_in
        self.plan = DevicePlan(
            backend="synthetic", device_label=f"synthetic {cfg.signal} ({cfg.ppm:+g} ppm)", host_api=None,
            device_index=None, sample_rate_hz=rate, block_frames=block, slot_frames=block, expected_frames=block,
            input_channels=selected, output_channels=n_out, sample_format="float32",
        )
        self._gen = SignalGenerator(
            cfg.signal, n_in, block, rate, sine_hz=cfg.sine_hz, seed=cfg.seed,
            impulse_period_frames=cfg.impulse_period_frames,
        )
        self._paths = None
        self._room: RoomRenderer | None = None
        rooms = [room_channel(d, cfg.loopback_input) for d in selected]  # what each captured input hears
        if cfg.signal == "room":
            self._paths = [room_path(r, rate) for r in rooms]
        if cfg.signal == "reverb-room":
            self._room = self._make_room(rate, rooms, block)
            self._latency_frames = self._room.latency
            return self.plan
        if cfg.signal in ("loopback", "room"):
            latency = cfg.loopback_latency_frames if cfg.loopback_latency_frames is not None else 2 * block
            if latency < block:
                raise AudioConfigError(
                    f"synthetic loopback latency {latency} frames is shorter than one block ({block}); "
                    "a duplex device cannot return a block before it has played it"
                )
            self._latency_frames = latency
            longest = max((d for d, _ in self._paths), default=0) if self._paths else 0
            self._hist = np.zeros((2 * (latency + block + longest), n_in), dtype=np.float32)
        return self.plan

    def _make_room(self, rate: int, rooms: list[int], block: int) -> RoomRenderer:
        """Impulse responses of the ``reverb-room``, one per captured input (room channel 0: the electrical loop,
        a unit impulse)."""
        from mimir.sync.rooms import room_impulse_responses

        room = reverb_room()
        rirs = room_impulse_responses(room, rate)
        distances = room.distances_m()
        impulses = []
        for r in rooms:
            if r == 0:
                impulses.append(np.ones(1))
                continue
            k = (r - 1) % len(REVERB_ROOM_MICS_M)
            h = rirs[k]
            direct = int(round(distances[k] / 343.0 * rate))
            peak = float(np.max(np.abs(h[max(0, direct - 2): direct + 3])))
            h = h * (0.5 / distances[k] / peak)  # the direct path at 0.5 / distance, like the pure-delay room
            energy = np.cumsum(h[::-1] ** 2)[::-1]
            keep = int(np.searchsorted(-energy, -energy[0] * 1e-4))  # drop the tail below -40 dB
            impulses.append(h[: max(keep, direct + 64)])
        cfg = self.config
        chunk = room_chunk_frames(rate)
        minimum = chunk + (len(rooms) + 2) * block
        latency = cfg.loopback_latency_frames if cfg.loopback_latency_frames is not None else minimum
        if latency < minimum:
            raise AudioConfigError(
                f"synthetic reverb-room latency {latency} frames is shorter than {minimum} (one rendering chunk of "
                f"{chunk} frames plus a block per channel): the room is rendered ahead"
            )
        return RoomRenderer(impulses, latency, chunk, block)

    def _latencies_s(self) -> tuple[float, float]:
        plan = self._planned()
        rate = plan.sample_rate_hz
        block = plan.block_frames
        if self._hist is not None or self._room is not None:
            return block / rate, (self._latency_frames - block) / rate
        return block / rate, block / rate

    def _produce(self, slot: np.ndarray, start_frame: int, frames: int) -> int:
        if self._room is not None:
            self._room.read(slot, start_frame, frames)
            return frames
        if self._hist is None:
            gen = self._gen
            if gen is None:
                raise EngineStateError("the synthetic backend has no signal generator: prepare() first")
            gen.fill(slot, start_frame, frames)
            return frames
        hist = self._hist
        size = hist.shape[0]
        if self._paths is not None:
            # Every microphone hears output channel 0, later and quieter the farther it is.
            for c, (delay, gain) in enumerate(self._paths):
                pos = (start_frame - self._latency_frames - delay) % size
                head = min(frames, size - pos)
                np.multiply(hist[pos:pos + head, 0], gain, out=slot[:head, c])
                if head < frames:
                    np.multiply(hist[: frames - head, 0], gain, out=slot[head:frames, c])
            return frames
        pos = (start_frame - self._latency_frames) % size
        head = min(frames, size - pos)
        slot[:head] = hist[pos:pos + head]
        if head < frames:
            slot[head:frames] = hist[: frames - head]
        return frames

    def _consume_output(self, out: np.ndarray, start_frame: int, frames: int) -> None:
        if self._room is not None:
            self._room.write(out[:frames, 0], start_frame)
            return
        hist = self._hist
        if hist is None:
            return
        size = hist.shape[0]
        n = min(out.shape[1], hist.shape[1])
        pos = start_frame % size
        head = min(frames, size - pos)
        hist[pos:pos + head, :n] = out[:head, :n]
        if head < frames:
            hist[: frames - head, :n] = out[head:frames, :n]
