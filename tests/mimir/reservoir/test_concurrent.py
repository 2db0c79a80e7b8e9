"""A reader in another process attached read-only while this process pushes 100,000+ samples.

The writer pushes as fast as it can into a window smaller than its timestamp
span, so every push reuses the slot of the oldest visible sample while the
reader is reading it; every 13th sample is out of order, every 101st late,
and every 5,000 pushes a 1,000-row batch goes in. The reader (a separate
interpreter, see _reader_process.py) checks every answer against rules
derived from the one integer each sample was built from.
"""

from __future__ import annotations

import importlib.util
import json
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mimir.descriptors import SampleKind
from mimir.reservoir import TYPED_DESCRIPTORS, Reservoir, Sample
from ringbuf.layout import dtype_of

HELPER = Path(__file__).with_name("_reader_process.py")
_spec = importlib.util.spec_from_file_location("reservoir_reader_process", HELPER)
helper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helper)

TYPED = {int(k): k.name.lower() for k in TYPED_DESCRIPTORS}
MIN_PUSHES = 120_000
MIN_SECONDS = 1.5


def _wait_ready(proc: subprocess.Popen, timeout_s: float) -> None:
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        proc.kill()
        raise AssertionError(f"reader did not attach within {timeout_s} s: {proc.stderr.read()}")
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"reader said {line!r}; stderr: {proc.stderr.read()}"


def _push_one(producer, u: int) -> None:
    kind = int(producer.kind)
    ts = helper.timestamp_of(u)
    if kind in TYPED:
        getattr(producer, f"push_{TYPED[kind]}")(ts, u, helper.descriptor_values(kind, u))
    else:
        producer.push(ts, u, helper.payload_of(u))


def _push_batch(producer, first_u: int, n: int) -> None:
    kind = int(producer.kind)
    us = np.arange(first_u, first_u + n, dtype=np.uint64)
    ts = np.uint64(helper.BASE_NS) + us * np.uint64(helper.STEP_NS)  # in order: the vectorised path
    if kind in TYPED:
        cls = TYPED_DESCRIPTORS[SampleKind(kind)]
        descriptors = np.array([helper.descriptor_values(kind, u) for u in us.tolist()], dtype=dtype_of(cls))
        producer.push_batch(ts, us, descriptors=descriptors)
    else:
        payloads = np.array([helper.payload_of(u) for u in us.tolist()], dtype=np.uint64)
        producer.push_batch(ts, us, payloads)


@pytest.mark.slow
def test_reader_in_another_process_sees_only_consistent_samples(rig):
    name = "live"
    with Reservoir.create(rig, capacity=helper.CAPACITY, duration_ns=helper.DURATION_NS, name=name) as res:
        producers = [
            [res.producer(k, sensor_id_hash=helper.sensor_of(k, i)) for i in range(helper.SENSORS_PER_KIND)]
            for k in range(9)
        ]
        proc = subprocess.Popen([sys.executable, str(HELPER), res.rig, name, "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_ready(proc, 60.0)
            u = 1  # u = 0 would be a "late" sample the empty window still accepts
            start = time.monotonic()
            while u < MIN_PUSHES or (time.monotonic() - start < MIN_SECONDS and u < 3_000_000):
                if u % 5_000 == 4_999:
                    _push_batch(producers[(u // 5_000) % 9][0], u, 1_000)
                    u += 1_000
                else:
                    _push_one(producers[u % 9][(u // 9) % helper.SENSORS_PER_KIND], u)
                    u += 1
            status = res.status()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    # Closing the reservoir (end of the with block) is what tells the reader to stop.
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["errors"] == [], summary
    counts = summary["counts"]
    for query in ("status", "read", "read_oldest", "read_view", "latest"):
        assert counts[query] >= 50, summary
    assert counts["descriptor"] >= 10, summary
    assert summary["generations"] >= 50, summary  # the reader really read while the writer moved
    assert status.stored + status.late >= MIN_PUSHES
    assert status.late > 0 and status.out_of_order > 0 and status.evicted_capacity > 0
    assert summary["final_count"] == status.total_sample_count


def test_the_reader_rules_catch_torn_and_foreign_samples():
    """The consistency rules are not vacuous: records mixing two writes, or out of the window, fail them."""
    u = 40
    kind = 3  # untyped: payload derived from u
    good = Sample(SampleKind(kind), 7, helper.sensor_of(kind, 0), helper.timestamp_of(u), u, 1,
                  helper.payload_of(u), 0, 0)
    assert helper.check_sample(good, 0, 0x1234) is None
    torn = [
        Sample(good.kind, 7, good.sensor_id_hash, helper.timestamp_of(u + 1), u, 1, good.payload_handle, 0, 0),
        Sample(good.kind, 7, good.sensor_id_hash, good.timestamp_ns, u, 1, helper.payload_of(u + 1), 0, 0),
        Sample(SampleKind(4), 7, good.sensor_id_hash, good.timestamp_ns, u, 1, good.payload_handle, 0, 0),
        Sample(good.kind, 7, good.sensor_id_hash, good.timestamp_ns, u, 1, good.payload_handle, 1, 0),
    ]
    for sample in torn:
        assert helper.check_sample(sample, 0, 0x1234) is not None
    assert helper.check_sample(good, good.timestamp_ns + 1, 0x1234) is not None  # before the window start
