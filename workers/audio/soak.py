"""``mimir soak``: the seed's stability run, against a real worker process.

The soak starts ``python -m workers.audio worker`` with an impulse output
(one impulse per second on output 0), loops it back (JACK: the worker's own
ports; otherwise a cable or the synthetic loopback), and reads the worker's
two rings from this process, as the supervisor would:

* ``<ring>.metrics``: every callback's duration, interval, flags and CPU load
  -> callbacks, xruns, deadline misses, duration and interval histograms;
* ``<ring>``: the captured input -> each impulse's round trip -> latency
  histogram, and impulses that never came back (dropouts).

Process CPU of the worker and of the machine come from psutil. Progress goes to stderr every ``progress_s``.
"""

from __future__ import annotations

import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from mimir.descriptors import AudioBlockRecord
from ringbuf import RingReader
from ringbuf.layout import dtype_of

from . import jack
from .config import EngineConfig
from .errors import AudioError
from .records import FLAG_DEADLINE_MISS, XRUN_MASK, CallbackMetric, metrics_ring_name
from .runner import WorkerProcess

__all__ = ["SoakResult", "run_soak", "worker_args", "plot_soak", "format_soak", "machine_summary", "HIST_EDGES_US"]

# Log-spaced callback-duration bins: 1 us .. 1 s, 10 per decade.
HIST_EDGES_US = np.logspace(0, 6, 61)


def worker_args(cfg: EngineConfig) -> list[str]:
    """The ``worker`` command-line arguments that reproduce ``cfg`` (for a subprocess)."""
    args = ["--backend", cfg.backend, "--block", str(cfg.block_frames), "--channels", str(cfg.channels),
            "--output", cfg.output, "--rig", cfg.rig, "--ring", cfg.ring, "--ring-seconds", str(cfg.ring_seconds),
            "--metrics-seconds", str(cfg.metrics_seconds), "--health-window", str(cfg.health_window_s),
            "--signal", cfg.signal, "--ppm", str(cfg.ppm), "--sample-format", cfg.sample_format]
    if cfg.sample_rate_hz is not None:
        args += ["--rate", str(cfg.sample_rate_hz)]
    if cfg.host_api:
        args += ["--host-api", cfg.host_api]
    if cfg.device is not None:
        args += ["--device", str(cfg.device)]
    if cfg.path is not None:
        args += ["--file", str(cfg.path)]
    if cfg.loop:
        args += ["--loop"]
    if cfg.jack_client_name:
        args += ["--jack-name", cfg.jack_client_name]
    if cfg.impulse_period_frames:
        args += ["--impulse-period", str(cfg.impulse_period_frames)]
    if cfg.through_channel is not None:
        args += ["--through-channel", str(cfg.through_channel)]
    if cfg.output_channels is not None:
        args += ["--output-channels", str(cfg.output_channels)]
    if cfg.simulate_load_us:
        args += ["--simulate-load-us", str(cfg.simulate_load_us)]
    return args


def machine_summary() -> dict:
    return {"cpu_model": platform.processor() or platform.machine(), "cpu_cores": psutil.cpu_count(),
            "os": platform.platform(), "python": platform.python_version(), "numpy": np.__version__}


def _proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (psutil: the same on every OS)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def _system_cpu() -> tuple[float, float] | None:
    """(total, idle) CPU seconds of the machine since boot."""
    times = psutil.cpu_times()
    return sum(times), times.idle + getattr(times, "iowait", 0.0)


@dataclass
class SoakResult:
    """Everything the soak measured (``as_dict`` is the --json document)."""

    setup: dict
    seconds: float
    callbacks: int
    callbacks_expected: int
    metrics_lost: int
    xruns: int
    deadline_misses: int
    block_period_us: float
    durations_us: np.ndarray
    intervals_us: np.ndarray
    cpu_load: np.ndarray
    per_second: list[dict]
    round_trips: Counter
    impulses_expected: int
    impulses_found: int
    reported_round_trip_frames: float
    worker_cpu_pct: float | None
    system_cpu_pct: float | None
    worker_exit_code: int | None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = self.durations_us
        q = _percentile
        p99 = q(d, 99)
        minutes = self.seconds / 60 if self.seconds else float("nan")
        rt = self.round_trips
        rt_values = sorted(rt.elements())
        rate = self.setup["sample_rate_hz"]
        hist, _ = np.histogram(d, bins=HIST_EDGES_US)
        return {
            "soak": self.setup,
            "seconds": round(self.seconds, 3),
            "callbacks": self.callbacks,
            "callbacks_expected": self.callbacks_expected,
            "metrics_lost": self.metrics_lost,
            "xruns": self.xruns,
            "xruns_per_min": self.xruns / minutes,
            "deadline_misses": self.deadline_misses,
            "deadline_misses_per_min": self.deadline_misses / minutes,
            "block_period_us": self.block_period_us,
            "callback_us": {"p50": q(d, 50), "p99": p99, "p99_9": q(d, 99.9), "max": float(d.max()) if d.size else None,
                            "mean": float(d.mean()) if d.size else None},
            "callback_p99_pct_of_period": (p99 / self.block_period_us * 100) if p99 is not None else None,
            "callback_histogram": {"edges_us": [round(float(e), 3) for e in HIST_EDGES_US], "counts": hist.tolist()},
            "interval_us": {"p1": q(self.intervals_us, 1), "p50": q(self.intervals_us, 50),
                            "p99": q(self.intervals_us, 99), "max": float(self.intervals_us.max()) if self.intervals_us.size else None},
            "round_trip": {
                "impulses_expected": self.impulses_expected, "impulses_found": self.impulses_found,
                "impulses_lost": max(0, self.impulses_expected - self.impulses_found),
                "frames_min": rt_values[0] if rt_values else None, "frames_max": rt_values[-1] if rt_values else None,
                "frames_median": float(np.median(rt_values)) if rt_values else None,
                "ms_median": float(np.median(rt_values)) * 1e3 / rate if rt_values else None,
                "histogram_frames": {str(k): v for k, v in sorted(rt.items())},
                "reported_frames": self.reported_round_trip_frames,
            },
            "cpu": {
                "stream_load_mean": float(self.cpu_load.mean()) if self.cpu_load.size else None,
                "stream_load_max": float(self.cpu_load.max()) if self.cpu_load.size else None,
                "worker_process_pct": self.worker_cpu_pct, "system_pct": self.system_cpu_pct,
            },
            "worker_exit_code": self.worker_exit_code,
            "notes": self.notes,
        }


def _percentile(a: np.ndarray, p: float) -> float | None:
    """The ``p``-th percentile of ``a``; None for an empty array."""
    return float(np.percentile(a, p)) if a.size else None


@dataclass
class _Drained:
    """What the soak's drain has seen: the first frame captured, the end of the last, the current second's bucket."""

    first: int | None = None
    last: int = 0
    bucket: dict[str, float] | None = None


def run_soak(cfg: EngineConfig, minutes: float, *, loopback: str = "auto", progress_s: float = 10.0,
             log=None) -> SoakResult:
    """Run the worker for ``minutes`` and measure it; the worker is always stopped (by pid) before returning."""
    log = log or sys.stderr
    rate = cfg.rate_or_default()
    period = cfg.impulse_period_frames or rate  # one impulse per second
    seconds = minutes * 60.0
    wcfg = cfg.with_(output="impulse", impulse_period_frames=period, ring=cfg.ring or "audio",
                     ring_seconds=max(cfg.ring_seconds, 4.0), metrics_seconds=max(cfg.metrics_seconds, 30.0))
    if cfg.backend == "synthetic" and loopback in ("auto", "external"):
        wcfg = wcfg.with_(signal="loopback")
    worker = WorkerProcess(worker_args(wcfg))
    notes: list[str] = []
    try:
        ready = worker.wait_ready()
        stream = ready["stream"]
        if loopback in ("auto", "jack") and stream["jack_output_ports"]:
            jack.make_loopback([stream["jack_output_ports"][0]], [stream["jack_input_ports"][0]])
            loop_mode = "jack"
        elif loopback == "jack":
            raise AudioError("--loopback jack needs --host-api jack")
        else:
            loop_mode = "external"
        metrics = RingReader.attach(metrics_ring_name(wcfg.ring), rig=wcfg.rig, descriptor=CallbackMetric,
                                    start="latest")
        audio = RingReader.attach(wcfg.ring, rig=wcfg.rig, descriptor=AudioBlockRecord, start="latest")
        try:
            result = _measure(worker, metrics, audio, stream, wcfg, seconds, period, progress_s, log, notes)
        finally:
            metrics.close()
            audio.close()
        result.setup["loopback"] = loop_mode
    finally:
        code = worker.stop()
    result.worker_exit_code = code
    if worker.done and worker.done.get("failure"):
        result.notes.append(f"worker failure: {worker.done['failure']}")
    return result


def _measure(worker: WorkerProcess, metrics: RingReader, audio: RingReader, stream: dict, cfg: EngineConfig,
             seconds: float, period: int, progress_s: float, log, notes: list[str]) -> SoakResult:
    rate = stream["sample_rate_hz"]
    block = stream["block_frames"] or stream["slot_frames"]
    block_period_us = block * 1e6 / rate
    mdt = dtype_of(CallbackMetric)
    batch = np.zeros(8192, dtype=mdt)
    chunks: list[np.ndarray] = []
    desc = np.zeros(1, dtype=dtype_of(AudioBlockRecord))
    desc_u8 = desc.view(np.uint8)
    payload = np.zeros((stream["slot_frames"], stream["channels"]), dtype=np.float32)
    round_trips: Counter = Counter()
    found_impulses: set[int] = set()
    cpu0, sys0 = _proc_cpu_s(worker.proc.pid), _system_cpu()
    t0 = time.monotonic()
    next_progress = t0 + progress_s
    per_second: list[dict] = []
    state = _Drained()

    def drain(now: float) -> None:
        while (n := metrics.read_batch(batch)) > 0:
            chunk = batch[:n].copy()
            chunks.append(chunk)
            second = int(now - t0)
            bucket = state.bucket
            if bucket is None or bucket["t_s"] != second:
                bucket = state.bucket = {"t_s": second, "max_us": 0.0, "xruns": 0, "misses": 0, "callbacks": 0}
                per_second.append(bucket)
            bucket["max_us"] = max(bucket["max_us"], float(chunk["duration_ns"].max()) / 1e3)
            bucket["xruns"] += int(np.count_nonzero(chunk["flags"] & XRUN_MASK))
            bucket["misses"] += int(np.count_nonzero(chunk["flags"] & FLAG_DEADLINE_MISS))
            bucket["callbacks"] += n
        while audio.read_into(desc_u8, payload) >= 0:
            s = int(desc["start_sample"][0])
            f = int(desc["frame_count"][0])
            if state.first is None:
                state.first = s
            state.last = s + f
            x = payload[:f, 0]
            i = int(np.argmax(np.abs(x)))
            if abs(x[i]) >= 0.125:
                at = s + i
                emitted = (at // period) * period
                round_trips[at - emitted] += 1
                found_impulses.add(emitted)

    while True:
        now = time.monotonic()
        if now - t0 >= seconds or worker.proc.poll() is not None:
            break
        metrics.wait(0.1)
        drain(now)
        if time.monotonic() >= next_progress:
            next_progress += progress_s
            _progress(log, time.monotonic() - t0, seconds, chunks, round_trips, block_period_us)
    drain(time.monotonic())
    first_frame, last_frame = state.first, state.last
    elapsed = time.monotonic() - t0
    cpu1, sys1 = _proc_cpu_s(worker.proc.pid), _system_cpu()
    data = np.concatenate(chunks) if chunks else np.zeros(0, dtype=mdt)
    max_rt = max(round_trips) if round_trips else stream["reported_round_trip_frames"]
    expected = 0
    if first_frame is not None:
        # Impulses emitted after the loop was in place and early enough to have come back.
        first_e = -(-(first_frame + 1) // period) * period
        last_e = last_frame - int(max_rt) - 1
        expected = max(0, (last_e - first_e) // period + 1) if last_e >= first_e else 0
        found = sum(1 for e in found_impulses if first_e <= e <= last_e)
    else:
        found = 0
    worker_pct = (cpu1 - cpu0) / elapsed * 100 if cpu0 is not None and cpu1 is not None else None
    system_pct = None
    if sys0 and sys1 and sys1[0] > sys0[0]:
        system_pct = 100.0 * (1 - (sys1[1] - sys0[1]) / (sys1[0] - sys0[0]))
    setup = {
        "backend": stream["backend"], "host_api": stream["host_api"], "device": stream["device"],
        "sample_rate_hz": rate, "block_frames": stream["block_frames"], "channels": stream["channels"],
        "impulse_period_frames": period, "minutes_requested": seconds / 60, "machine": machine_summary(),
        "portaudio_cpu_load_source": "PortAudio Pa_GetStreamCpuLoad" if stream["backend"] == "sounddevice"
        else "callback time / block period (EMA)",
    }
    if metrics.lost:
        notes.append(f"the soak reader lost {metrics.lost} metric records (it fell behind)")
    return SoakResult(
        setup=setup, seconds=elapsed, callbacks=len(data),
        callbacks_expected=int(elapsed * rate / block),
        metrics_lost=metrics.lost, xruns=int(np.count_nonzero(data["flags"] & XRUN_MASK)),
        deadline_misses=int(np.count_nonzero(data["flags"] & FLAG_DEADLINE_MISS)), block_period_us=block_period_us,
        durations_us=data["duration_ns"].astype(np.float64) / 1e3,
        intervals_us=data["interval_ns"][data["interval_ns"] > 0].astype(np.float64) / 1e3,
        cpu_load=data["cpu_load"].astype(np.float64), per_second=per_second, round_trips=round_trips,
        impulses_expected=expected, impulses_found=found,
        reported_round_trip_frames=stream["reported_round_trip_frames"], worker_cpu_pct=worker_pct,
        system_cpu_pct=system_pct, worker_exit_code=None, notes=notes,
    )


def _progress(log, elapsed: float, total: float, chunks: list[np.ndarray], rts: Counter, period_us: float) -> None:
    data = np.concatenate(chunks) if chunks else None
    if data is None or not len(data):
        print(f"soak {elapsed:6.0f}/{total:.0f} s  no callbacks yet", file=log, flush=True)
        return
    d = data["duration_ns"] / 1e3
    xr = int(np.count_nonzero(data["flags"] & XRUN_MASK))
    miss = int(np.count_nonzero(data["flags"] & FLAG_DEADLINE_MISS))
    rt = ",".join(str(k) for k in sorted(rts)) or "-"
    print(f"soak {elapsed:6.0f}/{total:.0f} s  callbacks {len(data):,}  xruns {xr}  misses {miss}  "
          f"p50 {np.percentile(d, 50):.1f} us  p99 {np.percentile(d, 99):.1f} us  max {d.max():.0f} us "
          f"(period {period_us:.0f} us)  round trip {rt} frames", file=log, flush=True)


def format_soak(doc: dict) -> str:
    s = doc["soak"]
    c = doc["callback_us"]
    rt = doc["round_trip"]
    cpu = doc["cpu"]
    m = s["machine"]
    fmt = lambda v, spec=".1f": "-" if v is None else format(v, spec)  # noqa: E731
    return "\n".join([
        f"soak: {doc['seconds']:.0f} s, {s['backend']}: {s['device']}, {s['sample_rate_hz']} Hz, "
        f"block {s['block_frames']}, loopback {s.get('loopback')}",
        f"machine: {m['cpu_model']}, {m['cpu_cores']} cores, {m['os']}, Python {m['python']}",
        f"callbacks {doc['callbacks']:,} (expected {doc['callbacks_expected']:,}, metrics lost {doc['metrics_lost']})",
        f"xruns {doc['xruns']} ({doc['xruns_per_min']:.2f}/min), deadline misses {doc['deadline_misses']} "
        f"({doc['deadline_misses_per_min']:.2f}/min)",
        f"callback duration us: p50 {fmt(c['p50'])}  p99 {fmt(c['p99'])}  p99.9 {fmt(c['p99_9'])}  max {fmt(c['max'])}  "
        f"(block period {doc['block_period_us']:.1f} us; p99 = {fmt(doc['callback_p99_pct_of_period'])} %)",
        f"round trip: median {fmt(rt['frames_median'], 'g')} frames ({fmt(rt['ms_median'], '.3f')} ms), "
        f"min {rt['frames_min']}, max {rt['frames_max']}, reported {rt['reported_frames']:g}; impulses "
        f"{rt['impulses_found']}/{rt['impulses_expected']} came back",
        f"cpu: stream load mean {fmt(cpu['stream_load_mean'], '.3f')} max {fmt(cpu['stream_load_max'], '.3f')}; "
        f"worker process {fmt(cpu['worker_process_pct'])} % of a core; machine {fmt(cpu['system_pct'])} %",
        *[f"note: {n}" for n in doc["notes"]],
    ])


def plot_soak(result: SoakResult, path: Path) -> None:
    """A four-panel figure: duration histogram, duration over time, round-trip histogram, interval histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = result.as_dict()
    s = doc["soak"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0, 0]
    d = result.durations_us
    if d.size:
        ax.hist(d, bins=HIST_EDGES_US, color="tab:blue")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axvline(result.block_period_us, color="tab:red", ls="--", label=f"deadline {result.block_period_us:.0f} us")
    for p, ls in ((50, ":"), (99, "-.")):
        if d.size:
            v = np.percentile(d, p)
            ax.axvline(v, color="k", ls=ls, label=f"p{p} {v:.1f} us")
    ax.set_xlabel("callback duration (us)")
    ax.set_ylabel("callbacks")
    ax.set_title("callback duration")
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    ts = [b["t_s"] for b in result.per_second]
    ax.plot(ts, [b["max_us"] for b in result.per_second], ".", ms=3, label="max per second")
    ax.axhline(result.block_period_us, color="tab:red", ls="--", label="deadline")
    xr = [b["t_s"] for b in result.per_second if b["xruns"]]
    if xr:
        ax.plot(xr, [result.block_period_us] * len(xr), "rx", label="xrun")
    ax.set_yscale("log")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("callback duration (us)")
    ax.set_title(f"over time: {doc['xruns']} xruns, {doc['deadline_misses']} deadline misses")
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    if result.round_trips:
        keys = sorted(result.round_trips)
        ax.bar([str(k) for k in keys], [result.round_trips[k] for k in keys], color="tab:green")
    ax.set_xlabel("round trip (frames)")
    ax.set_ylabel("impulses")
    rt = doc["round_trip"]
    ax.set_title(f"round trip: {rt['impulses_found']}/{rt['impulses_expected']} impulses back; "
                 f"reported {rt['reported_frames']:g} frames")

    ax = axes[1, 1]
    iv = result.intervals_us
    if iv.size:
        lo, hi = max(iv.min(), 1.0), max(iv.max(), 2.0)
        ax.hist(iv, bins=np.logspace(np.log10(lo), np.log10(hi), 60), color="tab:purple")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("callback interval, entry to entry (us)")
    ax.set_ylabel("callbacks")
    ax.set_title(f"interval; stream CPU load mean {doc['cpu']['stream_load_mean'] or 0:.3f}")
    m = s["machine"]
    fig.suptitle(f"mimir soak: {doc['seconds'] / 60:.1f} min, {s['backend']}: {s['device']}, "
                 f"{s['sample_rate_hz']} Hz / {s['block_frames']} frames\n{m['cpu_model']}, {m['cpu_cores']} cores, "
                 f"{m['os']}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
