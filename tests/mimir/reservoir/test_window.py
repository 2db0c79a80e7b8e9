"""Window semantics beyond upstream: disorder, capacity, counters, set_edge, batches, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from mimir.descriptors import AudioBlockDescriptor, SampleHandle, SampleKind
from mimir.reservoir import (
    LATE, SAMPLE_DTYPE, Evicted, RejectedSample, Reservoir, SensorTableFull,
    StaleHandle, capacity_for, segment_bytes,
)
from mimir.reservoir.naive import NaiveReservoir
from ringbuf.layout import dtype_of

CAMERA = SampleKind.CAMERA_FRAME
AUDIO = SampleKind.AUDIO_BLOCK


def visible(res) -> list[tuple[int, int]]:
    """(kind, timestamp) of every sample in the window, oldest first."""
    return [(int(res.read(i).kind), res.read(i).timestamp_ns) for i in range(res.count())]


def assert_status_invariants(status) -> None:
    kinds = sum(status.count_of(k) for k in SampleKind)
    assert status.total_sample_count == kinds == status.tail - status.head
    assert status.stored == status.total_sample_count + status.evicted
    assert status.accepted == status.stored + status.late
    assert status.window_start_ns == max(0, status.edge_ns - status.duration_ns)


def test_out_of_order_sample_inside_the_window_is_kept_and_counted(rig):
    with Reservoir.create(rig, capacity=16, duration_ns=100) as res:
        p = res.producer(CAMERA, "cam")
        p.push(50, 50)
        p.push(90, 90)
        assert p.push(60, 60) == 2  # late by 30 ns but inside [0, 90]
        assert visible(res) == [(0, 50), (0, 90), (0, 60)]
        status = res.status()
        assert (status.out_of_order, status.late) == (1, 0)
        assert_status_invariants(status)


def test_an_aged_out_of_order_sample_takes_earlier_pushes_with_it(rig):
    """The documented choice: the window stays a contiguous push-order range, and nothing older than its start shows."""
    with Reservoir.create(rig, capacity=16, duration_ns=100) as res:
        p = res.producer(CAMERA, "cam")
        for ts in (50, 90, 60, 120):
            p.push(ts, ts)
        res.set_edge(165)  # window start 65: 60 is out, and it was pushed after 90
        assert visible(res) == [(0, 120)]
        status = res.status()
        assert (status.evicted_aged, status.evicted_disorder) == (2, 1)  # 50 and 60 aged; 90 went early
        assert res.window_start_ns == 65
        assert_status_invariants(status)


def test_a_sample_older_than_the_whole_window_is_the_new_eviction_barrier(rig):
    """After 50, 90 then 40, a push that moves the window start past 40 must evict all three."""
    with Reservoir.create(rig, capacity=16, duration_ns=100) as res:
        p = res.producer(CAMERA, "cam")
        for ts in (50, 90, 40):
            p.push(ts, ts)
        p.push(145, 145)  # window start 45
        assert visible(res) == [(0, 145)]
        assert (res.status().evicted_aged, res.status().evicted_disorder) == (1, 2)


def test_no_visible_sample_is_ever_older_than_the_window_start(rig):
    rng = np.random.default_rng(7)
    with Reservoir.create(rig, capacity=64, duration_ns=1_000) as res:
        p = res.producer(AUDIO, "mic")
        edge = 0
        for _ in range(3_000):
            ts = max(0, edge + int(rng.integers(-1_200, 300)))
            p.push(ts, ts)
            edge = max(edge, ts)
            start = res.window_start_ns
            assert all(res.read(i).timestamp_ns >= start for i in range(res.count()))
        assert_status_invariants(res.status())
        assert res.status().out_of_order > 0 and res.status().late > 0


def test_late_boundary_is_the_window_start_itself(rig):
    with Reservoir.create(rig, capacity=8, duration_ns=100) as res:
        p = res.producer(CAMERA, "cam")
        p.push(1_000, 1_000)
        assert p.push(900, 900) == 1  # == window start: inside
        assert p.push(899, 899) == LATE
        assert p.next_sequence == 3  # late samples are accepted: the sequence advances
        assert res.status().late == 1


def test_capacity_evicts_the_oldest_early_and_counts_it(rig):
    with Reservoir.create(rig, capacity=4, duration_ns=10**9) as res:
        p = res.producer(CAMERA, "cam")
        for ts in range(6):
            p.push(ts, ts)
        assert [s for _, s in visible(res)] == [2, 3, 4, 5]
        assert res.view_count(CAMERA) == 4
        assert res.read_view(CAMERA, 0).timestamp_ns == 2
        status = res.status()
        assert status.evicted_capacity == 2
        assert_status_invariants(status)
        with pytest.raises(Evicted):
            res.read_at(0)
        with pytest.raises(IndexError):
            res.read_at(6)


def test_set_edge_only_moves_forward_and_evicts(rig):
    with Reservoir.create(rig, capacity=8, duration_ns=100) as res:
        p = res.producer(CAMERA, "cam")
        p.push(10, 10)
        assert res.set_edge(100) == 100
        assert res.count() == 1
        assert res.set_edge(50) == 100  # never back
        assert res.edge_ns == 100
        assert res.set_edge(111) == 111
        assert res.count() == 0 and res.window_start_ns == 11
        assert res.latest_for_sensor(CAMERA, p.sensor_id_hash) is None
        assert res.status().evicted_aged == 1


def test_kind_views_are_independent_counts_over_one_edge(rig):
    with Reservoir.create(rig, capacity=32, duration_ns=100) as res:
        producers = {k: res.producer(k, f"s{int(k)}") for k in SampleKind}
        for i in range(27):
            producers[SampleKind(i % 9)].push(i, i)
        assert [res.view_count(k) for k in SampleKind] == [3] * 9
        for k in SampleKind:
            assert [res.read_view(k, j).timestamp_ns for j in range(3)] == [int(k), int(k) + 9, int(k) + 18]
        res.set_edge(100 + 13)  # window start 13: drops 0..12
        assert res.count() == 14
        assert [res.view_count(k) for k in SampleKind] == [1, 1, 1, 1, 2, 2, 2, 2, 2]
        assert_status_invariants(res.status())


def test_batch_equals_one_at_a_time_with_disorder_late_and_capacity(rig):
    rng = np.random.default_rng(3)
    n = 400
    kinds = rng.integers(0, 9, n).astype(np.uint8)
    samples = np.zeros(n, dtype=SAMPLE_DTYPE)
    samples["sensor_id_hash"] = rng.integers(1, 5, n)
    ts = np.cumsum(rng.integers(0, 20, n))
    ts[rng.random(n) < 0.1] -= 300  # some out of order, some late
    samples["timestamp_ns"] = np.maximum(ts, 0)
    samples["sequence"] = np.arange(n)
    samples["payload_handle"] = np.arange(n) * 7
    samples["flags"][::37] = 1
    with Reservoir.create(rig, capacity=50, duration_ns=500, name="batched") as batched, \
            Reservoir.create(rig, capacity=50, duration_ns=500, name="single") as single:
        result = batched.push_batch(kinds[:150], samples[:150])
        result2 = batched.push_batch(kinds[150:], samples[150:])
        late = rejected = 0
        for k, row in zip(kinds.tolist(), samples.tolist()):
            try:
                late += single.push(k, row) == LATE
            except RejectedSample:
                rejected += 1
        assert result.rejected + result2.rejected == rejected
        assert result.late + result2.late == late
        a, b = batched.status(), single.status()
        assert (a.evicted_aged, a.evicted_disorder, a.evicted_capacity, a.late, a.out_of_order, a.rejected) == (
            b.evicted_aged, b.evicted_disorder, b.evicted_capacity, b.late, b.out_of_order, b.rejected)
        assert [batched.read(i) for i in range(batched.count())] == [single.read(i) for i in range(single.count())]
        for k in SampleKind:
            assert batched.view_count(k) == single.view_count(k)
            for s in range(1, 5):
                assert batched.latest_for_sensor(k, s) == single.latest_for_sensor(k, s)


def test_in_order_batch_larger_than_capacity_keeps_the_newest(rig):
    with Reservoir.create(rig, capacity=100, duration_ns=10**9) as res:
        p = res.producer(AUDIO, "mic")
        p.push(5, 5)
        result = p.push_batch(np.arange(10, 1_010, dtype=np.uint64))
        assert (result.stored, result.first_position) == (1_000, 1)
        assert res.count() == 100
        assert res.read(0).timestamp_ns == 910 and res.read(99).timestamp_ns == 1_009
        assert res.read(99).sequence == 1_000 and p.next_sequence == 1_001
        assert res.status().evicted_capacity == 901
        assert res.latest_for_sensor(AUDIO, p.sensor_id_hash).timestamp_ns == 1_009


def test_batches_refuse_negative_and_non_integer_columns(rig):
    with Reservoir.create(rig, capacity=8) as res:
        p = res.producer(AUDIO, "mic")
        with pytest.raises(ValueError, match="negative"):
            p.push_batch(np.array([5, -1]))
        with pytest.raises(TypeError, match="integers"):
            p.push_batch(np.array([1.5, 2.5]))
        with pytest.raises(ValueError, match="shape"):
            p.push_batch([1, 2, 3], arrival_ns=[1, 2])
        assert p.push_batch([1, 2, 3]).stored == 3 and p.next_sequence == 3


def test_typed_batch_stores_descriptors(rig):
    with Reservoir.create(rig, capacity=64, duration_ns=10**9) as res:
        p = res.producer(AUDIO, "mic", initial_sequence=3)
        descriptors = np.zeros(10, dtype=dtype_of(AudioBlockDescriptor))
        descriptors["data_handle"] = np.arange(10) + 500
        descriptors["frame_count"] = 192
        p.push_batch(np.arange(10, dtype=np.uint64) * 4, descriptors=descriptors)
        for i in range(10):
            sample = res.read_view(AUDIO, i)
            d = res.descriptor(sample.payload_handle)
            assert (d.data_handle, d.frame_count, sample.sequence) == (500 + i, 192, 3 + i)


def test_descriptor_handles_go_stale_when_their_sample_leaves(rig):
    with Reservoir.create(rig, capacity=4, duration_ns=100) as res:
        p = res.producer(AUDIO, "mic")
        d = AudioBlockDescriptor(1, 192, 1, 48_000, 1, 0, 0)
        first = res.read_at(p.push_audio_block(10, 10, d))
        assert res.descriptor(first.payload_handle) == d
        res.set_edge(200)
        with pytest.raises(StaleHandle, match="left the window"):
            res.descriptor(first.payload_handle)
        cam = res.producer(CAMERA, "cam")
        plain = res.read_at(cam.push(300, 300, 5))
        with pytest.raises(LookupError, match="no descriptor"):
            res.descriptor_at(plain.position)


def test_sensor_table_is_bounded(rig):
    with Reservoir.create(rig, capacity=8, max_sensors=2) as res:
        res.producer(CAMERA, "a")
        res.producer(AUDIO, "a")  # (kind, sensor) pairs: same sensor, other kind is another pair
        res.producer(CAMERA, "a")  # an existing pair takes no new entry
        with pytest.raises(SensorTableFull, match="max_sensors"):
            res.producer(CAMERA, "b")
        with pytest.raises(SensorTableFull):
            res.push(CAMERA, SampleHandle(12345, 1, 1, 0, 0, 0, 0))
        assert res.count() == 0 and res.status().sensors == 2


def test_bad_values_raise_and_leave_a_consistent_window(rig):
    with Reservoir.create(rig, capacity=4, duration_ns=100) as res:
        p = res.producer(CAMERA, "cam")
        for ts in (10, 20, 30, 40):
            p.push(ts, ts)
        with pytest.raises(ValueError, match="u64"):
            p.push(2**64, 1)
        with pytest.raises(ValueError, match="do not fit"):
            p.push(125, 125, -1)  # negative payload handle; the edge move and evictions still happen
        with pytest.raises(TypeError, match="timestamp_ns"):
            p.push(1.5, 1)
        status = res.status()
        assert_status_invariants(status)
        assert status.edge_ns == 125 and [s for _, s in visible(res)] == [30, 40]
        assert p.next_sequence == 4
        p.push(130, 130)
        assert [s for _, s in visible(res)] == [30, 40, 130]


def test_snapshot_copies_the_window_and_views(rig):
    with Reservoir.create(rig, capacity=16, duration_ns=100) as res:
        a = res.producer(CAMERA, "cam")
        b = res.producer(AUDIO, "mic")
        for i in range(10):
            (a if i % 2 else b).push(i, i, i)
        snap = res.snapshot()
        assert snap["timestamp_ns"].tolist() == list(range(10))
        assert snap["kind"].tolist() == [5, 0] * 5
        assert res.snapshot(CAMERA)["payload_handle"].tolist() == [1, 3, 5, 7, 9]


def test_naive_reference_agrees_on_the_documented_example():
    model = NaiveReservoir(capacity=16, duration_ns=100)
    for ts in (50, 90, 60, 120):
        model.push(0, 1, ts)
    model.set_edge(165)
    assert [s.timestamp_ns for s in model.samples] == [120]
    assert (model.evicted_aged, model.evicted_disorder) == (2, 1)


def test_capacity_for_sizes_from_rates():
    rates = {SampleKind.CAMERA_FRAME: 6 * 187, SampleKind.AUDIO_BLOCK: 1_000}
    assert capacity_for(rates) == int(np.ceil((6 * 187 + 1_000) * 5 * 1.5))
    assert capacity_for({}, minimum=10) == 10
    assert capacity_for(rates, window_ns=10**9, margin=1.0) == 6 * 187 + 1_000
    with pytest.raises(ValueError):
        capacity_for(rates, margin=0.5)
    with pytest.raises(ValueError):
        capacity_for({SampleKind.AUDIO_BLOCK: -1})
    assert segment_bytes(100_000) > 100_000 * 200
