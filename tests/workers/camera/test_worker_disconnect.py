"""A camera unplugged mid-stream: counted and reported, retried, while the other camera keeps running.

The family is a registered plug-in (the same path ps3eye will use): synthetic
cameras, of which camera 1 "unplugs" after 30 frames of its first open and
fails its first reopen attempt.
"""

from __future__ import annotations

import threading
import time

from ringbuf import RingReader
from workers.camera.family import (
    CameraDisconnected, ModeRequest, register_family, unregister_family,
)
from workers.camera.stats import CameraState
from workers.camera.synthetic import SyntheticCamera, SyntheticFamily, verify_frame
from workers.camera.worker import WorkerConfig, run_worker


class UnpluggingCamera(SyntheticCamera):
    def capture(self, sink, stop):
        class Counting:
            def __init__(self, inner):
                self.inner, self.n = inner, 0

            def claim(self):
                return self.inner.claim()

            def publish(self, **kw):
                self.n += 1
                if self.n > 30:
                    FlakyFamily.unplugged_at_ns = time.monotonic_ns()
                    raise CameraDisconnected("USB device gone (test)")
                return self.inner.publish(**kw)

        super().capture(Counting(sink), stop)


class FlakyFamily(SyntheticFamily):
    name = "flaky"
    opens: dict[int, int] = {}
    unplugged_at_ns = 0
    replugged_at_ns = 0

    def open(self, device, request: ModeRequest):
        n = self.opens[device.index] = self.opens.get(device.index, 0) + 1
        if device.index == 1 and n == 3:
            FlakyFamily.replugged_at_ns = time.monotonic_ns()
        cam = super().open(device, request)
        if device.index == 1 and n == 1:
            return UnpluggingCamera(device, cam.mode)
        if device.index == 1 and n == 2:
            raise OSError("device busy (test)")
        return cam


def test_unplugged_camera_is_counted_retried_and_others_keep_running(rig):
    FlakyFamily.opens = {}
    register_family("flaky", FlakyFamily)
    stop = threading.Event()
    result, errors = [], []
    config = WorkerConfig.for_family("flaky", 2, rig=rig, request=ModeRequest(64, 48, 100.0), capacity=512,
                                     status_period_s=0.1)

    def main() -> None:
        try:
            result.append(run_worker("flaky", config, stop=stop, log=None))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=main)
    statuses = []
    try:
        thread.start()
        end = time.monotonic() + 15
        while FlakyFamily.opens.get(1, 0) < 3:  # unplug, failed retry, successful retry
            assert time.monotonic() < end and thread.is_alive(), errors
            time.sleep(0.05)
        time.sleep(0.5)  # the reopened camera streams for a while
        for i in range(2):
            with RingReader.attach(f"c{i}", rig=rig) as reader:
                status = {k: reader.status[k].item() for k in reader.status.dtype.names}
                status["items"] = []
                while (item := reader.read()) is not None:
                    status["items"].append(item)
                statuses.append(status)
    finally:
        stop.set()
        thread.join(10)
        unregister_family("flaky")
    assert not thread.is_alive()
    worker = result[0]
    healthy, flaky = worker.runners
    assert FlakyFamily.opens == {0: 1, 1: 3}
    assert (healthy.disconnects, flaky.disconnects, flaky.reconnects) == (0, 1, 1)
    assert "USB device gone" in flaky.last_error or "device busy" in flaky.last_error
    s0, s1 = statuses
    assert s1["disconnects"] == 1 and s1["reconnects"] == 1 and s1["state"] == CameraState.STREAMING
    assert s0["disconnects"] == 0 and s0["state"] == CameraState.STREAMING
    # Camera 0 never stopped: its frames are contiguous in sequence and stamp, with no gap in time.
    seqs0 = [seq for seq, _, _ in s0["items"]]
    assert seqs0 == list(range(seqs0[0], seqs0[0] + len(seqs0)))
    hosts0 = [d[3] for _, d, _ in s0["items"]]
    # ... and it kept publishing while camera 1 was unplugged and being retried (not blocked by its reconnect).
    during = [h for h in hosts0 if FlakyFamily.unplugged_at_ns < h < FlakyFamily.replugged_at_ns]
    assert FlakyFamily.unplugged_at_ns and len(during) >= 5, (len(during), FlakyFamily.replugged_at_ns
                                                              - FlakyFamily.unplugged_at_ns)
    # Camera 1's ring carried on after the reconnect: sequences continue, frames still verify.
    mode = flaky.mode
    seqs1 = [seq for seq, _, _ in s1["items"]]
    assert seqs1 == list(range(seqs1[0], seqs1[0] + len(seqs1))) and seqs1[-1] >= 30
    stamps1 = [verify_frame(p, mode)[0] for _, _, p in s1["items"]]
    restart = stamps1.index(0, 1) if 0 in stamps1[1:] else None
    assert restart is not None, "no frames from the reopened camera"
    assert stamps1[restart - 1] == 29  # the unplugged camera's last frame, then the new one from 0
