"""Local audio for ``mimir receiver``: a file (paced like a live input, or as fast as possible) or a device.

Both yield :class:`Block` ``(start_sample, samples, lag_s, host_ns)``: the
local sample index of the block's first sample (gaps show up as jumps),
float32 mono samples, how far decoding runs behind the audio clock, and the
host time (``time.monotonic_ns()``) of the first sample, or None where there is
no clock to place it by. :attr:`AudioSource.host_clock` says which clock that is:

* ``adc``: a device whose driver reports ADC times (PortAudio's
  ``inputBufferAdcTime``), put on the host clock by
  :class:`mimir.timebase.StreamToHost` from each callback's ``currentTime``
  and entry time; ``entry``: a device whose driver reports none (the
  callback's entry time is used);
* ``pacing``: a paced file: sample ``n`` is due at ``start + n / rate / speed``;
* ``none``: a file read as fast as possible (its samples have no host time).

Capture never waits for decoding: the device callback stamps its entry time,
copies into a bounded queue and counts what it had to drop; the decode thread
does the clock arithmetic.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Literal, NamedTuple, Protocol

import numpy as np

from mimir.sync.audio_io import read_audio
from mimir.timebase import StreamToHost

__all__ = ["AudioSource", "Block", "DeviceAudio", "FileAudio", "HostClock", "PcmRing"]

HostClock = Literal["adc", "entry", "pacing", "none"]


class Block(NamedTuple):
    start_sample: int       # local index of samples[0]
    samples: np.ndarray     # float32, one channel
    lag_s: float            # how far decoding runs behind the audio clock
    host_ns: int | None     # time.monotonic_ns() of samples[0] by :attr:`AudioSource.host_clock`; None: no clock


class AudioSource(Protocol):
    rate_hz: float
    input_blocks_dropped: int
    input_overflows: int
    host_clock: HostClock

    def blocks(self, stop: threading.Event) -> Iterator[Block]: ...

    def close(self) -> None: ...


class FileAudio:
    """One channel of a file. ``speed``: 1.0 = real time, 2.0 = twice as fast; ``fast``: no pacing at all.

    Raises ``mimir.sync.audio_io.UnreadableAudio`` or ``ValueError`` (bad channel) on construction.
    """

    def __init__(self, path: str, *, channel: int = 0, block_frames: int = 1024, speed: float = 1.0,
                 fast: bool = False) -> None:
        if block_frames < 1:
            raise ValueError("block_frames must be >= 1")
        if not (speed > 0):
            raise ValueError("speed must be > 0")
        audio = read_audio(path, channel)
        self.samples = audio.samples
        self.rate_hz = float(audio.rate_hz)
        self.block_frames = int(block_frames)
        self.speed = float(speed)
        self.fast = fast
        self.input_blocks_dropped = 0
        self.input_overflows = 0
        self.host_clock: HostClock = "none" if fast else "pacing"

    def blocks(self, stop: threading.Event) -> Iterator[Block]:
        t0_ns = time.monotonic_ns()  # the pacing clock: sample n is at t0 + n / rate / speed
        ns_per_sample = 1e9 / self.rate_hz / self.speed
        n = self.samples.size
        for at in range(0, n, self.block_frames):
            if stop.is_set():
                return
            lag = 0.0
            host_ns = None
            if not self.fast:
                host_ns = t0_ns + round(at * ns_per_sample)
                due_ns = t0_ns + round((at + self.block_frames) * ns_per_sample)  # a block exists once complete
                wait = (due_ns - time.monotonic_ns()) / 1e9
                if wait > 0:
                    if stop.wait(wait):
                        return
                else:
                    lag = -wait * self.speed
            yield Block(at, self.samples[at: at + self.block_frames], lag, host_ns)

    def close(self) -> None:
        pass


class DeviceAudio:
    """A sounddevice input stream (``device``: name or index). The callback only copies into a bounded queue.

    Each queued block carries the callback's entry time and PortAudio's
    ``inputBufferAdcTime`` and ``currentTime`` (the stream clock); the decode
    thread places the ADC time on the host clock (:class:`StreamToHost`, or the
    entry time where the driver reports no ADC time: :attr:`host_clock`).
    """

    def __init__(self, device: str, *, channel: int = 0, rate_hz: float | None = None, block_frames: int = 1024,
                 queue_blocks: int = 256) -> None:
        import sounddevice as sd  # imported here: file mode must work without PortAudio

        dev: str | int = int(device) if device.isdigit() else device
        info = sd.query_devices(dev, "input")
        if channel >= int(info["max_input_channels"]):
            raise ValueError(f"channel {channel} does not exist on {info['name']!r} "
                             f"({info['max_input_channels']} input channels)")
        self.rate_hz = float(rate_hz or info["default_samplerate"])
        self.channel = channel
        self.input_blocks_dropped = 0
        self.input_overflows = 0
        self._frames = 0
        self._to_host = StreamToHost()
        self.host_clock: HostClock = "entry"
        self._queue: queue.Queue = queue.Queue(maxsize=queue_blocks)
        self._stream = sd.InputStream(device=dev, channels=channel + 1, samplerate=self.rate_hz,
                                      blocksize=block_frames, dtype="float32", callback=self._callback)
        self._stream.start()

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio's thread: stamp, copy and go
        entry_ns = time.monotonic_ns()
        if status.input_overflow:
            self.input_overflows += 1
        try:
            self._queue.put_nowait((self._frames, indata[:, self.channel].copy(), entry_ns,
                                    time_info.inputBufferAdcTime, time_info.currentTime))
        except queue.Full:
            self.input_blocks_dropped += 1
        self._frames += frames

    def blocks(self, stop: threading.Event) -> Iterator[Block]:
        while not stop.is_set():
            try:
                start, block, entry_ns, adc_s, current_s = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            host_ns = self._to_host.host_of(int(adc_s * 1e9), entry_ns, int(current_s * 1e9))
            self.host_clock = "adc" if self._to_host.mode == "adc" else "entry"
            yield Block(start, block, (time.monotonic_ns() - entry_ns) / 1e9, host_ns)

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


class PcmRing:
    """The last ``seconds`` of audio by local sample index, for raw audio windows. Decode thread only."""

    def __init__(self, rate_hz: float, seconds: float = 10.0) -> None:
        self.size = max(1, int(rate_hz * seconds))
        self.buf = np.zeros(self.size, dtype=np.float32)
        self.end = 0       # local index one past the newest sample
        self.start = 0     # oldest local index still held

    def write(self, start_sample: int, block: np.ndarray) -> None:
        if start_sample != self.end:  # a gap or a reset: forget what was before
            self.start = start_sample
        n = block.size
        if n >= self.size:
            block = block[-self.size:]
            start_sample += n - self.size
            n = self.size
            self.start = start_sample
        pos = start_sample % self.size
        head = min(n, self.size - pos)
        self.buf[pos: pos + head] = block[:head]
        self.buf[: n - head] = block[head:]
        self.end = start_sample + n
        self.start = max(self.start, self.end - self.size)

    def read(self, start_sample: int, n: int) -> np.ndarray | None:
        """Samples ``[start_sample, start_sample + n)`` or None if they are not (all) held."""
        if start_sample < self.start or start_sample + n > self.end or n <= 0:
            return None
        idx = (np.arange(start_sample, start_sample + n) % self.size)
        return self.buf[idx]
