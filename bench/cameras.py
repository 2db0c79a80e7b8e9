"""``mimir bench cameras``: six synthetic VGA cameras at 60 fps in one worker process, and PS3 Eye parsing.

Part 1 (always): one camera worker child process (``python -m workers.camera
--family synthetic --count 6``), measured over ``duration_s`` after a warm-up:

* delivered fps per camera, from the ``frames_delivered`` counter in each
  ring's status record over the receipt times of the frames counted
  (``last_host_time_ns``; no reader attached: the worker's own cost only);
* worker CPU per frame: the CPU time of the whole child process (all its
  threads) over the window / frames delivered by all cameras, both from the
  status records (``process_cpu_ns`` beside ``frames_delivered``: the
  worker reads its own nanosecond process clock; an outside reading such as
  psutil's ``cpu_times`` counts 10 ms clock ticks on Linux, coarser than a
  small worker's whole second);
* copy time per frame: ``fill_ns`` from the status records, the wall time
  from ``claim()`` to ``publish()`` in the worker, which for synthetic
  cameras is landing the frame (pattern copy + stamp) in the ring slot;
  beside it ``memcpy`` (``np.copyto``) of the same number of bytes timed in
  this process during the same window, once per frame period (``_paced``:
  the same cold-cache conditions as the worker's copies), and, after the
  run, back to back (hot caches) for memcpy and for the frame render.

Part 2: ``bench.ps3eye_parse.run()`` (PS3 Eye payload parsing and frame
assembly) when that module exists; otherwise a record saying why it was
skipped.

Output: ``main(json_out=True)`` prints only
``{"bench": "cameras", "machine": {...}, "results": [flat records]}`` on
stdout; progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from typing import TextIO

import numpy as np

from bench.common import machine_info  # noqa: E402
from ringbuf import RingLayoutMismatch, RingReader, SegmentMissing  # noqa: E402
from workers.camera.family import CameraMode, parse_pixel_format  # noqa: E402
from workers.camera.synthetic import SyntheticPattern  # noqa: E402
from mimir.topology import camera_specs  # noqa: E402

__all__ = ["run", "run_synthetic", "run_ps3eye", "memcpy_us", "main"]

def memcpy_us(nbytes: int, repeats: int = 400) -> float:
    """Median over 5 batches of one ``np.copyto`` of ``nbytes`` between two buffers, in microseconds."""
    src = np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    batches = []
    for _ in range(5):
        t = time.perf_counter_ns()
        for _ in range(repeats):
            np.copyto(dst, src)
        batches.append((time.perf_counter_ns() - t) / repeats / 1e3)
    return float(np.median(batches))


class _PacedCopy:
    """memcpy of one frame's bytes once per frame period, rotating over 8 buffer pairs (a ring's worth).

    Run in the benchmark process during the worker's measured window, so it
    sees the same machine state as the worker's copies: caches and TLBs gone
    cold over each frame period, other load present.
    """

    def __init__(self, nbytes: int, fps: float, pairs: int = 8) -> None:
        rng = np.random.default_rng(1)
        self.src = [rng.integers(0, 256, nbytes, dtype=np.uint8) for _ in range(pairs)]
        self.dst = [np.empty(nbytes, dtype=np.uint8) for _ in range(pairs)]
        self.period_s = 1.0 / fps
        self.next = time.monotonic()
        self.samples_ns: list[int] = []

    def step(self) -> None:
        now = time.monotonic()
        if now < self.next:
            time.sleep(self.next - now)
        self.next += self.period_s
        k = len(self.samples_ns) % len(self.src)
        t = time.perf_counter_ns()
        np.copyto(self.dst[k], self.src[k])
        self.samples_ns.append(time.perf_counter_ns() - t)

    def median_us(self) -> float:
        return float(np.median(self.samples_ns)) / 1e3 if self.samples_ns else float("nan")


def render_us(mode: CameraMode, repeats: int = 400) -> float:
    """Median over 5 batches of one synthetic frame rendered into a buffer, in microseconds."""
    pattern = SyntheticPattern(mode)
    rows = np.empty((mode.height, mode.stride_bytes), dtype=np.uint8)
    batches = []
    for b in range(5):
        t = time.perf_counter_ns()
        for i in range(repeats):
            pattern.render_into(rows, b * repeats + i, i)
        batches.append((time.perf_counter_ns() - t) / repeats / 1e3)
    return float(np.median(batches))


def _counter(reader: RingReader) -> tuple[int, int, int]:
    """(frames_delivered, last_host_time_ns, process_cpu_ns) of one status record, read between two refreshes."""
    status = reader.status
    while True:
        updated = int(status["updated_ns"])
        frames = int(status["frames_delivered"])
        last_ns = int(status["last_host_time_ns"])
        cpu_ns = int(status["process_cpu_ns"])
        if int(status["updated_ns"]) == updated:  # not refreshed in between
            return frames, last_ns, cpu_ns


def _attach_all(names: list[str], rig: str, proc: subprocess.Popen, timeout_s: float = 20.0) -> list[RingReader]:
    readers: dict[str, RingReader] = {}
    deadline = time.monotonic() + timeout_s
    while len(readers) < len(names):
        if proc.poll() is not None:
            raise RuntimeError(f"camera worker exited with {proc.returncode} before its rings appeared")
        if time.monotonic() > deadline:
            raise RuntimeError(f"rings {sorted(set(names) - set(readers))} did not appear in {timeout_s:g} s")
        for name in names:
            if name not in readers:
                try:
                    readers[name] = RingReader.attach(name, rig=rig, register=False)
                except (SegmentMissing, RingLayoutMismatch):
                    pass
        time.sleep(0.02)
    return [readers[n] for n in names]


def run_synthetic(*, cameras: int = 6, width: int = 640, height: int = 480, fps: float = 60.0,
                  pixel_format: str = "YUYV", duration_s: float = 8.0, warmup_s: float = 2.0,
                  progress: TextIO | None = None) -> list[dict]:
    """Part 1 (see module docstring): one summary record and one record per camera."""
    progress = progress or sys.stderr
    fmt = parse_pixel_format(pixel_format)
    mode = CameraMode(width, height, fps, fmt)
    rig = f"bench{os.getpid()}"
    names = [c.ring.object_id for c in camera_specs("synthetic", cameras, 1)]
    cmd = [sys.executable, "-m", "workers.camera", "--family", "synthetic", "--count", str(cameras),
           "--width", str(width), "--height", str(height), "--fps", str(fps), "--format", pixel_format,
           "--rig", rig, "--capacity", "8"]
    print(f"bench cameras: starting {cameras} synthetic {mode} cameras in one worker", file=progress, flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    readers: list[RingReader] = []
    try:
        readers = _attach_all(names, rig, proc)
        time.sleep(warmup_s)
        # The baseline needs a status record that has seen a frame; the first refresh may not have come yet.
        ready_by = time.monotonic() + 10.0
        while any(_counter(r)[1] == 0 for r in readers) and time.monotonic() < ready_by:
            time.sleep(0.02)
        print(f"bench cameras: measuring for {duration_s:g} s", file=progress, flush=True)
        t1 = time.monotonic()
        frames1 = [_counter(r) for r in readers]
        dropped1 = [int(r.status["dropped_by_device"]) for r in readers]
        fill_ns, thread_cpu_ns, p99_ns, p50_ns = [], [], [], []
        paced_copy = _PacedCopy(mode.byte_length, fps)
        end = t1 + duration_s
        next_poll = t1 + 0.5
        while time.monotonic() < end:
            paced_copy.step()  # one memcpy per frame period, like one camera thread
            if time.monotonic() >= next_poll:
                next_poll += 0.5
                for r in readers:
                    s = r.status
                    fill_ns.append(int(s["fill_ns"]))
                    thread_cpu_ns.append(int(s["frame_cpu_ns"]))
        t2 = time.monotonic()
        frames2 = [_counter(r) for r in readers]
        dropped2 = [int(r.status["dropped_by_device"]) for r in readers]
        for r in readers:
            p50_ns.append(int(r.status["interval_p50_ns"]))
            p99_ns.append(int(r.status["interval_p99_ns"]))
    finally:
        for r in readers:
            r.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"camera worker exited with {proc.returncode}: {err.strip()[-2000:]}")
    span = t2 - t1
    per_cam_fps = [(b[0] - a[0]) * 1e9 / (b[1] - a[1]) for a, b in zip(frames1, frames2)]
    frames = sum(b[0] - a[0] for a, b in zip(frames1, frames2))
    # One process clock, read at each camera's refresh: the first camera's two records span its frames' window.
    cpu_s = (frames2[0][2] - frames1[0][2]) / 1e9
    cpu_span_s = (frames2[0][1] - frames1[0][1]) / 1e9
    print("bench cameras: back-to-back memcpy and render of the same bytes", file=progress, flush=True)
    copy_us = memcpy_us(mode.byte_length)
    iso_render_us = render_us(mode)
    summary = {
        "name": "synthetic_worker",
        "cameras": cameras,
        "width_px": width,
        "height_px": height,
        "pixel_format": pixel_format,
        "frame_bytes": mode.byte_length,
        "requested_fps": fps,
        "measured_s": round(span, 3),
        "frames_total": frames,
        "delivered_fps_mean": round(float(np.mean(per_cam_fps)), 3),
        "delivered_fps_min": round(min(per_cam_fps), 3),
        "delivered_fps_max": round(max(per_cam_fps), 3),
        "dropped_by_device_total": sum(b - a for a, b in zip(dropped1, dropped2)),
        "worker_cpu_us_per_frame": round(cpu_s / max(frames, 1) * 1e6, 1),
        "worker_cpu_percent_of_one_core": round(cpu_s / cpu_span_s * 100, 1) if cpu_span_s > 0 else None,
        "capture_thread_cpu_us_per_frame": round(float(np.mean(thread_cpu_ns)) / 1e3, 1) if thread_cpu_ns else None,
        "copy_us_per_frame_in_worker": round(float(np.mean(fill_ns)) / 1e3, 1) if fill_ns else None,
        "memcpy_us_per_frame_paced": round(paced_copy.median_us(), 1),
        "memcpy_us_per_frame_back_to_back": round(copy_us, 1),
        "copy_us_per_frame_back_to_back": round(iso_render_us, 1),
        "interval_p50_ms_max": round(max(p50_ns) / 1e6, 3),
        "interval_p99_ms_max": round(max(p99_ns) / 1e6, 3),
    }
    records = [summary]
    for i, f in enumerate(per_cam_fps):
        records.append({
            "name": "synthetic_camera", "camera_index": i, "delivered_fps": round(f, 3),
            "dropped_by_device": dropped2[i] - dropped1[i],
            "interval_p50_ms": round(p50_ns[i] / 1e6, 3), "interval_p99_ms": round(p99_ns[i] / 1e6, 3),
        })
    return records


def run_ps3eye(progress: TextIO | None = None) -> list[dict]:
    """Part 2: ``bench.ps3eye_parse.run()`` records, or one record saying why they are missing."""
    progress = progress or sys.stderr
    if importlib.util.find_spec("bench.ps3eye_parse") is None:
        reason = "bench/ps3eye_parse.py does not exist (the PS3 Eye driver's bench is not written yet)"
        print(f"bench cameras: skipping PS3 Eye parsing: {reason}", file=progress, flush=True)
        return [{"name": "ps3eye_parse", "skipped": True, "skip_reason": reason}]
    print("bench cameras: PS3 Eye payload parsing (bench.ps3eye_parse.run())", file=progress, flush=True)
    try:
        with contextlib.redirect_stdout(progress):  # stdout is reserved for the JSON document
            module = importlib.import_module("bench.ps3eye_parse")
            out = module.run()
    except Exception as exc:  # report, don't lose part 1
        reason = f"bench.ps3eye_parse.run() failed: {type(exc).__name__}: {exc}"
        print(f"bench cameras: {reason}", file=progress, flush=True)
        return [{"name": "ps3eye_parse", "skipped": True, "skip_reason": reason}]
    if isinstance(out, dict):
        out = out.get("results", [out])
    return [dict(r, name=r.get("name", "ps3eye_parse")) if isinstance(r, dict) else {"name": "ps3eye_parse", "value": r}
            for r in out]


def run(*, duration_s: float = 8.0, progress: TextIO | None = None) -> list[dict]:
    return run_synthetic(duration_s=duration_s, progress=progress) + run_ps3eye(progress)


def _print_table(results: list[dict], out: TextIO) -> None:
    for record in results:
        name = record.get("name", "?")
        body = ", ".join(f"{k}={v}" for k, v in record.items() if k != "name")
        print(f"{name}: {body}", file=out)


def main(*, json_out: bool = False, duration_s: float = 8.0) -> int:
    with contextlib.redirect_stdout(sys.stderr):
        results = run(duration_s=duration_s, progress=sys.stderr)
    if json_out:
        doc = {"bench": "cameras", "machine": machine_info(), "results": results}
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        _print_table(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(json_out="--json" in sys.argv[1:]))
