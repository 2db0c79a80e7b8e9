"""``mimir bench record``: `mimir record` of a live rig per encoding, against a plain write and against no recording.

One rig per workload under the real supervisor (``mimir-supervisor start``
in a subprocess), once its clock has locked:

* ``default``: six synthetic 640x480 YUYV cameras at 60 fps (221 MB/s) and
  8-channel 48 kHz audio in 64-frame blocks;
* ``ps3eye``: six 320x240 GRBG (Bayer) cameras at 187 fps (86 MB/s) and
  8 channels at 192 kHz in 64-frame blocks (3,000 blocks/s);
* ``small``: two 160x120 cameras at 30 fps, 2 channels (a smoke run for the tests).

Per workload, first ``seconds`` without a recording (the capture counters'
baseline, in the same run), then per encoding:

1. **record**: ``mimir record --duration N --video E --json`` in its own
   process, as a user runs it (at lowered priority): frames and blocks
   written vs published per source (exact, from its ledger), skipped by
   cause, its process CPU, the payload MB/s and the take's bytes per second
   of recording (to the take closed, then every file fsynced);
2. **capture during the recording vs the same seconds without it**, from the
   status board and the audio ring's status: descriptors lost to ring
   overrun, frames the cameras dropped, audio deadline misses and xruns
   (compared per second: the recording's window includes its process start
   and its writer's drain);
3. **plain write**: as many bytes as the take holds, written sequentially to
   the same folder in 1 MiB chunks with one ``fdatasync``: the disk's own
   pace, minutes apart at most.

Goals: zero capture loss in every mode (no more than without a recording),
zero skipped audio, and zero skipped video for the default encoding on the
default rig. The machine's load average goes with every figure.
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
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import fsync_tree, load_average_1min, plain_write_s

__all__ = ["run", "format_table", "WORKLOADS", "ENCODINGS", "DEFAULT_ENCODING"]

WORKLOADS = ("default", "ps3eye", "small")
ENCODINGS = ("raw", "h264", "ffv1")
DEFAULT_ENCODING = "raw"  # `mimir record`'s default: the one that keeps up with the default rig here


def _sig(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits: a small run's figures never round to 0."""
    return float(f"{value:.{digits}g}")

def _config(rig: str, workload: str) -> str:
    if workload == "default":
        cams = 'count = 6\nwidth = 640\nheight = 480\nfps = 60.0'
        audio = 'channels = 8\nrate_hz = 48000\nblock_frames = 64'
    elif workload == "ps3eye":
        cams = 'count = 6\nwidth = 320\nheight = 240\nfps = 187.0\nformat = "GRBG"'
        audio = 'channels = 8\nrate_hz = 192000\nblock_frames = 64'
    elif workload == "small":
        cams = 'count = 2\nwidth = 160\nheight = 120\nfps = 30.0'
        audio = 'channels = 2'
    else:
        raise ValueError(f"unknown workload {workload!r}: use {', '.join(WORKLOADS)}")
    return (f'rig = "{rig}"\n[audio]\nbackend = "synthetic"\n{audio}\n'
            f'[[cameras]]\nfamily = "synthetic"\n{cams}\n')


def _load() -> str:
    load = load_average_1min()
    return "unknown" if load is None else f"{load:.1f}"


def _counters(rig: str, audio_reader) -> dict[str, int]:
    from mimir.supervisor.status import read_status

    status = read_status(rig)
    out = {"lost_overrun": 0, "camera_dropped": 0, "indexed": 0}
    for s in status.sources:
        if s["kind"] in (0, 5):
            out["lost_overrun"] += s["lost_overrun"] + s["lost_restart_gap"]
            out["indexed"] += s["indexed"]
            if s["kind"] == 0:
                out["camera_dropped"] += s["device_dropped"]
    st = audio_reader.status
    out["audio_deadline_misses"] = int(st["deadline_misses"])
    out["audio_xruns"] = int(st["xruns"])
    return out


def _delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before[k] for k in after}


def _wait_locked(rig: str, sup: subprocess.Popen, settle_s: float) -> None:
    from mimir.supervisor.status import read_status

    deadline = time.monotonic() + 120
    locked_at = None
    while locked_at is None or time.monotonic() < locked_at + settle_s:
        if sup.poll() is not None or time.monotonic() > deadline:
            err = sup.stderr.read() if sup.poll() is not None and sup.stderr is not None else ""
            raise RuntimeError(f"the rig did not come up and lock (supervisor exit {sup.poll()}): {err[-2000:]}")
        try:
            if locked_at is None and any(r["name"] == "audio" and r["clock_locked"] for r in read_status(rig).sources):
                locked_at = time.monotonic()
        except FileNotFoundError:
            pass
        time.sleep(0.2)


def _record(rig: str, seconds: float, out: Path, video: str) -> tuple[dict, float]:
    """`mimir record` in its own process: (its JSON, the seconds to fsync what it left dirty)."""
    done = subprocess.run([str(Path(sys.executable).parent / "mimir"), "record", "--rig", rig, "--out", str(out),
                           "--duration", str(seconds), "--video", video, "--json"],
                          capture_output=True, text=True, timeout=seconds + 600)
    if done.returncode != 0:
        raise RuntimeError(f"mimir record failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout), fsync_tree(out)


def _measure(rig: str, workload: str, seconds: float, video: str, root: Path, audio, quiet: dict, quiet_s: float,
             progress: Callable[[str], None]) -> dict:
    progress(f"record bench: {workload} rig, {video}, {seconds:g} s (load {_load()})")
    load_before = load_average_1min()
    before = _counters(rig, audio)
    started = time.monotonic()
    doc, fsync_s = _record(rig, seconds, root / "take", video)
    during = _delta(_counters(rig, audio), before)
    during_s = time.monotonic() - started  # the process's start and the writer's drain included
    load_during = load_average_1min()
    nbytes = doc["bytes"]
    shutil.rmtree(root / "take")
    progress(f"record bench: plain write of the same {nbytes / 1e6:,.0f} MB to the same folder")
    plain_s = plain_write_s(root / "plain.bin", nbytes)
    take_s = doc["take_closed_s"] + fsync_s
    cameras = [n for n in doc["published"] if n != "audio"]
    skipped_video = sum(doc["skipped"][n] for n in cameras)
    record = {
        "workload": workload, "video": video, "seconds": seconds, "recorded_s": doc["seconds"],
        "published": doc["published"], "written": doc["written"], "skipped": doc["skipped"],
        "skipped_by_cause": doc["skipped_by_cause"], "complete": doc["complete"], "staged_frames": doc["staged_frames"],
        "mb": round(nbytes / 1e6, 1), "take_mb_per_s": _sig(nbytes / 1e6 / take_s),
        "payload_mb_per_s": round(doc["payload_bytes"] / 1e6 / doc["seconds"], 1),
        "take_closed_s": doc["take_closed_s"], "fsync_after_s": round(fsync_s, 2),
        "plain_write_s": _sig(plain_s), "plain_mb_per_s": _sig(nbytes / 1e6 / plain_s),
        "take_vs_plain": _sig(plain_s / take_s),
        "recorder_cpu_pct": round(100 * doc["cpu_s"] / doc["take_closed_s"], 1),
        "during": during, "during_s": round(during_s, 2), "quiet": quiet, "quiet_s": quiet_s,
        "load_avg_1min": load_during, "load_before": load_before,
        "goals": {
            "capture_lost_nothing": during["lost_overrun"] == 0,
            # per second: the recording's window (start and drain included) is longer than the quiet one
            "no_more_camera_drops_than_quiet": during["camera_dropped"] / during_s
            <= quiet["camera_dropped"] / quiet_s,
            "no_more_audio_misses_than_quiet": (during["audio_deadline_misses"] + during["audio_xruns"]) / during_s
            <= (quiet["audio_deadline_misses"] + quiet["audio_xruns"]) / quiet_s,
            "zero_skipped_audio": doc["skipped"]["audio"] == 0,
        },
    }
    if video == DEFAULT_ENCODING and workload == "default":
        record["goals"]["zero_skipped_video"] = skipped_video == 0
    for name in doc["published"]:
        assert doc["written"][name] + doc["skipped"][name] == doc["published"][name], name  # the ledger's invariant
    return record


def run(seconds: float = 60.0, *, workloads: Sequence[str] = ("default", "ps3eye"),
        encodings: Sequence[str] = ENCODINGS, directory: str | None = None,
        progress: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> list[dict]:
    """One record per (workload, encoding); flat dicts, units in the keys."""
    from mimir.contract import read_plan
    from ringbuf import RingReader

    records = []
    for workload in workloads:
        rig = f"brc{os.getpid() % 100000}"
        root = Path(tempfile.mkdtemp(prefix="mimir-bench-record-", dir=directory))
        (root / "rig.toml").write_text(_config(rig, workload))
        sup = subprocess.Popen([str(Path(sys.executable).parent / "mimir-supervisor"), "start", "--config",
                                str(root / "rig.toml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        audio = None
        try:
            progress(f"record bench: {workload} rig {rig} starting; waiting for the clock lock")
            _wait_locked(rig, sup, settle_s=3.0)
            audio = RingReader.attach(read_plan(rig).source("audio").ring.object_id, rig=rig, register=False)
            progress(f"record bench: {seconds:g} s of the {workload} rig without a recording (load "
                     f"{_load()})")
            before = _counters(rig, audio)
            started = time.monotonic()
            time.sleep(seconds)
            quiet = _delta(_counters(rig, audio), before)
            quiet_s = round(time.monotonic() - started, 2)
            for video in encodings:
                records.append(_measure(rig, workload, seconds, video, root, audio, quiet, quiet_s, progress))
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
    return records


def format_table(records: list[dict]) -> str:
    lines = []
    for r in records:
        cams = [n for n in r["published"] if n != "audio"]
        pub_v = sum(r["published"][n] for n in cams)
        wr_v = sum(r["written"][n] for n in cams)
        causes: dict[str, int] = {}
        for n in cams:
            for k, v in r["skipped_by_cause"][n].items():
                causes[k] = causes.get(k, 0) + v
        lines.append(f"{r['workload']} rig, {r['video']}, {r['recorded_s']:.1f} s (load {r['load_avg_1min']}): "
                     f"video {wr_v:,}/{pub_v:,} frames written"
                     + (f" (skipped: {', '.join(f'{k} {v:,}' for k, v in causes.items())})" if causes else "")
                     + f", audio {r['written']['audio']:,}/{r['published']['audio']:,} blocks; "
                     + ("complete" if r["complete"] else "incomplete"))
        lines.append(f"  take {r['mb']:,} MB at {r['take_mb_per_s']:.1f} MB/s (to closed and fsynced) vs plain write "
                     f"{r['plain_mb_per_s']:.1f} MB/s: {r['take_vs_plain']:.2f}x; payload {r['payload_mb_per_s']:.1f} "
                     f"MB/s; recorder CPU {r['recorder_cpu_pct']:.0f}% of a core; staged {r['staged_frames']:,} frames")
        lines.append(f"  {'capture':<24}{'recording':>10}{'without':>10}   (over {r['during_s']:.0f} s and "
                     f"{r['quiet_s']:.0f} s)")
        for key in ("lost_overrun", "camera_dropped", "audio_deadline_misses", "audio_xruns"):
            lines.append(f"  {key:<24}{r['during'][key]:>10}{r['quiet'][key]:>10}")
        lines.append("  goals: " + ", ".join(k + ("" if v else " MISSED") for k, v in r["goals"].items()))
    return "\n".join(lines)
