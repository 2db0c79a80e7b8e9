"""End-to-end: real supervisor, real worker processes, real shared memory, real signals."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mimir.descriptors import SampleKind
from mimir.reservoir import ReservoirView
from ringbuf.segment import list_segments

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def write_config(path: Path, rig: str) -> Path:
    """The embedded default rig, under this test's rig name."""
    path.write_text(f'''
rig = "{rig}"
[audio]
backend = "synthetic"
channels = 8
rate_hz = 48000
output = "witness"
[[cameras]]
family = "synthetic"
count = 6
width = 640
height = 480
fps = 60.0
''')
    return path


def start(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "mimir-supervisor"), "start", "--config", str(config), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def status(rig: str) -> dict:
    done = subprocess.run([str(BIN / "mimir"), "status", "--rig", rig, "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (AssertionError, json.JSONDecodeError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def sources(snapshot: dict) -> dict:
    return {s["name"]: s for s in snapshot["sources"]}


def test_default_rig_runs_survives_a_worker_kill_and_stops_clean(rig, tmp_path):
    config = write_config(tmp_path / "rig.toml", rig)
    sup = start(config)
    try:
        wait_for(lambda: status(rig)["header"].get("uptime_ns", 0) > 9e9, 30, "10 s of running")
        # The witness locks within seconds on an idle machine; allow for a busy one.
        wait_for(lambda: sources(status(rig))["audio"]["clock_locked"] == 1, 60, "the audio clock to lock")
        snap = status(rig)
        by_name = sources(snap)
        cams = [by_name[f"cam.synthetic.{i}"] for i in range(6)]
        audio = by_name["audio"]
        for s in [*cams, audio]:
            assert s["indexed"] > 0 and s["lost_overrun"] == 0 and s["lost_restart_gap"] == 0, s
            assert s["published"] - s["indexed"] <= s["reader_lag"] + 2, s  # nothing published went missing
        assert all(c["delivered_hz"] > 0 for c in cams)  # the rates themselves are `mimir bench pipeline`'s
        assert audio["clock_locked"] == 1 and abs(audio["clock_rate_hz"] - 48000) < 0.01
        header = snap["header"]
        assert header["lost_total"] == 0
        assert header["reservoir_edge_ns"] - header["reservoir_window_start_ns"] == 5_000_000_000
        view = ReservoirView.attach(rig)
        try:
            assert view.view_count(SampleKind.CAMERA_FRAME) > 6 * 60 * 4  # about 5 s of frames
            assert view.view_count(SampleKind.AUDIO_BLOCK) > 750 * 4      # about 5 s of blocks
            oldest = view.read(0)
            assert header["reservoir_edge_ns"] - oldest.timestamp_ns <= 5_000_000_000
        finally:
            view.close()

        # A second supervisor on the same rig refuses and says why.
        second = start(config, "--duration", "5")
        out, err = second.communicate(timeout=30)
        assert second.returncode == 1 and "already supervised" in err, err

        # kill -9 of the camera worker: restarted, indexing continues, the gap is counted.
        camera = next(w for w in snap["workers"] if w["name"] == "camera.synthetic")
        indexed_before = sources(snap)["cam.synthetic.0"]["indexed"]
        os.kill(camera["pid"], signal.SIGKILL)

        seen = {}

        def restarted_and_indexing():
            s = seen["last"] = status(rig)
            worker = next(w for w in s["workers"] if w["name"] == "camera.synthetic")
            cam = sources(s)["cam.synthetic.0"]
            fresh = worker["restarts"] >= 1 and worker["state"] == 1 and cam["health"] == 1  # new incarnation streaming
            return s if fresh and cam["indexed"] > indexed_before + 120 else None

        try:
            after = wait_for(restarted_and_indexing, 45, "camera restart")
        except AssertionError:
            raise AssertionError(json.dumps({"workers": seen.get("last", {}).get("workers"),
                                             "cam0": sources(seen["last"])["cam.synthetic.0"] if "last" in seen else None}))
        cam0 = sources(after)["cam.synthetic.0"]
        assert cam0["lost_restart_gap"] > 0, json.dumps([cam0, after["workers"]])  # the frames not captured while the worker was down
        assert after["header"]["lost_total"] >= cam0["lost_restart_gap"]
    finally:
        sup.send_signal(signal.SIGTERM)
        out, err = sup.communicate(timeout=60)
    assert sup.returncode == 0, err
    assert list_segments(rig) == []


def test_after_a_sigkill_of_the_supervisor_the_next_start_reclaims(rig, tmp_path):
    config = write_config(tmp_path / "rig.toml", rig)
    sup = start(config)
    wait_for(lambda: status(rig)["header"].get("indexed_total", 0) > 100, 30, "indexing")
    worker_pids = [w["pid"] for w in status(rig)["workers"]]
    sup.kill()
    sup.communicate(timeout=10)
    assert list_segments(rig), "a SIGKILLed supervisor cannot clean up; its objects must still be there"
    # Its workers die with it (PR_SET_PDEATHSIG) and unlink their own rings.
    wait_for(lambda: all(not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
                         for pid in worker_pids), 20, "workers to exit")
    again = start(config, "--duration", "4")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert list_segments(rig) == []


def test_invalid_config_exits_2_naming_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[cameras]]\nfamily = "synthetic"\nfps = "sixty"\n')
    done = subprocess.run([str(BIN / "mimir-supervisor"), "start", "--config", str(bad)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "cameras[0].fps" in done.stderr and "'sixty'" in done.stderr


def test_a_rig_with_its_own_codebook_seed_epoch_and_level_locks_every_channel(rig, tmp_path):
    """The witness the audio worker plays and the one the sync worker decodes come from one place (the rig
    contract): a config naming its own codebook locks every channel, and canonical time counts from its epoch."""
    config = tmp_path / "rig.toml"
    epoch = 1_700_000_000.0
    config.write_text(f'''
rig = "{rig}"
[sync]
codebook_id = "studio-b"
seed = 17
epoch_unix_s = {epoch}
level_dbfs = -12.0
[audio]
backend = "synthetic"
channels = 4
''')
    sup = start(config)
    try:
        def all_locked():
            rows = [s for s in status(rig)["sources"] if s["name"].startswith("audio.ch")]
            return rows if len(rows) == 4 and all(r["clock_locked"] for r in rows) else None

        wait_for(all_locked, 60, "every channel to lock on the configured codebook")
        header = status(rig)["header"]
        expected_s = time.time() - epoch
        assert abs(header["reservoir_edge_ns"] / 1e9 - expected_s) < 5.0  # canonical seconds since *this* epoch
    finally:
        sup.send_signal(signal.SIGTERM)
        out, err = sup.communicate(timeout=60)
    assert sup.returncode == 0, err
    assert list_segments(rig) == []


def test_the_plan_is_published_once_the_reservoir_is_ready(rig, monkeypatch):
    """Invariant: whoever can read the plan finds the reservoir finished (the supervisor publishes the plan last);
    a consumer waiting for the plan then attaching met a reservoir still being created once in CI."""
    import mimir.supervisor.rig as rig_module
    from mimir.config import RigConfig
    from mimir.consumer import RigConsumer

    seen = []
    publish = rig_module.publish_plan

    def publish_and_attach(plan):
        published = publish(plan)
        try:
            with RigConsumer.attach(plan.rig) as consumer:  # what a consumer does the moment the plan appears
                seen.append(consumer.view.view_count(int(SampleKind.CAMERA_FRAME)))
        except BaseException:  # the supervisor never got the plan object: unlink it here, or it would outlive us
            published.close()
            published.unmap()
            raise
        return published

    monkeypatch.setattr(rig_module, "publish_plan", publish_and_attach)
    supervisor = rig_module.Rig(RigConfig(rig=rig))
    try:
        supervisor.start()
    finally:
        supervisor.shutdown()
    assert seen == [0] and list_segments(rig) == []
