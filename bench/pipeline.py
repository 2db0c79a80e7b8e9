"""`mimir bench pipeline`: the whole synthetic rig under the real supervisor.

Six 640x480 YUYV cameras at 60 fps and 8-channel 192 kHz synthetic audio in
64-frame blocks (3000 blocks/s) with the witness, for ``seconds``. The
supervisor runs in this process, so its CPU is this process's CPU time over
the run (workers are separate processes and not counted). Everything else
comes from the supervisor's own status snapshots: what `mimir status` shows.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from mimir.config import AudioConfig, CameraFamilyConfig, RigConfig
from mimir.supervisor.rig import Rig

__all__ = ["run", "rig_config"]


def rig_config(rig: str) -> RigConfig:
    return RigConfig(
        rig=rig,
        cameras=[CameraFamilyConfig(family="synthetic", count=6, width=640, height=480, fps=60.0)],
        audio=AudioConfig(backend="synthetic", rate_hz=192_000, block_frames=64, channels=8, output="witness"),
    )


def run(seconds: float = 60.0, *, warmup_s: float = 5.0, progress=sys.stderr) -> list[dict]:
    rig = Rig(rig_config(f"benchpipe{os.getpid()}"))
    rig.start()
    thread = threading.Thread(target=rig.run, args=(warmup_s + seconds,), name="supervisor")
    thread.start()
    try:
        time.sleep(warmup_s)
        base = {s.name: (s.indexed, s.lost_overrun, s.restart_gap, s.published) for s in rig.sources}
        rig.latency.count = 0  # latency of the measured span only
        cpu0, wall0 = time.process_time(), time.monotonic()
        end = wall0 + seconds
        while time.monotonic() < end:
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            elapsed = time.monotonic() - wall0
            print(f"bench pipeline: {elapsed:.0f}/{seconds:.0f} s", file=progress, flush=True)
        cpu1, wall1 = time.process_time(), time.monotonic()
        p50, p99, p999 = rig.latency.percentiles_us(50, 99, 99.9)
        records = []
        span = wall1 - wall0
        for s in rig.sources:
            indexed0, lost0, gap0, published0 = base[s.name]
            records.append({
                "source": s.name,
                "configured_hz": s.configured_hz,
                "delivered_hz": round((s.indexed - indexed0) / span, 2),
                "delivered_ratio": round((s.indexed - indexed0) / span / s.configured_hz, 4),
                "lost_overrun": s.lost_overrun - lost0,
                "lost_restart_gap": s.restart_gap - gap0,
            })
        fits = rig.fits_reader.latest() if rig.fits_reader else None
        locked = int(sum(int(r["locked"]) for r in fits.payload[: fits.descriptor[0]])) if fits else 0
        summary = {
            "source": "supervisor",
            "seconds": round(span, 1),
            "descriptors_lost": sum(r["lost_overrun"] + r["lost_restart_gap"] for r in records),
            "supervisor_cpu_pct_of_core": round((cpu1 - cpu0) / span * 100, 1),
            "index_latency_us_p50": round(p50, 1),
            "index_latency_us_p99": round(p99, 1),
            "index_latency_us_p999": round(p999, 1),
            "audio_channels_locked": locked,
            "goal_lost_zero": None,
            "goal_cpu_le_20pct": None,
            "goal_p99_le_2ms": None,
        }
        summary["goal_lost_zero"] = summary["descriptors_lost"] == 0
        summary["goal_cpu_le_20pct"] = summary["supervisor_cpu_pct_of_core"] <= 20.0
        summary["goal_p99_le_2ms"] = summary["index_latency_us_p99"] <= 2000.0
        return [summary, *records]
    finally:
        rig.stop_event.set()
        thread.join(60)
