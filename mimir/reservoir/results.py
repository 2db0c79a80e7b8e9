"""Values the reservoir hands out: a sample read back, a status snapshot, a batch push result."""

from __future__ import annotations

import enum

import msgspec

from mimir.descriptors import SampleHandle, SampleKind

__all__ = ["Sample", "ReservoirStatus", "BatchResult", "LATE", "Refused"]

LATE = -1
"""What a push returns for a sample accepted with a timestamp before the window start (counted, never visible)."""


class Refused(enum.IntEnum):
    """Why :meth:`Reservoir.push_observed` refused an observed (untrusted) sample. Negative, unlike a position.

    Nothing refused touches the reservoir: not the edge, not a counter, not a
    sample. The caller counts refusals (``mimir.net.claims`` counts them per source).
    """

    AFTER_EDGE = -2      # timestamp after the edge: it would move the edge (and age out everything before it)
    BEFORE_WINDOW = -3   # timestamp before the window start: it could never be visible
    FULL = -4            # the window holds ``capacity`` samples: storing it would evict one
    INVALID = -5         # timestamp or arrival not a u64 int


class Sample(msgspec.Struct, frozen=True, gc=False):
    """One sample as read from the window: its kind, global position and the upstream 48-byte handle fields.

    ``position`` is stable for the sample's lifetime (``read_at(position)``,
    ``descriptor_at(position)``) and never reused.
    """

    kind: SampleKind
    position: int
    sensor_id_hash: int
    timestamp_ns: int
    arrival_ns: int
    sequence: int
    payload_handle: int
    flags: int
    reserved: int

    def handle(self) -> SampleHandle:
        """The upstream ``LocalcastSampleHandle`` of this sample."""
        return SampleHandle(self.sensor_id_hash, self.timestamp_ns, self.arrival_ns, self.sequence,
                            self.payload_handle, self.flags, self.reserved)


class ReservoirStatus(msgspec.Struct, frozen=True):
    """A consistent snapshot of the status words (upstream LocalcastRuntimeStatus plus counters).

    Invariants of every snapshot: ``total_sample_count == sum of the per-kind
    counts == tail - head``; ``stored == tail``; ``accepted == stored + late``;
    ``stored == total_sample_count + evicted``; ``window_start_ns ==
    max(0, edge_ns - duration_ns)``.
    """

    generation: int
    edge_ns: int
    window_start_ns: int
    duration_ns: int
    capacity: int
    total_sample_count: int
    camera_frame_count: int
    camera_feature_count: int
    scene_ray_count: int
    surface_claim_count: int
    material_claim_count: int
    audio_block_count: int
    phase_claim_count: int
    event_claim_count: int
    render_packet_count: int
    accepted: int
    stored: int
    late: int
    out_of_order: int
    rejected: int
    evicted_aged: int
    evicted_disorder: int
    evicted_capacity: int
    head: int
    tail: int
    sensors: int

    @property
    def evicted(self) -> int:
        return self.evicted_aged + self.evicted_disorder + self.evicted_capacity

    def count_of(self, kind: int) -> int:
        """The view count of ``kind``."""
        return getattr(self, f"{SampleKind(kind).name.lower()}_count")

    def kind_counts(self) -> dict[str, int]:
        return {k.name: self.count_of(k) for k in SampleKind}


class BatchResult(msgspec.Struct, frozen=True):
    """Outcome of a batched push: rows stored (consecutive positions from ``first_position``), late and rejected."""

    stored: int
    late: int
    rejected: int
    first_position: int
