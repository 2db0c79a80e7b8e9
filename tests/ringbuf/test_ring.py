"""Ring semantics in one process: publish, read, lapping, batches, zero copy, bad input."""
import os

import msgspec
import numpy as np
import pytest

import ringbuf.platform
from ringbuf import (
    DescriptorError, PayloadError, Ring, RingError, RingLayoutMismatch, RingReader, SegmentExists,
    SegmentMissing, StaleItem, F32, U32, U64,
)
from ringbuf.segment import list_segments


class Stamp(msgspec.Struct):
    sequence: U64
    level: F32


def make(rig, capacity=4, shape=(16,), **kw):
    return Ring.create("r", rig=rig, descriptor=Stamp, capacity=capacity, payload_shape=shape, **kw)


def test_publish_then_read_in_order(rig):
    with make(rig) as ring, RingReader.attach("r", rig=rig, descriptor=Stamp) as reader:
        for i in range(3):
            ring.write(np.full(16, i, np.uint8), i, i / 2)
        items = [reader.read() for _ in range(3)]
        assert [it.sequence for it in items] == [0, 1, 2]
        assert [it.descriptor for it in items] == [(0, 0.0), (1, 0.5), (2, 1.0)]
        assert all((it.payload == it.sequence).all() for it in items)
        assert reader.read() is None and reader.lost == 0


def test_lapped_reader_learns_exact_loss_and_resumes_at_oldest(rig):
    with make(rig) as ring, RingReader.attach("r", rig=rig, descriptor=Stamp) as reader:
        for i in range(11):
            ring.write(np.full(16, i, np.uint8), i, 0.0)
        first = reader.read()
        assert first.sequence == 7 and reader.lost == 7  # capacity 4: items 7..10 remain
        assert [reader.read().sequence for _ in range(3)] == [8, 9, 10]
        info = ring.readers()[0]
        assert (info.pid, info.cursor, info.lag, info.lost) == (os.getpid(), 11, 0, 7)


def test_claim_is_zero_copy_and_invalidates_the_oldest_slot(rig):
    with make(rig, capacity=2) as ring, RingReader.attach("r", rig=rig, descriptor=Stamp) as reader:
        ring.write(np.zeros(16, np.uint8), 0, 0.0)
        ring.write(np.ones(16, np.uint8), 1, 0.0)
        view = ring.claim()
        assert ring.claim() is view  # idempotent until publish
        view[:] = 9  # writes straight into shared memory
        assert not reader.valid(0)  # slot 0 is being rewritten: item 0 is gone
        ring.publish(2, 0.0)
        item = reader.read()
        assert item.sequence == 1 and reader.lost == 1
        seq, desc, payload = reader.view_next()
        assert (seq, desc) == (2, (2, 0.0)) and (payload == 9).all()
        assert reader.valid(2)
        ring.write(np.zeros(16, np.uint8), 3, 0.0)
        ring.write(np.zeros(16, np.uint8), 4, 0.0)
        assert not reader.valid(2)
        with pytest.raises(StaleItem, match="item 2 has been overwritten"):
            reader.payload_view(2)


def test_batches_round_trip_across_the_wrap(rig):
    ring = Ring.create("b", rig=rig, descriptor=Stamp, capacity=8)
    reader = RingReader.attach("b", rig=rig, descriptor=Stamp)
    try:
        out = np.zeros(16, reader.descriptor_dtype)
        for start in (0, 5, 10):
            batch = np.zeros(5, reader.descriptor_dtype)
            batch["sequence"] = np.arange(start, start + 5)
            ring.publish_batch(batch)
            got = reader.read_batch(out)
            assert got == 5 and out["sequence"][:5].tolist() == list(range(start, start + 5))
        assert reader.lost == 0
        for _ in range(3):
            ring.publish_batch(batch)  # 15 items into capacity 8: 7 lost
        got = reader.read_batch(out)
        assert got == 8 and reader.lost == 7
    finally:
        reader.close()
        ring.close()


def test_doorbell_wait_times_out_then_wakes(rig):
    with make(rig) as ring, RingReader.attach("r", rig=rig, descriptor=Stamp) as reader:
        assert reader.wait(0.05) is False
        ring.write(np.zeros(16, np.uint8), 0, 0.0)
        assert reader.wait(0.05) is True


def test_status_record_is_shared(rig):
    class Health(msgspec.Struct):
        green: U32
        callbacks: U64

    ring = Ring.create("s", rig=rig, descriptor=Stamp, capacity=2, status=Health)
    reader = RingReader.attach("s", rig=rig)
    try:
        ring.status["callbacks"] = 42
        ring.status["green"] = 1
        assert int(reader.status["callbacks"]) == 42 and int(reader.status["green"]) == 1
    finally:
        reader.close()
        ring.close()


@pytest.mark.parametrize(
    "payload, message",
    [
        (np.zeros(17, np.uint8), r"shape \(17,\).*does not fit"),
        (np.zeros(16, np.float32), "dtype float32, the ring holds uint8"),
        (np.zeros((4, 4), np.uint8), r"shape \(4, 4\)"),
    ],
)
def test_bad_payload_is_refused_and_nothing_is_published(rig, payload, message):
    with make(rig) as ring, RingReader.attach("r", rig=rig, descriptor=Stamp) as reader:
        with pytest.raises(PayloadError, match=message):
            ring.write(payload, 0, 0.0)
        assert ring.published == 0 and reader.read() is None


def test_bad_descriptor_names_the_field_and_publishes_nothing(rig):
    with make(rig) as ring, RingReader.attach("r", rig=rig, descriptor=Stamp) as reader:
        ring.write(np.zeros(16, np.uint8), 0, 0.0)
        with pytest.raises(DescriptorError, match=r"Stamp\.sequence expects <u8, got -1"):
            ring.publish(-1, 0.0)
        with pytest.raises(DescriptorError, match="has 2 fields"):
            ring.publish(1)
        assert ring.published == 1 and ring.publish_errors == 2
        ring.publish(1, 0.0)
        assert [reader.read().sequence, reader.read().sequence] == [0, 1]


def test_attach_with_other_layout_names_both(rig):
    class Other(msgspec.Struct):
        sequence: U32

    with make(rig):
        with pytest.raises(RingLayoutMismatch, match=r"Stamp\(sequence:<u8, level:<f4; 12 B\).*Other\(sequence:<u4; 4 B\)"):
            RingReader.attach("r", rig=rig, descriptor=Other)


def test_attach_missing_ring_is_clear(rig):
    with pytest.raises(SegmentMissing, match="is its writer running"):
        RingReader.attach("nothing", rig=rig)


@pytest.mark.parametrize("capacity", [0, -1, 2.5])
def test_zero_or_bad_capacity(rig, capacity):
    with pytest.raises(RingError, match="capacity must be a positive integer"):
        make(rig, capacity=capacity)
    assert list_segments(rig) == []


def test_second_live_writer_is_refused(rig):
    with make(rig):
        with pytest.raises(SegmentExists, match=f"live process {os.getpid()}"):
            make(rig)


def test_close_unlinks_everything(rig):
    ring = make(rig)
    assert list_segments(rig) == [f"mimir-{rig}-r", f"mimir-{rig}-r#lock"]  # the object and its lock file
    reader = RingReader.attach("r", rig=rig, descriptor=Stamp)
    assert not reader.wait(0.01)  # a waiting reader owns a doorbell: one more object, the reader's
    assert len(list_segments(rig)) == 3 and any("#bell." in n for n in list_segments(rig))
    reader.close()
    assert len(list_segments(rig)) == 2  # the reader removes its own doorbell
    ring.close()
    ring.close()
    assert list_segments(rig) == []


def test_struct_payloads_and_byte_fields_make_status_snapshots(rig):
    from ringbuf.layout import Bytes

    class Row(msgspec.Struct):
        name: Bytes(16)
        count: U64

    class Snapshot(msgspec.Struct):
        rows: U32

    board = Ring.create("board", rig=rig, descriptor=Snapshot, capacity=2, payload_shape=(4,), payload_dtype=Row)
    viewer = RingReader.attach("board", rig=rig, register=False)
    try:
        assert viewer.latest() is None
        for n in range(3):
            rows = board.claim()
            rows["name"] = [b"cam0", b"cam1", b"", b""]
            rows["count"] = [n, 2 * n, 0, 0]
            board.publish(2)
        item = viewer.latest()
        assert item.sequence == 2 and item.descriptor == (2,)
        assert item.payload["name"][:2].tolist() == [b"cam0", b"cam1"]
        assert item.payload["count"][:2].tolist() == [2, 4]
        assert viewer.cursor == 0  # latest() does not consume
        assert "Row(name:|S16, count:<u8; 24 B)" in str(viewer.layout)
    finally:
        viewer.close()
        board.close()


def test_reserved_descriptor_field_name_is_refused_and_nothing_leaks(rig):
    class Clash(msgspec.Struct):
        _slot_seq: U64

    with pytest.raises(DescriptorError, match="'_slot_seq' is reserved"):
        Ring.create("clash", rig=rig, descriptor=Clash, capacity=4)
    assert list_segments(rig) == []


def test_a_failure_after_the_segment_exists_unlinks_everything(rig, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(ringbuf.platform.PLATFORM, "create_lock", broken)
    with pytest.raises(RuntimeError, match="injected"):
        make(rig)
    assert list_segments(rig) == []


def test_many_armings_get_one_post_each_and_no_spurious_wake_is_reported(rig):
    with make(rig) as ring, RingReader.attach("r", rig=rig, descriptor=Stamp) as reader:
        for i in range(50):
            assert reader.wait(0.001) is False or reader.available()  # times out: no data yet
            ring.write(np.zeros(16, np.uint8), i, 0.0)
            assert reader.wait(0.5) is True
            assert reader.read().sequence == i


def test_a_ring_still_being_created_is_not_ready_rather_than_corrupt(rig):
    from ringbuf import RingNotReady
    from ringbuf.segment import Segment, segment_name

    half = Segment.create(segment_name(rig, "half"), 4096)  # zero-filled: what a writer mid-create looks like
    try:
        with pytest.raises(RingNotReady, match="still being created"):
            RingReader.attach("half", rig=rig)
        with pytest.raises(SegmentMissing):  # callers that retry on "missing" retry on this too
            RingReader.attach("half", rig=rig)
    finally:
        half.close()
        half.unlink()
