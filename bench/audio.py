"""``mimir bench audio``: the audio callback's cost and stability on a JACK dummy server.

For each server setting (48 kHz / 64 frames and 192 kHz / 64 frames, one
private ``jackd -d dummy -p 64`` each, realtime if permitted) the same
process runs each client for ``seconds`` in total, interleaved in three
rounds so that load from elsewhere on the machine falls on all alike:

``bare pass-through (sounddevice)``
    the usual Python pass-through: ``outdata[:] = indata`` called exactly the
    way ``sounddevice.Stream`` calls it (two numpy arrays and a CallbackFlags
    object per call; the same helper functions, in a timed cffi callback).
    The goal's baseline.
``bare pass-through (raw cffi)``
    the same binding path Mimir uses (a raw cffi PortAudio callback), doing
    only ``memmove(out, in)``: the floor for any Python callback.
``mimir (ring write + metrics)``
    the audio engine: copy into the ring slot, pass-through output stage,
    AudioBlockRecord publish, counters, CallbackMetric publish.
``jack_iodelay (C client)``
    a C JACK client on the same server, for the xrun comparison.

Callback duration is measured the same way in every variant: host
monotonic ns from the first line of the Python function cffi calls to its
return, so everything done in Python per callback is inside (for
sounddevice: building the arrays and flags; for Mimir: conversion, output,
both publishes, counters, the CPU-load query). Mimir's own
``CallbackMetric.duration_ns`` (which excludes its metrics publish) is
reported beside as ``metric_callback_*``. PortAudio's CPU load is the mean of
samples taken every 0.25 s. Xruns: ``xruns_server`` counts the server's own log lines
(``JackEngine::XRun``) during the phase, the same measure for Python and C
clients; ``xruns_portaudio`` counts callbacks PortAudio flagged.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from bench.common import busy_processes, load_average_1min

CONFIGS = ((48000, 64), (192000, 64))
BARE_SD = "bare pass-through (sounddevice)"
BARE_RAW = "bare pass-through (raw cffi)"
MIMIR = "mimir (ring write + metrics)"
C_CLIENT = "jack_iodelay (C client)"
PHASES = (BARE_SD, BARE_RAW, MIMIR, C_CLIENT)
OVERHEAD_GOAL = 1.5
P99_PERIOD_GOAL_PCT = 10.0


def _stats(durations_ns: np.ndarray) -> dict[str, float | None]:
    d = durations_ns.astype(np.float64) / 1e3
    if not d.size:
        return {"callback_p50_us": None, "callback_p99_us": None, "callback_p99_9_us": None, "callback_max_us": None}
    return {
        "callback_p50_us": round(float(np.percentile(d, 50)), 3),
        "callback_p99_us": round(float(np.percentile(d, 99)), 3),
        "callback_p99_9_us": round(float(np.percentile(d, 99.9)), 3),
        "callback_max_us": round(float(d.max()), 3),
    }


def _record(client: str, rate: int, block: int, seconds: float, durations_ns: np.ndarray, pa_flags: np.ndarray | None,
            xruns_server: int, cpu_load: float | None, realtime: bool) -> dict:
    period_us = block * 1e6 / rate
    rec: dict[str, object] = {
        "record": "callback", "client": client, "rate_hz": rate, "block_frames": block,
        "block_period_us": round(period_us, 3), "server_realtime": realtime, "seconds": round(seconds, 3),
        "callbacks": int(durations_ns.size)}
    stats = _stats(durations_ns)
    rec.update(stats)
    p99_us = stats["callback_p99_us"]
    rec["callback_p99_pct_of_period"] = round(p99_us / period_us * 100, 3) if p99_us is not None else None
    rec["cpu_load_mean"] = round(cpu_load, 4) if cpu_load is not None else None
    rec["xruns_portaudio"] = int(np.count_nonzero(pa_flags)) if pa_flags is not None else None
    rec["xruns_server"] = xruns_server
    rec["xruns_server_per_min"] = round(xruns_server / (seconds / 60.0), 3)
    rec["loadavg_1min"] = load_average_1min()
    return rec


def _sample_cpu(stream, seconds: float) -> float | None:
    """Sleep ``seconds`` (this thread must not wake and take the GIL meanwhile); then the stream's CPU load.

    PortAudio's CPU load is already a running average over recent callbacks.
    """
    time.sleep(seconds)
    try:
        return float(stream.cpu_load)
    except Exception:
        return None


class _Timings:
    """Preallocated per-callback durations and PortAudio flags, filled from the audio thread."""

    def __init__(self, rate: int, block: int, seconds: float) -> None:
        self.n_max = int(seconds * rate / block * 1.5) + 1000
        self.durations = np.zeros(self.n_max, np.int64)
        self.flags = np.zeros(self.n_max, np.uint32)
        self.count = 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return self.durations[: self.count], self.flags[: self.count]


def _bare_sounddevice(sd, rate: int, block: int, seconds: float):
    """sounddevice's own Stream callback path (two numpy arrays + CallbackFlags per call), timed from entry."""
    t = _Timings(rate, block, seconds)
    monotonic_ns = time.monotonic_ns
    durations, flags, n_max = t.durations, t.flags, t.n_max
    make_buffer, make_array, wrap = sd._buffer, sd._array, sd._wrap_callback

    def user_callback(indata, outdata, frames, time_info, status):
        outdata[:] = indata

    # Exactly what sounddevice.Stream's cffi callback does, with a clock around it.
    def callback(iptr, optr, frames, time_info, status, userdata):
        t0 = monotonic_ns()
        idata = make_array(make_buffer(iptr, frames, 2, 4), 2, "float32")
        odata = make_array(make_buffer(optr, frames, 2, 4), 2, "float32")
        result = wrap(user_callback, idata, odata, frames, time_info, status)
        t1 = monotonic_ns()
        i = t.count
        if i < n_max:
            durations[i] = t1 - t0
            flags[i] = status & 0xF
            t.count = i + 1
        return result

    cb = sd._ffi.callback("PaStreamCallback", callback, error=sd._lib.paAbort)
    return _run_raw_stream(sd, cb, rate, block, seconds) + t.result()


def _bare_raw(sd, rate: int, block: int, seconds: float):
    """The floor: Mimir's binding path (raw cffi callback) doing only memmove(out, in)."""
    from workers.audio.backends.portaudio import _get_ffi

    ffi = _get_ffi()
    memmove = ffi.memmove
    t = _Timings(rate, block, seconds)
    monotonic_ns = time.monotonic_ns
    durations, flags, n_max = t.durations, t.flags, t.n_max
    frame_bytes = 2 * 4

    def callback(iptr, optr, frames, time_info, status, userdata):
        t0 = monotonic_ns()
        memmove(optr, iptr, frames * frame_bytes)
        t1 = monotonic_ns()
        i = t.count
        if i < n_max:
            durations[i] = t1 - t0
            flags[i] = status & 0xF
            t.count = i + 1
        return 0

    cb = ffi.callback("PaStreamCallback", callback, error=2)
    return _run_raw_stream(sd, cb, rate, block, seconds) + t.result()


def _run_raw_stream(sd, cb, rate: int, block: int, seconds: float) -> tuple[float | None]:
    stream = sd._StreamBase(kind="duplex", wrap_callback=None, samplerate=rate, blocksize=block, channels=2,
                            dtype="float32", latency="low", callback=cb)
    try:
        stream.start()
        cpu = _sample_cpu(stream, seconds)
        stream.stop()
    finally:
        stream.close()
    return (cpu,)


def _mimir(rate: int, block: int, seconds: float):
    """The audio engine on the same server, its whole Python callback timed from entry to return."""
    from ringbuf import RingReader
    from ringbuf.layout import dtype_of
    from workers.audio import AudioEngine, EngineConfig
    from workers.audio.backends.portaudio import PortAudioBackend
    from workers.audio.health import restore_scheduler, scheduler_policy, try_realtime
    from workers.audio.records import XRUN_MASK, CallbackMetric, metrics_ring_name

    t = _Timings(rate, block, seconds)
    monotonic_ns = time.monotonic_ns
    durations, flags, n_max = t.durations, t.flags, t.n_max

    class TimedBackend(PortAudioBackend):
        def _python_callback(self, proc):
            inner = super()._python_callback(proc)

            def timed(iptr, optr, frames, time_info, status, userdata):
                t0 = monotonic_ns()
                result = inner(iptr, optr, frames, time_info, status, userdata)
                t1 = monotonic_ns()
                i = t.count
                if i < n_max:
                    durations[i] = t1 - t0
                    flags[i] = status & 0xF
                    t.count = i + 1
                return result

            return timed

    rig = f"bench{os.getpid()}"
    cfg = EngineConfig(host_api="jack", output="passthrough", rig=rig, ring="bench",
                       metrics_seconds=seconds * 1.5 + 10, freeze_gc=True, realtime_threads=True)
    engine = AudioEngine(cfg, backend_factory=TimedBackend)
    engine.init(rate, block)
    reader = RingReader.attach(metrics_ring_name("bench"), rig=rig, descriptor=CallbackMetric)
    policy = scheduler_policy()
    try:
        try_realtime(1)  # as the worker's main thread does around start/stop
        engine.start()
        time.sleep(seconds)  # like the worker's main thread: asleep, never holding the GIL
        engine.stop()
        out = np.zeros(t.n_max, dtype=dtype_of(CallbackMetric))
        n = reader.read_batch(out)
        metric = out[:n]
        lost = reader.lost
    finally:
        reader.close()
        engine.shutdown()
        restore_scheduler(policy)
    d, f = t.result()
    inner = _stats(metric["duration_ns"].astype(np.int64))
    extra = {"metric_" + k: v for k, v in inner.items()}
    extra["metrics_lost"] = lost
    extra["metric_xrun_callbacks"] = int(np.count_nonzero(metric["flags"] & XRUN_MASK))
    return d, f, float(metric["cpu_load"][-64:].mean()) if n else None, extra


def _busy() -> None:  # pragma: no cover - runs in the hog processes
    while True:
        pass


def clock_mapping(rate: int, block: int, seconds: float, *, jitter_us: float, hogs: int) -> dict:
    """How tightly each clock places blocks on the host timeline, on the same stream, under injected lateness.

    The engine runs on the current JACK server with ``callback_jitter_us`` (each
    callback busy-waits up to that long before taking its entry time) and
    ``hogs`` busy processes beside it. Two host-to-device fits are made from
    the same blocks, as the supervisor makes them: one on callback entry
    times, one on the driver's ADC times placed on the host clock
    (:class:`mimir.timebase.StreamToHost`). Each is judged by its
    residuals: how far each block's own time lies from the fitted line.
    """
    from mimir.descriptors import AudioBlockRecord
    from mimir.timebase import HostToDevice, StreamToHost
    from ringbuf import RingReader
    from workers.audio import AudioEngine, EngineConfig

    rig = f"benchclk{os.getpid()}"
    cfg = EngineConfig(host_api="jack", output="silence", rig=rig, ring="clk", ring_seconds=seconds + 5,
                       callback_jitter_us=jitter_us, freeze_gc=True, realtime_threads=True)
    engine = AudioEngine(cfg)
    engine.init(rate, block)
    reader = RingReader.attach("clk", rig=rig, descriptor=AudioBlockRecord)
    procs = busy_processes(hogs, _busy)
    rows = []
    try:
        for proc in procs:
            proc.start()
        engine.start()
        time.sleep(seconds)
        engine.stop()
        while (item := reader.read(copy_payload=False)) is not None:
            rows.append(item.descriptor)
    finally:
        for proc in procs:
            proc.terminate()
            proc.join(5)
        reader.close()
        engine.shutdown()
    fields = AudioBlockRecord.__struct_fields__
    adc_i, entry_i, stream_i, start_i = (fields.index(k) for k in ("adc_time_ns", "host_time_ns", "stream_time_ns",
                                                                   "start_sample"))
    to_host = StreamToHost(window=len(rows) or 1)
    adc_host = [to_host.host_of(r[adc_i], r[entry_i], r[stream_i]) for r in rows]
    record: dict[str, object] = {
        "record": "clock_mapping", "rate_hz": rate, "block_frames": block, "jitter_us": jitter_us,
        "hogs": hogs, "blocks": len(rows), "adc_available": to_host.mode == "adc"}
    p99_us: dict[str, float | None] = {}
    for name, hosts in (("entry", [r[entry_i] for r in rows]), ("adc", adc_host)):
        fit = HostToDevice(window=max(8, len(rows)))
        for h, r in zip(hosts, rows):
            fit.add(h, r[start_i])
        errors = np.abs([(fit.host_ns_at(r[start_i]) - h) / 1e3 for h, r in zip(hosts, rows)]) if fit.ready else None
        record[f"{name}_rms_us"] = round(float(np.sqrt(np.mean(errors ** 2))), 2) if errors is not None else None
        p99_us[name] = round(float(np.percentile(errors, 99)), 2) if errors is not None else None
        record[f"{name}_p99_us"] = p99_us[name]
    adc_p99, entry_p99 = p99_us["adc"], p99_us["entry"]
    if adc_p99 is not None and entry_p99:
        record["adc_over_entry_p99"] = round(adc_p99 / entry_p99, 4)
        # The issue's goal is for injected lateness; without it both clocks see the same (dummy) driver timing.
        record["goal_adc_at_least_as_tight"] = (adc_p99 <= entry_p99) if jitter_us else None
    return record


def _merge_metric_extras(extras: list[dict]) -> dict:
    """Mimir's own CallbackMetric figures over all rounds: worst of the percentiles, sums of the counts."""
    out = {"metrics_lost": sum(e["metrics_lost"] for e in extras),
           "metric_xrun_callbacks": sum(e["metric_xrun_callbacks"] for e in extras)}
    for key in ("metric_callback_p50_us", "metric_callback_p99_us", "metric_callback_p99_9_us", "metric_callback_max_us"):
        values = [e[key] for e in extras if e[key] is not None]
        out[key.replace("metric_", "metric_worst_round_")] = max(values) if values else None
    return out


@dataclass
class _Phase:
    """One client's measurements summed over the rounds of one server setting."""

    durations: list[np.ndarray] = field(default_factory=list)
    flags: list[np.ndarray] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    xruns_server: int = 0
    seconds: float = 0.0
    extra: list[dict] = field(default_factory=list)


def run(seconds: float = 15.0, progress: Callable[[str], None] = print, configs=CONFIGS,
        rounds: int = 3) -> list[dict]:
    """All phases for all server settings; a list of flat records (see the module docstring)."""
    from workers.audio import jack
    from workers.audio.backends.portaudio import load_sounddevice, reinitialize_portaudio

    missing = jack.jack_tools_available()
    if missing:
        from workers.audio.errors import BackendUnavailable

        raise BackendUnavailable(f"{missing} not found: apt-get install jackd2 (or run bash scripts/setup.sh)")
    sd = load_sounddevice()
    records: list[dict] = []
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # as the worker sets it: every client measured under the same GIL policy
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    try:
        for rate, block in configs:
            server = jack.DummyServer(rate, block).start()
            progress(f"bench audio: jackd -d dummy -r {rate} -p {block} (realtime: {server.realtime})")
            os.environ.update(JACK_DEFAULT_SERVER=server.name, JACK_NO_START_SERVER="1")
            try:
                reinitialize_portaudio()
                rt = server.realtime
                # Phases are interleaved in `rounds` rounds so that load from elsewhere on the machine
                # falls on every client alike; durations and xruns are summed over the rounds.
                acc = {name: _Phase() for name in PHASES}
                slice_s = seconds / rounds
                for r in range(rounds):
                    progress(f"  round {r + 1}/{rounds}: " + ", ".join(PHASES) + f" ({slice_s:.1f} s each)")
                    for name in PHASES:
                        off = server.log_offset()
                        a = acc[name]
                        if name == BARE_SD:
                            cpu, d, f = _bare_sounddevice(sd, rate, block, slice_s)
                        elif name == BARE_RAW:
                            cpu, d, f = _bare_raw(sd, rate, block, slice_s)
                        elif name == MIMIR:
                            d, f, cpu, extra = _mimir(rate, block, slice_s)
                            a.extra.append(extra)
                        else:
                            try:
                                rt_frames = jack.iodelay_round_trip(server.env, slice_s).round_trip_frames
                            except jack.JackError:  # too short a slice for a reading; its xruns still count
                                rt_frames = None
                            d, f, cpu = None, None, None
                            a.extra.append({"round_trip_frames": rt_frames})
                        a.xruns_server += server.xruns(off)
                        a.seconds += slice_s
                        if d is not None and f is not None:
                            a.durations.append(d)
                            a.flags.append(f)
                        if cpu is not None:
                            a.cpu.append(cpu)
                recs: dict[str, dict] = {}
                for name in (BARE_SD, BARE_RAW, MIMIR):
                    a = acc[name]
                    recs[name] = _record(name, rate, block, a.seconds, np.concatenate(a.durations),
                                         np.concatenate(a.flags), a.xruns_server,
                                         float(np.mean(a.cpu)) if a.cpu else None, rt)
                recs[MIMIR].update(_merge_metric_extras(acc[MIMIR].extra))
                a = acc[C_CLIENT]
                recs[C_CLIENT] = {"record": "callback", "client": C_CLIENT, "rate_hz": rate, "block_frames": block,
                                  "block_period_us": round(block * 1e6 / rate, 3), "server_realtime": rt,
                                  "seconds": round(a.seconds, 3), "xruns_server": a.xruns_server,
                                  "xruns_server_per_min": round(a.xruns_server / (a.seconds / 60.0), 3),
                                  "round_trip_frames": a.extra[-1]["round_trip_frames"],
                                  "loadavg_1min": load_average_1min()}
                records.extend(recs[name] for name in PHASES)
                bare_sd, bare_raw, mimir = recs[BARE_SD], recs[BARE_RAW], recs[MIMIR]
                records.extend(_goals(rate, block, mimir, bare_raw, bare_sd, records[-1]))
                if rate == 48000:
                    for jitter_us, hogs in ((0.0, 0), (500.0, 0), (500.0, 2)):
                        progress(f"  clock mapping: callback jitter {jitter_us:.0f} us, {hogs} busy processes")
                        records.append(clock_mapping(rate, block, max(4.0, seconds / 3), jitter_us=jitter_us,
                                                     hogs=hogs))
            finally:
                try:
                    sd._terminate()
                finally:
                    server.close()
                    sd._initialize()
    finally:
        sys.setswitchinterval(switch)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return records


def _goals(rate: int, block: int, mimir: dict, bare_raw: dict, bare_sd: dict, c_client: dict) -> list[dict]:
    out = []
    for base in (bare_sd, bare_raw):
        ratio = (mimir["callback_p99_us"] / base["callback_p99_us"]
                 if mimir["callback_p99_us"] and base["callback_p99_us"] else None)
        out.append({"record": "goal", "goal": "overhead_ratio_p99", "rate_hz": rate, "block_frames": block,
                    "baseline": base["client"], "mimir_p99_us": mimir["callback_p99_us"],
                    "baseline_p99_us": base["callback_p99_us"], "ratio": round(ratio, 3) if ratio else None,
                    "target_max": OVERHEAD_GOAL, "pass": ratio is not None and ratio <= OVERHEAD_GOAL})
    out.append({"record": "goal", "goal": "xruns_per_min_vs_c_client", "rate_hz": rate, "block_frames": block,
                "mimir_xruns_per_min": mimir["xruns_server_per_min"],
                "c_client_xruns_per_min": c_client["xruns_server_per_min"],
                "pass": mimir["xruns_server_per_min"] <= c_client["xruns_server_per_min"]})
    if rate == 48000 and block == 64:
        pct = mimir["callback_p99_pct_of_period"]
        out.append({"record": "goal", "goal": "p99_within_10pct_of_period", "rate_hz": rate, "block_frames": block,
                    "mimir_p99_us": mimir["callback_p99_us"], "block_period_us": mimir["block_period_us"],
                    "p99_pct_of_period": pct, "target_max_pct": P99_PERIOD_GOAL_PCT,
                    "pass": pct is not None and pct <= P99_PERIOD_GOAL_PCT})
    return out


def document(records: list[dict], machine: dict) -> dict:
    """The ``--json`` document: ``{"bench": "audio", "machine": ..., "results": [...]}``."""
    return {"bench": "audio", "machine": machine, "results": records}


def _f(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def format_table(doc: dict) -> str:
    m = doc.get("machine", {})
    lines = [f"mimir bench audio  -  {m.get('cpu_model')}, {m.get('cpu_cores')} cores, Python {m.get('python')}, "
             f"numpy {m.get('numpy')}, kernel {m.get('kernel')}", ""]
    head = (f"{'server':<13} {'client':<32} {'p50 us':>8} {'p99 us':>8} {'max us':>9} {'p99 %per':>8} "
            f"{'cpu load':>8} {'xr PA':>6} {'xr srv':>6} {'xr/min':>7} {'load1':>6}")
    lines += [head, "-" * len(head)]
    for r in doc["results"]:
        if r["record"] != "callback":
            continue
        server = f"{r['rate_hz'] // 1000} kHz/{r['block_frames']}"
        lines.append(
            f"{server:<13} {r['client']:<32} {_f(r.get('callback_p50_us')):>8} {_f(r.get('callback_p99_us')):>8} "
            f"{_f(r.get('callback_max_us'), '.0f'):>9} {_f(r.get('callback_p99_pct_of_period'), '.2f'):>8} "
            f"{_f(r.get('cpu_load_mean'), '.3f'):>8} {_f(r.get('xruns_portaudio'), 'd'):>6} "
            f"{r['xruns_server']:>6} {r['xruns_server_per_min']:>7.2f} {_f(r.get('loadavg_1min'), '.2f'):>6}"
        )
    lines += ["", "goals:"]
    for g in doc["results"]:
        if g["record"] != "goal":
            continue
        verdict = "PASS" if g["pass"] else "FAIL"
        server = f"{g['rate_hz'] // 1000} kHz/{g['block_frames']}"
        if g["goal"] == "overhead_ratio_p99":
            lines.append(f"  {verdict}  {server:<12} p99 overhead vs {g['baseline']}: {_f(g['mimir_p99_us'])} / "
                         f"{_f(g['baseline_p99_us'])} us = {_f(g['ratio'], '.2f')}x (goal <= {g['target_max']}x)")
        elif g["goal"] == "xruns_per_min_vs_c_client":
            lines.append(f"  {verdict}  {server:<12} xruns/min mimir {g['mimir_xruns_per_min']:.2f} vs jack_iodelay "
                         f"{g['c_client_xruns_per_min']:.2f} (goal: no more)")
        else:
            lines.append(f"  {verdict}  {server:<12} callback p99 {_f(g['mimir_p99_us'])} us = "
                         f"{_f(g['p99_pct_of_period'], '.2f')} % of the {g['block_period_us']:.0f} us period "
                         f"(goal <= {g['target_max_pct']:.0f} %)")
    clock = [r for r in doc["results"] if r["record"] == "clock_mapping"]
    if clock:
        lines += ["", "block timing against the fitted device line (same stream, both clocks; residual us):"]
        for r in clock:
            verdict = {True: "PASS", False: "FAIL"}.get(r.get("goal_adc_at_least_as_tight"), "n/a ")
            lines.append(f"  {verdict}  jitter {r['jitter_us']:>5.0f} us, {r['hogs']} hogs: callback entry rms "
                         f"{_f(r['entry_rms_us'])} p99 {_f(r['entry_p99_us'])}; driver ADC rms {_f(r['adc_rms_us'])} "
                         f"p99 {_f(r['adc_p99_us'])}  (ADC/entry p99 {_f(r.get('adc_over_entry_p99'), '.3f')}; "
                         f"ADC times {'reported' if r['adc_available'] else 'NOT reported'} by the host API)")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - `python -m bench.audio [--json] [--seconds S]`
    import json

    from bench.common import machine_info

    secs = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 15.0
    recs = run(secs, progress=lambda s: print(s, file=sys.stderr, flush=True))
    doc = document(recs, machine_info())
    print(json.dumps(doc) if "--json" in sys.argv else format_table(doc))
