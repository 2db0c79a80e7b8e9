"""The consumer API against a live rig (real supervisor and workers): every read against a scan of the window."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mimir.config import AudioConfig, CameraFamilyConfig, RigConfig
from mimir.consumer import EmptyWindow, NoSuchSource, OutsideWindow, RigConsumer, StaleHandle
from mimir.contract import RigNotRunning, publish_plan
from mimir.descriptors import CameraFrameDescriptor, PixelFormat, SampleKind
from mimir.gpu import CudaUnavailable, HostBackend, cuda_unavailable_reason
from mimir.reservoir import HandleResolver, Reservoir, ReservoirView
from mimir.supervisor.status import read_status
from mimir.topology import RESERVOIR, plan_rig
from ringbuf import Ring
from ringbuf.segment import list_segments
from workers.camera.family import CameraMode
from workers.camera.synthetic import verify_frame

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consumer.py"
MODE = CameraMode(160, 120, 30.0, PixelFormat.GREY)
CAMERA = int(SampleKind.CAMERA_FRAME)
AUDIO = int(SampleKind.AUDIO_BLOCK)
WINDOW_S = 2.0


def clock_locked(rig: str) -> bool:
    return any(row["name"] == "audio" and row["clock_locked"] for row in read_status(rig).sources)


def window_is_monotonic(consumer: RigConsumer) -> bool:
    """The window is full and each camera's times only grow (no backward clock step inside it)."""
    rows = consumer.view.snapshot(CAMERA)
    if not len(rows):
        return False
    ts = rows["timestamp_ns"].astype(np.int64)
    if consumer.view.edge_ns - ts.min() < (WINDOW_S - 0.1) * 1e9:
        return False
    return all(not (np.diff(ts[rows["sensor_id_hash"] == s]) < 0).any() for s in np.unique(rows["sensor_id_hash"]))


@pytest.fixture(scope="module")
def live_rig(tmp_path_factory):
    """One rig for the module: two 160x120 GREY cameras at 30 fps, 2-channel audio, a 2 s window.

    Ready once the clock has locked to the witness and the step of the first
    lock has left the window (the searches need each camera's times to grow).
    """
    rig = f"t{os.getpid()}nc"  # carries the session tag: the session leak check covers it
    config = tmp_path_factory.mktemp("consumer") / "rig.toml"
    config.write_text(f'''
rig = "{rig}"
[reservoir]
window_s = {WINDOW_S}  # camera rings hold the window: 64 frames at 30 fps
[audio]
backend = "synthetic"
channels = 2
[[cameras]]
family = "synthetic"
count = 2
width = {MODE.width}
height = {MODE.height}
fps = {MODE.fps}
format = "GREY"
[features]
enabled = true
device = "cpu"
cameras = ["cam.synthetic.0"]
''')
    sup = subprocess.Popen([str(BIN / "mimir-supervisor"), "start", "--config", str(config)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    ready = False
    locked_at = None
    while not ready and time.monotonic() < deadline and sup.poll() is None:
        try:
            if locked_at is None and clock_locked(rig):
                locked_at = time.monotonic()  # the lock steps the canonical clock (back, here): let it leave
            if locked_at is not None and time.monotonic() > locked_at + WINDOW_S + 0.5:
                with RigConsumer.attach(rig) as consumer:
                    ready = window_is_monotonic(consumer)
        except FileNotFoundError:
            pass
        time.sleep(0.25)
    if not ready:
        sup.send_signal(signal.SIGTERM)
        _, err = sup.communicate(timeout=60)
        pytest.fail(f"the rig did not come up or settle (supervisor exit {sup.returncode}):\n{err[-3000:]}")
    yield rig
    sup.send_signal(signal.SIGTERM)
    sup.communicate(timeout=60)
    assert not list_segments(rig), f"the rig left shared memory behind: {list_segments(rig)}"


def brute_camera(rows, descs, sensor, t_ns, policy):
    """The frame a scan of every camera frame in the window picks (sequence, canonical_ns), or None."""
    mine = rows["sensor_id_hash"] == sensor
    ts = rows["timestamp_ns"][mine].astype(np.int64)
    seq = descs["sequence"][mine]
    le = np.flatnonzero(ts <= t_ns)
    gt = np.flatnonzero(ts > t_ns)
    before = le[np.argmax(ts[le])] if len(le) else None
    after = gt[np.argmin(ts[gt])] if len(gt) else None
    if policy == "at_or_before" or after is None:
        pick = before
    elif before is None:
        pick = after
    else:
        pick = after if ts[after] - t_ns < t_ns - ts[before] else before
    return None if pick is None else (int(seq[pick]), int(ts[pick]))


def test_latest_frame_is_a_zero_copy_view_of_the_newest_frame(live_rig):
    with RigConsumer.attach(live_rig) as consumer:
        assert consumer.cameras() == ["cam.synthetic.0", "cam.synthetic.1"]
        frame = consumer.latest_frame("cam.synthetic.0")
        assert frame.pixels.base is not None  # a view, not a copy
        _, stamped_ns = verify_frame(frame.pixels, MODE)
        assert frame.still_valid() and stamped_ns == frame.descriptor.device_time_ns and frame.skew_ns == 0
        with pytest.raises(NoSuchSource, match="cameras: cam.synthetic.0, cam.synthetic.1"):
            consumer.latest_frame("cam.synthetic.7")
        capacity = consumer.plan.source("cam.synthetic.0").ring.capacity  # 64 slots: the 2 s window + 4
        deadline = time.monotonic() + 30
        while consumer.latest_frame("cam.synthetic.0").descriptor.sequence < frame.descriptor.sequence + capacity:
            assert time.monotonic() < deadline, "the camera stopped delivering"
            time.sleep(0.1)
        assert not frame.still_valid()  # a ring's worth of frames later the slot has been reused
        with pytest.raises(StaleHandle, match="overwritten"):
            consumer.resolver.payload(frame.descriptor.payload_handle)


def test_frame_at_and_frames_match_a_scan_of_the_window(live_rig):
    rng = random.Random(1)
    with RigConsumer.attach(live_rig) as consumer:
        checked = 0
        for _ in range(4):
            rows, descs = consumer.view.typed_snapshot(CAMERA)
            ts = rows["timestamp_ns"].astype(np.int64)
            lo, hi = int(ts.min()) + 400_000_000, int(ts.max()) - 400_000_000  # frames here neither arrive nor leave
            for _ in range(15):
                t = rng.randrange(lo, hi)
                for camera in consumer.cameras():
                    sensor = consumer.plan.source(camera).source_hash
                    for policy in ("nearest", "at_or_before"):
                        frame = consumer.frame_at(camera, t, policy)
                        expected = brute_camera(rows, descs, sensor, t, policy)
                        assert (frame.descriptor.sequence, frame.canonical_ns) == expected
                        assert frame.skew_ns == frame.canonical_ns - t
                        assert verify_frame(frame.pixels, MODE)[1] == frame.descriptor.device_time_ns
                        assert frame.still_valid()
                        checked += 1
                    got = consumer.frames(camera, t, t + 200_000_000)
                    mine = (rows["sensor_id_hash"] == sensor) & (ts >= t) & (ts <= t + 200_000_000)
                    assert [f.descriptor.sequence for f in got] == descs["sequence"][mine].tolist()
                    assert [f.canonical_ns for f in got] == ts[mine].tolist()
                    assert all(verify_frame(f.pixels, MODE)[1] == f.descriptor.device_time_ns for f in got)
                    assert 5 <= len(got) <= 7  # 200 ms at 30 fps
            middle = len(rows) // 2
            camera = next(c for c in consumer.cameras()
                          if consumer.plan.source(c).source_hash == int(rows["sensor_id_hash"][middle]))
            exact = consumer.frame_at(camera, int(ts[middle]))  # a frame's own time: that frame, skew 0
            assert (exact.descriptor.sequence, exact.skew_ns) == (int(descs["sequence"][middle]), 0)
        assert checked == 4 * 15 * 2 * 2


def scan_audio(consumer, start_ns, end_ns):
    """The audio of [start_ns, end_ns) by scanning every block of the window (placed by device sample)."""
    rows, descs = consumer.view.typed_snapshot(AUDIO)
    first = np.flatnonzero(rows["timestamp_ns"].astype(np.int64) <= start_ns)[-1]
    rate = int(descs["sample_rate_hz"][first])
    skip = round((start_ns - int(rows["timestamp_ns"][first])) * rate / 1e9)
    origin = int(descs["start_sample"][first]) + skip
    wanted = round((end_ns - start_ns) * rate / 1e9)
    out = np.zeros((wanted, int(descs["channel_count"][first])), np.float32)
    for d in descs:
        at = int(d["start_sample"]) - origin
        if at + int(d["frame_count"]) <= 0 or at >= wanted:
            continue
        block = consumer.resolver.payload(int(d["data_handle"]))[:int(d["frame_count"])]
        lo, hi = max(0, at), min(wanted, at + len(block))
        out[lo:hi] = block[lo - at:hi - at]
    actual = int(rows["timestamp_ns"][first]) + round(skip * 1e9 / rate)
    return out, actual


def test_moment_and_audio_match_a_scan_of_the_window(live_rig):
    rng = random.Random(2)
    with RigConsumer.attach(live_rig) as consumer:
        assert consumer.audio_sources() == ["audio"]
        heard = 0.0
        for _ in range(10):
            start, edge = consumer.window()
            t = rng.randrange(start + 400_000_000, edge - 400_000_000)
            moment = consumer.moment(t, audio_ms=50)
            assert moment.missing == {} and set(moment.frames) == set(consumer.cameras())
            for camera, frame in moment.frames.items():
                again = consumer.frame_at(camera, t)
                assert (frame.descriptor.sequence, frame.skew_ns) == (again.descriptor.sequence, again.skew_ns)
                assert abs(frame.skew_ns) <= 1e9 / MODE.fps  # nearest of frames 33 ms apart (plus jitter)
            span = moment.audio["audio"]
            expected, actual_ns = scan_audio(consumer, t - 25_000_000, t + 25_000_000)
            assert span.samples.shape == (2400, 2) and span.rate_hz == 48_000
            assert np.array_equal(span.samples, expected)
            assert span.start_ns == actual_ns and abs(span.skew_ns) <= 1e9 / 48_000 / 2 + 1
            assert span.gap_samples == 0
            heard = max(heard, float(np.abs(span.samples).max()))
        assert heard > 0  # the witness, heard through the loopback (it has silent stretches)


def test_audio_over_a_canonical_span_is_contiguous(live_rig):
    with RigConsumer.attach(live_rig) as consumer:
        edge = consumer.view.edge_ns
        span = consumer.audio(edge - 300_000_000, edge - 100_000_000)
        assert span.rate_hz == 48_000 and span.samples.shape == (9600, 2)
        with pytest.raises(OutsideWindow, match=r"outside rig .*'s window \[\d+, \d+\] ns"):
            consumer.audio(edge - 60_000_000_000, edge - 59_000_000_000)
        with pytest.raises(NoSuchSource, match="audio sources: audio"):
            consumer.audio(edge - 300_000_000, edge - 100_000_000, source="mic")
        with pytest.raises(ValueError, match="empty span"):
            consumer.audio(edge - 100, edge - 200)


def test_features_sit_on_their_frames_canonical_times(live_rig):
    """The whole features path (worker, ring, supervisor, reservoir, consumer): each record read back names a frame
    that is in the window at exactly the record's canonical time; no record was refused on a well-behaved rig."""
    with RigConsumer.attach(live_rig) as consumer:
        start, edge = consumer.window()
        features = consumer.features("cam.synthetic.0", start + 200_000_000, edge)
        assert len(features) >= 20, len(features)
        sequences = [f.sequence for f in features]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
        for f in features[-10:]:
            frame = consumer.frame_at("cam.synthetic.0", f.canonical_ns)
            assert (frame.descriptor.sequence, frame.canonical_ns, frame.skew_ns) == (f.sequence, f.canonical_ns, 0)
            assert f.previous_sequence == f.sequence - 1 and 0.0 <= f.changed_fraction <= 1.0
        with pytest.raises(NoSuchSource, match="computes no features for 'cam.synthetic.1'"):
            consumer.features("cam.synthetic.1", start, edge)
    row = next(r for r in read_status(live_rig).sources if r["name"] == "features")
    assert row["indexed"] > 0 and row["rejected"] == 0, row


def test_bad_reads_say_what_is_wrong(live_rig):
    with RigConsumer.attach(live_rig) as consumer:
        start, edge = consumer.window()
        with pytest.raises(NoSuchSource, match="has no camera 'cam.x'; cameras: cam.synthetic.0, cam.synthetic.1"):
            consumer.frame_at("cam.x", edge)
        with pytest.raises(NoSuchSource, match="has no camera 'audio'"):
            consumer.frame_at("audio", edge)
        with pytest.raises(OutsideWindow, match=r"window \[\d+, \d+\] ns \(\d+\.\d{3} s after its edge"):
            consumer.frame_at("cam.synthetic.0", edge + 10_000_000_000)
        with pytest.raises(OutsideWindow, match=r"before its start; the window holds the last 2 s"):
            consumer.frames("cam.synthetic.0", start - 10_000_000_000, edge)
        with pytest.raises(ValueError, match="policy must be one of nearest, at_or_before"):
            consumer.frame_at("cam.synthetic.0", edge, "latest")
        with pytest.raises(ValueError, match="device must be one of cpu, cuda"):
            consumer.latest_frame("cam.synthetic.0", device="tpu")
        with pytest.raises(ValueError, match="empty span"):
            consumer.frames("cam.synthetic.0", edge, edge - 1)


class FakeCudaRuntime:
    """Stands in for ``cupy.cuda.runtime`` at mimir.gpu's ``runtime`` seam; records registrations."""

    cudaDevAttrHostRegisterSupported = 99
    cudaDevAttrHostRegisterReadOnlySupported = 113

    class CUDARuntimeError(RuntimeError):
        pass

    def __init__(self) -> None:
        self.registered: dict[int, int] = {}
        self.unregistered: list[int] = []

    def getDevice(self) -> int:
        return 0

    def deviceGetAttribute(self, attr: int, device: int) -> int:
        return 1

    def hostRegister(self, ptr: int, size: int, flags: int) -> None:
        self.registered[ptr] = size

    def hostUnregister(self, ptr: int) -> None:
        self.unregistered.append(ptr)


def test_cuda_delivery_registers_each_ring_once_and_copies_checked_frames(live_rig):
    """Through mimir.gpu's seams (a fake CUDA runtime, the host copy backend): the wiring, not the DMA."""
    runtime = FakeCudaRuntime()
    with RigConsumer.attach(live_rig) as consumer:
        consumer.use_cuda(runtime=runtime, backend_factory=HostBackend, pool_size=2)
        start, edge = consumer.window()
        for _ in range(3):
            for camera in consumer.cameras():
                with consumer.latest_frame(camera, device="cuda") as gpu:
                    assert verify_frame(gpu.array, MODE)[1] == gpu.descriptor.device_time_ns
                t = (start + edge) // 2
                with consumer.frame_at(camera, t, device="cuda") as gpu:
                    cpu = consumer.frame_at(camera, t)
                    assert (gpu.descriptor.sequence, gpu.skew_ns) == (cpu.descriptor.sequence, cpu.skew_ns)
                    assert np.array_equal(gpu.array, cpu.pixels)
        arenas = consumer._cuda.arenas()
        assert set(arenas) == set(consumer.cameras())  # one registration per camera ring
        assert len(runtime.registered) == 2 and all(a.registered for a in arenas.values())
        copiers = consumer._cuda.copiers()
        assert sum(c.handed_out for c in copiers.values()) == 12 and all(c.leased == 0 for c in copiers.values())
    assert sorted(runtime.unregistered) == sorted(runtime.registered)  # close() unregisters before unmapping


def test_cuda_without_a_device_is_one_clear_error(live_rig):
    reason = cuda_unavailable_reason()
    if reason is None:
        pytest.skip("a CUDA device is present: the error path cannot be reached here")
    with RigConsumer.attach(live_rig) as consumer:
        with pytest.raises(CudaUnavailable, match="device='cuda' needs CuPy and a CUDA device") as raised:
            consumer.latest_frame("cam.synthetic.0", device="cuda")
        assert "\n" not in str(raised.value)
        assert consumer.latest_frame("cam.synthetic.0").still_valid()  # the CPU path is unaffected


def test_the_example_runs(live_rig):
    done = subprocess.run([sys.executable, str(EXAMPLE), live_rig], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "cam.synthetic.1: frame" in done.stdout and "audio: 4800 frames x 2 channels" in done.stdout
    assert "moment at" in done.stdout and "audio 2400 frames" in done.stdout and "missing" not in done.stdout


def test_an_empty_window_and_a_camera_without_frames(rig):
    """Without processes: a consumer over a reservoir that holds nothing, then a frame of one camera only."""
    config = RigConfig(rig=rig, cameras=[CameraFamilyConfig(family="synthetic", count=2, width=64, height=48)],
                       audio=AudioConfig())
    plan = plan_rig(config)

    def consumer_of() -> RigConsumer:
        view = ReservoirView.attach(rig, RESERVOIR)
        return RigConsumer(rig, plan, view, HandleResolver(rig, reservoir=view))

    with Reservoir.create(rig, name=RESERVOIR, capacity=1024, duration_ns=plan.window_ns) as res:
        with consumer_of() as consumer:
            with pytest.raises(EmptyWindow, match="window is empty"):
                consumer.frame_at("cam.synthetic.0", 5)
            with pytest.raises(EmptyWindow, match="no frame"):
                consumer.latest_frame("cam.synthetic.0")
        cam0 = res.producer(SampleKind.CAMERA_FRAME, sensor_id_hash=plan.source("cam.synthetic.0").source_hash)
        ring_spec = plan.source("cam.synthetic.0").ring
        with Ring.create(ring_spec.object_id, rig=rig, descriptor=CameraFrameDescriptor, capacity=ring_spec.capacity,
                         payload_shape=(48, 64, 2)) as ring:
            ring.claim()[:] = 7
            ring.publish(1, 0, 0, 0, 64, 48, 0, 128, 6144, ring.handle(0))
            descriptor = CameraFrameDescriptor(1, 0, 0, 0, 64, 48, 0, 128, 6144, ring.handle(0))
            cam0.push_camera_frame(1_000, 1_000, descriptor)
            with consumer_of() as consumer:
                with pytest.raises(EmptyWindow, match="camera 'cam.synthetic.1' has no frame"):
                    consumer.frame_at("cam.synthetic.1", 1_000)
                moment = consumer.moment(1_000)
                assert "no frame" in moment.missing["cam.synthetic.1"] and "outside" in moment.missing["audio"]
                frame = moment.frames["cam.synthetic.0"]
                assert (frame.pixels == 7).all() and frame.skew_ns == 0 and frame.still_valid()
                with pytest.raises(OutsideWindow, match="no frame at or before 999 ns; its first frame in the window "
                                                        "is at 1000 ns"):
                    consumer.frame_at("cam.synthetic.0", 999, "at_or_before")  # in the window [0, 1000], before it
        with consumer_of() as consumer:
            with pytest.raises(StaleHandle, match=r"the ring of cam.synthetic.0 \(c0\) is gone"):
                consumer.latest_frame("cam.synthetic.0")  # its worker (here: the ring above) is gone


def test_a_plan_over_an_unfinished_reservoir_is_not_ready(rig, unfinished):
    """Invariant: a consumer that reads a plan while the reservoir is still being created (a stale plan beside a new
    supervisor's reservoir) gets RigNotRunning saying so, never a layout mismatch or a traceback of the internals."""
    plan_object = publish_plan(plan_rig(RigConfig(rig=rig)))
    try:
        with Reservoir.create(rig, name=RESERVOIR, capacity=8) as res:
            with unfinished(res), pytest.raises(RigNotRunning, match="still being created"):
                RigConsumer.attach(rig)
            RigConsumer.attach(rig).close()
    finally:
        plan_object.close()
        plan_object.unmap()
