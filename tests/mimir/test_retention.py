"""Retention end to end: while a default-shaped rig runs, every descriptor in the window has its payload.

The rig has the default shape (six synthetic cameras at 60 fps, 8-channel
48 kHz audio, a 5 s window) with small frames (160x120 YUYV) to keep the
test bounded. A separate consumer process (``_window_walker.py``) walks the
whole window again and again while the rig runs, resolving and checking every
camera frame against the stamp the synthetic camera wrote into it and every
audio block against its ring record.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mimir.config import CameraFamilyConfig, RigConfig
from mimir.consumer import RigConsumer
from mimir.descriptors import CameraFrameDescriptor, SampleKind
from mimir.reservoir import Reservoir
from mimir.retention import payload_retention, retention_lines
from mimir.supervisor.status import read_status
from mimir.topology import RESERVOIR, plan_rig
from ringbuf import Ring
from ringbuf.segment import list_segments

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
WALKER = Path(__file__).with_name("_window_walker.py")
WALK_S = 24.0          # the first lock (about 4 s in), its step's 5 s in the window, then at least 10 s steady
STEADY_MIN_S = 10.0


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """Run the rig, walk its window for WALK_S in another process; return (passes, retention samples, final status,
    what `mimir status` printed once, as text and as JSON)."""
    retention_shown: list[str] = []
    rig = f"t{os.getpid()}nr"  # carries the session tag: the session leak check covers it
    folder = tmp_path_factory.mktemp("retention")
    config = folder / "rig.toml"
    config.write_text(f'''
rig = "{rig}"
[audio]
backend = "synthetic"
channels = 8
[[cameras]]
family = "synthetic"
count = 6
width = 160
height = 120
fps = 60.0
''')
    sup = subprocess.Popen([str(BIN / "mimir-supervisor"), "start", "--config", str(config)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    walker = None
    retention: list[tuple[float, list]] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sup.poll() is None:
            try:
                with RigConsumer.attach(rig) as consumer:
                    if consumer.view.view_count(0) > 60 and consumer.view.view_count(5) > 200:
                        break
            except FileNotFoundError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail(f"the rig did not come up (supervisor exit {sup.poll()})")
        out = folder / "passes.jsonl"
        walker = subprocess.Popen([sys.executable, str(WALKER), rig, str(WALK_S), str(out)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = time.monotonic()
        while walker.poll() is None:  # meanwhile, what `mimir status` would show
            retention.append((time.monotonic() - started, payload_retention(rig)))
            time.sleep(1.0)
        _, err = walker.communicate()
        assert walker.returncode == 0, err[-3000:]
        for args in ((), ("--json",)):  # and what `mimir status` itself prints, on the rig still running
            shown = subprocess.run([str(BIN / "mimir"), "status", "--rig", rig, *args], capture_output=True,
                                   text=True, timeout=120)
            assert shown.returncode == 0, shown.stderr
            retention_shown.append(shown.stdout)
        status = read_status(rig)
        passes = [json.loads(line) for line in out.read_text().splitlines()]
    finally:
        if walker is not None and walker.poll() is None:
            walker.kill()
            walker.wait()
        sup.send_signal(signal.SIGTERM)
        sup.communicate(timeout=60)
    assert not list_segments(rig), f"the rig left shared memory behind: {list_segments(rig)}"
    return passes, retention, status, retention_shown


def test_every_payload_in_the_window_is_live_and_matches_its_stamp(walked):
    """The issue's invariant over every pass: from the first frames, across the first clock lock, to the end."""
    passes, _, status, _ = walked
    assert passes[-1]["ended_s"] - passes[0]["began_s"] >= WALK_S - 1
    stale = [(p["began_s"], p["stale"]) for p in passes if p["stale"]]
    assert not stale, (f"descriptors in the window whose payload was already overwritten, (pass start s, count): "
                       f"{stale}; index latency p99 {status.header['index_latency_p99_us']:.0f} us")
    assert sum(p["mismatched"] for p in passes) == 0
    full = [p for p in passes if p["window_blocks"] >= 0.99 * 5 * 750]  # once the audio has filled the window
    assert len(full) >= 10
    for p in full:  # each pass walked a whole window: six cameras x 5 s x 60 fps, 5 s of 750 blocks/s
        assert p["frames"] >= 0.95 * 5 * 6 * 60 and p["blocks"] >= 0.99 * 5 * 750
    assert all(s["lost_overrun"] == 0 for s in status.sources)  # the walker (a reader) cost the rig nothing


def test_status_retention_reports_every_source_of_the_live_rig(walked):
    """What `mimir status` shows, sampled once a second while the walker ran (whether samples were unbacked at
    those instants is the walker's test: here the report itself)."""
    _, retention, _, shown = walked
    assert len(retention) >= WALK_S - 4
    window_s = retention[0][1][0].window_s
    assert window_s == 5.0
    for _, rows in retention:
        assert {r.source for r in rows} == {f"cam.synthetic.{i}" for i in range(6)} | {"audio"}
        for r in rows:
            assert r.ring_present and r.window_items > 0 and 0 <= r.unbacked <= r.window_items
            assert r.ok == (r.unbacked == 0)
            assert r.ring_capacity >= math.ceil(window_s * (60 if r.source.startswith("cam.") else 750))
            if r.held_items == r.ring_capacity:  # wrapped: the ring spans at least the window
                assert r.held_s >= r.window_s, r
    text = "\n".join(retention_lines(retention[-1][1]))
    assert "cam.synthetic.5" in text and "payload retention" in text
    printed, as_json = shown
    assert "payload retention" in printed and "cam.synthetic.5" in printed
    assert {r["source"] for r in json.loads(as_json)["retention"]} == {f"cam.synthetic.{i}" for i in range(6)} | {"audio"}


def test_retention_counts_exactly_the_window_samples_whose_payload_is_gone(rig):
    """Without processes: a camera ring of 8 frames behind a reservoir that indexed 12 of them."""
    plan = plan_rig(RigConfig(rig=rig, cameras=[CameraFamilyConfig(family="synthetic", count=1, width=32,
                                                                   height=24, fps=10.0, format="GREY")]))
    spec = plan.source("cam.synthetic.0")
    with Reservoir.create(rig, name=RESERVOIR, capacity=64, duration_ns=plan.window_ns) as res, \
            Ring.create(spec.ring.object_id, rig=rig, descriptor=CameraFrameDescriptor, capacity=8,
                        payload_shape=(24, 32)) as ring:
        producer = res.producer(SampleKind.CAMERA_FRAME, sensor_id_hash=spec.source_hash)
        for n in range(12):  # 10 fps: frame n at n x 100 ms
            host = 1_000_000_000 + n * 100_000_000
            ring.claim()
            ring.publish(1, n, host, host, 32, 24, 0, 32, 768, ring.handle(n))
            producer.push_camera_frame(host, host, CameraFrameDescriptor(1, n, host, host, 32, 24, 0, 32, 768,
                                                                         ring.handle(n)))
        (row,) = payload_retention(rig, plan=plan)
        assert (row.window_items, row.unbacked, row.held_items, row.ring_capacity) == (12, 4, 8, 8)
        assert row.held_s == pytest.approx(0.8)  # frames 4..11: 0.7 s between the first and the last, + 1 period
        assert not row.ok and "RETENTION FAILED" in "\n".join(retention_lines([row]))
        res.set_edge(res.edge_ns + plan.window_ns - 650_000_000)  # window start at frame 4.5: frames 0..4 leave
        (row,) = payload_retention(rig, plan=plan)
        assert (row.window_items, row.unbacked) == (7, 0) and row.ok
