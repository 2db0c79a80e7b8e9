"""The rolling five-second reservoir: one edge, typed views, producers and descriptors in shared memory.

Writer (the supervisor)::

    from mimir.reservoir import Reservoir, capacity_for
    from mimir.descriptors import SampleKind
    res = Reservoir.create(rig, capacity=capacity_for({SampleKind.CAMERA_FRAME: 6 * 187,
                                                        SampleKind.AUDIO_BLOCK: 1000}))
    cam = res.producer(SampleKind.CAMERA_FRAME, "ps3eye-0")
    cam.push_camera_frame(t_ns, arrival_ns, frame_descriptor)

Any other process::

    view = ReservoirView.attach(rig)
    view.count(), view.view_count(SampleKind.AUDIO_BLOCK), view.read_view(SampleKind.AUDIO_BLOCK, 0)
    view.latest_for_sensor(SampleKind.CAMERA_FRAME, source_id_hash("ps3eye-0")), view.status()

See ``docs/reservoir.md`` for the layout, the eviction rule and the numbers.
"""

from mimir.descriptors import SampleKind

from .capacity import capacity_for, latest_slots_for, segment_bytes
from .errors import (
    EmptySourceId, Evicted, HandleIdCollision, MissingDescriptor, RejectedSample, ReservoirBusy, ReservoirClosed,
    ReservoirError, ReservoirLayoutMismatch, SensorTableFull, StaleHandle, UnknownHandle, UnknownKind,
    WrongProducerKind,
)
from .handles import HandleResolver
from .ids import hash_source_id, source_id_hash
from .layout import DEFAULT_WINDOW_NS, KIND_COUNT, TYPED_DESCRIPTORS
from .producer import Producer
from .queries import SNAPSHOT_DTYPE, ReservoirQueries
from .results import LATE, BatchResult, Refused, ReservoirStatus, Sample
from .store import SAMPLE_DTYPE, Reservoir
from .view import ReservoirView

__all__ = [
    "Reservoir", "ReservoirView", "ReservoirQueries", "Producer", "HandleResolver", "SampleKind",
    "Sample", "ReservoirStatus", "BatchResult", "LATE", "Refused", "SAMPLE_DTYPE", "SNAPSHOT_DTYPE",
    "DEFAULT_WINDOW_NS", "KIND_COUNT", "TYPED_DESCRIPTORS",
    "capacity_for", "segment_bytes", "latest_slots_for", "hash_source_id", "source_id_hash",
    "ReservoirError", "UnknownKind", "EmptySourceId", "RejectedSample", "WrongProducerKind", "MissingDescriptor",
    "SensorTableFull", "ReservoirLayoutMismatch", "ReservoirBusy", "ReservoirClosed", "Evicted", "StaleHandle",
    "UnknownHandle", "HandleIdCollision",
]
