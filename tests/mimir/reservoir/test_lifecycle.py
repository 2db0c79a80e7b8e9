"""Creation, attachment, reclaiming, closing, and the seqlock checks seen from a reader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from mimir.descriptors import CameraFrameDescriptor, SampleKind
from mimir.reservoir import (
    Reservoir, ReservoirBusy, ReservoirClosed, ReservoirLayoutMismatch, ReservoirView,
)
from mimir.reservoir.layout import KIND_SHIFT, RECORD_WORD, STATUS_WORD, WORDS_PER_RECORD
from ringbuf import ObjectNotReady, Ring
from ringbuf.hashing import fnv1a_64
from ringbuf.segment import SegmentExists, SegmentMissing, list_segments, segment_name


def test_one_writer_per_reservoir(rig):
    with Reservoir.create(rig, capacity=8):
        with pytest.raises(SegmentExists, match="one writer"):
            Reservoir.create(rig, capacity=8)


def test_a_dead_writers_segment_is_reclaimed(rig):
    code = (
        "import sys, time\n"
        "from mimir.reservoir import Reservoir\n"
        "r = Reservoir.create(sys.argv[1], capacity=8)\n"
        "r.producer(0, 'cam').push(5, 5)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, rig], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with ReservoirView.attach(rig) as view:
            assert view.count() == 1 and view.writer_alive()
            with pytest.raises(SegmentExists, match=f"live process {proc.pid}"):
                Reservoir.create(rig, capacity=8)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert not view.writer_alive()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list_segments(rig) == [segment_name(rig, "res")]  # the crash left it behind
    with Reservoir.create(rig, capacity=8) as res:  # and the next supervisor reclaims it
        assert res.count() == 0


def test_attaching_needs_a_reservoir(rig):
    with pytest.raises(SegmentMissing):
        ReservoirView.attach(rig)
    ring = Ring.create("res", descriptor=CameraFrameDescriptor, capacity=2, rig=rig)
    try:
        with pytest.raises(ReservoirLayoutMismatch, match="is a ring, not a reservoir"):
            ReservoirView.attach(rig)
        with pytest.raises(SegmentExists, match="not a reservoir"):
            Reservoir.create(rig, capacity=8)  # never reclaims somebody else's object
    finally:
        ring.close()


def test_a_reservoir_still_being_created_is_not_there_yet(rig, unfinished):
    """Invariant: a reservoir without its magic (its creator not finished) reads as missing for now, ObjectNotReady
    (a SegmentMissing: retry shortly), never as a layout mismatch."""
    with Reservoir.create(rig, capacity=8) as res:
        with unfinished(res), pytest.raises(ObjectNotReady, match="still being created"):
            ReservoirView.attach(rig)
        ReservoirView.attach(rig).close()


def test_an_incompatible_layout_is_refused(rig):
    with Reservoir.create(rig, capacity=8) as res:
        res._m.header["version"] = 99
        with pytest.raises(ReservoirLayoutMismatch, match="version 99"):
            ReservoirView.attach(rig)
        res._m.header["version"] = 2
        res._m.header["doc_hash"] ^= 1
        with pytest.raises(ReservoirLayoutMismatch, match="does not match its hash"):
            ReservoirView.attach(rig)
        res._m.header["doc_hash"] ^= 1
        doc_at = int(res._m.header["doc_offset"])
        res._m.buf[doc_at + 2] ^= 1  # another layout document with a matching hash: an incompatible build
        res._m.header["doc_hash"] = fnv1a_64(bytes(res._m.buf[doc_at:doc_at + int(res._m.header["doc_bytes"])]))
        with pytest.raises(ReservoirLayoutMismatch, match="layouts differ"):
            ReservoirView.attach(rig)


def test_a_view_is_read_only_and_outlives_the_writer(rig):
    res = Reservoir.create(rig, capacity=8)
    producer = res.producer(SampleKind.AUDIO_BLOCK, "mic")
    producer.push(10, 10, 3)
    view = ReservoirView.attach(rig)
    try:
        with pytest.raises(TypeError):
            view._m.words[STATUS_WORD.head] = 5  # mapped PROT_READ: a view cannot store
        res.close()
        assert list_segments(rig) == []  # the writer unlinked it ...
        assert view.count() == 1 and view.read(0).payload_handle == 3  # ... the view's mapping stays valid
        assert not view.writer_alive()
        with pytest.raises(ReservoirClosed):
            res.count()
        with pytest.raises(ReservoirClosed):
            producer.push(20, 20)
    finally:
        view.close()
    with pytest.raises(ReservoirClosed):
        view.count()
    res.close()  # idempotent
    view.close()


def test_readers_never_return_a_record_the_writer_is_rewriting(rig):
    """Simulate a writer stopped mid-update: stamp 0, odd generation, a recycled kind-index entry."""
    with Reservoir.create(rig, capacity=8) as res, ReservoirView.attach(rig) as view:
        view.busy_timeout_s = 0.05
        cam = res.producer(SampleKind.CAMERA_FRAME, "cam")
        mic = res.producer(SampleKind.AUDIO_BLOCK, "mic")
        cam.push(10, 10, 1)
        mic.push(20, 20, 2)
        words = res._m.words
        stamp_word = res._m.record_word0  # the record of position 0
        words[stamp_word] = 0
        with pytest.raises(ReservoirBusy, match="alive but stuck mid-update"):
            view.read(0)
        with pytest.raises(ReservoirBusy):
            view.latest_for_sensor(SampleKind.CAMERA_FRAME, cam.sensor_id_hash)
        words[stamp_word] = 1
        assert view.read(0).payload_handle == 1

        gen = words[STATUS_WORD.generation]
        words[STATUS_WORD.generation] = gen + 1  # odd: the status words are being updated
        for query in (view.count, view.status, lambda: view.view_count(0), view.bounds):
            with pytest.raises(ReservoirBusy):
                query()
        words[STATUS_WORD.generation] = gen
        assert view.status().total_sample_count == 2

        camera_index = res._m.kind_index_word0  # CAMERA_FRAME kind position 0 -> global position 0
        words[camera_index] = 1  # point it at the audio record: its kind_position cannot match
        with pytest.raises(ReservoirBusy):
            view.read_view(SampleKind.CAMERA_FRAME, 0)
        words[camera_index] = 0
        assert view.read_view(SampleKind.CAMERA_FRAME, 0).payload_handle == 1
        audio_kind_word = res._m.record_word0 + WORDS_PER_RECORD + RECORD_WORD.kind_position  # position 1's
        assert words[audio_kind_word] >> KIND_SHIFT == SampleKind.AUDIO_BLOCK


def test_bad_creation_arguments_are_explained(rig):
    for kwargs, match in (
        ({"capacity": 0}, "capacity"),
        ({"capacity": 8, "duration_ns": -1}, "duration_ns"),
        ({"capacity": 8, "max_sensors": 0}, "max_sensors"),
    ):
        with pytest.raises(ValueError, match=match):
            Reservoir.create(rig, **kwargs)
    with pytest.raises(ValueError, match="not allowed"):
        Reservoir.create("bad-rig", capacity=8)
    assert list_segments(rig) == []
