"""Read a running rig from another program (a renderer, an analysis script): the public consumer API.

::

    from mimir.consumer import RigConsumer

    with RigConsumer.attach("default") as rig:
        frame = rig.latest_frame("cam.synthetic.0")        # zero-copy view into the camera ring
        use(frame.pixels)
        if not frame.still_valid():                        # the ring reused the slot meanwhile
            ...                                            # what was read may be torn: drop it
        t = rig.view.edge_ns - 100_000_000                 # 100 ms ago, canonical time
        f = rig.frame_at("cam.synthetic.1", t)             # nearest frame; f.skew_ns = f.canonical_ns - t
        clip = rig.frames("cam.synthetic.1", t - 500_000_000, t)   # every frame of a span, in order
        motion = rig.features("cam.synthetic.1", t - 500_000_000, t)  # its motion features ([features])
        m = rig.moment(t, audio_ms=100)                    # one frame per camera + audio centred on t
        audio = rig.audio(t - 50_000_000, t + 50_000_000)  # float32[frames, channels], a copy
        gpu = rig.frame_at("cam.synthetic.1", t, device="cuda")    # into GPU memory (mimir.gpu)

Every timestamp is canonical nanoseconds (the timeline the reservoir indexes
on). Frames are zero-copy views of ring slots: check ``still_valid()``
after using them (or copy first). Lookups are O(log n) in the window
(:mod:`mimir.reservoir.timeline`); see ``docs/consumer.md``.

Ownership: the consumer only attaches. It never writes to the rig, takes no
reader slots, moves no cursors and unlinks nothing; :meth:`RigConsumer.close`
unmaps its own views (and releases its GPU registrations). One consumer per
thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

import msgspec
import numpy as np

from mimir.contract import RigNotRunning, read_plan
from mimir.descriptors import (
    AudioBlockDescriptor,
    CameraFeature,
    CameraFrameDescriptor,
    SampleKind,
    split_handle,
)
from mimir.reservoir import (
    Evicted,
    HandleResolver,
    ReservoirView,
    Sample,
    StaleHandle,
    timeline,
)
from mimir.topology import (
    FEATURE_RESERVOIR, RESERVOIR, FeatureWorkerSpec, RigPlan, SourceSpec, feature_source, source_hash,
)
from ringbuf import ObjectNotReady, RingReader, SegmentMissing, StaleItem

if TYPE_CHECKING:
    from mimir.consumer_gpu import CudaDelivery, GpuFrame

__all__ = [
    "RigConsumer", "Frame", "AudioSpan", "Moment", "StaleHandle", "NoSuchSource", "OutsideWindow", "EmptyWindow",
    "RigNotRunning", "POLICIES", "DEVICES",
]

POLICIES = ("nearest", "at_or_before")
DEVICES = ("cpu", "cuda")
_CAMERA = int(SampleKind.CAMERA_FRAME)
_AUDIO = int(SampleKind.AUDIO_BLOCK)
_FEATURE = int(SampleKind.CAMERA_FEATURE)
_Descriptor = TypeVar("_Descriptor", bound=msgspec.Struct)


class NoSuchSource(LookupError):
    """The rig has no source of that name (the message lists the ones it has)."""


class OutsideWindow(ValueError):
    """A time or span outside what the reservoir's window holds (the message gives the window)."""


class EmptyWindow(LookupError):
    """The window holds nothing of that source (or nothing at all)."""


@dataclass(frozen=True)
class Frame:
    """One camera frame: a zero-copy view of its ring slot plus its descriptor and canonical time.

    ``skew_ns`` is ``canonical_ns`` minus the time asked for (0 for
    :meth:`RigConsumer.latest_frame`): positive when the frame is later.
    """

    camera: str
    pixels: np.ndarray
    descriptor: CameraFrameDescriptor
    canonical_ns: int
    skew_ns: int
    _reader: RingReader = field(repr=False, compare=False)
    _sequence: int = field(repr=False, compare=False)

    def still_valid(self) -> bool:
        """True while the ring has not reused this frame's slot (check after using :attr:`pixels`)."""
        return self._reader.valid(self._sequence)


@dataclass(frozen=True)
class AudioSpan:
    """Audio of one source over a canonical span (a copy).

    ``samples[i]`` is at canonical ``start_ns + i / rate_hz`` (to within the
    clock fit's rate error). ``start_ns`` is the time of the first sample
    returned; ``skew_ns`` = ``start_ns`` minus the start asked for (at most
    half a sample). ``gap_samples`` counts samples inside the span the device
    dropped (its sample counter jumped); they are zeros here, never closed up.
    """

    source: str
    samples: np.ndarray
    start_ns: int
    rate_hz: float
    skew_ns: int = 0
    gap_samples: int = 0


@dataclass(frozen=True)
class Moment:
    """What the rig saw around canonical ``t_ns``: one frame per camera and every audio source's span.

    ``frames[camera].skew_ns`` and ``audio[source].skew_ns`` say how far each
    is from ``t_ns`` (audio: from ``t_ns - audio_ms / 2``). ``missing``
    names each source left out, with why (no frame in the window, ...).
    """

    t_ns: int
    frames: dict[str, "Frame | GpuFrame"]
    audio: dict[str, AudioSpan]
    missing: dict[str, str]


class RigConsumer:
    """A read-only attachment to a running rig's reservoir and rings."""

    def __init__(self, rig: str, plan: RigPlan, view: ReservoirView, resolver: HandleResolver) -> None:
        self.rig = rig
        self.plan = plan
        self.view = view
        self.resolver = resolver
        self._readers: dict[str, RingReader] = {}
        self._cuda: CudaDelivery | None = None
        self._features: ReservoirView | None = None  # the features reservoir, attached on first use

    @classmethod
    def attach(cls, rig: str = "default") -> "RigConsumer":
        """Attach to running rig ``rig``; :class:`RigNotRunning` when no supervisor runs it."""
        plan = read_plan(rig)  # the rig contract: source names, their hashes and rings
        try:
            view = ReservoirView.attach(rig, RESERVOIR)
        except ObjectNotReady:  # a stale plan read while a new supervisor creates its reservoir, or one that died
            raise RigNotRunning(f"rig {rig!r} is not ready: its reservoir is still being created (retry shortly), "
                                "or its supervisor died creating it") from None
        except SegmentMissing:
            raise RigNotRunning(
                f"rig {rig!r} is not running (no reservoir): start it with `mimir-supervisor start`"
            ) from None
        return cls(rig, plan, view, HandleResolver(rig, reservoir=view))

    # ---- sources --------------------------------------------------------------------------------------------
    def cameras(self) -> list[str]:
        """Names of the rig's cameras (``cam.<family>.<index>``), in config order."""
        return [s.name for s in self.plan.cameras()]

    def audio_sources(self) -> list[str]:
        """Names of the rig's audio sources (one per audio device)."""
        return [s.name for s in self.plan.sources if s.kind == _AUDIO]

    def _camera(self, camera: str) -> SourceSpec:
        try:
            spec = self.plan.source(camera)
        except KeyError:
            spec = None
        if spec is None or spec.kind != _CAMERA:
            raise NoSuchSource(f"rig {self.rig!r} has no camera {camera!r}; cameras: "
                               f"{', '.join(self.cameras()) or 'none'}")
        return spec

    def _audio_source(self, source: str | None) -> SourceSpec:
        names = self.audio_sources()
        if source is None:
            if len(names) != 1:
                raise NoSuchSource(f"rig {self.rig!r} has {len(names)} audio sources "
                                   f"({', '.join(names) or 'none'}); name one with source=")
            source = names[0]
        if source not in names:
            raise NoSuchSource(f"rig {self.rig!r} has no audio source {source!r}; audio sources: "
                               f"{', '.join(names) or 'none'}")
        return self.plan.source(source)

    # ---- the window -----------------------------------------------------------------------------------------
    def window(self) -> tuple[int, int]:
        """``(window_start_ns, edge_ns)``: the canonical span the reservoir holds now."""
        start = self.view.window_start_ns  # first: both only grow, so the pair never claims more than it holds
        edge = self.view.edge_ns
        if edge == 0:
            raise EmptyWindow(f"rig {self.rig!r}: the reservoir's window is empty (nothing indexed yet)")
        return start, edge

    def _check_in_window(self, *times_ns: int) -> tuple[int, int]:
        start, edge = self.window()
        for t in times_ns:
            if not start <= t <= edge:
                where = f"{(start - t) / 1e9:.3f} s before its start" if t < start else \
                    f"{(t - edge) / 1e9:.3f} s after its edge"
                raise OutsideWindow(f"{t} ns is outside rig {self.rig!r}'s window [{start}, {edge}] ns ({where}; "
                                    f"the window holds the last {(edge - start) / 1e9:g} s)")
        return start, edge

    # ---- frames ---------------------------------------------------------------------------------------------
    def latest_frame(self, camera: str, *, device: Literal["cpu", "cuda"] = "cpu") -> "Frame | GpuFrame":
        """The newest indexed frame of ``camera``: a zero-copy view (``device="cpu"``) or a GPU copy (``"cuda"``).

        :class:`EmptyWindow` when the camera has no frame in the window,
        :class:`StaleHandle` when the frame was overwritten meanwhile.
        """
        self._check_device(device)
        spec = self._camera(camera)
        sample = self.view.latest_for_sensor(_CAMERA, spec.source_hash)
        if sample is None:
            raise EmptyWindow(f"camera {camera!r} has no frame in the reservoir's window")
        return self._deliver(self._frame(spec, sample, sample.timestamp_ns), device)

    def frame_at(self, camera: str, t_ns: int, policy: Literal["nearest", "at_or_before"] = "nearest", *,
                 device: Literal["cpu", "cuda"] = "cpu") -> "Frame | GpuFrame":
        """The frame of ``camera`` nearest to canonical ``t_ns`` (or the newest at or before it), with its skew.

        ``nearest``: ties go to the earlier frame. O(log n) (see
        :mod:`mimir.reservoir.timeline`). :class:`OutsideWindow` for a time
        outside the window, or before the camera's first frame with
        ``at_or_before``; :class:`EmptyWindow` when the camera has no frame.
        """
        self._check_device(device)
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        spec = self._camera(camera)
        self._check_in_window(t_ns)
        before, after = timeline.neighbours(self.view, _CAMERA, spec.source_hash, t_ns)
        if before is None:
            if after is None:
                raise EmptyWindow(f"camera {camera!r} has no frame in the reservoir's window")
            if policy == "at_or_before":
                raise OutsideWindow(f"camera {camera!r} has no frame at or before {t_ns} ns; its first frame "
                                    f"in the window is at {after.sample.timestamp_ns} ns")
            chosen = after
        elif (policy == "nearest" and after is not None
              and after.sample.timestamp_ns - t_ns < t_ns - before.sample.timestamp_ns):
            chosen = after
        else:
            chosen = before
        return self._deliver(self._frame(spec, chosen.sample, t_ns), device)

    def frames(self, camera: str, t0_ns: int, t1_ns: int) -> list[Frame]:
        """Every frame of ``camera`` with canonical time in ``[t0_ns, t1_ns]``, in order (zero-copy views).

        O(log n + frames returned). :class:`OutsideWindow` when the span
        reaches outside the window; an empty list when the camera has no
        frame in the span.
        """
        if t1_ns < t0_ns:
            raise ValueError(f"empty span: t1_ns {t1_ns} < t0_ns {t0_ns}")
        spec = self._camera(camera)
        self._check_in_window(t0_ns, t1_ns)
        for _ in range(timeline.RESTARTS):
            try:
                hits = self._span(_CAMERA, spec.source_hash, t0_ns, t1_ns)
                break
            except Evicted:
                continue  # the head passed the walk: search again
        else:
            raise Evicted(f"rig {self.rig!r}: the window kept moving past the span's start; ask for a later span")
        return [self._frame(spec, hit.sample, hit.sample.timestamp_ns) for hit in hits]

    def features(self, camera: str, t0_ns: int, t1_ns: int) -> list[CameraFeature]:
        """The motion features of ``camera``'s frames with canonical time in ``[t0_ns, t1_ns]``, in order.

        One :class:`~mimir.descriptors.CameraFeature` per frame the features
        worker measured (``[features]`` in the rig config, docs/gpu.md); its
        ``canonical_ns`` is the frame's own canonical time (so
        ``frame_at(camera, f.canonical_ns)`` is that frame while it is in the
        window) and ``sequence`` the frame's. O(log n + records returned).
        :class:`NoSuchSource` when the rig computes no features for
        ``camera``; :class:`OutsideWindow` as :meth:`frames`.
        """
        if t1_ns < t0_ns:
            raise ValueError(f"empty span: t1_ns {t1_ns} < t0_ns {t0_ns}")
        self._camera(camera)
        measured = [c.source for w in self.plan.workers if isinstance(w, FeatureWorkerSpec) for c in w.cameras]
        if camera not in measured:
            raise NoSuchSource(f"rig {self.rig!r} computes no features for {camera!r} "
                               + (f"(features cover: {', '.join(measured)})" if measured
                                  else "(enable them with [features] enabled = true)"))
        self._check_in_window(t0_ns, t1_ns)
        if self._features is None:
            self._features = ReservoirView.attach(self.rig, FEATURE_RESERVOIR)
        view = self._features
        sensor = source_hash(feature_source(camera))
        for _ in range(timeline.RESTARTS):
            try:
                hits = self._span(_FEATURE, sensor, t0_ns, t1_ns, view)
                return [self._descriptor(hit.sample.payload_handle, CameraFeature, view) for hit in hits]
            except (Evicted, StaleHandle):
                continue  # the head passed the walk: search again
        raise Evicted(f"rig {self.rig!r}: the window kept moving past the span's start; ask for a later span")

    def _span(self, kind: int, sensor: int, t0_ns: int, t1_ns: int,
              view: ReservoirView | None = None) -> list[timeline.Hit]:
        view = self.view if view is None else view
        first = timeline.first_hit(view, kind, sensor, t0_ns)
        out: list[timeline.Hit] = []
        if first is None:
            return out
        for hit in timeline.walk(view, kind, sensor, first):
            if hit.sample.timestamp_ns > t1_ns:
                break
            out.append(hit)
        return out

    def _frame(self, spec: SourceSpec, sample: Sample, asked_ns: int) -> Frame:
        descriptor = self._descriptor(sample.payload_handle, CameraFrameDescriptor)
        _, sequence = split_handle(descriptor.payload_handle)
        reader = self._reader(spec)
        try:
            pixels = reader.payload_view(sequence)
        except StaleItem:
            if reader.writer_alive():
                raise StaleHandle(
                    f"frame {descriptor.sequence} of {spec.name} at {sample.timestamp_ns} ns has been overwritten in "
                    f"its ring (it keeps its last {reader.capacity} frames); read sooner"
                ) from None
            reader = self._reader(spec, reattach=True)  # the camera worker restarted: its ring is a new object
            try:
                pixels = reader.payload_view(sequence)
            except StaleItem:
                raise StaleHandle(f"frame {descriptor.sequence} of {spec.name} is gone: its ring was recreated "
                                  "(the camera worker restarted)") from None
        return Frame(spec.name, pixels, descriptor, sample.timestamp_ns, sample.timestamp_ns - asked_ns, reader,
                     sequence)

    def _descriptor(self, handle: int, kind: type[_Descriptor], view: ReservoirView | None = None) -> _Descriptor:
        """The reservoir descriptor ``handle`` names, which the sample's kind stores as a ``kind`` Struct."""
        descriptor = (self.view if view is None else view).descriptor(handle)
        if not isinstance(descriptor, kind):
            raise TypeError(f"handle {handle:#x} names a {type(descriptor).__name__}, not a {kind.__name__}")
        return descriptor

    def _reader(self, spec: SourceSpec, *, reattach: bool = False) -> RingReader:
        reader = self._readers.get(spec.name)
        if reader is not None and not reattach:
            return reader
        if reader is not None:
            if self._cuda is not None:
                self._cuda.forget(spec.name)
            reader.close()
        try:
            reader = RingReader.attach(spec.ring.object_id, rig=self.rig, register=False)
        except SegmentMissing:
            self._readers.pop(spec.name, None)
            raise StaleHandle(f"the ring of {spec.name} ({spec.ring.object_id}) is gone: is its worker running? "
                              "(`mimir status`)") from None
        self._readers[spec.name] = reader
        return reader

    # ---- audio ----------------------------------------------------------------------------------------------
    def audio(self, start_ns: int, end_ns: int, source: str | None = None) -> AudioSpan:
        """The audio of ``source`` (default: the rig's one audio source) between canonical ``start_ns`` and ``end_ns``.

        A copy, placed by the device's sample counter from the block holding
        ``start_ns``: ``round((end_ns - start_ns) * rate)`` samples, fewer
        when the window's newest audio ends sooner. Samples the device
        dropped inside the span are zeros (``gap_samples``). Raises
        :class:`OutsideWindow` for a start outside the window's audio,
        :class:`StaleHandle` when a block was overwritten while being copied.
        """
        if end_ns <= start_ns:
            raise ValueError(f"empty span: end_ns {end_ns} <= start_ns {start_ns}")
        spec = self._audio_source(source)
        self._check_in_window(start_ns)
        for _ in range(timeline.RESTARTS):
            try:
                return self._audio(spec, start_ns, end_ns)
            except Evicted:
                continue
        raise Evicted(f"rig {self.rig!r}: the window kept moving past the span's start; ask for a later span")

    def _audio(self, spec: SourceSpec, start_ns: int, end_ns: int) -> AudioSpan:
        before, after = timeline.neighbours(self.view, _AUDIO, spec.source_hash, start_ns)
        if before is None:
            if after is None:
                raise EmptyWindow(f"audio source {spec.name!r} has no block in the reservoir's window")
            raise OutsideWindow(f"span start {start_ns} ns is before the first audio block of {spec.name!r} "
                                f"in the window ({after.sample.timestamp_ns} ns)")
        first = self._descriptor(before.sample.payload_handle, AudioBlockDescriptor)
        rate_hz = float(first.sample_rate_hz)
        skip = round((start_ns - before.sample.timestamp_ns) * rate_hz / 1e9)
        wanted = round((end_ns - start_ns) * rate_hz / 1e9)
        out = np.zeros((wanted, first.channel_count), np.float32)
        origin = first.start_sample + skip  # device sample of out[0]
        covered = filled = 0
        end_of_last = None  # where the previous block ended, in out's indices
        for hit in timeline.walk(self.view, _AUDIO, spec.source_hash, before):
            d = self._descriptor(hit.sample.payload_handle, AudioBlockDescriptor)
            at = d.start_sample - origin  # where this block's first sample lands in out
            if end_of_last is not None and at < end_of_last:
                break  # the device counter went back (a restarted stream): stop rather than overwrite
            end_of_last = at + d.frame_count
            if at >= wanted:
                break
            if end_of_last <= 0:
                continue  # ends before the span (the span starts in a gap after it)
            lo, hi = max(0, at), min(wanted, end_of_last)
            payload = self.resolver.payload(d.data_handle)
            out[lo:hi] = payload[lo - at:hi - at]
            if not self.resolver.valid(d.data_handle):
                raise StaleHandle(f"audio block at device sample {d.start_sample} was overwritten while being "
                                  "copied; ask for a more recent span")
            covered += hi - lo
            filled = hi
            if filled >= wanted:
                break
        if filled == 0:
            raise OutsideWindow(f"span start {start_ns} ns is after the newest audio of {spec.name!r} in the window")
        actual_ns = before.sample.timestamp_ns + round(skip * 1e9 / rate_hz)
        return AudioSpan(spec.name, out[:filled], actual_ns, rate_hz, actual_ns - start_ns, filled - covered)

    # ---- moments --------------------------------------------------------------------------------------------
    def moment(self, t_ns: int, *, audio_ms: float = 100.0, device: Literal["cpu", "cuda"] = "cpu") -> Moment:
        """One frame per camera nearest ``t_ns`` and every audio source's ``audio_ms`` centred on it.

        A source with nothing to give (no frame in the window, audio
        reaching outside it) is listed in ``Moment.missing`` with the reason.
        :class:`OutsideWindow` when ``t_ns`` itself is outside the window.
        """
        if not audio_ms > 0:
            raise ValueError(f"audio_ms must be > 0, got {audio_ms}")
        self._check_device(device)
        self._check_in_window(t_ns)
        frames: dict[str, Frame | GpuFrame] = {}
        audio: dict[str, AudioSpan] = {}
        missing: dict[str, str] = {}
        for camera in self.cameras():
            try:
                frames[camera] = self.frame_at(camera, t_ns, device=device)
            except (EmptyWindow, OutsideWindow, StaleHandle) as exc:
                missing[camera] = str(exc)
        half_ns = round(audio_ms * 1e6 / 2)
        for source in self.audio_sources():
            try:
                audio[source] = self.audio(t_ns - half_ns, t_ns + half_ns, source)
            except (EmptyWindow, OutsideWindow, StaleHandle) as exc:
                missing[source] = str(exc)
        return Moment(t_ns, frames, audio, missing)

    # ---- GPU ------------------------------------------------------------------------------------------------
    def use_cuda(self, *, pool_size: int = 2, runtime=None, backend_factory=None) -> None:
        """Set up GPU delivery (done on the first ``device="cuda"`` read with the defaults).

        ``pool_size``: device buffers per camera (frames you may hold at once).
        ``runtime`` / ``backend_factory``: the CUDA runtime and a copy backend
        factory (default CuPy's; :mod:`mimir.gpu` documents the seams).
        :class:`mimir.gpu.CudaUnavailable` (one line) without CuPy or a device.
        """
        self._start_cuda(pool_size=pool_size, runtime=runtime, backend_factory=backend_factory)

    def _start_cuda(self, *, pool_size: int = 2, runtime=None, backend_factory=None) -> CudaDelivery:
        from mimir.consumer_gpu import CudaDelivery

        if self._cuda is not None:
            self._cuda.close()
        cuda = self._cuda = CudaDelivery(pool_size=pool_size, runtime=runtime, backend_factory=backend_factory)
        return cuda

    @staticmethod
    def _check_device(device: str) -> None:
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")

    def _deliver(self, frame: Frame, device: str) -> "Frame | GpuFrame":
        if device == "cpu":
            return frame
        cuda = self._cuda if self._cuda is not None else self._start_cuda()
        return cuda.deliver(frame)

    # ---- lifetime -------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Release GPU registrations, then unmap every view. Idempotent."""
        if self._cuda is not None:
            self._cuda.close()
            self._cuda = None
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        self.resolver.close()
        if self._features is not None:
            self._features.close()
            self._features = None
        self.view.close()

    def __enter__(self) -> "RigConsumer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
