"""Model-based test: the shared-memory reservoir against the list-based reference (mimir.reservoir.naive).

Random programs of raw pushes (some flagged, some unknown-kind), producer
pushes, typed pushes, batches (in order, shuffled, flagged) and set_edge run
against both; after every step every query must agree: counts, every total
and view index, latest-for-sensor of every pair, descriptors, status
counters, and the same answers through a read-only view. Small capacities
and windows make capacity eviction, late samples and disorder frequent.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, \
    run_state_machine_as_test

from mimir.descriptors import (
    AudioBlockDescriptor, CameraFrameDescriptor, RenderPacketDescriptor, SampleHandle, SampleKind, make_handle,
)
from mimir.reservoir import (
    LATE, SAMPLE_DTYPE, RejectedSample, Reservoir, ReservoirView, StaleHandle, UnknownKind,
)
from mimir.reservoir.naive import NaiveReservoir
from ringbuf.layout import dtype_of

_names = itertools.count()
TYPED = {
    SampleKind.CAMERA_FRAME: (CameraFrameDescriptor, "push_camera_frame"),
    SampleKind.AUDIO_BLOCK: (AudioBlockDescriptor, "push_audio_block"),
    SampleKind.RENDER_PACKET: (RenderPacketDescriptor, "push_render_packet"),
}
kinds = st.sampled_from(list(SampleKind))
sensors = st.integers(1, 3)
offsets = st.integers(-60, 40)  # relative to the edge: negative ones arrive out of order or late
flag_values = st.sampled_from([0, 0, 0, 0, 0, 1, 1 << 30])


def descriptor_for(cls, value: int):
    return cls(*[value + i for i in range(len(cls.__struct_fields__))])


class ReservoirMachine(RuleBasedStateMachine):
    rig = "unset"

    @initialize(capacity=st.integers(1, 10), duration=st.integers(1, 100))
    def create(self, capacity: int, duration: int) -> None:
        self.name = f"m{next(_names)}"
        self.res = Reservoir.create(self.rig, capacity=capacity, duration_ns=duration, max_sensors=32, name=self.name)
        try:
            self.view = ReservoirView.attach(self.rig, self.name)
        except BaseException:
            self.res.close()
            raise
        self.model = NaiveReservoir(capacity, duration)
        self.producers = {}
        self.descriptors = {}  # position -> descriptor pushed with it
        self.value = 0

    def teardown(self) -> None:
        try:
            if hasattr(self, "view"):
                self.view.close()
        finally:
            if hasattr(self, "res"):
                self.res.close()

    def ts(self, offset: int) -> int:
        return max(0, self.model.edge_ns + offset)

    def producer(self, kind: int, sensor: int):
        key = (kind, sensor)
        if key not in self.producers:
            self.producers[key] = self.res.producer(kind, sensor_id_hash=sensor, initial_sequence=sensor * 1000)
        return self.producers[key]

    # ---- operations -----------------------------------------------------------------------------------------
    @rule(kind=kinds, sensor=sensors, offset=offsets, flags=flag_values)
    def raw_push(self, kind, sensor, offset, flags):
        self.value += 1
        ts = self.ts(offset)
        expected = self.model.push(kind, sensor, ts, ts + 1, self.value, self.value, flags)
        if flags:
            with pytest.raises(RejectedSample):
                self.res.push(kind, SampleHandle(sensor, ts, ts + 1, self.value, self.value, flags, 0))
        else:
            assert self.res.push(kind, (sensor, ts, ts + 1, self.value, self.value, 0, 0)) == expected

    @rule(kind=st.integers(9, 300))
    def unknown_kind(self, kind):
        with pytest.raises(UnknownKind):
            self.res.push(kind, SampleHandle(1, 0, 0, 0, 0, 0, 0))

    @rule(kind=kinds, sensor=sensors, offset=offsets)
    def producer_push(self, kind, sensor, offset):
        p = self.producer(kind, sensor)
        ts = self.ts(offset)
        self.value += 1
        expected = self.model.push(kind, sensor, ts, 7, p.next_sequence, self.value)
        assert p.push(ts, 7, self.value) == expected

    @rule(kind=st.sampled_from(list(TYPED)), sensor=sensors, offset=offsets)
    def typed_push(self, kind, sensor, offset):
        cls, method = TYPED[kind]
        p = self.producer(kind, sensor)
        ts = self.ts(offset)
        self.value += 1
        descriptor = descriptor_for(cls, self.value)
        handle = make_handle(self.res.handle_id, self.model.stored)
        expected = self.model.push(kind, sensor, ts, 9, p.next_sequence, handle)
        assert getattr(p, method)(ts, 9, descriptor) == expected
        if expected != LATE:
            self.descriptors[expected] = descriptor

    @rule(rows=st.lists(st.tuples(kinds, sensors, offsets, flag_values), min_size=1, max_size=25),
          in_order=st.booleans())
    def raw_batch(self, rows, in_order):
        n = len(rows)
        batch = np.zeros(n, dtype=SAMPLE_DTYPE)
        edge = self.model.edge_ns
        stamps = [max(0, edge + o) for _, _, o, _ in rows]
        if in_order:
            stamps = sorted(abs(o) + edge for _, _, o, _ in rows)
        for i, ((kind, sensor, _, flags), ts) in enumerate(zip(rows, stamps)):
            self.value += 1
            batch[i] = (sensor, ts, ts, self.value, self.value, flags, 0)
        result = self.res.push_batch(np.array([r[0] for r in rows], dtype=np.uint8), batch)
        late = rejected = 0
        for (kind, *_), row in zip(rows, batch.tolist()):
            got = self.model.push(kind, *row)
            late += got == LATE
            rejected += got is None
        assert (result.late, result.rejected, result.stored) == (late, rejected, n - late - rejected)

    @rule(kind=kinds, sensor=sensors, steps=st.lists(st.integers(-40, 15), min_size=1, max_size=30),
          typed=st.booleans())
    def producer_batch(self, kind, sensor, steps, typed):
        p = self.producer(kind, sensor)
        ts = np.maximum(0, self.model.edge_ns + np.cumsum(steps)).astype(np.uint64)
        payloads = np.arange(len(steps), dtype=np.uint64) + 10_000
        descriptors = None
        if typed and kind in TYPED:
            cls = TYPED[kind][0]
            descriptors = np.zeros(len(steps), dtype=dtype_of(cls))
            for i in range(len(steps)):
                descriptors[i] = tuple(msgspec_values(descriptor_for(cls, 20_000 + i)))
        first_seq = p.next_sequence
        p.push_batch(ts, ts + 3, payloads, descriptors)
        for i, t in enumerate(ts.tolist()):
            payload = make_handle(self.res.handle_id, self.model.stored) if descriptors is not None else 10_000 + i
            got = self.model.push(kind, sensor, t, t + 3, first_seq + i, payload)
            if descriptors is not None and got != LATE:
                self.descriptors[got] = descriptor_for(TYPED[kind][0], 20_000 + i)

    @rule(offset=st.integers(-20, 80))
    def set_edge(self, offset):
        edge = self.ts(offset)
        assert self.res.set_edge(edge) == self.model.set_edge(edge)

    # ---- agreement ------------------------------------------------------------------------------------------
    @invariant()
    @precondition(lambda self: hasattr(self, "res"))
    def queries_agree(self):
        model = self.model
        expected = [s.as_sample() for s in model.samples]
        for q in (self.res, self.view):
            assert q.count() == model.count()
            assert [q.read(i) for i in range(q.count())] == expected
            with pytest.raises(IndexError):
                q.read(model.count())
            for kind in SampleKind:
                view = [s.as_sample() for s in model.view(kind)]
                assert q.view_count(kind) == len(view)
                assert [q.read_view(kind, i) for i in range(len(view))] == view
                for sensor in (1, 2, 3):
                    latest = model.latest_for_sensor(kind, sensor)
                    assert q.latest_for_sensor(kind, sensor) == (latest.as_sample() if latest else None)
            status = q.status()
            assert (status.edge_ns, status.window_start_ns) == (model.edge_ns, model.window_start_ns)
            assert (status.stored, status.late, status.out_of_order, status.rejected) == (
                model.stored, model.late, model.out_of_order, model.rejected)
            assert (status.evicted_aged, status.evicted_disorder, status.evicted_capacity) == (
                model.evicted_aged, model.evicted_disorder, model.evicted_capacity)
            assert [status.count_of(k) for k in SampleKind] == model.kind_counts()
            assert q.snapshot()["position"].tolist() == [s.position for s in model.samples]
        live = {s.position for s in model.samples}
        for position, descriptor in self.descriptors.items():
            handle = make_handle(self.res.handle_id, position)
            if position in live:
                assert self.view.descriptor(handle) == descriptor
            else:
                with pytest.raises(StaleHandle):
                    self.view.descriptor(handle)


def msgspec_values(struct) -> tuple:
    import msgspec

    return msgspec.structs.astuple(struct)


def test_reservoir_matches_the_list_model(rig):
    ReservoirMachine.rig = rig
    run_state_machine_as_test(
        ReservoirMachine,
        settings=settings(max_examples=150, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
