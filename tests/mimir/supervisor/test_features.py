"""FeatureIndexer against a hostile features producer, on a real ring and a real reservoir.

The producer is untrusted beyond its bounds (mimir/supervisor/features.py). Invariants each test checks:
* a record lands only on the canonical time the supervisor gave its frame, whatever time it claims;
* nothing it writes touches the rig's reservoir (its records go into a features reservoir of their own, whose
  edge follows the rig's and never goes beyond it), and nothing is evicted for capacity;
* every record read is indexed or refused, and each refusal is counted under its own cause.
"""

from __future__ import annotations

import math
import random

import pytest

from mimir.descriptors import CameraFeature, SampleKind
from mimir.reservoir import Reservoir
from mimir.supervisor.features import FeatureIndexer
from mimir.topology import FEATURES, FeatureCameraSpec, FeatureWorkerSpec, RingSpec, feature_source, source_hash
from ringbuf import Ring, RingReader

CAMERAS = ("cam.test.0", "cam.test.1")
HASHES = tuple(source_hash(c) for c in CAMERAS)
FPS = 30.0
FRAME_NS = round(1e9 / FPS)
T0_NS = 1_000_000_000_000


def _spec(rig: str) -> FeatureWorkerSpec:
    cams = tuple(FeatureCameraSpec(source=c, source_hash=h, ring=RingSpec(object_id=f"c{i}", name=c, capacity=16),
                                   width=64, height=48, pixel_format="GREY")
                 for i, (c, h) in enumerate(zip(CAMERAS, HASHES, strict=True)))
    return FeatureWorkerSpec(name="features", rig=rig, device="cpu", changed_threshold=16, cameras=cams,
                             ring=RingSpec(object_id=FEATURES, name="features", capacity=1024))


class Rig:
    """A reservoir with local camera frames, the supervisor's frame map, and the features ring."""

    def __init__(self, rig: str, *, capacity: int = 4096, window_ns: int = 5_000_000_000) -> None:
        self.reservoir = Reservoir.create(rig, capacity=8192, duration_ns=window_ns)  # the rig's
        self.features_reservoir = Reservoir.create(rig, name="fx", capacity=capacity, duration_ns=window_ns)
        self.ring = Ring.create(FEATURES, rig=rig, descriptor=CameraFeature, capacity=1024)
        self.reader = RingReader.attach(FEATURES, rig=rig, descriptor=CameraFeature)
        self.frames: dict[tuple[int, int], int] = {}  # (camera hash, sequence) -> canonical ns
        self.cameras = [self.reservoir.producer(SampleKind.CAMERA_FRAME, sensor_id_hash=h) for h in HASHES]
        self.indexer = FeatureIndexer("features", self.reader, self.features_reservoir, _spec(rig),
                                      lambda h, s: self.frames.get((h, s)),
                                      lambda: self.reservoir.edge_ns)

    def index_frames(self, first: int, count: int) -> None:
        """The supervisor indexes ``count`` frames of each camera from sequence ``first`` (in order)."""
        for sequence in range(first, first + count):
            t = T0_NS + sequence * FRAME_NS
            for h, producer in zip(HASHES, self.cameras, strict=True):
                self.frames[(h, sequence)] = t
                assert producer.push(t, t) >= 0

    def publish(self, camera_hash: int, sequence: int, *, claimed_ns: int = 0, energy: float = 1.0,
                changed: float = 0.1, luma: float = 100.0) -> None:
        self.ring.publish(camera_hash, sequence, claimed_ns, max(0, sequence - 1), energy, changed, luma, 16)

    def features(self, camera_hash: int) -> list[tuple[int, CameraFeature]]:
        sensor = source_hash(feature_source(CAMERAS[HASHES.index(camera_hash)]))
        rows, typed = self.features_reservoir.typed_snapshot(SampleKind.CAMERA_FEATURE)
        return [(int(r["timestamp_ns"]), CameraFeature(*t.tolist())) for r, t in zip(rows, typed, strict=True)
                if int(r["sensor_id_hash"]) == sensor]

    def close(self) -> None:
        self.reader.close()
        self.ring.close()
        self.features_reservoir.close()
        self.reservoir.close()


@pytest.fixture
def fake(rig):
    r = Rig(rig)
    yield r
    r.close()


def _untouched(r: Rig, rig_before) -> None:
    """The rig's reservoir is exactly as the local frames left it; the features' edge is the rig's, and the
    features reservoir evicted nothing for capacity."""
    assert r.reservoir.status() == rig_before
    fx = r.features_reservoir.status()
    assert fx.edge_ns == rig_before.edge_ns and fx.evicted_capacity == 0


def test_records_land_on_their_frames_canonical_times_whatever_time_they_claim(fake):
    fake.index_frames(0, 20)
    before = fake.reservoir.status()
    for sequence in range(1, 20):
        fake.publish(HASHES[0], sequence, claimed_ns=(1 << 63) + sequence)  # a claimed time far past the edge
    assert fake.indexer.poll() == 19
    assert fake.indexer.indexed == 19 and fake.indexer.refused == 0
    placed = fake.features(HASHES[0])
    assert [t for t, _ in placed] == [T0_NS + s * FRAME_NS for s in range(1, 20)]
    assert all(f.canonical_ns == t and f.source_id_hash == HASHES[0] for t, f in placed)
    _untouched(fake, before)  # the edge is where the frames put it


def test_every_hostile_record_is_refused_under_its_own_cause_and_moves_nothing(fake):
    fake.index_frames(0, 40)
    before = fake.reservoir.status()
    fake.publish(source_hash("cam.nobody"), 5)                  # unknown_camera
    fake.publish(HASHES[0], 10_000)                             # unknown_frame: never indexed
    fake.publish(HASHES[0], 6, energy=math.nan)                 # invalid: NaN
    fake.publish(HASHES[0], 7, changed=1.5)                     # invalid: a fraction above 1
    fake.publish(HASHES[0], 8, luma=-1.0)                       # invalid: luma below 0
    fake.publish(HASHES[0], 9, energy=math.inf)                 # invalid
    fake.publish(HASHES[1], 3)                                  # accepted
    assert fake.indexer.poll() == 7
    r = fake.indexer.refusals
    assert (r.unknown_camera, r.unknown_frame, r.invalid, r.repeated, r.full, r.past) == (1, 1, 4, 0, 0, 0)
    assert fake.indexer.indexed == 1
    assert fake.indexer.indexed + fake.indexer.refused == 7     # read = indexed + refused by cause
    _untouched(fake, before)


def test_a_flood_is_held_to_one_record_per_frame_and_counted(fake):
    """The producer's rate bound is its camera's: each frame's record once, in time order. Repeats, and records
    older than one already placed, are refused as ``repeated``; the flood places nothing twice."""
    fake.index_frames(0, 120)                                    # 4 s of frames: all in the 5 s window
    for sequence in range(60):
        for _ in range(3):                                       # every record three times
            fake.publish(HASHES[0], sequence)
    for sequence in range(59, -1, -1):                           # then all of them again, newest first
        fake.publish(HASHES[0], sequence)
    assert fake.indexer.poll() == 240
    r = fake.indexer.refusals
    assert (fake.indexer.indexed, r.repeated) == (60, 180)
    assert [f.sequence for _, f in fake.features(HASHES[0])] == list(range(60))


def test_an_honest_producer_catching_up_after_a_stall_loses_nothing(fake):
    """Found in CI: a bound on arrival rate (1.5 x the frame rate with a second's burst) refused an honest
    producer's records after it stalled for over a second under load. Four seconds of records read at once
    are all indexed: the bound is per frame, not per second of the supervisor's clock."""
    fake.index_frames(0, 120)
    for sequence in range(120):
        fake.publish(HASHES[0], sequence)
        fake.publish(HASHES[1], sequence)
    assert fake.indexer.poll() == 240
    assert (fake.indexer.indexed, fake.indexer.refused) == (240, 0)


def test_a_full_features_window_refuses_instead_of_evicting(rig):
    r = Rig(rig, capacity=16)                                    # the features reservoir holds 16 records
    try:
        r.index_frames(0, 30)
        before = r.reservoir.status()
        for sequence in range(30):
            r.publish(HASHES[0], sequence)
        r.indexer.poll()
        assert r.indexer.indexed == 16 and r.indexer.refusals.full == 14
        _untouched(r, before)
        assert r.reservoir.view_count(SampleKind.CAMERA_FRAME) == 60
        assert [f.sequence for _, f in r.features(HASHES[0])] == list(range(16))  # the first 16 stay
    finally:
        r.close()


def test_a_record_whose_frame_left_the_window_is_past(rig):
    r = Rig(rig, window_ns=10 * FRAME_NS)
    try:
        r.index_frames(0, 40)                                    # the window holds the last ~10 frames
        r.publish(HASHES[0], 2)                                  # remembered, but left the window: past
        r.publish(HASHES[0], 38)                                 # in the window
        r.indexer.poll()
        assert (r.indexer.refusals.past, r.indexer.indexed) == (1, 1)
    finally:
        r.close()


def test_seeded_random_hostile_stream_keeps_the_ledger_and_the_edge(fake):
    """A seeded mix of good, late, unknown, corrupt and flooding records: read = indexed + refused, per cause;
    the edge and window start only move with local frames; each indexed record sits on its frame's time."""
    rng = random.Random(20261204)
    fake.index_frames(0, 140)
    before = fake.reservoir.status()
    published = 0
    for _ in range(600):
        camera = rng.choice(HASHES + (source_hash("cam.nobody"),))
        sequence = rng.choice([rng.randrange(140), rng.randrange(140, 1 << 40)])
        value = rng.choice([1.0, math.nan, -5.0, 300.0, 0.5])
        fake.publish(camera, sequence, claimed_ns=rng.randrange(1 << 64), energy=value)
        published += 1
        if rng.random() < 0.05:
            fake.indexer.poll()
    fake.indexer.poll()
    assert fake.indexer.indexed + fake.indexer.refused == published
    _untouched(fake, before)
    for h in HASHES:
        for t, f in fake.features(h):
            assert fake.frames[(h, f.sequence)] == t == f.canonical_ns
    r = fake.indexer.refusals
    assert min(r.unknown_camera, r.unknown_frame, r.invalid) > 0 and fake.indexer.indexed > 0  # the mix reached all
