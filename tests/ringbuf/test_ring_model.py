"""Hypothesis model test: the ring against a plain Python list model (writes, reads, lapping, readers)."""
import itertools
import os

import msgspec
import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ringbuf import Ring, RingReader, U64
from ringbuf.segment import list_segments

CAPACITY = 5
_rigs = itertools.count()


class Value(msgspec.Struct):
    value: U64


class ModelReader:
    def __init__(self, published: int, start: str) -> None:
        self.cursor = published if start == "latest" else max(0, published - CAPACITY)
        self.lost = 0

    def read(self, values: list[int]):
        oldest = len(values) - CAPACITY
        if self.cursor < oldest:
            self.lost += oldest - self.cursor
            self.cursor = oldest
        if self.cursor >= len(values):
            return None
        self.cursor += 1
        return self.cursor - 1, values[self.cursor - 1]


class RingMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.rig = f"t{os.getpid()}n{next(_rigs)}m"
        self.ring = Ring.create("m", rig=self.rig, descriptor=Value, capacity=CAPACITY, payload_shape=(4,))
        self.values: list[int] = []
        self.payloads: dict[int, int] = {}  # sequence -> payload byte, for items written with a payload
        self.readers: list[tuple[RingReader, ModelReader]] = []

    @rule(value=st.integers(0, 2**64 - 1))
    def publish(self, value):
        self.ring.write(np.full(4, value & 0xFF, np.uint8), value)
        self.values.append(value)
        self.payloads[len(self.values) - 1] = value & 0xFF

    @rule(values=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=CAPACITY))
    def publish_batch(self, values):
        batch = np.array([(v,) for v in values], dtype=self.ring._m.desc_dtype)
        self.ring.publish_batch(batch)
        self.values.extend(values)

    @precondition(lambda self: len(self.readers) < 3)
    @rule(start=st.sampled_from(["oldest", "latest"]))
    def attach(self, start):
        real = RingReader.attach("m", rig=self.rig, descriptor=Value, start=start)
        self.readers.append((real, ModelReader(len(self.values), start)))

    @precondition(lambda self: self.readers)
    @rule(index=st.integers(0, 2))
    def read(self, index):
        real, model = self.readers[index % len(self.readers)]
        expected = model.read(self.values)
        item = real.read()
        got = None if item is None else (item.sequence, item.descriptor[0])
        assert got == expected
        if item is not None and item.sequence in self.payloads:
            assert (item.payload == self.payloads[item.sequence]).all()

    @precondition(lambda self: self.readers)
    @rule(index=st.integers(0, 2), size=st.integers(1, 2 * CAPACITY))
    def read_batch(self, index, size):
        real, model = self.readers[index % len(self.readers)]
        out = np.zeros(size, real.descriptor_dtype)
        got = real.read_batch(out)
        expected = []
        while len(expected) < size:
            item = model.read(self.values)
            if item is None:
                break
            expected.append(item[1])
        assert out["value"][:got].tolist() == expected

    @invariant()
    def counters_agree(self):
        for real, model in getattr(self, "readers", []):
            assert real.lost == model.lost
            assert real.available() == len(self.values) - model.cursor

    def teardown(self):
        for real, _ in getattr(self, "readers", []):
            real.close()
        if hasattr(self, "ring"):
            self.ring.close()
            assert list_segments(self.rig) == []


TestRingModel = RingMachine.TestCase
TestRingModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
