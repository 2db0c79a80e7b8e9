"""The features producer's ring into the reservoir: each record on its frame's canonical time, or refused by cause.

The reservoir has one writer, the supervisor; another process produces into
it only through a ring the rig contract declares (``ft``, written by the
features worker, :mod:`workers.features.worker`). The supervisor trusts the
producer as it trusts a remote claim -- not at all beyond the bounds:

* **time is the supervisor's.** A record names its frame (camera source hash
  and ``CameraFrameDescriptor.sequence``); the sample is placed at the
  canonical time the supervisor gave that frame when it indexed it. A record
  whose frame it never indexed (or indexed too long ago to remember,
  :data:`mimir.supervisor.indexer.FRAMES_REMEMBERED` per camera) is refused: ``unknown_frame``.
  Whatever ``canonical_ns`` the producer wrote is ignored.
* **never the edge, never local data.** Records go into a reservoir of their
  own (``fx``, :data:`mimir.topology.FEATURE_RESERVOIR`), never the rig's:
  a record arrives after its frame, and an out-of-order sample in the rig's
  reservoir would take the samples pushed before it out early when it ages
  out (docs/reservoir.md, section 4). Its edge follows the rig's (trusted
  time, ``edge_ns``), and records go in through
  :meth:`mimir.reservoir.Producer.push_observed`: refused when the window is
  full (``full``) or the frame left the window (``past``); a producer can
  neither move an edge nor evict anything for capacity.
* **bounded rates and values.** Per camera at most one record per indexed
  frame, in time order: a record whose frame is not after the camera's newest
  placed record is refused (``repeated``), so a producer can never exceed its
  camera's own frame rate, whenever the supervisor happens to read the ring
  (a bound on arrival times would refuse an honest producer's catch-up after
  a stall); a camera the contract did not give the
  producer (``unknown_camera``); values outside their definition -- NaN,
  motion or luma outside 0..255, a fraction outside 0..1 (``invalid``).

Every refusal is counted by cause (:class:`FeatureRefusals`) and shown in
`mimir status`. Accepted records become ``CAMERA_FEATURE`` samples of source
``<camera>.motion`` whose typed descriptor is the record itself, with
``canonical_ns`` set to the frame's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mimir.descriptors import CameraFeature, SampleKind
from mimir.reservoir import Producer, Refused, Reservoir
from mimir.timebase import TimeSource
from mimir.topology import FeatureWorkerSpec, feature_source, source_hash
from ringbuf import RingReader, dtype_of

__all__ = ["FeatureIndexer", "FeatureRefusals"]

BATCH = 256
_FIELDS = CameraFeature.__struct_fields__
_HASH, _SEQUENCE = _FIELDS.index("source_id_hash"), _FIELDS.index("sequence")
_CANONICAL = _FIELDS.index("canonical_ns")
_ENERGY, _CHANGED, _LUMA = _FIELDS.index("motion_energy"), _FIELDS.index("changed_fraction"), _FIELDS.index("mean_luma")


@dataclass
class FeatureRefusals:
    """Records read from the producer's ring but not indexed, by cause."""

    unknown_camera: int = 0
    unknown_frame: int = 0
    past: int = 0
    full: int = 0
    repeated: int = 0
    invalid: int = 0


@dataclass
class _Camera:
    producer: Producer
    hash: int = 0
    accepted: int = 0
    newest_ns: int = -1     # canonical ns of the newest record placed (accepted or refused by the reservoir)


FrameTime = Callable[[int, int], "int | None"]  # (camera source hash, frame sequence) -> canonical ns or None


@dataclass
class FeatureIndexer:
    """Indexes the ``features`` source (one ring, one ``<camera>.motion`` source per camera in ``reservoir``, the
    features reservoir).

    Same face as :class:`mimir.supervisor.indexer.RingIndexer` for the
    supervisor's loop and status: :meth:`poll`, ``reader``, ``indexed``,
    ``refused``, ``last_error``, ``first_host_ns``/``last_host_ns``,
    ``time_source``. ``frame_time`` answers the canonical time the
    supervisor gave a frame (see module docstring).
    """

    name: str
    reader: RingReader
    reservoir: Reservoir
    spec: FeatureWorkerSpec
    frame_time: FrameTime
    edge_ns: Callable[[], int]             # the rig reservoir's edge: trusted time for the features' window
    kind: SampleKind = SampleKind.CAMERA_FEATURE
    indexed: int = 0
    refusals: FeatureRefusals = field(default_factory=FeatureRefusals)
    last_error: str = ""
    first_host_ns: int = 0
    last_host_ns: int = 0

    def __post_init__(self) -> None:
        self._cameras: dict[int, _Camera] = {}
        for c in self.spec.cameras:
            producer = self.reservoir.producer(SampleKind.CAMERA_FEATURE,
                                               sensor_id_hash=source_hash(feature_source(c.source)))
            self._cameras[c.source_hash] = _Camera(producer, c.source_hash)
        self._out = np.zeros(BATCH, dtype_of(CameraFeature))

    @property
    def refused(self) -> int:
        return sum(vars(self.refusals).values())

    @property
    def time_source(self) -> int:
        return int(TimeSource.DEVICE)  # features take their frames' times, whatever placed those

    def poll(self) -> int:
        """Index everything new in the producer's ring; return how many records were read."""
        self.reservoir.set_edge(self.edge_ns())  # only ever forward: the rig's window ages the features' too
        if self.reader.available() <= 0:
            return 0
        total = 0
        while True:
            n = self.reader.read_batch(self._out)
            if n == 0:
                return total
            self._index(self._out[:n].tolist())
            total += n
            if n < BATCH:
                return total

    def _index(self, rows: list[tuple]) -> None:
        now_ns = time.monotonic_ns()
        refusals = self.refusals
        for values in rows:
            camera = self._cameras.get(values[_HASH])
            if camera is None:
                refusals.unknown_camera += 1
                continue
            energy, changed, luma = values[_ENERGY], values[_CHANGED], values[_LUMA]
            if not (0.0 <= energy <= 255.0 and 0.0 <= changed <= 1.0 and 0.0 <= luma <= 255.0):
                refusals.invalid += 1  # NaN fails every comparison
                continue
            canonical_ns = self.frame_time(camera.hash, values[_SEQUENCE])
            if canonical_ns is None:
                refusals.unknown_frame += 1
                continue
            if canonical_ns <= camera.newest_ns:
                refusals.repeated += 1   # a frame's second record, or one older than a record already placed
                continue
            camera.newest_ns = canonical_ns
            placed = list(values)
            placed[_CANONICAL] = canonical_ns
            position = camera.producer.push_observed(canonical_ns, now_ns, descriptor=placed)
            if position == Refused.FULL:
                refusals.full += 1
            elif position == Refused.BEFORE_WINDOW:
                refusals.past += 1
            elif position < 0:
                refusals.invalid += 1   # AFTER_EDGE cannot happen for an indexed frame; INVALID: not a u64
                self.last_error = f"the reservoir refused a feature record: {Refused(position).name}"
            else:
                camera.accepted += 1
                self.indexed += 1
                if not self.first_host_ns:
                    self.first_host_ns = now_ns
                self.last_host_ns = now_ns
