"""Payload and descriptor handles against real rings: zero-copy views, stale handles, other processes."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import numpy as np
import pytest

from mimir.descriptors import (
    AudioBlockDescriptor, AudioBlockRecord, CameraFrameDescriptor, PixelFormat, SampleKind, make_handle,
)
from mimir.reservoir import HandleResolver, Reservoir, ReservoirView, StaleHandle, UnknownHandle
from ringbuf import Ring, StaleItem
from ringbuf.layout import dtype_of

SHAPE = (4, 8)


def frame_descriptor(ring: Ring, seq: int, source: int) -> CameraFrameDescriptor:
    return CameraFrameDescriptor(source, seq, 0, 1_000 + seq, SHAPE[1], SHAPE[0], PixelFormat.GREY, SHAPE[1],
                                 SHAPE[0] * SHAPE[1], ring.handle(seq))


@pytest.fixture
def camera_ring(rig):
    ring = Ring.create("cam0", descriptor=CameraFrameDescriptor, capacity=4, payload_shape=SHAPE, rig=rig)
    yield ring
    ring.close()


def write_frame(ring: Ring, value: int) -> int:
    """Write one frame of ``value`` pixels with its descriptor; return its ring sequence."""
    seq = ring.published
    return ring.write(np.full(SHAPE, value, dtype=np.uint8), *msgspec.structs.astuple(frame_descriptor(ring, seq, 9)))


def test_payload_handle_resolves_to_a_zero_copy_view_and_goes_stale(rig, camera_ring):
    seq = write_frame(camera_ring, 7)
    handle = camera_ring.handle(seq)
    with HandleResolver(rig) as resolver:
        view = resolver.payload(handle)
        assert view.shape == SHAPE and (view == 7).all()
        assert not view.flags.owndata  # a window onto the ring slot, not a copy
        assert resolver.valid(handle)
        for value in range(8, 12):  # one full lap of the 4-slot ring
            write_frame(camera_ring, value)
        assert not resolver.valid(handle)
        assert (view == 11).all()  # the old view aliases the slot the writer reused
        with pytest.raises(StaleHandle, match="overwritten") as info:
            resolver.payload(handle)
        assert isinstance(info.value, StaleItem)
        with pytest.raises(StaleHandle):
            resolver.descriptor(handle)


def test_typed_camera_sample_resolves_through_its_descriptor_to_the_ring(rig, camera_ring):
    with Reservoir.create(rig, capacity=16) as res, HandleResolver(rig, reservoir=res) as resolver:
        producer = res.producer(SampleKind.CAMERA_FRAME, "cam0")
        seq = write_frame(camera_ring, 42)
        descriptor = frame_descriptor(camera_ring, seq, producer.sensor_id_hash)
        producer.push_camera_frame(1_000, 1_001, descriptor)
        sample = res.latest_for_sensor(SampleKind.CAMERA_FRAME, producer.sensor_id_hash)
        assert resolver.descriptor(sample.payload_handle) == descriptor
        pixels = resolver.payload_of(sample)
        assert (pixels == 42).all()
        assert resolver.descriptor(camera_ring.handle(seq))[-1] == camera_ring.handle(seq)  # the ring's own tuple
        assert resolver.rings() == {camera_ring.ring_id: "cam0"}


def test_another_process_resolves_the_same_handles(rig, camera_ring):
    with Reservoir.create(rig, capacity=16) as res:
        producer = res.producer(SampleKind.CAMERA_FRAME, "cam0")
        seq = write_frame(camera_ring, 99)
        producer.push_camera_frame(5_000, 5_001, frame_descriptor(camera_ring, seq, producer.sensor_id_hash))
        code = (
            "import sys\n"
            "from mimir.reservoir import HandleResolver, ReservoirView, SampleKind, source_id_hash\n"
            "view = ReservoirView.attach(sys.argv[1])\n"
            "with HandleResolver(sys.argv[1], reservoir=view) as r:\n"
            "    s = view.latest_for_sensor(SampleKind.CAMERA_FRAME, source_id_hash('cam0'))\n"
            "    p = r.payload_of(s)\n"
            "    print(s.timestamp_ns, int(p.sum()), p.shape)\n"
            "    del p\n"
            "view.close()\n"
        )
        out = subprocess.run([sys.executable, "-c", code, rig], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["5000", str(99 * SHAPE[0] * SHAPE[1]), "(4,", "8)"]


def test_unknown_handles_are_named_and_new_rings_are_found(rig, camera_ring):
    with HandleResolver(rig) as resolver:
        with pytest.raises(UnknownHandle, match="no ring"):
            resolver.payload(make_handle(camera_ring.ring_id ^ 1, 0))
        later = Ring.create("cam1", descriptor=CameraFrameDescriptor, capacity=2, payload_shape=SHAPE, rig=rig)
        try:
            seq = write_frame(later, 5)
            assert (resolver.payload(later.handle(seq)) == 5).all()  # found by a rescan
        finally:
            later.close()


def test_reservoir_descriptor_handles_go_stale_and_name_the_reservoir(rig):
    with Reservoir.create(rig, capacity=2, duration_ns=1_000) as res, \
            HandleResolver(rig, reservoir=res) as resolver:
        audio = res.producer(SampleKind.AUDIO_BLOCK, "mic")
        record = AudioBlockRecord(7, 192, 1, 48_000, 1, 0, 0, adc_time_ns=5, host_time_ns=6, status_flags=0,
                                  callback_ns=3, stream_time_ns=0)
        first = res.read_at(audio.push_audio_block(10, 10, record))  # a record subclass keeps its descriptor part
        assert resolver.descriptor(first.payload_handle) == AudioBlockDescriptor(7, 192, 1, 48_000, 1, 0, 0)
        audio.push_audio_block(20, 20, record)
        audio.push_audio_block(30, 30, record)  # capacity 2: the first leaves
        with pytest.raises(StaleHandle, match="left the window"):
            resolver.descriptor(first.payload_handle)
        with pytest.raises(UnknownHandle):
            res.descriptor(make_handle(res.handle_id ^ 1, first.position))


def test_typed_batch_of_camera_frames_resolves(rig, camera_ring):
    with Reservoir.create(rig, capacity=16) as res, ReservoirView.attach(rig) as view, \
            HandleResolver(rig, reservoir=view) as resolver:
        producer = res.producer(SampleKind.CAMERA_FRAME, "cam0")
        rows = []
        for value in (1, 2, 3):
            seq = write_frame(camera_ring, value)
            rows.append(tuple(getattr(frame_descriptor(camera_ring, seq, producer.sensor_id_hash), f)
                              for f in CameraFrameDescriptor.__struct_fields__))
        descriptors = np.array(rows, dtype=dtype_of(CameraFrameDescriptor))
        producer.push_batch(np.array([100, 200, 300], dtype=np.uint64), descriptors=descriptors)
        assert [int(resolver.payload_of(view.read_view(SampleKind.CAMERA_FRAME, i))[0, 0]) for i in range(3)] == [
            1, 2, 3]
