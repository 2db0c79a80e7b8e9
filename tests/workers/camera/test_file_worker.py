"""The file family: a clip made in the test replays frame-exact, looping, at its native rate, in a real worker;
a damaged file's broken frames are counted as corrupt and never published."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mimir.descriptors import PixelFormat

from .conftest import decode_all_av, make_video

FPS = 50
PERIOD_NS = 20_000_000
CLIP_FRAMES = 25


@pytest.mark.slow
def test_file_replays_frame_exact_and_loops(rig, cam_worker, cam_video):
    path, _, _ = cam_video
    reference, ref_pts = decode_all_av(path)
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
    # Every clip frame, in order, loop after loop: device time advances by whole periods, never repeats, and a
    # frame skipped (only when the machine made it more than QUEUE_FRAMES late) is counted as dropped.
    assert device[0] == 0
    steps = np.diff(device)
    assert np.all(steps > 0) and np.all(steps % PERIOD_NS == 0), "frames repeated or off the file's grid"
    assert int((steps // PERIOD_NS - 1).sum()) <= int(status["dropped_by_device"])
    host = np.array([s[1] for s in seen], dtype=np.int64)
    assert np.all(np.diff(host) >= 0)  # paced on the file's clock (its rate is `mimir bench cameras`' to judge)
    copies, frames = int(status["fallback_copies"]), int(status["frames_delivered"])
    assert frames <= copies <= frames + 1  # one copy per frame, decoder -> slot (one may be mid-publish)
    assert int(status["discarded_corrupt"]) == 0


@pytest.mark.slow
def test_a_file_damaged_after_its_first_30_percent_counts_what_the_decoder_finds(rig, cam_worker, tmp_path):
    """The decoder's errors are counted as corrupt, never hidden as good frames (OpenCV's path published every
    frame with corrupt 0 and the errors only on stderr). What is checked: one pass over the damaged file is fully
    accounted (published + corrupt), the damage is counted, the key frame before the damage is published intact,
    and frames predicted from a damaged one are not published (nothing after the first detected damage until a
    key frame). What no decoder can do: H.264 carries no checksums, so damage it decodes without complaint is
    published as decoded."""
    path = make_video(tmp_path / "clip", frames=60)
    if path.suffix != ".mp4":
        pytest.skip("needs ffmpeg to make an H.264 clip")
    good, good_pts = decode_all_av(path)
    import av

    with av.open(str(path)) as container:  # damage begins after the key frame
        first = next(container.demux(container.streams.video[0]))
        key_end = first.pos + first.size
    data = bytearray(path.read_bytes())
    for i in range(max(int(len(data) * 0.3), key_end), len(data) - 2000, 97):  # after the first 30 %
        data[i] ^= 0xFF
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    worker = cam_worker(["--family", "file", "--file", str(bad), "--capacity", "128"])
    reader = worker.attach("c0", rig)
    published = []
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if reader.wait(0.3):
            seq, d, pixels = reader.read()
            if d[2] >= 60 * PERIOD_NS:
                break  # the second loop began: one whole pass of the file seen
            published.append((d[2], pixels))
    status = reader.status.copy()
    reader.close()
    assert worker.stop() == 0, worker.stderr
    corrupt = int(status["discarded_corrupt"])
    assert corrupt > 0, "the damaged frames were not counted"
    assert published and published[0][0] == 0
    np.testing.assert_array_equal(published[0][1], good[0])  # the key frame before the damage: intact
    assert len(published) <= len(good) - 1 and len(published) + min(corrupt, 60) >= 54
