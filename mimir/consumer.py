"""Read a running rig from another program (a renderer, a DSP host): the public consumer API.

::

    from mimir.consumer import RigConsumer

    with RigConsumer.attach("default") as rig:
        frame = rig.latest_frame("cam.synthetic.0")   # zero-copy view into the camera ring
        use(frame.pixels)
        if not frame.still_valid():                   # the ring reused the slot meanwhile
            ...                                       # what was read may be torn: drop it
        audio = rig.audio(start_ns, end_ns)           # float32[frames, channels], canonical span

Ownership: the consumer only attaches. It never writes to the rig, takes no
reader slots, moves no cursors and unlinks nothing; :meth:`RigConsumer.close`
unmaps its own views. Every timestamp here is canonical nanoseconds (seconds
since the codebook epoch x 1e9), the timeline the reservoir indexes on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mimir.contract import RigNotRunning, read_plan
from mimir.descriptors import AudioBlockDescriptor, CameraFrameDescriptor, SampleKind
from mimir.reservoir import HandleResolver, ReservoirView, StaleHandle
from mimir.topology import RESERVOIR, RigPlan
from ringbuf import SegmentMissing

__all__ = ["RigConsumer", "Frame", "AudioSpan", "StaleHandle", "NoSuchSource", "RigNotRunning"]


class NoSuchSource(LookupError):
    """The rig has no source of that name (the message lists the ones it has)."""


@dataclass(frozen=True)
class Frame:
    """One camera frame: a zero-copy view of its ring slot plus its descriptor and canonical time."""

    camera: str
    pixels: np.ndarray
    descriptor: CameraFrameDescriptor
    canonical_ns: int
    _resolver: HandleResolver

    def still_valid(self) -> bool:
        """True while the ring has not reused this frame's slot (check after using :attr:`pixels`)."""
        return self._resolver.valid(self.descriptor.payload_handle)


@dataclass(frozen=True)
class AudioSpan:
    """Audio over a canonical span: ``samples[i]`` is at canonical ``start_ns + i / rate_hz`` (a copy)."""

    samples: np.ndarray
    start_ns: int
    rate_hz: float


class RigConsumer:
    """A read-only attachment to a running rig's reservoir and rings."""

    def __init__(self, rig: str, plan: RigPlan, view: ReservoirView, resolver: HandleResolver) -> None:
        self.rig = rig
        self.plan = plan
        self.view = view
        self.resolver = resolver

    @classmethod
    def attach(cls, rig: str = "default") -> "RigConsumer":
        """Attach to running rig ``rig``; :class:`RigNotRunning` when no supervisor runs it."""
        plan = read_plan(rig)  # the rig contract: source names, their hashes and rings
        try:
            view = ReservoirView.attach(rig, RESERVOIR)
        except SegmentMissing:
            raise RigNotRunning(f"rig {rig!r} is not running (no reservoir): start it with `mimir-supervisor start`") from None
        return cls(rig, plan, view, HandleResolver(rig, reservoir=view))

    def cameras(self) -> list[str]:
        """Names of the rig's cameras (``cam.<family>.<index>``), in config order."""
        return [s.name for s in self.plan.cameras()]

    def _sensor_of(self, camera: str) -> int:
        try:
            return self.plan.source(camera).source_hash
        except KeyError:
            raise NoSuchSource(f"rig {self.rig!r} has no camera {camera!r}; cameras: "
                               f"{', '.join(self.cameras()) or 'none'}") from None

    def latest_frame(self, camera: str) -> Frame:
        """The newest indexed frame of ``camera`` as a zero-copy view; :class:`StaleHandle` if already overwritten."""
        sample = self.view.latest_for_sensor(SampleKind.CAMERA_FRAME, self._sensor_of(camera))
        if sample is None:
            raise NoSuchSource(f"camera {camera!r} has no frame in the reservoir's window")
        descriptor = self.resolver.descriptor(sample.payload_handle)
        pixels = self.resolver.payload(descriptor.payload_handle)
        return Frame(camera, pixels, descriptor, sample.timestamp_ns, self.resolver)

    def audio(self, start_ns: int, end_ns: int) -> AudioSpan:
        """The audio between canonical ``start_ns`` and ``end_ns``, copied out of the ring blocks that hold it.

        Raises :class:`StaleHandle` when a block of the span has already been
        overwritten in the audio ring (ask for a more recent span, or keep a
        longer ring with ``ring_seconds``), and ValueError for a span outside
        the window.
        """
        if end_ns <= start_ns:
            raise ValueError(f"empty span: end_ns {end_ns} <= start_ns {start_ns}")
        kind = SampleKind.AUDIO_BLOCK
        count = self.view.view_count(kind)
        if count == 0:
            raise NoSuchSource(f"rig {self.rig!r} has no audio blocks in the reservoir's window")
        first = self.view.read_view(kind, 0)
        last = self.view.read_view(kind, count - 1)
        if start_ns < first.timestamp_ns or start_ns > last.timestamp_ns:
            raise ValueError(
                f"span start {start_ns} ns is outside the audio in the window "
                f"[{first.timestamp_ns}, {last.timestamp_ns}] ns"
            )
        # Blocks are indexed in device order: binary search the block holding start_ns.
        lo, hi = 0, count - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.view.read_view(kind, mid).timestamp_ns <= start_ns:
                lo = mid
            else:
                hi = mid - 1
        block = self.view.read_view(kind, lo)
        desc: AudioBlockDescriptor = self.resolver.descriptor(block.payload_handle)
        rate_hz = float(desc.sample_rate_hz)
        frames_wanted = int(round((end_ns - start_ns) * rate_hz / 1e9))
        out = np.zeros((frames_wanted, desc.channel_count), np.float32)
        skip = int(round((start_ns - block.timestamp_ns) * rate_hz / 1e9))
        filled = 0
        index = lo
        while filled < frames_wanted and index < count:
            sample = self.view.read_view(kind, index)
            d = self.resolver.descriptor(sample.payload_handle)
            payload = self.resolver.payload(d.data_handle)
            take = payload[skip:d.frame_count]
            n = min(len(take), frames_wanted - filled)
            out[filled:filled + n] = take[:n]
            if not self.resolver.valid(d.data_handle):
                raise StaleHandle(f"audio block {d.start_sample} was overwritten while being copied; ask for a more recent span")
            filled += n
            skip = 0
            index += 1
        return AudioSpan(out[:filled], start_ns, rate_hz)

    def close(self) -> None:
        self.resolver.close()
        self.view.close()

    def __enter__(self) -> "RigConsumer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
