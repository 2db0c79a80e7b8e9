"""Copying payloads out of a ring a writer keeps lapping: rescued in time, or reported lost, never torn."""

from __future__ import annotations

import threading
import time

import numpy as np

from mimir.descriptors import AudioBlockRecord, CameraFrameDescriptor
from mimir.snapshot.stage import FrameStager, copy_blocks, slot_array
from ringbuf import Ring, RingReader

SHAPE = (48, 64, 2)


def publish(ring: Ring, n: int) -> None:
    """Frame n is filled with n % 251 (a torn or wrong frame shows)."""
    ring.claim()[:] = n % 251
    ring.publish(1, n, 0, 0, SHAPE[1], SHAPE[0], 0, 128, int(np.prod(SHAPE)), ring.handle(n))


def test_the_stager_rescues_what_comes_near_the_writer_and_reports_what_it_lost(rig):
    with Ring.create("c0", rig=rig, descriptor=CameraFrameDescriptor, capacity=8, payload_shape=SHAPE) as ring, \
            RingReader.attach("c0", rig=rig, register=False) as reader:
        for n in range(8):
            publish(ring, n)
        # rate 1 item/s, margin 3 s: the 3 oldest are at risk (3 publishes from being overwritten).
        stager = FrameStager([reader], [1.0], [(0, n) for n in range(8)], margin_s=3.0)
        stager.sweep()
        assert stager.staged == 3 and [c is not None for c in stager.copies] == [True] * 3 + [False] * 5
        publish(ring, 8)
        publish(ring, 9)  # items 0 and 1 are overwritten in the ring: their copies remain
        assert (stager.take(0) == 0).all() and (stager.take(1) == 1).all()
        assert (stager.take(3) == 3).all()  # never at risk: copied by the writer itself
        for n in range(10, 13):
            publish(ring, n)  # items 2, 3, 4 overwritten; 2 was rescued, 4 was not (no sweep since)
        assert (stager.take(2) == 2).all()
        assert stager.take(4) is None and stager.lost[4]
        assert (stager.take(5) == 5).all() and stager.copies[0] is None  # copies are freed once taken


def test_with_a_live_writer_every_frame_is_either_exact_or_lost(rig):
    """The writer laps the ring at 2 kHz while a slow consumer takes frames: nothing torn ever comes out."""
    with Ring.create("c0", rig=rig, descriptor=CameraFrameDescriptor, capacity=64, payload_shape=SHAPE) as ring, \
            RingReader.attach("c0", rig=rig, register=False) as reader:
        for n in range(64):
            publish(ring, n)
        stop = threading.Event()

        def capture() -> None:
            n = 64
            while not stop.is_set():
                publish(ring, n)
                n += 1
                time.sleep(0.0005)

        items = [(0, n) for n in range(64)]
        thread = threading.Thread(target=capture)
        with FrameStager([reader], [2000.0], items, margin_s=0.01, period_s=0.001) as stager:
            thread.start()
            try:
                got = []
                for i in range(64):
                    frame = stager.take(i)
                    got.append(None if frame is None else int(frame[0, 0, 0]))
                    if frame is not None:
                        assert (frame == frame[0, 0, 0]).all()  # not torn
                    time.sleep(0.001)  # a slow disk
            finally:
                stop.set()
                thread.join()
        assert all(g is None or g == n % 251 for n, g in enumerate(got))
        assert got.count(None) == sum(stager.lost)
        assert stager.staged > 0


def test_copy_blocks_gathers_slots_and_flags_overwritten_ones(rig):
    with Ring.create("au", rig=rig, descriptor=AudioBlockRecord, capacity=16, payload_shape=(4, 2),
                     payload_dtype=np.float32) as ring, RingReader.attach("au", rig=rig, register=False) as reader:
        for n in range(20):
            ring.claim()[:] = n
            ring.publish_struct(AudioBlockRecord(data_handle=ring.handle(n), frame_count=4, channel_count=2,
                                                 sample_rate_hz=48_000, sample_format=1, start_sample=n * 4,
                                                 channel_layout_hash=0, adc_time_ns=0, host_time_ns=n,
                                                 status_flags=0, callback_ns=0, stream_time_ns=0))
        assert slot_array(reader).shape == (16, 4, 2)
        copies, valid = copy_blocks(reader, np.arange(2, 20, dtype=np.uint64))
        assert valid.tolist() == [False] * 2 + [True] * 16  # items 2 and 3 were overwritten by 18 and 19
        assert [int(c[0, 0]) for c in copies[2:]] == list(range(4, 20))
