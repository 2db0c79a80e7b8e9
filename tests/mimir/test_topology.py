"""The rig contract: one plan derives every name and option both sides use, so they cannot disagree."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mimir.topology as topology
from mimir.config import AudioConfig, CameraFamilyConfig, ConfigError, RigConfig, SyncConfig, default_rig
from mimir.descriptors import SampleKind
from mimir.topology import (
    AudioWorkerSpec, CameraWorkerSpec, SyncWorkerSpec, decode_worker_spec, encode_worker_spec, plan_rig, source_hash,
)
from ringbuf.hashing import FNV_OFFSET_BASIS, FNV_PRIME
from ringbuf.segment import MAX_RIG_CHARS, segment_name

FAMILIES = ("synthetic", "file", "ks", "ps3eye")


def _rings_created_by_workers(plan) -> dict[str, str]:
    """object id -> the worker whose spec creates it."""
    out = {}
    for w in plan.workers:
        if isinstance(w, CameraWorkerSpec):
            out.update({c.ring.object_id: w.name for c in w.cameras})
        elif isinstance(w, AudioWorkerSpec):
            out[w.ring.object_id] = w.name
            out[w.metrics_ring.object_id] = w.name
        elif isinstance(w, SyncWorkerSpec):
            out[w.fits_ring.object_id] = w.name
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """A real 64x48 video at 30 fps: plan_rig validates the file family's files (mimir.validate)."""
    import av
    import numpy as np

    path = tmp_path_factory.mktemp("clips") / "clip.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i, np.uint8), format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


@st.composite
def rigs(draw, clip: str) -> RigConfig:
    """Configs that can run (the validator refuses the others before a plan exists)."""
    families = draw(st.lists(st.sampled_from(FAMILIES), unique=True, max_size=3))
    cameras = []
    for family in families:
        count = draw(st.integers(1, 5))
        devices = [str(i) for i in range(count)] if family in ("ks", "ps3eye") and draw(st.booleans()) else []
        if family == "file":  # a file is replayed in its own mode
            cameras.append(CameraFamilyConfig(family=family, count=count, width=64, height=48, fps=30.0,
                                              format="BGR3", files=[clip] * count))
        elif family == "ps3eye":  # GRBG in one of its modes
            cameras.append(CameraFamilyConfig(family=family, count=count, fps=draw(st.sampled_from([30.0, 60.0, 75.0])),
                                              format="GRBG", devices=devices))
        else:
            cameras.append(CameraFamilyConfig(family=family, count=count, devices=devices,
                                              fps=draw(st.sampled_from([30.0, 60.0, 187.0]))))
    audio = draw(st.one_of(st.none(), st.builds(
        AudioConfig, rate_hz=st.sampled_from([44_100, 48_000, 192_000]), block_frames=st.sampled_from([64, 256]),
        channels=st.integers(1, 8))))
    sync = SyncConfig(codebook_id=draw(st.text("abcdef-", min_size=1, max_size=12)), seed=draw(st.integers(0, 99)))
    rig = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789_.", min_size=1, max_size=MAX_RIG_CHARS))
    return RigConfig(rig=rig, cameras=cameras, audio=audio, sync=sync)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_ring_the_supervisor_indexes_is_one_a_worker_creates_and_every_name_fits_macos(clip, data):
    config = data.draw(rigs(clip))
    plan = plan_rig(config)
    created = _rings_created_by_workers(plan)
    for source in plan.sources:
        # The supervisor attaches the ring by the same object id the worker's spec creates, and the worker
        # the supervisor holds responsible is the one whose spec creates it.
        assert created[source.ring.object_id] == source.worker
        assert source.source_hash == source_hash(source.name)
    assert len(created) == len(set(created))
    syncs = [w for w in plan.workers if isinstance(w, SyncWorkerSpec)]
    audios = [w for w in plan.workers if isinstance(w, AudioWorkerSpec)]
    for sync, audio in zip(syncs, audios):
        # The witness played and the witness decoded are one value: the plan's.
        assert sync.witness == audio.witness == plan.witness
        assert sync.audio_ring == audio.ring
    assert plan.witness.codebook_id == config.sync.codebook_id and plan.witness.seed == config.sync.seed
    for object_id in [*created, topology.RESERVOIR, topology.PLAN, topology.BOARD_WORKERS, topology.BOARD_SOURCES]:
        name = segment_name(config.rig, object_id)
        assert len(name) + 1 <= 31, name  # macOS: PSHMNAMLEN with the leading slash
    for spec in plan.workers:  # what travels to each worker comes back identical
        assert decode_worker_spec(encode_worker_spec(spec)) == spec


def test_ring_capacities_hold_the_window_and_an_override_below_it_is_refused():
    plan = plan_rig(default_rig())
    cams = [s for s in plan.sources if s.kind == SampleKind.CAMERA_FRAME]
    assert len(cams) == 6 and all(s.ring.capacity == 5 * 60 + 30 for s in cams)  # + 0.5 s of headroom
    audio = plan.source("audio")
    assert audio.ring.capacity == 5 * 48_000 // 64 + 375
    short = msgspec.structs.replace(default_rig(), cameras=[CameraFamilyConfig(family="synthetic", ring_capacity=32)])
    with pytest.raises(ConfigError, match=r"holds 0.53 s but the reservoir window is 5 s \(330 items needed"):
        plan_rig(short)


def test_explicit_devices_open_in_the_order_given_under_the_contract_names(rig):
    """cam.synthetic.0 opens device 3 and cam.synthetic.1 device 1; their rings are c0 and c1 of the rig."""
    from workers.camera.worker import Worker, WorkerConfig
    from workers.camera.family import resolve_family

    config = RigConfig(rig=rig, cameras=[CameraFamilyConfig(family="synthetic", devices=["3", "1"], width=64,
                                                            height=48, fps=30.0)])
    plan = plan_rig(config)
    assert [(s.name, s.ring.object_id) for s in plan.sources] == [("cam.synthetic.0", "c0"), ("cam.synthetic.1", "c1")]
    worker = Worker(resolve_family("synthetic"), WorkerConfig.from_spec(plan.workers[0]), log=None)
    worker.open()
    try:
        opened = [(r.source, r.device.index, r.ring.name, r.ring.label) for r in worker.runners]
        assert opened == [("cam.synthetic.0", 3, "c0", f"{rig}/cam.synthetic.0"),
                          ("cam.synthetic.1", 1, "c1", f"{rig}/cam.synthetic.1")]
    finally:
        worker.close()


def test_the_contract_refuses_what_a_worker_would_refuse_later():
    for cameras, match in (
        ([CameraFamilyConfig(family="synthetic"), CameraFamilyConfig(family="synthetic")], "listed twice"),
        ([CameraFamilyConfig(family="synthetic", count=2, devices=["0"])], "list one per camera"),
        ([CameraFamilyConfig(family="file", count=2, files=["a.mp4"])], "one file per camera"),
        ([CameraFamilyConfig(family="synthetic", files=["a.mp4"])], "file family only"),
        ([CameraFamilyConfig(family="ks", count=6), CameraFamilyConfig(family="ps3eye", count=6, format="GRBG"),
          CameraFamilyConfig(family="synthetic", count=5)], "at most 16"),
    ):
        with pytest.raises(ConfigError, match=match):
            plan_rig(RigConfig(cameras=cameras))


def test_source_hash_is_fnv1a_of_the_source_name_and_never_zero(monkeypatch):
    expected = FNV_OFFSET_BASIS  # FNV-1a 64 of "a", computed here from the published constants
    expected = ((expected ^ ord("a")) * FNV_PRIME) % 2**64
    assert source_hash("a") == expected == 0xAF63DC4C8601EC8C  # the published test vector for "a"
    monkeypatch.setattr(topology, "fnv1a_64", lambda data: 0)
    assert topology.source_hash("anything") == 1  # 0 means "no source" to the reservoir: remapped
