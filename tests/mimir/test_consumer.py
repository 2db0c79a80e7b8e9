"""The consumer API and its example against a live rig (real supervisor and workers)."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mimir.consumer import NoSuchSource, RigConsumer, StaleHandle
from mimir.descriptors import PixelFormat
from workers.camera.family import CameraMode
from workers.camera.synthetic import verify_frame

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consumer.py"


@pytest.fixture
def live_rig(rig, tmp_path):
    config = tmp_path / "rig.toml"
    config.write_text(f'''
rig = "{rig}"
[reservoir]
window_s = 1.0  # camera rings hold the window: 34 frames at 30 fps
[audio]
backend = "synthetic"
channels = 2
[[cameras]]
family = "synthetic"
count = 2
width = 320
height = 240
fps = 30.0
format = "GREY"
''')
    sup = subprocess.Popen([str(BIN / "mimir-supervisor"), "start", "--config", str(config)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    ready = False
    while not ready and time.monotonic() < deadline and sup.poll() is None:
        try:
            with RigConsumer.attach(rig) as consumer:
                ready = consumer.view.view_count(0) > 20 and consumer.view.view_count(5) > 300
        except FileNotFoundError:
            pass
        time.sleep(0.25)
    if not ready:
        sup.send_signal(signal.SIGTERM)
        _, err = sup.communicate(timeout=60)
        pytest.fail(f"the rig did not come up (supervisor exit {sup.returncode}):\n{err[-3000:]}")
    yield rig
    sup.send_signal(signal.SIGTERM)
    sup.communicate(timeout=60)


def test_latest_frame_is_a_zero_copy_view_of_the_newest_frame(live_rig):
    with RigConsumer.attach(live_rig) as consumer:
        assert consumer.cameras() == ["cam.synthetic.0", "cam.synthetic.1"]
        frame = consumer.latest_frame("cam.synthetic.0")
        assert frame.pixels.base is not None  # a view, not a copy
        sequence, _ = verify_frame(frame.pixels, CameraMode(320, 240, 30.0, PixelFormat.GREY))
        assert frame.still_valid() and sequence == frame.descriptor.sequence
        with pytest.raises(NoSuchSource, match="cameras: cam.synthetic.0, cam.synthetic.1"):
            consumer.latest_frame("cam.synthetic.7")
        capacity = consumer.plan.source("cam.synthetic.0").ring.capacity  # 34 slots: the 1 s window
        deadline = time.monotonic() + 30
        while consumer.latest_frame("cam.synthetic.0").descriptor.sequence < frame.descriptor.sequence + capacity:
            assert time.monotonic() < deadline, "the camera stopped delivering"
            time.sleep(0.1)
        assert not frame.still_valid()  # a ring's worth of frames later the slot has been reused
        with pytest.raises(StaleHandle, match="overwritten"):
            consumer.resolver.payload(frame.descriptor.payload_handle)


def test_audio_over_a_canonical_span_is_contiguous(live_rig):
    with RigConsumer.attach(live_rig) as consumer:
        edge = consumer.view.edge_ns
        span = consumer.audio(edge - 300_000_000, edge - 100_000_000)
        assert span.rate_hz == 48_000 and span.samples.shape == (9600, 2)
        assert np.abs(span.samples).max() > 0  # the witness, heard through the loopback
        with pytest.raises(ValueError, match="outside the audio in the window"):
            consumer.audio(edge - 60_000_000_000, edge - 59_000_000_000)


def test_the_example_runs(live_rig):
    done = subprocess.run([sys.executable, str(EXAMPLE), live_rig], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "cam.synthetic.1: frame" in done.stdout and "audio: 4800 frames x 2 channels" in done.stdout
