"""``mimir bench reservoir``: push rates and O(1) query latency of the shared-memory reservoir.

What is measured (one process, the writer's own mapping; a read-only view
runs the same code):

* push rate, one at a time through a producer (plain and typed with an audio
  descriptor), and batched (1,000 and 10,000 rows per call), in steady state:
  the window already holds 100,000 samples, so every push also evicts one;
* latency of read-by-total-index, read-by-view-index and latest-for-sensor
  with 1 k, 10 k and 100 k samples in the window (9 kinds, 63 sensors, random
  indices anywhere in the window; ``read_view_index_recent`` reads among the
  newest 64 of each view, the cache-friendly pattern of a consumer following
  the edge), the ratio 100 k / 1 k, and the same queries on the naive
  filtered-scan reservoir (:mod:`mimir.reservoir.naive`, what upstream does)
  with the speedup at 100 k. ``latest_for_sensor`` asks for active sensors
  (a reverse scan finds them near the end); ``latest_for_idle_sensor`` asks
  for one whose last sample is the oldest in the window (a reverse scan
  crosses the whole window).

Latencies are the median over repeats of (loop time / queries), loop
overhead included; sizes are interleaved inside each repeat so background
load hits them alike. Records are flat dicts with units in the keys.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from mimir.descriptors import AudioBlockDescriptor, SampleKind
from mimir.reservoir import SAMPLE_DTYPE, Reservoir, source_id_hash
from mimir.reservoir.naive import NaiveReservoir, NaiveSample
from ringbuf.segment import list_segments, unlink_segment

__all__ = ["run", "format_table", "GOALS"]

GOALS = {
    "push_single_per_s": 300_000,
    "push_batched_per_s": 1_000_000,
    "query_ns": 2_000,
    "ratio_100k_over_1k": 1.2,
}
SIZES = (1_000, 10_000, 100_000)
SENSORS_PER_KIND = 7
STEP_NS = 50_000  # 20 k samples/s: a 5 s window holds 100 k
RIG = f"bench{os.getpid()}"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sensors() -> list[tuple[int, int]]:
    """(kind, sensor hash) of the benchmark's 63 sources: 7 per kind."""
    return [(int(kind), source_id_hash(f"bench-{int(kind)}-{i}"))
            for kind in SampleKind for i in range(SENSORS_PER_KIND)]


def _fill_round_robin(res: Reservoir, sensors: list[tuple[int, int]], n: int, first_ts: int) -> int:
    """Push ``n`` samples in timestamp order, one per source in turn, with raw batches; return the next timestamp."""
    kinds = np.array([k for k, _ in sensors], dtype=np.uint8)
    hashes = np.array([s for _, s in sensors], dtype=np.uint64)
    chunk = 50_000
    ts = first_ts
    done = 0
    while done < n:
        take = min(chunk, n - done)
        rows = np.arange(done, done + take)
        batch = np.zeros(take, dtype=SAMPLE_DTYPE)
        batch["sensor_id_hash"] = hashes[rows % len(sensors)]
        batch["timestamp_ns"] = ts + np.arange(take, dtype=np.uint64) * np.uint64(STEP_NS)
        batch["arrival_ns"] = batch["timestamp_ns"]
        batch["sequence"] = rows // len(sensors)
        batch["payload_handle"] = rows
        res.push_batch(kinds[rows % len(sensors)], batch)
        ts += take * STEP_NS
        done += take
    return ts


def _producers(res: Reservoir) -> list:
    return [res.producer(kind, f"bench-{int(kind)}-{i}") for kind in SampleKind for i in range(SENSORS_PER_KIND)]


def _time_loop(fn: Callable, args: list[tuple]) -> float:
    start = time.perf_counter_ns()
    for a in args:
        fn(*a)
    return (time.perf_counter_ns() - start) / len(args)


def _query_plans(view_counts: list[int], sensors: list[tuple[int, int]], count: int, queries: int,
                 rng: random.Random) -> dict[str, list[tuple]]:
    plans: dict[str, list[tuple]] = {
        "read_total_index": [(rng.randrange(count),) for _ in range(queries)],
        "read_view_index": [],
        "read_view_index_recent": [],
        "latest_for_sensor": [sensors[rng.randrange(len(sensors))] for _ in range(queries)],
    }
    for q in range(queries):
        kind = q % len(view_counts)
        plans["read_view_index"].append((kind, rng.randrange(view_counts[kind])))
        newest = view_counts[kind] - 1 - rng.randrange(min(64, view_counts[kind]))
        plans["read_view_index_recent"].append((kind, newest))
    return plans


def _build_window(n: int, idle: tuple[int, int]) -> tuple[Reservoir, NaiveReservoir, list[tuple[int, int]]]:
    """A reservoir and a naive twin holding the same ``n`` samples; the idle sensor's only sample is the oldest."""
    name = f"w{n}"
    res = Reservoir.create(RIG, capacity=n + 16, duration_ns=10**15, max_sensors=128, name=name)
    res.producer(idle[0], sensor_id_hash=idle[1]).push(1_000, 1_000)
    sensors = _sensors()
    _fill_round_robin(res, sensors, n - 1, 2_000)
    naive = NaiveReservoir(capacity=n + 16, duration_ns=10**15)
    snap = res.snapshot()
    naive.samples = [
        NaiveSample(int(r["kind"]), int(r["position"]), int(r["sensor_id_hash"]), int(r["timestamp_ns"]),
                    int(r["arrival_ns"]), int(r["sequence"]), int(r["payload_handle"]))
        for r in snap
    ]
    naive.edge_ns = res.edge_ns
    naive.stored = len(naive.samples)
    assert res.count() == n == naive.count()
    return res, naive, sensors


def _query_latencies(quick: bool, progress: Callable[[str], None]) -> list[dict]:
    rng = random.Random(1)
    repeats = 5 if quick else 9
    queries = 4_000 if quick else 20_000
    naive_queries = {1_000: 400, 10_000: 60, 100_000: 8} if quick else {1_000: 2_000, 10_000: 200, 100_000: 24}
    idle = (int(SampleKind.EVENT_CLAIM), 0xDEAD_BEEF)
    windows = {}
    try:
        for n in SIZES:
            progress(f"reservoir bench: filling a window of {n:,} samples")
            windows[n] = _build_window(n, idle)
        times: dict[tuple[str, str, int], list[float]] = {}
        plans = {}
        for n, (res, naive, sensors) in windows.items():
            plans[n] = _query_plans([res.view_count(k) for k in SampleKind], sensors, res.count(), queries, rng)
            plans[n]["latest_for_idle_sensor"] = [idle] * queries
            # Correctness first: both implementations answer the same.
            for kind, index in plans[n]["read_view_index"][:50]:
                assert res.read_view(kind, index) == naive.read_view(kind, index).as_sample()
            for kind, sensor in plans[n]["latest_for_sensor"][:50] + [idle]:
                naive_latest = naive.latest_for_sensor(kind, sensor)
                assert naive_latest is not None and res.latest_for_sensor(kind, sensor) == naive_latest.as_sample()
        ops = ("read_total_index", "read_view_index", "read_view_index_recent", "latest_for_sensor",
               "latest_for_idle_sensor")
        for r in range(repeats):
            progress(f"reservoir bench: query latency, repeat {r + 1}/{repeats}")
            for n, (res, naive, _) in windows.items():
                fns: dict[str, tuple[Callable, Callable]] = {
                    "read_total_index": (res.read, naive.read), "read_view_index": (res.read_view, naive.read_view),
                    "read_view_index_recent": (res.read_view, naive.read_view),
                    "latest_for_sensor": (res.latest_for_sensor, naive.latest_for_sensor),
                    "latest_for_idle_sensor": (res.latest_for_sensor, naive.latest_for_sensor)}
                for op in ops:
                    fast, slow = fns[op]
                    times.setdefault((op, "reservoir", n), []).append(_time_loop(fast, plans[n][op]))
                    if r < max(3, repeats // 3):
                        times.setdefault((op, "naive", n), []).append(
                            _time_loop(slow, plans[n][op][: naive_queries[n]]))
    finally:
        for res, _, _ in windows.values():
            res.close()
    records: list[dict] = []
    by = {key: round(statistics.median(samples), 1) for key, samples in times.items()}  # ns per op
    for (op, impl, n), samples in times.items():
        median = statistics.median(samples)
        record = {"metric": op, "impl": impl, "window_samples": n, "ns_per_op": by[(op, impl, n)],
                  "ns_per_op_min": round(min(samples), 1), "repeats": len(samples)}
        if impl == "reservoir":
            record["goal_max_ns"] = GOALS["query_ns"]
            record["met"] = median <= GOALS["query_ns"]
        records.append(record)
    for op in ops:
        ratio = by[(op, "reservoir", 100_000)] / by[(op, "reservoir", 1_000)]
        records.append({"metric": op, "impl": "reservoir", "summary": "flatness",
                        "ratio_100k_over_1k": round(ratio, 3), "goal_max_ratio": GOALS["ratio_100k_over_1k"],
                        "met": ratio <= GOALS["ratio_100k_over_1k"]})
        records.append({"metric": op, "impl": "reservoir", "summary": "speedup_vs_naive",
                        "window_samples": 100_000,
                        "speedup_at_100k": round(by[(op, "naive", 100_000)] / by[(op, "reservoir", 100_000)], 1)})
    return records


def _push_rates(quick: bool, progress: Callable[[str], None]) -> list[dict]:
    window = 100_000
    single_n = 60_000 if quick else 300_000
    batched_n = 500_000 if quick else 3_000_000
    records = []
    res = Reservoir.create(RIG, capacity=131_072, duration_ns=window * STEP_NS, max_sensors=128, name="push")
    try:
        producers = _producers(res)
        progress(f"reservoir bench: pre-filling the push window with {window:,} samples")
        ts = _fill_round_robin(res, _sensors(), window, 1_000)
        k = len(producers)
        for label, typed in (("push_single", False), ("push_single_typed_audio", True)):
            progress(f"reservoir bench: {label}, {single_n:,} pushes")
            audio = [p for p in producers if p.kind == SampleKind.AUDIO_BLOCK]
            descriptor = AudioBlockDescriptor(7, 192, 1, 48_000, 1, 0, 0)
            start = time.perf_counter()
            if typed:
                pushers = [p.push_audio_block for p in audio]
                m = len(pushers)
                for i in range(single_n):
                    pushers[i % m](ts, ts, descriptor)
                    ts += STEP_NS
            else:
                pushers = [p.push for p in producers]
                for i in range(single_n):
                    pushers[i % k](ts, ts, i)
                    ts += STEP_NS
            elapsed = time.perf_counter() - start
            rate = single_n / elapsed
            records.append({"metric": label, "impl": "reservoir", "window_samples": res.count(), "pushes": single_n,
                            "pushes_per_s": round(rate), "ns_per_push": round(elapsed / single_n * 1e9, 1),
                            "goal_min_per_s": GOALS["push_single_per_s"],
                            "met": rate >= GOALS["push_single_per_s"]})
        for rows in (1_000, 10_000):
            progress(f"reservoir bench: push_batched, {batched_n:,} pushes in batches of {rows:,}")
            base = np.arange(rows, dtype=np.uint64) * np.uint64(STEP_NS)
            batches = batched_n // rows
            start = time.perf_counter()
            for b in range(batches):
                producers[b % k].push_batch(np.uint64(ts) + base)
                ts += rows * STEP_NS
            elapsed = time.perf_counter() - start
            rate = batches * rows / elapsed
            records.append({"metric": "push_batched", "impl": "reservoir", "batch_rows": rows,
                            "window_samples": res.count(), "pushes": batches * rows, "pushes_per_s": round(rate),
                            "goal_min_per_s": GOALS["push_batched_per_s"],
                            "met": rate >= GOALS["push_batched_per_s"]})
        status = res.status()
        assert status.evicted_aged > 0 and window <= status.total_sample_count <= window + 1
    finally:
        res.close()
    return records


def run(quick: bool = False, progress: Callable[[str], None] = _stderr) -> list[dict]:
    """Run the benchmark; return flat records (see the module docstring). Progress goes to ``progress``."""
    try:
        records = _push_rates(quick, progress)
        records += _query_latencies(quick, progress)
    finally:
        for leftover in list_segments(RIG):
            unlink_segment(leftover)
    progress("reservoir bench: done")
    return records


def format_table(records: list[dict]) -> str:
    """A plain-text table of the records, for humans."""
    lines = ["push rates", f"{'metric':<28}{'batch':>8}{'pushes/s':>14}{'goal':>12}  met"]
    for r in records:
        if r["metric"].startswith("push"):
            lines.append(f"{r['metric']:<28}{r.get('batch_rows', 1):>8}{r['pushes_per_s']:>14,}"
                         f"{r['goal_min_per_s']:>12,}  {'yes' if r['met'] else 'NO'}")
    lines += ["", "query latency (ns per query, median of repeats)",
              f"{'metric':<26}{'impl':<11}" + "".join(f"{n:>12,}" for n in SIZES) + f"{'100k/1k':>10}{'speedup':>10}"]
    queries = [r for r in records if not r["metric"].startswith("push")]
    by = {(r["metric"], r["impl"], r.get("window_samples")): r for r in queries if "ns_per_op" in r}
    ratio = {r["metric"]: r for r in queries if r.get("summary") == "flatness"}
    speed = {r["metric"]: r for r in queries if r.get("summary") == "speedup_vs_naive"}
    for op in dict.fromkeys(r["metric"] for r in queries):
        for impl in ("reservoir", "naive"):
            cells = "".join(f"{by[(op, impl, n)]['ns_per_op']:>12,.0f}" for n in SIZES)
            extra = ""
            if impl == "reservoir":
                extra = f"{ratio[op]['ratio_100k_over_1k']:>10.2f}{speed[op]['speedup_at_100k']:>9,.0f}x"
            lines.append(f"{op:<26}{impl:<11}{cells}{extra}")
    return "\n".join(lines)


if __name__ == "__main__":
    import json

    from bench.common import machine_info

    results = run("--quick" in sys.argv)
    doc = {"bench": "reservoir", "machine": machine_info(), "results": results}
    print(json.dumps(doc) if "--json" in sys.argv else format_table(results))
