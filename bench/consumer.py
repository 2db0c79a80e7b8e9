"""``mimir bench consumer``: time-aligned reads at 1k and 100k samples, and the first lap of a ring.

Two parts, each a ratio measured in the same run:

**Reads** (:class:`mimir.consumer.RigConsumer` over a reservoir and rings
built here, no processes): a rig of six cameras at 60 fps and one audio
source at 750 blocks/s, the window holding 1,000 or 100,000 samples
(samples interleaved as the supervisor indexes them: each camera's frames in
order, cameras mixed, bursts). Per read, the median of repeats of (loop time
/ reads) at random times inside the window:

* ``frame_at`` (nearest), ``frames`` (a 100 ms span: 6 frames), ``moment``
  (six frames plus 20 ms of audio), ``audio`` (20 ms);
* the peer: the same ``frame_at`` answer found by a vectorised scan of the
  window (``typed_snapshot`` + a numpy filter), what a reader without the
  searches would do.

Figures: ``ratio_100k_over_1k`` (O(log n): well below 100) and
``speedup_vs_scan_at_100k``.

**First lap vs steady state** (pre-faulting): a VGA YUYV camera ring sized
for the 5 s window at 60 fps (304 slots, 187 MB) is created with and without
``prefault``; each publishes 3 laps of frames (claim, copy a 614 KB frame,
publish) as fast as it can. ``first_lap_over_steady`` = median publish time
of the first lap (the first 5 s of a real camera) / of the later laps. With
pre-faulting the first lap takes no page faults: the ratio is about 1.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from mimir.config import AudioConfig, CameraFamilyConfig, ReservoirConfig, RigConfig
from mimir.consumer import RigConsumer
from mimir.descriptors import AudioBlockDescriptor, AudioBlockRecord, CameraFrameDescriptor, SampleKind
from mimir.reservoir import HandleResolver, Reservoir, ReservoirView
from mimir.topology import RESERVOIR, plan_rig
from ringbuf import Ring
from ringbuf.segment import list_segments, unlink_segment

__all__ = ["run", "format_table", "GOALS", "SIZES", "RIG"]

RIG = f"bcon{os.getpid() % 100000}"
SIZES = (1_000, 100_000)
GOALS = {"ratio_100k_over_1k": 3.0, "first_lap_over_steady_prefaulted": 1.5}
CAMERAS = 6
FPS = 60.0
BLOCKS_HZ = 750.0
FRAME = (24, 32)  # GREY, the smallest frame a config allows: the reads never look at pixels; small rings keep the 100k window light
BLOCK = (64, 2)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Window:
    """A reservoir holding ``n`` samples of a six-camera rig, its rings, and a consumer over them."""

    def __init__(self, n: int, seed: int) -> None:
        self.rig = f"{RIG}w{n // 1000}"
        seconds = n / (CAMERAS * FPS + BLOCKS_HZ)
        config = RigConfig(rig=self.rig, cameras=[CameraFamilyConfig(family="synthetic", count=CAMERAS, width=FRAME[1],
                                                                     height=FRAME[0], fps=FPS, format="GREY")],
                           audio=AudioConfig(channels=BLOCK[1], block_frames=BLOCK[0], rate_hz=48_000),
                           reservoir=ReservoirConfig(window_s=seconds + 10))  # holds them all
        plan = plan_rig(config)
        self.rings: list[Ring] = []
        self._consumer: RigConsumer | None = None
        self.res = Reservoir.create(self.rig, name=RESERVOIR, capacity=n + 64, duration_ns=plan.window_ns)
        try:
            self._fill(plan, n, seed)
        except BaseException:
            self.close()
            raise

    def _fill(self, plan, n: int, seed: int) -> None:
        rng = random.Random(seed)
        cams = plan.cameras()
        producers = []
        for spec in cams:
            ring = Ring.create(spec.ring.object_id, rig=self.rig, descriptor=CameraFrameDescriptor,
                               capacity=spec.ring.capacity, payload_shape=FRAME)
            self.rings.append(ring)
            producers.append((ring, self.res.producer(SampleKind.CAMERA_FRAME, sensor_id_hash=spec.source_hash)))
        audio = plan.source("audio")
        audio_ring = Ring.create(audio.ring.object_id, rig=self.rig, descriptor=AudioBlockRecord,
                                 capacity=audio.ring.capacity, payload_shape=BLOCK, payload_dtype=np.float32)
        self.rings.append(audio_ring)
        mic = self.res.producer(SampleKind.AUDIO_BLOCK, sensor_id_hash=audio.source_hash)
        # As the supervisor indexes: it wakes every 0.5-3 ms (now and then after a 40 ms stall) and pushes what
        # each ring published since, ring after ring; a frame's time is its capture time plus jitter.
        t0 = 1_000_000_000_000
        period = round(1e9 / FPS)
        phase = [c * period // CAMERAS for c in range(CAMERAS)]
        frame_n = [0] * CAMERAS
        block_n = 0
        pushed = 0
        now = t0
        while pushed < n:
            now += 40_000_000 if rng.random() < 0.002 else rng.randrange(500_000, 3_000_000)
            for c, (ring, producer) in enumerate(producers):
                while pushed < n and t0 + frame_n[c] * period + phase[c] <= now:
                    k = frame_n[c]
                    ring.claim()
                    ring.publish(1, k, 0, 0, FRAME[1], FRAME[0], 0, FRAME[1], FRAME[0] * FRAME[1], ring.handle(k))
                    ts = t0 + k * period + phase[c] + rng.randrange(300_000)
                    producer.push_camera_frame(ts, ts, CameraFrameDescriptor(
                        1, k, ts, ts, FRAME[1], FRAME[0], 0, FRAME[1], FRAME[0] * FRAME[1], ring.handle(k)))
                    frame_n[c] += 1
                    pushed += 1
            while pushed < n and t0 + round(block_n * 1e9 / BLOCKS_HZ) <= now:
                ts = t0 + round(block_n * 1e9 / BLOCKS_HZ)
                audio_ring.claim()
                audio_ring.publish_struct(AudioBlockRecord(
                    data_handle=audio_ring.handle(block_n), frame_count=BLOCK[0], channel_count=BLOCK[1],
                    sample_rate_hz=48_000, sample_format=1, start_sample=block_n * BLOCK[0], channel_layout_hash=0,
                    adc_time_ns=0, host_time_ns=ts, status_flags=0, callback_ns=0, stream_time_ns=0))
                mic.push_audio_block(ts, ts, AudioBlockDescriptor(audio_ring.handle(block_n), BLOCK[0], BLOCK[1],
                                                                  48_000, 1, block_n * BLOCK[0], 0))
                block_n += 1
                pushed += 1
        view = ReservoirView.attach(self.rig, RESERVOIR)
        consumer = self._consumer = RigConsumer(self.rig, plan, view, HandleResolver(self.rig, reservoir=view))
        start, edge = consumer.window()
        first_audio = consumer.view.read_kind_at(int(SampleKind.AUDIO_BLOCK),
                                                 consumer.view.kind_bounds(int(SampleKind.AUDIO_BLOCK))[0])
        last_audio = consumer.view.latest_for_sensor(int(SampleKind.AUDIO_BLOCK), audio.source_hash)
        if first_audio is None or last_audio is None:
            raise RuntimeError(f"the bench's window of {n} samples holds no audio block")
        self.lo = max(start, first_audio.timestamp_ns) + 200_000_000  # reads of every kind find data around t
        self.hi = min(edge, last_audio.timestamp_ns) - 200_000_000
        assert consumer.view.count() == n, (consumer.view.count(), n)

    @property
    def consumer(self) -> RigConsumer:
        """The consumer over the filled window (made by ``__init__``)."""
        if self._consumer is None:
            raise RuntimeError("the window was never filled")
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        for ring in self.rings:
            ring.close()
        self.res.close()


def _scan_frame_at(consumer: RigConsumer, camera: str, t_ns: int) -> int:
    """The nearest frame's sequence found by scanning the whole window (vectorised): the peer."""
    rows, descriptors = consumer.view.typed_snapshot(int(SampleKind.CAMERA_FRAME))
    mine = rows["sensor_id_hash"] == consumer.plan.source(camera).source_hash
    ts = rows["timestamp_ns"][mine].astype(np.int64)
    return int(descriptors["sequence"][mine][np.argmin(np.abs(ts - t_ns))])


def _reads(quick: bool, progress: Callable[[str], None]) -> list[dict]:
    repeats = 3 if quick else 7
    reads = 200 if quick else 1_000
    scans = {1_000: 50 if quick else 200, 100_000: 5 if quick else 20}
    windows = {}
    times: dict[tuple[str, int], list[float]] = {}
    try:
        for n in SIZES:
            progress(f"consumer bench: a window of {n:,} samples (6 cameras + audio)")
            windows[n] = _Window(n, seed=n)
        rng = random.Random(3)
        plans = {n: [(rng.randrange(w.lo, w.hi), f"cam.synthetic.{rng.randrange(CAMERAS)}") for _ in range(reads)]
                 for n, w in windows.items()}
        for n, w in windows.items():  # correctness first: the search and the scan agree
            for t, camera in plans[n][:20]:
                assert w.consumer.frame_at(camera, t).descriptor.sequence == _scan_frame_at(w.consumer, camera, t)
        for r in range(repeats):
            progress(f"consumer bench: reads, repeat {r + 1}/{repeats}")
            for n, w in windows.items():
                c = w.consumer
                plan = plans[n]
                ops: dict[str, Callable] = {
                    "frame_at": lambda t, cam, c=c: c.frame_at(cam, t),
                    "frames_100ms": lambda t, cam, c=c: c.frames(cam, t, t + 100_000_000),
                    "audio_20ms": lambda t, cam, c=c: c.audio(t - 10_000_000, t + 10_000_000),
                    "moment": lambda t, cam, c=c: c.moment(t, audio_ms=20),
                }
                for name, fn in ops.items():
                    k = len(plan) if name != "moment" else len(plan) // 5
                    start = time.perf_counter_ns()
                    for t, cam in plan[:k]:
                        fn(t, cam)
                    times.setdefault((name, n), []).append((time.perf_counter_ns() - start) / k)
                k = scans[n]
                start = time.perf_counter_ns()
                for t, cam in plan[:k]:
                    _scan_frame_at(c, cam, t)
                times.setdefault(("frame_at_by_scan", n), []).append((time.perf_counter_ns() - start) / k)
    finally:
        for w in windows.values():
            w.close()
    by = {key: round(statistics.median(v) / 1e3, 2) for key, v in times.items()}  # us per read
    records: list[dict] = [{"part": "reads", "metric": name, "window_samples": n, "us_per_read": by[(name, n)],
                            "repeats": len(v)} for (name, n), v in times.items()]
    for name in ("frame_at", "frames_100ms", "audio_20ms", "moment", "frame_at_by_scan"):
        ratio = by[(name, 100_000)] / by[(name, 1_000)]
        record = {"part": "reads", "metric": name, "summary": "ratio_100k_over_1k",
                  "ratio_100k_over_1k": round(ratio, 2)}
        if name != "frame_at_by_scan":
            record.update(goal_max_ratio=GOALS["ratio_100k_over_1k"], met=ratio <= GOALS["ratio_100k_over_1k"])
        records.append(record)
    records.append({"part": "reads", "metric": "frame_at", "summary": "speedup_vs_scan_at_100k",
                    "speedup_vs_scan_at_100k": round(by[("frame_at_by_scan", 100_000)] / by[("frame_at", 100_000)], 1)})
    return records


def _publish_laps(prefault: bool, laps: int, progress: Callable[[str], None]) -> tuple[list[int], float]:
    """Wall ns of every publish (claim + copy a VGA frame + publish) over ``laps`` laps of a 5 s / 60 fps ring,
    and the seconds the ring's creation took."""
    capacity = 304  # the rig contract's camera ring for a 5 s window at 60 fps
    shape = (480, 640, 2)
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    name = "p1" if prefault else "p0"
    t_create = time.perf_counter()
    ring = Ring.create(name, rig=RIG, descriptor=CameraFrameDescriptor, capacity=capacity, payload_shape=shape,
                       prefault=prefault)
    create_s = time.perf_counter() - t_create
    progress(f"consumer bench: publishing {laps} laps, prefault={prefault} (created in {create_s:.2f} s)")
    out = []
    try:
        perf = time.perf_counter_ns
        for k in range(laps * capacity):
            start = perf()
            np.copyto(ring.claim(), frame)
            ring.publish(1, k, 0, 0, 640, 480, 0, 1280, frame.nbytes, ring.handle(k))
            out.append(perf() - start)
    finally:
        ring.close()
    return out, create_s


def _first_lap(quick: bool, progress: Callable[[str], None]) -> list[dict]:
    laps = 2 if quick else 4
    records = []
    for prefault in (False, True):
        samples, create_s = _publish_laps(prefault, laps, progress)
        first, steady = samples[:304], samples[304:]
        ratio = statistics.median(first) / statistics.median(steady)
        record = {"part": "first_lap", "prefault": prefault, "ring_slots": 304, "frame_bytes": 614_400,
                  "create_s": round(create_s, 3),
                  "first_lap_us_median": round(statistics.median(first) / 1e3, 1),
                  "steady_us_median": round(statistics.median(steady) / 1e3, 1),
                  "first_lap_us_p99": round(float(np.percentile(first, 99)) / 1e3, 1),
                  "steady_us_p99": round(float(np.percentile(steady, 99)) / 1e3, 1),
                  "first_lap_over_steady": round(ratio, 2)}
        if prefault:
            record.update(goal_max_ratio=GOALS["first_lap_over_steady_prefaulted"],
                          met=ratio <= GOALS["first_lap_over_steady_prefaulted"])
        records.append(record)
    return records


def run(quick: bool = False, progress: Callable[[str], None] = _stderr) -> list[dict]:
    """Both parts; flat records with units in their keys."""
    try:
        records = _first_lap(quick, progress)
        records += _reads(quick, progress)
    finally:
        for rig in {RIG, *(f"{RIG}w{n // 1000}" for n in SIZES)}:
            for leftover in list_segments(rig):
                unlink_segment(leftover)
    progress("consumer bench: done")
    return records


def format_table(records: list[dict]) -> str:
    lines = ["first lap of a 5 s / 60 fps VGA camera ring vs steady state (us per publish, median)",
             f"{'prefault':<10}{'first lap':>11}{'steady':>9}{'ratio':>8}{'p99 first':>11}{'p99 steady':>12}"]
    for r in records:
        if r["part"] == "first_lap":
            lines.append(f"{str(r['prefault']):<10}{r['first_lap_us_median']:>11.1f}{r['steady_us_median']:>9.1f}"
                         f"{r['first_lap_over_steady']:>8.2f}{r['first_lap_us_p99']:>11.1f}{r['steady_us_p99']:>12.1f}")
    lines += ["", "time-aligned reads (us per read, median of repeats)",
              f"{'read':<20}" + "".join(f"{n:>12,}" for n in SIZES) + f"{'100k/1k':>10}"]
    by = {(r["metric"], r.get("window_samples")): r for r in records if r["part"] == "reads" and "us_per_read" in r}
    ratio = {r["metric"]: r for r in records if r.get("summary") == "ratio_100k_over_1k"}
    for name in ratio:
        lines.append(f"{name:<20}" + "".join(f"{by[(name, n)]['us_per_read']:>12,.1f}" for n in SIZES)
                     + f"{ratio[name]['ratio_100k_over_1k']:>10.2f}")
    speed = next(r for r in records if r.get("summary") == "speedup_vs_scan_at_100k")
    lines.append(f"frame_at vs a scan of the window at 100k samples: {speed['speedup_vs_scan_at_100k']:,.0f}x faster")
    return "\n".join(lines)
