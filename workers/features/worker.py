"""The features producer: camera rings in, one motion-feature record per frame out, through its own ring.

Ownership: this worker creates the ``ft`` ring (:data:`mimir.topology.FEATURES`)
and is its only writer; it reads the camera rings as a registered reader
(its cursor is visible to ``mimir rings``); the supervisor reads ``ft`` and
is the only writer of the reservoir. A record is a
:class:`mimir.gpu.features.CameraFeature` with ``canonical_ns = 0``: the
supervisor places it on the canonical time *it* gave the frame, so a producer
can never move time (see :mod:`mimir.supervisor.features`).

Per frame: the CPU extractor reads the slot in place, then the slot's
seqlock is checked again; the CUDA extractor copies the slot to the device
through :class:`mimir.gpu.GpuFrameCopier` (which drops frames overwritten
during the DMA). A frame overwritten while it was read yields no record and
re-primes the camera's extractor: a feature never mixes two frames it did not
see whole. Counted in the ring's status: frames read, torn, records written.

Exit codes: 0 stopped, 2 bad input (``device = "cuda"`` without a usable
CUDA device), with one line on stderr.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from mimir.descriptors import CameraFeature, PixelFormat
from mimir.gpu.features import MotionFeatures
from mimir.process_control import lower_priority
from mimir.signals import stop_on_signals
from mimir.topology import FeatureCameraSpec, FeatureWorkerSpec
from ringbuf import U64, Ring, RingReader, SegmentMissing
from ringbuf.platform import PLATFORM
from ringbuf.ring import wait_any

__all__ = ["run_features_spec", "FeaturesStatus", "resolve_device"]

_astuple = msgspec.structs.astuple


class FeaturesStatus(msgspec.Struct):
    """Kept current in the ``ft`` ring's header (``mimir rings``, the supervisor)."""

    frames_read: U64       # frames taken from the camera rings
    frames_torn: U64       # overwritten while being read: no record
    frames_lost: U64       # overwritten before this worker reached them (the camera readers' lost counts)
    records: U64           # records published (a camera's first frame only primes its extractor)
    device_cuda: U64       # 1 when the CUDA extractor runs


def resolve_device(asked: str) -> str:
    """``cpu`` or ``cuda`` for ``asked`` (cpu | cuda | auto); ValueError with one line when cuda cannot run."""
    if asked == "cpu":
        return "cpu"
    from mimir.gpu.device import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is None:
        return "cuda"
    if asked == "auto":
        return "cpu"
    raise ValueError(f"features.device = \"cuda\" but {reason}; use device = \"cpu\" or \"auto\"")


@dataclass
class _Camera:
    """One camera's reader and extractor; ``reader`` is None while its ring is missing (worker restarting)."""

    spec: FeatureCameraSpec
    extractor: Any
    reader: RingReader | None = None
    copier: Any = None   # GpuFrameCopier on CUDA
    lost_before: int = 0


def _extractor(spec: FeatureCameraSpec, device: str, threshold: int) -> tuple[Any, Any]:
    fmt = PixelFormat[spec.pixel_format]
    if device == "cpu":
        return MotionFeatures(fmt, spec.height, spec.width, changed_threshold=threshold), None
    from mimir.gpu.copy import GpuFrameCopier
    from mimir.gpu.features import GpuMotionFeatures

    extractor = GpuMotionFeatures(fmt, spec.height, spec.width, changed_threshold=threshold)
    return extractor, GpuFrameCopier(extractor.shape, np.uint8, pool_size=2)


def run_features_spec(spec: FeatureWorkerSpec, *, stop: threading.Event | None = None,
                      duration_s: float | None = None) -> int:
    """Process entry of the rig's features worker; returns the exit code."""
    try:
        device = resolve_device(spec.device)
    except ValueError as exc:
        print(f"mimir-worker features: {exc}", file=sys.stderr, flush=True)
        return 2
    stop = stop or threading.Event()
    with stop_on_signals(stop):
        if threading.current_thread() is threading.main_thread():
            lower_priority()  # analysis work: capture and indexing come first on a busy machine
        return _run(spec, device, stop, duration_s)


def _attach(camera: _Camera, rig: str, bell) -> None:
    try:
        camera.reader = RingReader.attach(camera.spec.ring.object_id, rig=rig, start="latest", doorbell=bell)
    except SegmentMissing:
        camera.reader = None
        return
    camera.extractor.reset()  # a new incarnation of the camera: its first frame primes again


def _run(spec: FeatureWorkerSpec, device: str, stop: threading.Event, duration_s: float | None) -> int:
    ring = Ring.create(spec.ring.object_id, rig=spec.rig, descriptor=CameraFeature, capacity=spec.ring.capacity,
                       status=FeaturesStatus, label=f"{spec.rig}/{spec.ring.name}")
    bell = PLATFORM.doorbell_listener(spec.rig)
    cameras = []
    for c in spec.cameras:
        extractor, copier = _extractor(c, device, spec.changed_threshold)
        cameras.append(_Camera(c, extractor, copier=copier))
    status = ring.status
    status["device_cuda"] = int(device == "cuda")
    deadline = None if duration_s is None else time.monotonic() + duration_s
    next_check = 0.0
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            now = time.monotonic()
            if now >= next_check:  # (re)attach camera rings: at start, and after a camera worker restarted
                next_check = now + 0.25
                ring.heartbeat()
                for camera in cameras:
                    r = camera.reader
                    if r is not None and (r.writer_closed or not r.writer_alive()):
                        camera.lost_before += r.lost
                        r.close()
                        camera.reader = None
                    if camera.reader is None:
                        _attach(camera, spec.rig, bell)
                status["frames_lost"] = sum(c.lost_before + (c.reader.lost if c.reader else 0) for c in cameras)
            readers = [c.reader for c in cameras if c.reader is not None]
            if not readers:
                stop.wait(0.05)
                continue
            if not wait_any(readers, bell, 0.1):
                continue
            for camera in cameras:
                if camera.reader is not None:
                    _drain(camera, ring, status)
    finally:
        for camera in cameras:
            if camera.reader is not None:
                camera.reader.close()
        bell.close()
        ring.close()
    return 0


def _drain(camera: _Camera, ring: Ring, status: np.ndarray) -> None:
    """Every new frame of one camera: a feature record each (the first after a gap or tear only primes)."""
    reader = camera.reader
    assert reader is not None, "only an attached camera is drained"
    spec = camera.spec
    while True:
        item = reader.view_next()
        if item is None:
            return
        n, descriptor, view = item
        status["frames_read"] += 1
        sequence = int(descriptor[1])  # CameraFrameDescriptor.sequence: the camera's frame counter
        if camera.copier is None:
            feature = camera.extractor.update(view, source_id_hash=spec.source_hash, sequence=sequence,
                                              canonical_ns=0)
            whole = reader.valid(n)
        else:
            frame = camera.copier.copy(view, lambda: reader.valid(n))
            whole = frame is not None
            feature = None
            if whole:
                try:
                    feature = camera.extractor.update(frame.array, source_id_hash=spec.source_hash,
                                                      sequence=sequence, canonical_ns=0)
                finally:
                    frame.release()
        if not whole:
            status["frames_torn"] += 1
            camera.extractor.reset()  # what it kept as "previous" may be torn
            continue
        if feature is not None:
            ring.publish(*_astuple(feature))
            status["records"] += 1
