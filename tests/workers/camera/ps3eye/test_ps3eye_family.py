"""The ps3eye family inside the real camera worker: fake USB device -> driver -> ring -> reader."""
import sys
import threading
import time

import numpy as np

from mimir.descriptors import CameraFrameDescriptor, PixelFormat
from ringbuf import RingReader
from workers.camera.family import ModeRequest, register_family, unregister_family
from workers.camera.ps3eye.fake import FakePS3Eye, FakeUSBBackend, frame_number_of, frame_pixels
from workers.camera.ps3eye.family import Ps3EyeFamily
from workers.camera.worker import WorkerConfig, run_worker


def test_ps3eye_frames_land_in_the_ring_and_verify(rig):
    backend = FakeUSBBackend([FakePS3Eye(bus=1, address=4, realtime=True)])
    register_family("ps3eye_fake", lambda: Ps3EyeFamily(backend=backend))
    stop = threading.Event()
    config = WorkerConfig.for_family("ps3eye_fake", 1, rig=rig, capacity=64, status_period_s=0.1,
                                     request=ModeRequest(320, 240, 187.0, PixelFormat.GRBG))
    thread = threading.Thread(target=run_worker, args=("ps3eye_fake", config), kwargs={"stop": stop, "log": sys.stderr})
    checked = []
    try:
        thread.start()
        deadline = time.monotonic() + 10
        reader = None
        while reader is None and time.monotonic() < deadline:
            try:
                reader = RingReader.attach(config.cameras[0].ring.object_id, rig=rig, descriptor=CameraFrameDescriptor)
            except FileNotFoundError:
                time.sleep(0.05)
        assert reader is not None, "the worker never created the camera ring"
        while len(checked) < 100 and time.monotonic() < deadline:
            if not reader.wait(0.5):
                continue
            seq, desc, pixels = reader.view_next()
            fields = dict(zip(CameraFrameDescriptor.__struct_fields__, desc))
            frame = pixels.reshape(-1)[: fields["byte_length"]]
            number = frame_number_of(frame)
            ok = np.array_equal(frame, frame_pixels(number, fields["byte_length"]))
            assert reader.valid(seq)
            checked.append((number, ok, fields))
        reader.close()
    finally:
        stop.set()
        thread.join(10)
        unregister_family("ps3eye_fake")
    assert len(checked) == 100 and all(ok for _, ok, _ in checked)
    numbers = [n for n, _, _ in checked]
    assert numbers == list(range(numbers[0], numbers[0] + 100))  # consecutive frames, none dropped
    fields = checked[-1][2]
    assert (fields["width"], fields["height"], fields["pixel_format"]) == (320, 240, PixelFormat.GRBG)
    assert fields["byte_length"] == 320 * 240 and fields["device_time_ns"] > 0
