"""A list-based reference reservoir: the window semantics written as plainly as possible, O(n) queries.

Two uses: the model that property tests check :class:`Reservoir` against,
and the "filtered scan" baseline of ``mimir bench reservoir`` (typed views
and latest-for-sensor scan the whole window, as upstream does).

The semantics, restated on a Python list in push order:

1. flags != 0 -> rejected (counted), nothing else changes;
2. ``edge = max(edge, ts)``, ``window_start = max(0, edge - duration)``;
3. ``ts < window_start`` -> late (counted), not stored;
4. otherwise append (``out_of_order`` if ``ts < previous edge``);
5. drop the prefix up to and including the last sample with
   ``ts < window_start`` (each dropped sample counts as aged if its own
   ``ts < window_start``, else as disorder), then drop the oldest while more
   than ``capacity`` remain (counted as capacity).

Nothing here is optimised; do not use it in a pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .layout import DEFAULT_WINDOW_NS, KIND_COUNT, KINDS, check_kind
from .results import LATE, Sample

__all__ = ["NaiveReservoir", "NaiveSample"]


@dataclass(frozen=True)
class NaiveSample:
    kind: int
    position: int
    sensor_id_hash: int
    timestamp_ns: int
    arrival_ns: int
    sequence: int
    payload_handle: int
    flags: int = 0
    reserved: int = 0

    def as_sample(self) -> Sample:
        return Sample(KINDS[self.kind], self.position, self.sensor_id_hash, self.timestamp_ns, self.arrival_ns,
                      self.sequence, self.payload_handle, self.flags, self.reserved)


@dataclass
class NaiveReservoir:
    capacity: int
    duration_ns: int = DEFAULT_WINDOW_NS
    samples: list[NaiveSample] = field(default_factory=list)
    edge_ns: int = 0
    stored: int = 0
    late: int = 0
    out_of_order: int = 0
    rejected: int = 0
    evicted_aged: int = 0
    evicted_disorder: int = 0
    evicted_capacity: int = 0

    def __post_init__(self) -> None:
        self.duration_ns = self.duration_ns or DEFAULT_WINDOW_NS

    @property
    def window_start_ns(self) -> int:
        return max(0, self.edge_ns - self.duration_ns)

    # ---- writes -------------------------------------------------------------------------------------------------
    def push(self, kind: int, sensor_id_hash: int, timestamp_ns: int, arrival_ns: int = 0, sequence: int = 0,
             payload_handle: int = 0, flags: int = 0, reserved: int = 0) -> int | None:
        """Returns the position, LATE, or None when rejected."""
        kind = check_kind(kind)
        if flags:
            self.rejected += 1
            return None
        previous_edge = self.edge_ns
        self.edge_ns = max(self.edge_ns, timestamp_ns)
        if timestamp_ns < self.window_start_ns:
            self.late += 1
            return LATE
        if timestamp_ns < previous_edge:
            self.out_of_order += 1
        position = self.stored
        self.stored += 1
        self.samples.append(NaiveSample(kind, position, sensor_id_hash, timestamp_ns, arrival_ns, sequence,
                                        payload_handle, 0, reserved))
        self._evict()
        return position

    def set_edge(self, edge_ns: int) -> int:
        self.edge_ns = max(self.edge_ns, edge_ns)
        self._evict()
        return self.edge_ns

    def _evict(self) -> None:
        start = self.window_start_ns
        last_old = max((i for i, s in enumerate(self.samples) if s.timestamp_ns < start), default=-1)
        for s in self.samples[: last_old + 1]:
            if s.timestamp_ns < start:
                self.evicted_aged += 1
            else:
                self.evicted_disorder += 1
        del self.samples[: last_old + 1]
        while len(self.samples) > self.capacity:
            self.samples.pop(0)
            self.evicted_capacity += 1

    # ---- queries (filtered scans, like upstream) ---------------------------------------------------------------
    def count(self) -> int:
        return len(self.samples)

    def view(self, kind: int) -> list[NaiveSample]:
        return [s for s in self.samples if s.kind == kind]

    def view_count(self, kind: int) -> int:
        return sum(1 for s in self.samples if s.kind == kind)

    def read(self, index: int) -> NaiveSample:
        if not 0 <= index < len(self.samples):
            raise IndexError(index)
        return self.samples[index]

    def read_view(self, kind: int, index: int) -> NaiveSample:
        if index < 0:
            raise IndexError(index)
        seen = 0
        for s in self.samples:
            if s.kind == kind:
                if seen == index:
                    return s
                seen += 1
        raise IndexError(index)

    def latest_for_sensor(self, kind: int, sensor_id_hash: int) -> NaiveSample | None:
        for s in reversed(self.samples):
            if s.kind == kind and s.sensor_id_hash == sensor_id_hash:
                return s
        return None

    def kind_counts(self) -> list[int]:
        counts = [0] * KIND_COUNT
        for s in self.samples:
            counts[s.kind] += 1
        return counts
