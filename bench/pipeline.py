"""`mimir bench pipeline`: the whole synthetic rig under the real supervisor, per workload.

Workloads (``--workload``):

* ``default``: six 640x480 YUYV cameras at 60 fps and 8-channel 192 kHz audio
  in 64-frame blocks (3,000 blocks/s) with the witness (what this benchmark
  measured before workloads existed);
* ``ps3eye``: the seed's measured rig: six 320x240 Bayer cameras at 187 fps
  plus 8 channels at 192 kHz in 64-frame blocks;
* ``idle``: the default rig's rings with every source paused (the workers
  are suspended once their rings are attached: SIGSTOP on POSIX, through
  psutil; supervision is told to wait);
* ``all``: the three in turn.

The supervisor runs in this process (a thread), so its CPU is this process's
CPU time over the measured span; workers are separate processes and not
counted. The **floor** is measured in the same run: the bare cost of one ring
read plus one reservoir push per item, in this process, with nothing else
(the supervisor's CPU per indexed descriptor is reported against it).

With ``--load N``, N busy processes run beside the rig and every figure is
reported twice: unloaded, then loaded, in the same run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import psutil

from mimir.config import LIMITS, AudioConfig, CameraFamilyConfig, RigConfig, SupervisionConfig
from mimir.descriptors import CameraFrameDescriptor, SampleKind
from mimir.reservoir import Reservoir
from mimir.supervisor.rig import Rig
from ringbuf import Ring, RingReader, dtype_of

from bench.common import busy_processes

__all__ = ["run", "rig_config", "measure_floor_us", "format_table", "WORKLOADS"]

WORKLOADS = ("default", "ps3eye", "idle")
WARMUP_S = 5.0


def rig_config(rig: str, workload: str) -> RigConfig:
    """The rig of one workload (see module docstring)."""
    # "room": the witness over fixed acoustic delays. The default "reverb-room" convolves every input with a
    # room response inside the synthetic device's callback: test scaffolding whose cost (eight 192 kHz
    # convolutions) would land in the audio blocks' publish-to-indexed latency and on the supervisor's cores.
    audio = AudioConfig(backend="synthetic", rate_hz=192_000, block_frames=64, channels=8, output="witness",
                        synthetic_signal="room")
    if workload in ("default", "idle"):
        cams = CameraFamilyConfig(family="synthetic", count=6, width=640, height=480, fps=60.0)
    elif workload == "ps3eye":
        cams = CameraFamilyConfig(family="synthetic", count=6, width=320, height=240, fps=187.0, format="GRBG")
    else:
        raise ValueError(f"unknown workload {workload!r}: use {', '.join(WORKLOADS)} or all")
    supervision = SupervisionConfig(heartbeat_timeout_s=LIMITS.max_seconds) if workload == "idle" else SupervisionConfig()
    return RigConfig(rig=rig, cameras=[cams], audio=audio, supervision=supervision)


def measure_floor_us(items: int = 20_000) -> float:
    """Microseconds per item of one ring read plus one reservoir push, nothing else (this process, this run)."""
    rig = f"floor{os.getpid()}"
    ring = Ring.create("f", rig=rig, descriptor=CameraFrameDescriptor, capacity=items + 8)
    res = Reservoir.create(rig, capacity=items + 8, duration_ns=10**15)
    reader = RingReader.attach("f", rig=rig, descriptor=CameraFrameDescriptor)
    try:
        for n in range(items):
            ring.publish(1, n, 0, n + 1, 640, 480, 0, 1280, 614_400, ring.handle(n))
        producer = res.producer(SampleKind.CAMERA_FRAME, sensor_id_hash=1)
        out = np.zeros(1, dtype_of(CameraFrameDescriptor))
        t0 = time.perf_counter()
        for n in range(items):
            reader.read_batch(out)
            values = out.tolist()[0]
            producer.push_camera_frame(values[3], n, values)
        return (time.perf_counter() - t0) / items * 1e6
    finally:
        reader.close()
        res.close()
        ring.close()


def _busy() -> None:  # pragma: no cover - runs in the load processes
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        pass


class _Load:
    """N processes spinning a core each, started and stopped around a measurement."""

    def __init__(self, count: int) -> None:
        self.procs = busy_processes(count, _busy)

    def __enter__(self) -> "_Load":
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join(5)


def _worker_pids(rig: Rig) -> list[int]:
    return [w.pid for w in rig.workers if w.pid]


def _measure(workload: str, seconds: float, *, loaded: int, floor_us: float,
             progress: Callable[[str], None]) -> list[dict]:
    started = time.monotonic()
    rig = Rig(rig_config(f"bp{os.getpid() % 100000}", workload))
    rig.start()
    thread = threading.Thread(target=rig.run, name="supervisor")
    lock_s: list[float] = []
    load = _Load(loaded)
    label = f"{workload}" + (f" +{loaded} busy" if loaded else "")
    try:
        if loaded:
            load.__enter__()
        thread.start()
        deadline = time.monotonic() + WARMUP_S + 30
        while time.monotonic() < started + WARMUP_S or (workload == "idle" and any(s.indexer is None for s in rig.sources)):
            if rig.clock.locked and not lock_s:
                lock_s.append(time.monotonic() - started)
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        paused = []
        if workload == "idle":
            for pid in _worker_pids(rig):
                psutil.Process(pid).suspend()
                paused.append(pid)
            time.sleep(0.5)
        base = {s.name: (s.indexed, s.lost_overrun, s.restart_gap) for s in rig.sources}
        rig.latency.reset()  # latency of the measured span only
        wake0 = rig.wakeups
        cpu0, wall0 = time.process_time(), time.monotonic()
        end = wall0 + seconds
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if rig.clock.locked and not lock_s:
                lock_s.append(time.monotonic() - started)
            progress(f"bench pipeline {label}: {time.monotonic() - wall0:.0f}/{seconds:.0f} s")
        cpu1, wall1 = time.process_time(), time.monotonic()
        span = wall1 - wall0
        p50, p99, p999 = rig.latency.percentiles_us(50, 99, 99.9)
        for pid in paused:
            psutil.Process(pid).resume()
        records: list[dict] = []
        for s in rig.sources:
            indexed0, lost0, gap0 = base[s.name]
            delivered = (s.indexed - indexed0) / span
            records.append({
                "workload": label, "source": s.name, "configured_hz": s.spec.nominal_hz,
                "delivered_hz": round(delivered, 2), "delivered_ratio": round(delivered / s.spec.nominal_hz, 4),
                "lost_overrun": s.lost_overrun - lost0, "lost_restart_gap": s.restart_gap - gap0,
            })
        indexed = sum(s.indexed - base[s.name][0] for s in rig.sources)
        fits = rig.fits_reader.latest() if rig.fits_reader else None
        locked = 0
        if fits is not None and fits.payload is not None:
            locked = int(sum(int(r["locked"]) for r in fits.payload[: fits.descriptor[0]]))
    finally:
        rig.stop_event.set()
        thread.join(60)
        if loaded:
            load.__exit__()
    unindexed = sum(s.published - s.indexed - s.lost_overrun for s in rig.sources)
    cpu_pct = (cpu1 - cpu0) / span * 100
    per_item_us = (cpu1 - cpu0) / indexed * 1e6 if indexed else None
    ratio_to_floor = round(per_item_us / floor_us, 2) if per_item_us else None
    lost = sum(r["lost_overrun"] + r["lost_restart_gap"] for r in records)
    summary: dict[str, object] = {
        "workload": label, "source": "supervisor", "seconds": round(span, 1),
        "descriptors_indexed": indexed,
        "descriptors_lost": lost,
        "published_never_indexed": unindexed,
        "supervisor_cpu_pct_of_core": round(cpu_pct, 2),
        "supervisor_us_per_descriptor": round(per_item_us, 2) if per_item_us else None,
        "floor_us_per_descriptor": round(floor_us, 2),
        "ratio_to_floor": ratio_to_floor,
        "wakeups_per_s": round((rig.wakeups - wake0) / span, 1),
        "index_latency_us_p50": round(p50, 1), "index_latency_us_p99": round(p99, 1),
        "index_latency_us_p999": round(p999, 1),
        "audio_channels_locked": locked,
        "clock_lock_s": round(lock_s[0], 2) if lock_s else None,
    }
    goals = {"lost_zero": lost == 0, "nothing_uncounted": unindexed == 0}
    if workload == "idle":
        goals["cpu_le_1pct"] = cpu_pct <= 1.0
    else:
        goals["ratio_to_floor_le_5"] = ratio_to_floor is not None and ratio_to_floor <= 5.0
    if workload == "ps3eye":
        goals["p99_le_1ms"] = p99 <= 1000.0
        goals["cpu_le_20pct"] = cpu_pct <= 20.0
    if loaded:
        goals["clock_locks"] = bool(lock_s)
    summary["goals"] = goals
    return [summary, *records]


def run(seconds: float = 60.0, *, workload: str = "default", load_procs: int = 0,
        progress: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> list[dict]:
    """Every requested workload (unloaded, then loaded with ``load_procs`` busy processes); a flat record list."""
    names = WORKLOADS if workload == "all" else (workload,)
    for name in names:
        rig_config("check", name)  # unknown workloads fail before anything starts
    floor_us = measure_floor_us()
    progress(f"bench pipeline: floor (one ring read + one reservoir push) {floor_us:.2f} us per item")
    records: list[dict] = []
    for name in names:
        records += _measure(name, seconds, loaded=0, floor_us=floor_us, progress=progress)
        if load_procs:
            records += _measure(name, seconds, loaded=load_procs, floor_us=floor_us, progress=progress)
    return records


def format_table(records: list[dict]) -> str:
    lines = []
    summaries = [r for r in records if r["source"] == "supervisor"]
    keys = [k for k in summaries[0] if k not in ("workload", "source", "goals")] if summaries else []
    lines.append(f"{'':32s}" + "".join(f"{s['workload']:>22s}" for s in summaries))
    for key in keys:
        lines.append(f"{key:32s}" + "".join(f"{str(s.get(key)):>22s}" for s in summaries))
    lines.append(f"{'goals':32s}" + "".join(
        f"{', '.join(k + ('' if v else ' MISSED') for k, v in s['goals'].items()):>22s}" for s in summaries))
    lines.append("")
    lines.append(f"{'workload':18s} {'source':20s} {'configured/s':>13s} {'delivered/s':>12s} {'ratio':>7s} "
                 f"{'overrun':>8s} {'gap':>5s}")
    for r in records:
        if r["source"] == "supervisor":
            continue
        lines.append(f"{r['workload']:18s} {r['source']:20s} {r['configured_hz']:>13.1f} {r['delivered_hz']:>12.2f} "
                     f"{r['delivered_ratio']:>7.4f} {r['lost_overrun']:>8d} {r['lost_restart_gap']:>5d}")
    return "\n".join(lines)
