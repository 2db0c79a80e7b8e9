"""The file family: a clip made in the test replays frame-exact, looping, at its native rate, in a real worker."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mimir.descriptors import PixelFormat

FPS = 50
PERIOD_NS = 20_000_000
CLIP_FRAMES = 25


@pytest.mark.slow
def test_file_replays_frame_exact_and_loops(rig, cam_worker, cam_video):
    path, reference, ref_pts = cam_video
    assert ref_pts == [i * PERIOD_NS for i in range(CLIP_FRAMES)]
    worker = cam_worker(["--family", "file", "--file", str(path), "--capacity", "64"])
    reader = worker.attach("c0", rig)
    seen: list[tuple[int, int]] = []  # (device_time_ns, host_time_ns)
    end = time.monotonic() + 20
    while len(seen) < 2 * CLIP_FRAMES + 10:  # more than two loops
        assert time.monotonic() < end, f"only {len(seen)} frames in 20 s"
        if not reader.wait(0.5):
            continue
        item = reader.read()
        seq, d, pixels = item
        device_ns, host_ns = d[2], d[3]
        assert d[1] == seq and d[4:9] == (160, 120, int(PixelFormat.BGR3), 480, 160 * 120 * 3)
        index, rem = divmod(device_ns, PERIOD_NS)
        assert rem == 0, f"device time {device_ns} is not on the file's 20 ms grid"
        np.testing.assert_array_equal(pixels, reference[index % CLIP_FRAMES],
                                      err_msg=f"frame {seq} (clip frame {index % CLIP_FRAMES}) differs")
        seen.append((device_ns, host_ns))
    status = reader.status.copy()
    reader.close()
    assert worker.stop() == 0, worker.stderr
    assert reader.lost == 0
    device = [s[0] for s in seen]
    # Every clip frame, in order, loop after loop: device time advances by exactly one period.
    assert device[0] == 0
    assert np.all(np.diff(device) == PERIOD_NS), "frames skipped or repeated across a loop"
    host = np.array([s[1] for s in seen], dtype=np.int64)
    fps = (len(host) - 1) / ((host[-1] - host[0]) / 1e9)
    assert abs(fps - FPS) < 0.02 * FPS, f"replayed at {fps:.2f} fps, native {FPS}"
    # Paced on the file's clock: host receipt - device time stays constant (within 10 ms of jitter).
    offset = host - np.array(device)
    assert offset.max() - offset.min() < 10_000_000, "replay drifted from the container timestamps"
    assert int(status["fallback_copies"]) == 0, "OpenCV did not decode straight into the ring slot"
    assert int(status["dropped_by_device"]) == 0
