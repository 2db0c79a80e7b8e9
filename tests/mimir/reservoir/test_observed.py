"""push_observed: samples nobody in the rig measured never move the edge, never evict, and refuse without a trace."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimir.descriptors import CameraFeature, SampleKind
from mimir.reservoir import Refused, Reservoir

CAMERA = SampleKind.CAMERA_FRAME
CLAIM = SampleKind.EVENT_CLAIM
MAX_U64 = (1 << 64) - 1


def words(res) -> tuple:
    """Every status word (generation included) and every visible sample: what a refusal must leave as it was."""
    return res.status(), tuple(res.read(i) for i in range(res.count()))


def test_exactly_at_the_edge_is_stored_one_ns_after_is_refused_and_changes_nothing(rig):
    with Reservoir.create(rig, capacity=8, duration_ns=100) as res:
        res.producer(CAMERA, "cam").push(500, 500)
        claims = res.producer(CLAIM, "remote.x")
        before = words(res)
        assert claims.push_observed(501, 1) == Refused.AFTER_EDGE
        assert words(res) == before and claims.next_sequence == 0
        assert claims.push_observed(500, 2) == 1  # == edge: in order, the edge does not move
        status = res.status()
        assert (status.edge_ns, status.out_of_order, status.evicted) == (500, 0, 0)
        assert claims.next_sequence == 1


def test_exactly_at_the_window_start_is_stored_one_ns_before_is_refused(rig):
    with Reservoir.create(rig, capacity=8, duration_ns=100) as res:
        res.producer(CAMERA, "cam").push(500, 500)
        claims = res.producer(CLAIM, "remote.x")
        assert res.window_start_ns == 400
        before = words(res)
        assert claims.push_observed(399, 1) == Refused.BEFORE_WINDOW
        assert words(res) == before
        assert claims.push_observed(400, 2) == 1
        status = res.status()
        assert (status.late, status.out_of_order, status.edge_ns) == (0, 1, 500)


def test_a_full_window_refuses_instead_of_evicting(rig):
    with Reservoir.create(rig, capacity=4, duration_ns=1000) as res:
        cam = res.producer(CAMERA, "cam")
        for ts in (10, 20, 30):
            cam.push(ts, ts)
        claims = res.producer(CLAIM, "remote.x")
        assert claims.push_observed(30, 0) == 3  # the 4th slot: stored
        before = words(res)
        assert claims.push_observed(30, 0) == Refused.FULL  # a 5th would evict the camera's 10
        assert words(res) == before and res.status().evicted_capacity == 0
        cam.push(40, 40)  # a local push still evicts for capacity, as it always did
        assert res.status().evicted_capacity == 1


def test_values_that_are_not_u64_ints_are_refused(rig):
    with Reservoir.create(rig, capacity=8, duration_ns=100) as res:
        res.producer(CAMERA, "cam").push(500, 500)
        claims = res.producer(CLAIM, "remote.x")
        before = words(res)
        for ts, arrival in ((-1, 0), (MAX_U64 + 1, 0), (450.0, 0), (np.uint64(450), 0), (True, 0), (450, -1),
                            (450, MAX_U64 + 1), (int(9.99e23), 0)):
            assert claims.push_observed(ts, arrival) in (Refused.INVALID, Refused.AFTER_EDGE), (ts, arrival)
        assert words(res) == before
        assert claims.push_observed(int(9.99e23), 0) == Refused.INVALID  # the finding's anchor at 9.99e14 s


def test_an_empty_reservoir_accepts_nothing_observed_until_trusted_time_moves_its_edge(rig):
    with Reservoir.create(rig, capacity=8, duration_ns=100) as res:
        claims = res.producer(CLAIM, "remote.x")
        assert claims.push_observed(1, 1) == Refused.AFTER_EDGE
        res.set_edge(1000)
        assert claims.push_observed(950, 1) == 0 and res.status().edge_ns == 1000


ops_strategy = st.lists(st.one_of(
    st.tuples(st.just("local"), st.integers(0, 40)),                  # the gap after the previous local sample
    st.tuples(st.just("near"), st.integers(-400, 50)),                # observed, relative to the current edge
    st.tuples(st.just("far"), st.integers(-(1 << 70), 1 << 70)),      # observed, anywhere (absurd included)
), min_size=1, max_size=120)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_strategy)
def test_observed_pushes_never_move_the_edge_nor_evict_for_capacity(rig, ops):
    """Interleave in-order local pushes with observed pushes at any time, against a twin that gets the locals only.

    Invariants after every push: the edge and the window start equal the twin's (observed samples never move
    them); nothing is evicted for capacity; a refused push changes nothing (status words, generation, samples)
    and says why; a stored one lay in [window start, edge].
    """
    with Reservoir.create(rig, capacity=256, duration_ns=300, name="obs") as res, \
            Reservoir.create(rig, capacity=256, duration_ns=300, name="twin") as twin:
        cam, cam_twin, remote = res.producer(CAMERA, "cam"), twin.producer(CAMERA, "cam"), res.producer(CLAIM, "r")
        t_local = 100
        for kind, value in ops:
            if kind == "local":
                t_local += value
                assert cam.push(t_local, t_local) >= 0
                cam_twin.push(t_local, t_local)
                continue
            edge, start = res.edge_ns, res.window_start_ns
            t = edge + value if kind == "near" else value
            before = words(res)
            position = remote.push_observed(t, 0)
            if position < 0:
                assert words(res) == before
                assert position == (Refused.INVALID if not 0 <= t <= MAX_U64 else Refused.AFTER_EDGE if t > edge
                                    else Refused.BEFORE_WINDOW)
            else:
                assert start <= t <= edge
            s, s_twin = res.status(), twin.status()
            assert (s.edge_ns, s.window_start_ns) == (s_twin.edge_ns, s_twin.window_start_ns)
            assert s.evicted_capacity == s_twin.evicted_capacity == 0


def test_an_observed_feature_carries_its_descriptor_and_a_bad_one_refuses_the_whole_sample(rig):
    """A typed kind's observed push stores its descriptor (read back through typed_snapshot); missing, short,
    or out-of-range values are INVALID and change nothing (checked before anything moves)."""
    feature_kind = SampleKind.CAMERA_FEATURE
    with Reservoir.create(rig, capacity=8, duration_ns=100) as res:
        res.producer(CAMERA, "cam").push(500, 500)
        features = res.producer(feature_kind, "features.cam")
        good = CameraFeature(source_id_hash=7, sequence=3, canonical_ns=480, previous_sequence=2,
                             motion_energy=1.5, changed_fraction=0.25, mean_luma=90.0, changed_threshold=16)
        before = words(res)
        values = msgspec.structs.astuple(good)
        for bad in (None, values[:-1], values[:-1] + (-1,), values[:3] + (1 << 64,) + values[4:],
                    values[:4] + ("x",) + values[5:]):
            assert features.push_observed(480, 1, descriptor=bad) == Refused.INVALID, bad
        assert words(res) == before and features.next_sequence == 0
        assert features.push_observed(480, 1, descriptor=good) == 1
        rows, typed = res.typed_snapshot(feature_kind)
        assert list(rows["timestamp_ns"]) == [480]
        assert tuple(typed[0].tolist()) == pytest.approx(values)
        claims = res.producer(CLAIM, "remote.x")  # an untyped kind takes no descriptor
        assert claims.push_observed(480, 1, descriptor=values) == Refused.INVALID
