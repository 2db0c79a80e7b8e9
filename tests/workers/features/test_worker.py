"""The features worker on real rings: every frame a camera publishes gets exactly the record the extractor's
definition gives (recomputed here on the same frames), a camera's first frame only primes, records carry no time
of their own (canonical_ns 0: the supervisor places them), and a camera that restarts primes again."""
import threading
import time

import msgspec
import numpy as np
import pytest

from mimir.descriptors import CameraFeature, CameraFrameDescriptor, PixelFormat
from mimir.gpu.features import MotionFeatures
from mimir.gpu.convert import frame_shape
from mimir.topology import FEATURES, FeatureCameraSpec, FeatureWorkerSpec, RingSpec, source_hash
from ringbuf import Ring, RingReader
from workers.features.worker import resolve_device, run_features_spec

H, W = 48, 64


def _spec(rig: str, *formats: str) -> FeatureWorkerSpec:
    cams = tuple(FeatureCameraSpec(source=f"cam.test.{i}", source_hash=source_hash(f"cam.test.{i}"),
                                   ring=RingSpec(object_id=f"c{i}", name=f"cam.test.{i}", capacity=16),
                                   width=W, height=H, pixel_format=fmt) for i, fmt in enumerate(formats))
    return FeatureWorkerSpec(name="features", rig=rig, device="cpu", changed_threshold=16, cameras=cams,
                             ring=RingSpec(object_id=FEATURES, name="features", capacity=256))


def _camera_ring(rig: str, index: int, fmt: str) -> Ring:
    return Ring.create(f"c{index}", rig=rig, descriptor=CameraFrameDescriptor, capacity=16,
                       payload_shape=frame_shape(PixelFormat[fmt], H, W))


def _publish(ring: Ring, frame: np.ndarray, sequence: int, hash_: int, fmt: str) -> None:
    ring.claim()[...] = frame
    ring.publish(hash_, sequence, 0, time.monotonic_ns(), W, H, int(PixelFormat[fmt]), W, frame.nbytes, 0)


def _as_published(f: CameraFeature) -> tuple:
    """The record as the ring stores it (float32 fields): what the worker published, compared exactly."""
    return tuple(np.float32(v) if isinstance(v, float) else v for v in msgspec.structs.astuple(f))


def _records(reader: RingReader, want: int, timeout_s: float = 20.0) -> list[CameraFeature]:
    out: list[CameraFeature] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        item = reader.read()
        if item is None:
            time.sleep(0.005)
            continue
        out.append(CameraFeature(*item.descriptor))
    return out


def test_every_frame_of_every_camera_gets_the_defined_features_and_no_time_of_its_own(rig):
    spec = _spec(rig, "YUYV", "GRBG")
    rng = np.random.default_rng(7)
    cams = [_camera_ring(rig, i, c.pixel_format) for i, c in enumerate(spec.cameras)]
    stop = threading.Event()
    worker = threading.Thread(target=run_features_spec, args=(spec,), kwargs={"stop": stop})
    worker.start()
    try:
        deadline = time.monotonic() + 20
        reader = None
        while reader is None and time.monotonic() < deadline:
            try:
                reader = RingReader.attach(FEATURES, rig=rig, descriptor=CameraFeature)
            except FileNotFoundError:
                time.sleep(0.02)
        assert reader is not None
        time.sleep(0.5)  # the worker attaches the camera rings at "latest": publish after it has
        expected = []
        for i, (cam, c) in enumerate(zip(cams, spec.cameras)):
            reference = MotionFeatures(PixelFormat[c.pixel_format], H, W, changed_threshold=16)
            for seq in range(10):
                frame = rng.integers(0, 256, size=cam.layout.payload_shape, dtype=np.uint8)
                _publish(cam, frame, seq, c.source_hash, c.pixel_format)
                f = reference.update(frame, source_id_hash=c.source_hash, sequence=seq, canonical_ns=0)
                if f is not None:
                    expected.append(f)
                time.sleep(0.01)  # a live camera's pace: the worker keeps up, nothing is overwritten
        got = _records(reader, len(expected))
        reader.close()
        assert sorted(map(_as_published, got)) == sorted(map(_as_published, expected))
        assert len(got) == 2 * 9 and all(f.canonical_ns == 0 for f in got)
    finally:
        stop.set()
        worker.join(20)
        for cam in cams:
            cam.close()
    assert not worker.is_alive()


def test_a_restarted_camera_primes_again(rig):
    spec = _spec(rig, "GREY")
    c = spec.cameras[0]
    stop = threading.Event()
    worker = threading.Thread(target=run_features_spec, args=(spec,), kwargs={"stop": stop})
    worker.start()
    try:
        frame = np.zeros((H, W), np.uint8)
        cam = _camera_ring(rig, 0, "GREY")
        time.sleep(0.6)
        for seq in range(3):
            _publish(cam, frame + seq, seq, c.source_hash, "GREY")
            time.sleep(0.01)
        cam.close()  # the camera worker exits; a new incarnation starts its counter again
        time.sleep(0.6)
        cam = _camera_ring(rig, 0, "GREY")
        time.sleep(0.6)
        for seq in range(3):
            _publish(cam, frame + 100, seq, c.source_hash, "GREY")
            time.sleep(0.01)
        reader = RingReader.attach(FEATURES, rig=rig, descriptor=CameraFeature)
        got = _records(reader, 4)
        reader.close()
        cam.close()
        # 2 records per incarnation (its first frame primes); none compares frames across the restart
        assert [(f.previous_sequence, f.sequence) for f in got] == [(0, 1), (1, 2), (0, 1), (1, 2)]
        assert [round(f.motion_energy) for f in got] == [1, 1, 0, 0]
    finally:
        stop.set()
        worker.join(20)


def test_cuda_asked_without_a_device_is_refused_in_one_line_and_auto_falls_back_to_the_cpu():
    from mimir.gpu.device import cuda_unavailable_reason

    if cuda_unavailable_reason() is None:
        pytest.skip("a CUDA device is present: the refusal path needs a machine without one")
    with pytest.raises(ValueError, match='features.device = "cuda" but'):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
