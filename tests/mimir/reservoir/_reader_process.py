"""Reader process for test_concurrent.py, and the sample-consistency rules both sides share.

Run as ``python _reader_process.py RIG NAME SEED``: attach read-only, print
``ready``, query as fast as possible until the writer closes the reservoir,
then print one JSON summary line. Every sample the writer pushes is a
function of one integer ``u`` carried in ``arrival_ns``, so any record
mixing two writes (a torn read) breaks a rule in :func:`check_sample`.
"""

from __future__ import annotations

import json
import random
import sys

import numpy as np

from mimir.descriptors import SampleKind
from mimir.reservoir import TYPED_DESCRIPTORS, ReservoirView, StaleHandle
from ringbuf.layout import dtype_of

BASE_NS = 1_000_000_000
STEP_NS = 2_000
DURATION_NS = 3_000_000  # ~1,500 samples in the window ...
CAPACITY = 1_024  # ... that holds 1,024: capacity evictions reuse the oldest slot on every push
DISORDER_NS = 40_000  # every 13th sample arrives 20 steps late, inside the window
LATE_NS = 10 * DURATION_NS  # every 101st arrives far too late: counted, never visible
SENSORS_PER_KIND = 3
MASK64 = (1 << 64) - 1


def sensor_of(kind: int, index: int) -> int:
    return (kind * 1_000_003 + index * 7_919 + 17) & MASK64


SENSOR_KIND = {sensor_of(k, i): k for k in range(9) for i in range(SENSORS_PER_KIND)}


def timestamp_of(u: int) -> int:
    ts = BASE_NS + u * STEP_NS
    if u % 101 == 0:
        return ts - LATE_NS
    if u % 13 == 0:
        return ts - DISORDER_NS
    return ts


def payload_of(u: int) -> int:
    return (u * 0x9E3779B97F4A7C15) & MASK64


def descriptor_values(kind: int, u: int) -> tuple[int, ...]:
    cls = TYPED_DESCRIPTORS[SampleKind(kind)]
    values = []
    for i, name in enumerate(cls.__struct_fields__):
        if dtype_of(cls).fields[name][0].itemsize == 4:
            values.append((u + i) & 0x7FFF_FFFF)
        else:
            values.append((u * 1_000_003 + i) & MASK64)
    return tuple(values)


def check_sample(sample, window_start_ns: int, handle_id: int) -> str | None:
    """None if ``sample`` is one the writer really pushed and was inside the window; else what is wrong."""
    u = sample.arrival_ns
    base = BASE_NS + u * STEP_NS
    if sample.timestamp_ns not in (base, base - DISORDER_NS):
        return f"timestamp {sample.timestamp_ns} does not belong to u={u}: {sample}"
    if sample.timestamp_ns < window_start_ns:
        return f"sample older than the window start {window_start_ns}: {sample}"
    kind = SENSOR_KIND.get(sample.sensor_id_hash)
    if kind != int(sample.kind):
        return f"sensor {sample.sensor_id_hash} is not a {sample.kind!r} sensor: {sample}"
    if SampleKind(kind) in TYPED_DESCRIPTORS:
        if sample.payload_handle != (handle_id << 48 | sample.position):
            return f"typed sample without its own descriptor handle: {sample}"
    elif sample.payload_handle != payload_of(u):
        return f"payload {sample.payload_handle} does not belong to u={u}: {sample}"
    if sample.flags or sample.reserved:
        return f"flags/reserved not zero: {sample}"
    return None


def check_status(status, previous) -> str | None:
    kinds = sum(status.count_of(k) for k in SampleKind)
    if not (status.total_sample_count == kinds == status.tail - status.head):
        return (f"counts disagree: total {status.total_sample_count}, kinds {kinds}, "
                f"tail-head {status.tail - status.head}")
    if status.stored != status.total_sample_count + status.evicted or status.accepted != status.stored + status.late:
        return f"counters do not add up: {status}"
    if status.window_start_ns != max(0, status.edge_ns - status.duration_ns):
        return f"window start {status.window_start_ns} is not edge - duration: {status}"
    if status.total_sample_count > status.capacity:
        return f"more samples than capacity: {status}"
    if previous is not None:
        for field in ("edge_ns", "head", "tail", "late", "out_of_order", "evicted_aged", "evicted_capacity",
                      "evicted_disorder", "generation"):
            if getattr(status, field) < getattr(previous, field):
                return f"{field} went backwards: {getattr(previous, field)} -> {getattr(status, field)}"
    return None


def main(rig: str, name: str, seed: int) -> dict:
    rng = random.Random(seed)
    view = ReservoirView.attach(rig, name)
    print("ready", flush=True)
    handle_id = view.handle_id
    errors: list[str] = []
    counts = {k: 0 for k in ("status", "read", "read_oldest", "read_view", "latest", "descriptor",
                             "index_moved", "stale_descriptor", "none")}
    generations = set()
    previous_status = None
    last_latest: dict[tuple[int, int], tuple[int, int]] = {}
    typed = [int(k) for k in TYPED_DESCRIPTORS]
    i = 0

    def fail(message: str | None) -> None:
        if message is not None:
            errors.append(message)

    while True:
        i += 1
        if i % 256 == 0 and not view.writer_alive():
            break
        window_start = view.window_start_ns
        op = i % 6
        try:
            if op == 0:
                status = view.status()
                fail(check_status(status, previous_status))
                previous_status = status
                generations.add(status.generation)
                counts["status"] += 1
            elif op == 1:
                n = view.count()
                if n:
                    fail(check_sample(view.read(rng.randrange(n)), window_start, handle_id))
                    counts["read"] += 1
            elif op == 2:
                fail(check_sample(view.read(0), window_start, handle_id))  # the slot the writer reuses next
                counts["read_oldest"] += 1
            elif op == 3:
                kind = rng.randrange(9)
                n = view.view_count(kind)
                if n:
                    sample = view.read_view(kind, rng.randrange(n))
                    fail(check_sample(sample, window_start, handle_id))
                    if int(sample.kind) != kind:
                        fail(f"read_view({kind}) returned a {sample.kind!r}")
                    counts["read_view"] += 1
            elif op == 4:
                kind = rng.randrange(9)
                sensor = sensor_of(kind, rng.randrange(SENSORS_PER_KIND))
                sample = view.latest_for_sensor(kind, sensor)
                if sample is None:
                    counts["none"] += 1
                else:
                    fail(check_sample(sample, window_start, handle_id))
                    if sample.sensor_id_hash != sensor or int(sample.kind) != kind:
                        fail(f"latest_for_sensor({kind}, {sensor}) returned {sample}")
                    before = last_latest.get((kind, sensor))
                    now = (sample.sequence, sample.arrival_ns)
                    if before is not None and (now[0] < before[0] or now[1] < before[1]):
                        fail(f"latest_for_sensor went backwards: {before} -> {now}")
                    last_latest[(kind, sensor)] = now
                    counts["latest"] += 1
            else:
                kind = typed[rng.randrange(len(typed))]
                sample = view.latest_for_sensor(kind, sensor_of(kind, rng.randrange(SENSORS_PER_KIND)))
                if sample is not None:
                    try:
                        descriptor = view.descriptor(sample.payload_handle)
                    except StaleHandle:
                        counts["stale_descriptor"] += 1
                    else:
                        got = tuple(getattr(descriptor, f) for f in descriptor.__struct_fields__)
                        if got != descriptor_values(kind, sample.arrival_ns):
                            fail(f"descriptor {descriptor} does not belong to u={sample.arrival_ns}")
                        counts["descriptor"] += 1
        except IndexError:
            counts["index_moved"] += 1  # the window moved between count() and the read: allowed
        except Exception as exc:  # noqa: BLE001 - every other failure is reported to the test
            errors.append(f"{type(exc).__name__}: {exc}")
        if len(errors) > 20:
            break
    # The writer has closed (and unlinked); this mapping still holds the final window.
    final = view.count()
    for j in range(final):
        fail(check_sample(view.read(j), view.window_start_ns, handle_id))
    final_view = sum(view.view_count(k) for k in range(9))
    if final_view != final:
        fail(f"final view counts {final_view} != count {final}")
    snapshot = view.snapshot()
    if snapshot.shape[0] != final or not np.all(np.diff(snapshot["position"].astype(np.int64)) == 1):
        fail("final snapshot is not the contiguous window")
    view.close()
    return {"errors": errors, "counts": counts, "generations": len(generations), "final_count": final,
            "iterations": i}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))), flush=True)
