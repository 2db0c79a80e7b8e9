"""Time lookups for one sensor in a mixed kind view, against a brute-force scan of the window."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mimir.descriptors import CameraFrameDescriptor, SampleKind
from mimir.reservoir import Evicted, Reservoir, timeline

CAMERA = int(SampleKind.CAMERA_FRAME)
AUDIO = int(SampleKind.AUDIO_BLOCK)


def fill(res: Reservoir, cameras: int, frames: int, seed: int, *, disorder_ns: int = 3_000_000) -> list[tuple]:
    """Push ``frames`` per camera, interleaved in a random order (each camera in its own time order), plus audio.

    Like the supervisor's indexing: one camera's batch of frames can be pushed
    after another's newer ones. Returns (kind, sensor, ts) in push order.
    """
    rng = random.Random(seed)
    producers = [res.producer(SampleKind.CAMERA_FRAME, f"cam{c}") for c in range(cameras)]
    audio = res.producer(SampleKind.AUDIO_BLOCK, "mic")
    next_frame = [0] * cameras
    phase = [rng.randrange(16_666_667) for _ in range(cameras)]
    pushed = []
    t_audio = 0
    while min(next_frame) < frames:
        c = rng.randrange(cameras)
        for _ in range(rng.choice((1, 1, 1, 2, 5))):  # sometimes a burst (a backlog after a stall)
            if next_frame[c] >= frames:
                break
            ts = 1_000_000_000 + next_frame[c] * 16_666_667 + phase[c] + rng.randrange(disorder_ns)
            producers[c].push_camera_frame(ts, ts, CameraFrameDescriptor(0, next_frame[c], 0, 0, 4, 4, 0, 4, 16, 0))
            pushed.append((CAMERA, producers[c].sensor_id_hash, ts))
            next_frame[c] += 1
        while t_audio < min(next_frame) * 16_666_667:  # audio keeps pace with the slowest camera
            audio.push(1_000_000_000 + t_audio, 0)
            pushed.append((AUDIO, audio.sensor_id_hash, 1_000_000_000 + t_audio))
            t_audio += 1_333_333
    return pushed


def brute(res: Reservoir, kind: int, sensor: int, t_ns: int, rows: np.ndarray | None = None):
    """(position of the sensor's last sample <= t_ns, of its first > t_ns), by scanning every sample."""
    rows = res.snapshot(kind) if rows is None else rows
    ts = rows["timestamp_ns"][rows["sensor_id_hash"] == sensor].astype(np.int64)
    pos = rows["position"][rows["sensor_id_hash"] == sensor]
    le = np.flatnonzero(ts <= t_ns)
    gt = np.flatnonzero(ts > t_ns)
    return (int(pos[le[-1]]) if len(le) else None), (int(pos[gt[0]]) if len(gt) else None)


@pytest.mark.parametrize("cameras,frames,seed", [(1, 50, 1), (6, 300, 2), (3, 40, 3), (6, 2000, 4)])
def test_neighbours_match_a_scan_of_the_window(rig, cameras, frames, seed):
    with Reservoir.create(rig, capacity=cameras * frames * 3 + 64, duration_ns=10**15) as res:
        pushed = fill(res, cameras, frames, seed)
        sensors = sorted({s for k, s, _ in pushed if k == CAMERA})
        stamps = [t for k, _, t in pushed if k == CAMERA]
        rng = random.Random(seed)
        queries = [min(stamps) - 1, min(stamps), max(stamps), max(stamps) + 1]
        queries += [rng.randrange(min(stamps) - 10**8, max(stamps) + 10**8) for _ in range(300)]
        queries += [rng.choice(stamps) + d for d in (-1, 0, 1) for _ in range(50)]
        rows = res.snapshot(CAMERA)
        for t in queries:
            for sensor in sensors:
                before, after = timeline.neighbours(res, CAMERA, sensor, t)
                got = (before.sample.position if before else None, after.sample.position if after else None)
                assert got == brute(res, CAMERA, sensor, t, rows), (t, sensor)
                for hit in (before, after):
                    if hit is not None:
                        assert res.read_kind_at(CAMERA, hit.kind_position) == hit.sample


def test_walk_visits_the_sensors_samples_in_order(rig):
    with Reservoir.create(rig, capacity=4096, duration_ns=10**15) as res:
        pushed = fill(res, 4, 200, 5)
        sensor = next(s for k, s, _ in pushed if k == CAMERA)
        mine = [t for k, s, t in pushed if k == CAMERA and s == sensor]
        start = timeline.first_hit(res, CAMERA, sensor, mine[57])
        assert start.sample.timestamp_ns == mine[57]
        assert [h.sample.timestamp_ns for h in timeline.walk(res, CAMERA, sensor, start)] == mine[57:]


def test_a_sensor_without_samples_and_an_empty_window(rig):
    with Reservoir.create(rig, capacity=256, duration_ns=10**15) as res:
        assert timeline.neighbours(res, CAMERA, 12345, 10) == (None, None)
        fill(res, 2, 10, 6)
        assert timeline.neighbours(res, CAMERA, 12345, 1_000_000_000) == (None, None)


def test_a_search_restarts_when_the_head_passes_it(rig):
    """Positions evicted under a running search make it start again on the new window, never answer stale."""
    with Reservoir.create(rig, capacity=4096, duration_ns=200_000_000) as res:
        pushed = fill(res, 3, 100, 7)
        sensor = pushed[0][1]
        real = res.sensor_time_at
        calls = [0]

        def moving(kind, k):
            calls[0] += 1
            if calls[0] == 3:  # in the middle of the first search: the window moves on by 50 ms
                res.set_edge(res.edge_ns + 50_000_000)
            return real(kind, k)

        res.sensor_time_at = moving
        t = res.window_start_ns + 60_000_000
        before, after = timeline.neighbours(res, CAMERA, sensor, t)
        res.sensor_time_at = real
        assert calls[0] > 3
        assert (before.sample.position if before else None, after.sample.position if after else None) \
            == brute(res, CAMERA, sensor, t)


def test_read_kind_at_is_stable_while_the_head_moves(rig):
    with Reservoir.create(rig, capacity=64, duration_ns=100) as res:
        p = res.producer(SampleKind.CAMERA_FRAME, "cam")
        for ts in range(10, 20):
            p.push(ts, ts)
        assert res.kind_bounds(CAMERA) == (0, 10)
        assert res.read_kind_at(CAMERA, 4).timestamp_ns == 14
        res.set_edge(115)  # window start 15: kind positions 0..4 leave
        assert res.kind_bounds(CAMERA) == (5, 10)
        assert res.read_kind_at(CAMERA, 7).timestamp_ns == 17  # the same position, the same sample
        assert res.kind_position_of(res.read_kind_at(CAMERA, 7)) == 7
        with pytest.raises(Evicted):
            res.read_kind_at(CAMERA, 4)
        with pytest.raises(IndexError):
            res.read_kind_at(CAMERA, 10)


def test_typed_snapshot_gives_every_descriptor_of_the_view(rig):
    with Reservoir.create(rig, capacity=256, duration_ns=10**15) as res:
        p = res.producer(SampleKind.CAMERA_FRAME, "cam")
        p.push(5, 5)  # a plain push carries no descriptor: left out
        for n in range(20):
            p.push_camera_frame(10 + n, 10 + n, CameraFrameDescriptor(7, n, 100 + n, 200 + n, 4, 2, 0, 4, 8, 999 + n))
        rows, descriptors = res.typed_snapshot(CAMERA)
        assert rows["timestamp_ns"].tolist() == list(range(10, 30))
        assert descriptors["sequence"].tolist() == list(range(20))
        assert descriptors["payload_handle"].tolist() == [999 + n for n in range(20)]
        for row, d in zip(rows, descriptors, strict=True):
            assert res.descriptor_at(int(row["position"])).device_time_ns == d["device_time_ns"]
        with pytest.raises(LookupError, match="carry no descriptor"):
            res.typed_snapshot(int(SampleKind.EVENT_CLAIM))


def test_typed_range_gives_the_kind_positions_asked_for_that_are_in_the_window(rig):
    """A cursor walk: [first, end) clipped to the window; what left it (or is not pushed yet) is not returned."""
    with Reservoir.create(rig, capacity=16, duration_ns=10**15) as res:
        p = res.producer(SampleKind.CAMERA_FRAME, "cam")
        for n in range(40):  # capacity 16: kind positions 0..23 have been evicted
            p.push_camera_frame(10 + n, 10 + n, CameraFrameDescriptor(7, n, 100 + n, 200 + n, 4, 2, 0, 4, 8, 999 + n))
        assert res.kind_bounds(CAMERA) == (24, 40)
        rows, descriptors = res.typed_range(CAMERA, 30, 35)
        assert descriptors["sequence"].tolist() == [30, 31, 32, 33, 34]
        assert rows["timestamp_ns"].tolist() == [40, 41, 42, 43, 44]
        rows, descriptors = res.typed_range(CAMERA, 20, 26)  # 20..23 left the window
        assert descriptors["sequence"].tolist() == [24, 25]
        rows, descriptors = res.typed_range(CAMERA, 38, 50)  # 40.. not pushed yet
        assert descriptors["sequence"].tolist() == [38, 39]
        assert len(res.typed_range(CAMERA, 45, 50)[0]) == 0 and len(res.typed_range(CAMERA, 30, 30)[0]) == 0
        whole = res.typed_snapshot(CAMERA)
        walked = res.typed_range(CAMERA, 0, 40)
        assert np.array_equal(whole[0], walked[0]) and np.array_equal(whole[1], walked[1])
