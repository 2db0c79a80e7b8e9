"""The rig contract: everything the supervisor, the workers, status and the consumer must agree on.

:func:`plan_rig` derives it once from a validated :class:`~mimir.config.RigConfig`:

* every **worker** and exactly what it runs (:data:`WorkerSpec`: a camera
  family with its cameras, the audio device, the sync analyzer);
* every **ring**: its shared-memory object id (short, so every name fits
  macOS's 31 characters), its readable name and its capacity, sized from the
  reservoir window (a ring holds at least ``window_s x rate`` items, plus
  :data:`RING_HEADROOM_S` of headroom, so every sample in the window has a live
  payload even while the indexer or a reader falls behind for a moment);
* every **source**: its name, kind, nominal rate and the source-id hash the
  reservoir indexes it under;
* the **witness**: codebook id, seed, epoch and level, which the audio worker
  plays and the sync worker decodes -- one value, so they cannot disagree;
* the shared-memory **budget** of the whole rig.

Nothing else spells a ring name or a worker option. The supervisor hands each
worker its spec (msgspec JSON in ``MIMIR_WORKER_SPEC``); a worker started by
hand builds the same spec from its options through the same functions here;
the plan itself is published in the rig's ``plan`` object, where `mimir
status`, `mimir rings` and the consumer read names from.

Object ids: cameras ``c0``.. (in config order), ``au`` the audio ring,
``aum`` its callback metrics, ``fit`` the sync fits, ``sw``/``ss`` the status
board, ``clk`` the canonical clock, ``res`` the reservoir, ``obs`` the observed
claims of remote receivers (:mod:`mimir.net.claims`), ``plan`` this plan.
"""

from __future__ import annotations

import math
import msgspec

from mimir.config import AudioConfig, CameraFamilyConfig, ConfigError, RigConfig
from mimir.descriptors import SampleKind
from mimir.interfaces import AudioInput, audio_inputs
from mimir.sync.calibration import BandLimits, PathCalibration
from mimir.validate import validate_rig
from ringbuf.hashing import fnv1a_64

__all__ = [
    "WitnessSpec", "RingSpec", "CameraSpec", "CameraWorkerSpec", "AudioWorkerSpec", "SyncWorkerSpec", "WorkerSpec",
    "SourceSpec", "BudgetItem", "RigPlan", "plan_rig", "camera_worker_spec", "audio_worker_spec", "sync_worker_spec",
    "feature_worker_spec", "feature_source", "FeatureWorkerSpec", "FeatureCameraSpec", "FEATURES",
    "camera_specs", "source_hash", "witness_of", "ring_capacity", "headroom_items", "decode_worker_spec",
    "encode_worker_spec", "RING_HEADROOM_ITEMS", "RING_HEADROOM_S", "MAX_CAMERAS", "BOARD_WORKERS", "BOARD_SOURCES",
    "RESERVOIR", "OBSERVED", "FEATURE_RESERVOIR", "PLAN", "FITS", "CLOCK", "SPEC_ENV", "SUPERVISOR_PID_ENV",
]

SPEC_ENV = "MIMIR_WORKER_SPEC"
SUPERVISOR_PID_ENV = "MIMIR_SUPERVISOR_PID"  # the supervisor that started a worker: it dies with that process
RING_HEADROOM_S = 0.5        # beyond the window: a stalled indexer or a reader copying the oldest items is
RING_HEADROOM_ITEMS = 4      # never overtaken (at least this many items, whatever the rate)
MAX_CAMERAS = 16
BOARD_WORKERS = "sw"
BOARD_SOURCES = "ss"
RESERVOIR = "res"  # == mimir.reservoir.layout.DEFAULT_NAME
OBSERVED = "obs"   # remote receivers' claims: a reservoir of their own, never the rig's (mimir.net.claims)
FEATURE_RESERVOIR = "fx"  # camera features: a reservoir of their own, so a late record never evicts the rig's samples
PLAN = "plan"
CLOCK = "clk"
FITS = "fit"
FEATURES = "ft"    # the features producer's ring (camera motion features, indexed as CAMERA_FEATURE)
FEATURE_FORMATS = ("YUYV", "GREY", "GRBG")  # pixel formats with a luma plane (mimir.gpu.features)
AUDIO = "au"
AUDIO_METRICS = "aum"
SMALL_RING_BYTES = 64 * 1024  # budget allowance for a status or metrics ring


def source_hash(source: str) -> int:
    """The reservoir's sensor id of source ``source``: FNV-1a 64 of its name, 0 remapped to 1."""
    return fnv1a_64(source) or 1


class WitnessSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The active witness: what the audio worker plays and every receiver decodes."""

    codebook_id: str
    seed: int
    epoch_unix_s: float
    level_dbfs: float


class RingSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One ring: ``object_id`` names its shared-memory object, ``name`` is what people read."""

    object_id: str
    name: str
    capacity: int


class CameraSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One camera: its source name (also its source id), its ring, and which device or file it opens."""

    source: str
    ring: RingSpec
    device: str | None = None   # index, path or id; None: the camera's position among the devices found
    file: str | None = None     # the file family's video


class CameraWorkerSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="camera"):
    name: str
    rig: str
    family: str
    width: int
    height: int
    fps: float
    pixel_format: str
    cameras: tuple[CameraSpec, ...]


class AudioWorkerSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="audio"):
    name: str
    rig: str
    source: str
    backend: str
    host_api: str | None
    device: str | None
    rate_hz: int
    block_frames: int
    inputs: tuple[AudioInput, ...]  # ring channel k captures inputs[k] (mimir.interfaces.audio_inputs)
    output: str
    file: str | None
    signal: str              # synthetic backend: what the inputs hear
    loopback_input: int      # synthetic backend: the device input wired to the output (the others are in the room)
    ring: RingSpec
    metrics_ring: RingSpec
    witness: WitnessSpec

    @property
    def channels(self) -> int:
        """Channels per block in the audio ring."""
        return len(self.inputs)

    @property
    def declared_reference(self) -> int | None:
        """The ring channel declared the reference (role ``reference``), or None: it is found."""
        return next((k for k, i in enumerate(self.inputs) if i.role == "reference"), None)


class SyncWorkerSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="sync"):
    name: str
    rig: str
    audio_ring: RingSpec
    fits_ring: RingSpec
    witness: WitnessSpec
    band: BandLimits | None = None                       # where the witness can arrive (every channel)
    paths: dict[int, PathCalibration] = {}               # ring channel -> its known acoustic path


class FeatureCameraSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One camera the features worker reads: its source, ring and frame geometry."""

    source: str
    source_hash: int
    ring: RingSpec
    width: int
    height: int
    pixel_format: str


class FeatureWorkerSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="features"):
    """The features producer: reads camera rings, publishes one record per frame into ``ring``.

    The supervisor indexes ``ring`` as the ``features`` source: each record
    becomes a CAMERA_FEATURE sample of ``<camera>.motion`` on its frame's
    canonical time (the supervisor's, never the producer's).
    """

    name: str
    rig: str
    device: str                           # cpu | cuda | auto
    changed_threshold: int
    cameras: tuple[FeatureCameraSpec, ...]
    ring: RingSpec


WorkerSpec = CameraWorkerSpec | AudioWorkerSpec | SyncWorkerSpec | FeatureWorkerSpec


class SourceSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One indexed source: ``worker`` writes ``ring``; the reservoir indexes it under ``source_hash``."""

    name: str
    kind: int                # mimir.descriptors.SampleKind
    worker: str
    ring: RingSpec
    nominal_hz: float
    source_hash: int


class BudgetItem(msgspec.Struct, frozen=True):
    what: str
    bytes: int


class RigPlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rig: str
    window_ns: int
    reservoir_capacity: int
    witness: WitnessSpec
    workers: tuple[WorkerSpec, ...]
    sources: tuple[SourceSpec, ...]
    budget: tuple[BudgetItem, ...]
    remote_sources: tuple[str, ...] = ()  # network.sources' ids in config order: clock authority k is [k - 1]
    feature_capacity: int = 0             # samples of the features reservoir (FEATURE_RESERVOIR); 0: no features

    @property
    def budget_bytes(self) -> int:
        return sum(item.bytes for item in self.budget)

    def source(self, name: str) -> SourceSpec:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    def worker(self, name: str) -> WorkerSpec:
        for w in self.workers:
            if w.name == name:
                return w
        raise KeyError(name)

    def cameras(self) -> list[SourceSpec]:
        return [s for s in self.sources if s.kind == SampleKind.CAMERA_FRAME]


_SPEC_DECODER = msgspec.json.Decoder(WorkerSpec)


def encode_worker_spec(spec: WorkerSpec) -> str:
    return msgspec.json.encode(spec).decode()


def decode_worker_spec(text: str) -> WorkerSpec:
    return _SPEC_DECODER.decode(text)


# ---- derivation ------------------------------------------------------------------------------------------------
def headroom_items(rate_hz: float) -> int:
    """Items a ring holds beyond the window: :data:`RING_HEADROOM_S` of them, at least :data:`RING_HEADROOM_ITEMS`."""
    return max(RING_HEADROOM_ITEMS, math.ceil(RING_HEADROOM_S * rate_hz))


def ring_capacity(window_s: float, rate_hz: float, override: int | None, what: str) -> int:
    """Items a ring of ``rate_hz`` must hold for the window; an override below that is refused."""
    needed = math.ceil(window_s * rate_hz) + headroom_items(rate_hz) if window_s > 0 else 1
    if override is None:
        return needed
    if override < needed:
        raise ConfigError(
            f"{what}: ring capacity {override} holds {override / rate_hz:.2f} s but the reservoir window is "
            f"{window_s:g} s ({needed} items needed at {rate_hz:g}/s); remove the override or raise it to {needed}, "
            "or shorten reservoir.window_s"
        )
    return override


def camera_specs(family: str, count: int, capacity: int, *, devices: tuple[str, ...] = (),
                 files: tuple[str, ...] = (), first_index: int = 0) -> tuple[CameraSpec, ...]:
    """The cameras of one family: source ``cam.<family>.<i>``, ring object ``c<first_index + i>``.

    The one place camera and ring names are made (the supervisor's plan and a
    worker started by hand both come here).
    """
    out = []
    for i in range(count):
        source = f"cam.{family}.{i}"
        out.append(CameraSpec(source=source, ring=RingSpec(object_id=f"c{first_index + i}", name=source, capacity=capacity),
                              device=devices[i] if devices else None, file=files[i] if files else None))
    return tuple(out)


def camera_worker_spec(rig: str, cam: CameraFamilyConfig, *, first_index: int, window_s: float) -> CameraWorkerSpec:
    """The spec of the worker of one camera family; its cameras get object ids ``c<first_index>``..."""
    count = cam.count if cam.count is not None else max(len(cam.devices), len(cam.files), 1)
    where = f"cameras[{cam.family}]"
    if cam.devices and len(cam.devices) != count:
        raise ConfigError(f"{where}: count = {count} but {len(cam.devices)} devices are listed; list one per camera")
    if cam.family == "file":
        if len(cam.files) != count:
            raise ConfigError(f"{where}: the file family needs one file per camera (count = {count}, "
                              f"{len(cam.files)} files)")
    elif cam.files:
        raise ConfigError(f"{where}: `files` applies to the file family only")
    capacity = ring_capacity(window_s, cam.fps, cam.ring_capacity, where)
    cameras = camera_specs(cam.family, count, capacity, devices=tuple(cam.devices), files=tuple(cam.files),
                           first_index=first_index)
    return CameraWorkerSpec(name=f"camera.{cam.family}", rig=rig, family=cam.family, width=cam.width,
                            height=cam.height, fps=cam.fps, pixel_format=cam.format, cameras=cameras)


def witness_of(config: RigConfig) -> WitnessSpec:
    s = config.sync
    return WitnessSpec(codebook_id=s.codebook_id, seed=s.seed, epoch_unix_s=s.epoch_unix_s, level_dbfs=s.level_dbfs)


def audio_worker_spec(rig: str, audio: AudioConfig, witness: WitnessSpec, *, window_s: float) -> AudioWorkerSpec:
    blocks_hz = audio.rate_hz / audio.block_frames
    seconds = max(window_s, audio.ring_seconds) if audio.ring_seconds is not None else window_s
    if audio.ring_seconds is not None and audio.ring_seconds < window_s:
        raise ConfigError(
            f"audio.ring_seconds = {audio.ring_seconds:g} is shorter than the reservoir window ({window_s:g} s): "
            "blocks in the window would point at overwritten audio; remove it or raise it"
        )
    capacity = math.ceil(seconds * blocks_hz) + headroom_items(blocks_hz)
    metrics = RingSpec(object_id=AUDIO_METRICS, name="audio.metrics", capacity=max(64, math.ceil(10 * blocks_hz)))
    return AudioWorkerSpec(
        name="audio", rig=rig, source="audio", backend=audio.backend, host_api=audio.host_api, device=audio.device,
        rate_hz=audio.rate_hz, block_frames=audio.block_frames, inputs=audio_inputs(audio), output=audio.output,
        file=audio.file, signal=audio.synthetic_signal if audio.backend == "synthetic" else "ramp",
        loopback_input=audio.synthetic_loopback_input,
        ring=RingSpec(object_id=AUDIO, name="audio", capacity=capacity), metrics_ring=metrics, witness=witness,
    )


def sync_worker_spec(rig: str, audio: AudioWorkerSpec, band: BandLimits | None = None) -> SyncWorkerSpec:
    return SyncWorkerSpec(name="sync", rig=rig, audio_ring=audio.ring,
                          fits_ring=RingSpec(object_id=FITS, name="sync.fits", capacity=4), witness=audio.witness,
                          band=band, paths={k: i.path for k, i in enumerate(audio.inputs) if i.path is not None})


def _camera_frame_bytes(cam: CameraFamilyConfig) -> int:
    bytes_per_pixel = {"YUYV": 2, "BGR3": 3, "GREY": 1, "GRBG": 1}[cam.format]
    return cam.width * cam.height * bytes_per_pixel


def plan_rig(config: RigConfig) -> RigPlan:
    """The rig contract of ``config`` (see module docstring); :class:`ConfigError` for what cannot run."""
    validate_rig(config)  # cross-field and file checks, before anything is derived (mimir.validate)
    rig = config.rig
    window_s = config.reservoir.window_s
    families = [c.family for c in config.cameras]
    dupes = sorted({f for f in families if families.count(f) > 1})
    if dupes:
        raise ConfigError(f"cameras: family {dupes[0]!r} is listed twice; one [[cameras]] entry per family "
                          "(one worker process each), with `count` cameras")
    workers: list[WorkerSpec] = []
    sources: list[SourceSpec] = []
    budget: list[BudgetItem] = []
    first = 0
    for cam in config.cameras:
        cam_spec = camera_worker_spec(rig, cam, first_index=first, window_s=window_s)
        first += len(cam_spec.cameras)
        if first > MAX_CAMERAS:
            raise ConfigError(f"cameras: {first} cameras configured; a rig holds at most {MAX_CAMERAS}")
        workers.append(cam_spec)
        for c in cam_spec.cameras:
            sources.append(SourceSpec(name=c.source, kind=int(SampleKind.CAMERA_FRAME), worker=cam_spec.name,
                                      ring=c.ring, nominal_hz=cam.fps, source_hash=source_hash(c.source)))
            budget.append(BudgetItem(f"camera ring {c.source} ({c.ring.capacity} frames of "
                                     f"{cam.width}x{cam.height} {cam.format})",
                                     c.ring.capacity * _align(_camera_frame_bytes(cam), 64) + 64 * c.ring.capacity))
    witness = witness_of(config)
    rates: dict[int, float] = {SampleKind.CAMERA_FRAME: sum(s.nominal_hz for s in sources)}
    if config.audio is not None:
        a = config.audio
        audio_spec = audio_worker_spec(rig, a, witness, window_s=window_s)
        workers.append(audio_spec)
        blocks_hz = a.rate_hz / a.block_frames
        sources.append(SourceSpec(name=audio_spec.source, kind=int(SampleKind.AUDIO_BLOCK), worker=audio_spec.name,
                                  ring=audio_spec.ring, nominal_hz=blocks_hz,
                                  source_hash=source_hash(audio_spec.source)))
        rates[SampleKind.AUDIO_BLOCK] = blocks_hz
        block_bytes = _align(a.block_frames * audio_spec.channels * 4, 64) + 128
        budget.append(BudgetItem(f"audio ring ({audio_spec.ring.capacity} blocks of "
                                 f"{a.block_frames}x{audio_spec.channels} float32)",
                                 audio_spec.ring.capacity * block_bytes))
        budget.append(BudgetItem("audio callback metrics ring", audio_spec.metrics_ring.capacity * 64))
        workers.append(sync_worker_spec(rig, audio_spec, a.band))
        budget.append(BudgetItem("sync fits ring", SMALL_RING_BYTES))
    if config.features.enabled:
        feature_spec = feature_worker_spec(config, workers, window_s=window_s)
        workers.append(feature_spec)
        feature_hz = sum(next(s for s in sources if s.name == c.source).nominal_hz for c in feature_spec.cameras)
        sources.append(SourceSpec(name="features", kind=int(SampleKind.CAMERA_FEATURE), worker=feature_spec.name,
                                  ring=feature_spec.ring, nominal_hz=feature_hz, source_hash=source_hash("features")))
        budget.append(BudgetItem(f"features ring ({feature_spec.ring.capacity} records)",
                                 feature_spec.ring.capacity * 64))
    from mimir.reservoir.capacity import capacity_for, segment_bytes

    window_ns = int(window_s * 1e9)
    capacity = capacity_for(rates, window_ns=window_ns, margin=config.reservoir.capacity_margin)
    budget.append(BudgetItem(f"reservoir ({capacity:,} samples)", segment_bytes(capacity)))
    feature_capacity = 0
    if config.features.enabled:
        feature_hz = next(s.nominal_hz for s in sources if s.kind == SampleKind.CAMERA_FEATURE)
        feature_rates = {int(SampleKind.CAMERA_FEATURE): feature_hz}
        feature_capacity = capacity_for(feature_rates, window_ns=window_ns, margin=config.reservoir.capacity_margin)
        budget.append(BudgetItem(f"features reservoir ({feature_capacity:,} samples)", segment_bytes(feature_capacity)))
    if config.network.listen:
        from mimir.net.claims import ClaimLimits, ClaimStore

        n = len(config.network.sources)
        limits = ClaimLimits(per_second=config.network.max_claims_per_s)
        budget.append(BudgetItem(f"observed claims of {n} remote sources",
                                 ClaimStore.bytes_for(n, limits, window_ns)))
    budget.append(BudgetItem("status board, clock and plan", 4 * SMALL_RING_BYTES))
    return RigPlan(rig=rig, window_ns=window_ns, reservoir_capacity=capacity, witness=witness, workers=tuple(workers),
                   sources=tuple(sources), budget=tuple(budget),
                   remote_sources=tuple(s.source_id for s in config.network.sources),
                   feature_capacity=feature_capacity)


def feature_worker_spec(config: RigConfig, workers: list[WorkerSpec], *, window_s: float) -> FeatureWorkerSpec:
    """The features worker over the configured cameras (all when none is named)."""
    f = config.features
    cameras = [(w, c) for w in workers if isinstance(w, CameraWorkerSpec) for c in w.cameras]
    if not cameras:
        raise ConfigError("features.enabled needs at least one [[cameras]] entry: features are computed on frames")
    known = {c.source for _, c in cameras}
    unknown = [name for name in f.cameras if name not in known]
    if unknown:
        raise ConfigError(f"features.cameras: {unknown[0]!r} is not a camera of this rig; cameras: "
                          f"{', '.join(sorted(known))}")
    chosen = [(w, c) for w, c in cameras if not f.cameras or c.source in f.cameras]
    specs = []
    for w, c in chosen:
        if w.pixel_format not in FEATURE_FORMATS:
            raise ConfigError(f"features: camera {c.source} delivers {w.pixel_format}; motion features need a luma "
                              f"plane ({', '.join(FEATURE_FORMATS)}); leave it out with features.cameras")
        specs.append(FeatureCameraSpec(source=c.source, source_hash=source_hash(c.source), ring=c.ring,
                                       width=w.width, height=w.height, pixel_format=w.pixel_format))
    rate_hz = sum(w.fps for w, _ in chosen)
    capacity = math.ceil(window_s * rate_hz) + headroom_items(rate_hz)
    return FeatureWorkerSpec(name="features", rig=config.rig, device=f.device, changed_threshold=f.changed_threshold,
                             cameras=tuple(specs), ring=RingSpec(object_id=FEATURES, name="features", capacity=capacity))


def feature_source(camera: str) -> str:
    """The reservoir source of one camera's motion features: ``<camera>.motion``."""
    return f"{camera}.motion"


def _align(n: int, to: int) -> int:
    return -(-n // to) * to
