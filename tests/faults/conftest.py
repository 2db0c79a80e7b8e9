"""The fault-injection harness: a real supervisor with real workers, and the invariants every fault test checks.

Faults are drawn from a seeded generator (``MIMIR_FAULT_SEED``, default 20261204), so a failing run is
reproduced by running it again with the seed it printed. Every test here is bounded in time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from mimir.consumer import RigConsumer
from mimir.descriptors import AudioBlockRecord, SampleKind
from ringbuf.segment import list_segments

BIN = Path(sys.executable).parent
SEED = int(os.environ.get("MIMIR_FAULT_SEED", "20261204"))
# After a relock, a camera frame and an audio block captured at the same host instant have canonical times this
# close (the audio block is stamped at its first sample, up to a block plus the input latency earlier).
TIMELINE_BOUND_NS = 5_000_000
SMALL_RIG = '''
rig = "{rig}"
[supervision]
restart_backoff_s = 0.2
restart_backoff_max_s = 1.0
max_restarts = 20
[audio]
backend = "synthetic"
channels = 2
[[cameras]]
family = "synthetic"
count = 2
width = 160
height = 120
fps = 30.0
'''


@pytest.fixture
def rng(request) -> random.Random:
    seed = SEED ^ (hash(request.node.name) & 0xFFFF)
    print(f"fault seed {seed} (MIMIR_FAULT_SEED={SEED})")
    return random.Random(seed)


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (AssertionError, json.JSONDecodeError, KeyError, FileNotFoundError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")


@dataclass
class RigRun:
    """One supervisor process running a rig from ``config`` (TOML text), stopped by :meth:`stop`."""

    rig: str
    tmp: Path
    config: str = SMALL_RIG
    proc: subprocess.Popen | None = None
    final: dict = field(default_factory=dict)

    def start(self, *extra: str) -> "RigRun":
        path = self.tmp / f"{self.rig}.toml"
        path.write_text(self.config.format(rig=self.rig))
        self.final_path = self.tmp / f"{self.rig}.final.json"
        # Output goes to files, not pipes: after a supervisor SIGKILL its orphaned workers would hold a pipe open.
        self._out = open(self.tmp / f"{self.rig}.{time.monotonic_ns()}.out", "w+")
        self._err = open(self.tmp / f"{self.rig}.{time.monotonic_ns()}.err", "w+")
        self.proc = subprocess.Popen([str(BIN / "mimir-supervisor"), "start", "--config", str(path),
                                      "--final-status", str(self.final_path), *extra],
                                     stdout=self._out, stderr=self._err, text=True)
        return self

    def wait(self, timeout_s: float = 60) -> tuple[int, str, str]:
        """Wait for the supervisor to exit; its exit code, stdout and stderr."""
        code = self.proc.wait(timeout_s)
        self._out.seek(0)
        self._err.seek(0)
        return code, self._out.read(), self._err.read()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def status(self) -> dict:
        done = subprocess.run([str(BIN / "mimir"), "status", "--rig", self.rig, "--json"], capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def sources(self) -> dict:
        return {s["name"]: s for s in self.status()["sources"]}

    def worker_pid(self, name: str) -> int:
        return next(w["pid"] for w in self.status()["workers"] if w["name"] == name)

    def wait_running(self, timeout_s: float = 60) -> dict:
        """Every worker running and the canonical clock locked."""
        def ready():
            s = self.status()
            assert self.alive()
            return s if all(w["state"] == 1 for w in s["workers"]) and s["header"]["clock_state"] == 1 else None
        return wait_for(ready, timeout_s, "every worker running and the clock locked")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 60) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code, _, err = self.wait(timeout_s)
        if self.final_path.exists():
            self.final = json.loads(self.final_path.read_text())
        return code, err


@pytest.fixture
def rig_run(rig, tmp_path):
    run = RigRun(rig, tmp_path)
    yield run
    if run.proc is not None and run.proc.poll() is None:  # the test failed midway: clean up after it
        run.kill()
        from ringbuf import remove_stale

        time.sleep(1.0)  # its workers die with it (parent-death signal) and unlink their rings
        remove_stale(rig)


def assert_every_item_accounted(snapshot: dict, *, slack: int = 16) -> None:
    """Invariant: for every local source, published = indexed + refused + lost to overrun + still in the ring (lag).

    Counters of earlier worker incarnations are closed exactly (the supervisor reads a dead writer's ring to
    its end); the live incarnation's lag is read a moment after its published count, hence the slack.
    """
    for s in snapshot["sources"]:
        if s["kind"] not in (SampleKind.CAMERA_FRAME, SampleKind.AUDIO_BLOCK):
            continue
        unaccounted = s["published"] - s["indexed"] - s["rejected"] - s["lost_overrun"] - s["reader_lag"]
        assert abs(unaccounted) <= slack, (s["name"], s)


def assert_final_accounting_exact(final: dict) -> None:
    """Invariant after a clean stop: every item every incarnation published was indexed or counted lost."""
    for s in final["sources"]:
        if s["kind"] in (SampleKind.CAMERA_FRAME, SampleKind.AUDIO_BLOCK):
            assert s["published"] == s["indexed"] + s["rejected"] + s["lost_overrun"], s


def timeline_offsets_ns(rig: str, last_s: float = 1.5) -> tuple[float, float]:
    """Median ``canonical - host`` of the last ``last_s`` of camera frames and of audio blocks in the window.

    The synthetic rig's cameras and audio both run on this host's monotonic clock, so the two offsets must
    agree: that is the synthetic truth the faults must not break.
    """
    with RigConsumer.attach(rig) as consumer:
        view, resolver = consumer.view, consumer.resolver
        edge = view.edge_ns
        cam, aud = [], []
        for kind, out in ((SampleKind.CAMERA_FRAME, cam), (SampleKind.AUDIO_BLOCK, aud)):
            count = view.view_count(kind)
            for i in range(count - 1, -1, -1):
                sample = view.read_view(kind, i)
                if sample.timestamp_ns < edge - last_s * 1e9:
                    break
                try:
                    descriptor = resolver.descriptor(sample.payload_handle)
                    if kind == SampleKind.CAMERA_FRAME:
                        host = descriptor.host_time_ns
                    else:
                        ring_descriptor = resolver.descriptor(descriptor.data_handle)
                        host = ring_descriptor[AudioBlockRecord.__struct_fields__.index("host_time_ns")]
                except LookupError:  # left the ring or the window while we read: skip it
                    continue
                out.append(sample.timestamp_ns - host)
        assert len(cam) >= 10 and len(aud) >= 10, (len(cam), len(aud))
        return float(np.median(cam)), float(np.median(aud))


def assert_timeline_consistent(rig: str) -> float:
    """Invariant after relock: cameras and audio on one canonical timeline (returns the gap, ns)."""
    cam, aud = timeline_offsets_ns(rig)
    gap = cam - aud
    assert abs(gap) <= TIMELINE_BOUND_NS, (cam, aud, gap)
    return gap


def assert_nothing_left(rig: str) -> None:
    """Invariant after any stop: no object of the rig is left in shared memory."""
    assert list_segments(rig) == [], list_segments(rig)
