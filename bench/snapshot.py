"""``mimir bench snapshot``: `mimir snapshot` of the default rig, against a plain write and against no snapshot.

One run, on this machine, with the real supervisor and workers (``mimir-supervisor start``
in a subprocess) running the default rig: six synthetic 640x480 YUYV cameras at
60 fps and 8-channel 48 kHz audio, a 5 s window (``--shape small``: two 160x120
cameras, for a smoke run). After the clock has locked and the window is full:

1. **snapshot**: ``mimir snapshot --seconds N`` in its own process (as a user
   runs it, at lowered priority): ``snapshot_wall_s`` is its own wall time
   (``take_snapshot`` from the call to the closed take) plus the fsync of
   every file, against the plain write (``wall_ratio_vs_plain``; goal <= 3);
   ``process_wall_s`` adds the process's start (Python and its imports);
2. **capture during the snapshot vs the same seconds without one**: from the
   status board and the audio ring's status, per source over the snapshot's
   seconds and over as many quiet seconds right after: descriptors lost to
   ring overrun, frames the cameras dropped (late by more than their queue),
   audio callback deadline misses and xruns. Goal: zero more with the
   snapshot than without, and zero lost by the snapshot itself;
3. **plain write**: as many bytes as the snapshot wrote, written sequentially
   to the same folder with ``os.write`` in 1 MiB chunks and one
   ``fdatasync`` (``fsync`` on macOS and Windows): the disk's own pace, in
   the same minute.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import fsync_tree, load_average_1min, plain_write_s
from mimir.consumer import RigConsumer

__all__ = ["run", "format_table", "GOALS", "SHAPES"]

GOALS = {"wall_ratio_vs_plain": 3.0}
SHAPES = ("default", "small")
_CHILD = "import typer; from mimir.snapshot.cli import snapshot; typer.run(snapshot)"


def _config(rig: str, shape: str) -> str:
    if shape == "default":
        cams = "count = 6\nwidth = 640\nheight = 480\nfps = 60.0"
    elif shape == "small":
        cams = "count = 2\nwidth = 160\nheight = 120\nfps = 30.0"
    else:
        raise ValueError(f"unknown shape {shape!r}: use {', '.join(SHAPES)}")
    return f'rig = "{rig}"\n[audio]\nbackend = "synthetic"\nchannels = 8\n[[cameras]]\nfamily = "synthetic"\n{cams}\n'


def _counters(rig: str, audio_reader) -> dict[str, float]:
    from mimir.supervisor.status import read_status

    status = read_status(rig)
    out: dict[str, float] = {"lost_overrun": 0, "camera_dropped": 0, "indexed": 0}
    for s in status.sources:
        if s["kind"] in (0, 5):
            out["lost_overrun"] += s["lost_overrun"] + s["lost_restart_gap"]
            out["indexed"] += s["indexed"]
            if s["kind"] == 0:
                out["camera_dropped"] += s["device_dropped"]
    st = audio_reader.status
    out["audio_deadline_misses"] = int(st["deadline_misses"])
    out["audio_xruns"] = int(st["xruns"])
    out["index_latency_p99_us"] = float(status.header.get("index_latency_p99_us", 0.0))
    return out


def _delta(after: dict, before: dict) -> dict:
    return {k: (after[k] - before[k]) if k != "index_latency_p99_us" else round(after[k], 1) for k in after}


def _rounded(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


def _snapshot(rig: str, seconds: float, out: Path, video: str) -> tuple[dict, float, float]:
    """Run `mimir snapshot` in its own process: (its JSON, its own wall time + the fsync of its files, process wall)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, "--rig", rig, "--seconds", str(seconds), "--out", str(out),
                           "--video", video, "--json"], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"mimir snapshot failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    process_s = time.perf_counter() - start
    doc = json.loads(done.stdout)
    fsync_s = fsync_tree(out)
    return doc, doc["wall_s"] + fsync_s, process_s + fsync_s


def run(seconds: float = 5.0, *, video: str = "raw", shape: str = "default", directory: str | None = None,
        progress: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> list[dict]:
    """One record (flat dict, units in the keys)."""
    from ringbuf import RingReader

    rig = f"bsn{os.getpid() % 100000}"
    root = Path(tempfile.mkdtemp(prefix="mimir-bench-snapshot-", dir=directory))
    (root / "rig.toml").write_text(_config(rig, shape))
    sup = subprocess.Popen([str(Path(sys.executable).parent / "mimir-supervisor"), "start", "--config",
                            str(root / "rig.toml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    audio = None
    try:
        progress(f"snapshot bench: rig {rig} ({shape}) starting; waiting for the clock lock and a full window")
        deadline = time.monotonic() + 90
        locked_at = None
        while True:
            if sup.poll() is not None or time.monotonic() > deadline:
                errors = sup.stderr.read()[-2000:] if sup.poll() is not None and sup.stderr is not None else ""
                raise RuntimeError(f"the rig did not come up and lock (supervisor exit {sup.poll()}): {errors}")
            try:
                from mimir.supervisor.status import read_status

                if locked_at is None and any(r["name"] == "audio" and r["clock_locked"]
                                             for r in read_status(rig).sources):
                    locked_at = time.monotonic()
            except FileNotFoundError:
                pass
            if locked_at is not None and time.monotonic() > locked_at + 6.0:
                break
            time.sleep(0.2)
        with RigConsumer.attach(rig) as consumer:
            window_s = consumer.plan.window_ns / 1e9
            audio = RingReader.attach(consumer.plan.source("audio").ring.object_id, rig=rig, register=False)
        time.sleep(1.0)
        progress(f"snapshot bench: snapshot of {seconds:g} s ({video})")
        before = _counters(rig, audio)
        start = time.monotonic()
        doc, wall, process_s = _snapshot(rig, seconds, root / "take", video)
        during_s = time.monotonic() - start
        during = _delta(_counters(rig, audio), before)
        nbytes = doc["bytes"]
        shutil.rmtree(root / "take")
        time.sleep(0.5)
        progress(f"snapshot bench: the same {during_s:.1f} s without a snapshot")
        before = _counters(rig, audio)
        time.sleep(during_s)
        quiet = _delta(_counters(rig, audio), before)
        progress(f"snapshot bench: plain write of the same {nbytes / 1e6:,.0f} MB to the same folder")
        plain_s = plain_write_s(root / "plain.bin", nbytes)
        ratio = wall / plain_s
        lost_by_snapshot = sum(doc["lost"].values())
        record = {
            "shape": shape, "video": video, "seconds": seconds, "window_s": window_s,
            "written": doc["written"], "lost_by_snapshot": lost_by_snapshot, "complete": doc["complete"],
            "missing": doc["missing"],
            "staged_frames": doc["staged_frames"], "mb": round(nbytes / 1e6, 1),
            "plain_write_s": round(plain_s, 3), "snapshot_wall_s": round(wall, 3),
            "process_wall_s": round(process_s, 3), "wall_ratio_vs_plain": round(ratio, 2),
            "realtime_factor": round(seconds / wall, 2),
            "lost_by_source": doc["lost"], "load_avg_1min": _rounded(load_average_1min(), 2),
            "during": during, "quiet": quiet,
            "goals": {
                "wall_ratio_le_3": ratio <= GOALS["wall_ratio_vs_plain"],
                "snapshot_lost_nothing": lost_by_snapshot == 0,
                "capture_lost_nothing": during["lost_overrun"] == 0,
                "no_more_camera_drops_than_quiet": during["camera_dropped"] <= quiet["camera_dropped"],
                "no_more_audio_misses_than_quiet": (during["audio_deadline_misses"] + during["audio_xruns"]
                                                    <= quiet["audio_deadline_misses"] + quiet["audio_xruns"]),
            },
        }
        return [record]
    finally:
        if audio is not None:
            audio.close()
        sup.send_signal(signal.SIGTERM)
        try:
            sup.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.communicate()
        shutil.rmtree(root, ignore_errors=True)


def format_table(records: list[dict]) -> str:
    lines = []
    for r in records:
        lines.append(f"snapshot of {r['seconds']:g} s of the {r['shape']} rig ({r['video']}): {r['mb']:,} MB, "
                     f"{sum(r['written'].values()):,} frames and blocks, lost {r['lost_by_snapshot']}, "
                     f"staged {r['staged_frames']} frames; " + ("complete" if r["complete"] else "INCOMPLETE")
                     + f"; machine load {r['load_avg_1min']}")
        for m in r["missing"]:
            lines.append(f"  missing: {m['source'] or 'take'}: {m['what']}: {m['cause']}")
        if r["lost_by_snapshot"]:
            lines.append("  lost by the snapshot (overwritten before it copied them): "
                         + ", ".join(f"{k} {v}" for k, v in r["lost_by_source"].items() if v))
        lines.append(f"  wall {r['snapshot_wall_s']:.2f} s (to every file fsynced) vs plain write of the same bytes "
                     f"{r['plain_write_s']:.2f} s: {r['wall_ratio_vs_plain']:.2f}x (goal <= 3); "
                     f"realtime factor {r['realtime_factor']:.2f}; with process start {r['process_wall_s']:.2f} s")
        lines.append(f"  {'capture':<24}{'during':>10}{'without':>10}")
        for key in ("lost_overrun", "camera_dropped", "audio_deadline_misses", "audio_xruns", "index_latency_p99_us"):
            lines.append(f"  {key:<24}{r['during'][key]:>10}{r['quiet'][key]:>10}")
        lines.append("  goals: " + ", ".join(k + ("" if v else " MISSED") for k, v in r["goals"].items()))
    return "\n".join(lines)
