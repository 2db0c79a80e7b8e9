"""Streaming through pyusb from the fake camera: exact frames, exact counters, disconnects.

Every delivered frame is checked byte for byte against the fake's pattern for
its frame number, and the list of delivered frame numbers is checked exactly.
"""

from __future__ import annotations

import threading
import time

import pytest

from workers.camera.ps3eye.assembler import DEFAULT_PTS_CLOCK_HZ, StreamCounters
from workers.camera.ps3eye.device import is_disconnect, open_camera
from workers.camera.ps3eye.fake import Fault, FaultKind, FakePS3Eye, FakeUSBBackend
from workers.camera.ps3eye.stream import CameraStream, StreamState

QVGA_PAYLOADS = 38  # 76800 bytes in 2036-byte payload bodies: 37 full and one of 1468
FRAMES = 8
FAULT_FRAME = 3


def drain(stream: CameraStream, fake: FakePS3Eye, max_polls: int = 1000) -> None:
    """Poll until the fake has sent its last frame or the stream has ended."""
    for _ in range(max_polls):
        if fake.exhausted or not stream.poll_once():
            return
    raise AssertionError("stream did not drain")


def counters_except_transfers(counters: StreamCounters) -> dict[str, int]:
    skip = {"frames_delivered", "payloads_seen", "bulk_reads", "bulk_bytes", "read_timeouts"}
    return {name: getattr(counters, name) for name in counters.__struct_fields__
            if name not in skip and getattr(counters, name)}


EVERY_FRAME_BUT_THE_FAULTY_ONE = [n for n in range(FRAMES) if n != FAULT_FRAME]

CASES = {
    # kind, payload: (delivered frames, expected non-zero counters)
    "err-flag": (Fault(FaultKind.ERROR_FLAG, FAULT_FRAME, 5), EVERY_FRAME_BUT_THE_FAULTY_ONE,
                 {"payloads_error_flag": 1, "frames_abandoned": 1, "payloads_skipped": QVGA_PAYLOADS - 6}),
    "err-flag-first-payload": (Fault(FaultKind.ERROR_FLAG, FAULT_FRAME, 0), EVERY_FRAME_BUT_THE_FAULTY_ONE,
                               {"payloads_error_flag": 1, "frames_wrong_size": 1}),
    "no-pts": (Fault(FaultKind.NO_PTS, FAULT_FRAME, 5), EVERY_FRAME_BUT_THE_FAULTY_ONE,
               {"payloads_without_pts": 1, "frames_abandoned": 1, "payloads_skipped": QVGA_PAYLOADS - 6}),
    "bad-header": (Fault(FaultKind.BAD_HEADER, FAULT_FRAME, 5), EVERY_FRAME_BUT_THE_FAULTY_ONE,
                   {"payloads_bad_header": 1, "frames_abandoned": 1, "payloads_skipped": QVGA_PAYLOADS - 6}),
    "missing-eof": (Fault(FaultKind.MISSING_EOF, FAULT_FRAME), EVERY_FRAME_BUT_THE_FAULTY_ONE,
                    {"frames_missing_eof": 1}),
    "short-frame": (Fault(FaultKind.SHORT_FRAME, FAULT_FRAME, 5), EVERY_FRAME_BUT_THE_FAULTY_ONE,
                    {"frames_wrong_size": 1}),
    "long-frame": (Fault(FaultKind.LONG_FRAME, FAULT_FRAME, 5), EVERY_FRAME_BUT_THE_FAULTY_ONE,
                   {"frames_wrong_size": 1, "payloads_skipped": 1}),
    "fid-toggle": (Fault(FaultKind.FID_TOGGLE, FAULT_FRAME, 5), EVERY_FRAME_BUT_THE_FAULTY_ONE,
                   {"frames_fid_restart": 1, "frames_wrong_size": 1}),
    "read-timeout": (Fault(FaultKind.READ_TIMEOUT, FAULT_FRAME, count=2), list(range(FRAMES)), {}),
    "disconnect": (Fault(FaultKind.DISCONNECT, FAULT_FRAME), list(range(FAULT_FRAME)),
                   {"usb_disconnects": 1}),
}


@pytest.mark.parametrize("case", CASES)
def test_each_fault_costs_exactly_its_frame_and_is_counted(make_camera, recording_sink, case: str) -> None:
    fault, delivered, expected = CASES[case]
    fake, camera = make_camera(320, 240, 187, faults=[fault], frame_limit=FRAMES)
    sink = recording_sink(camera.mode.frame_bytes)
    stream = CameraStream(camera, sink)
    camera.start()
    drain(stream, fake)

    assert sink.frame_numbers == delivered
    assert sink.all_verified()
    assert stream.counters.frames_delivered == len(delivered)
    assert counters_except_transfers(stream.counters) == expected
    assert stream.counters.read_timeouts == fake.timeouts_raised
    if case == "read-timeout":
        assert fake.timeouts_raised >= 2
    if case == "disconnect":
        assert stream.state is StreamState.DISCONNECTED and is_disconnect(stream.error)
    else:
        assert stream.counters.payloads_seen == FRAMES * QVGA_PAYLOADS + (1 if case == "long-frame" else 0) \
            - (1 if case == "short-frame" else 0)


def test_all_faults_in_one_vga_stream(make_camera, recording_sink) -> None:
    faults = [Fault(FaultKind.ERROR_FLAG, 1, 40), Fault(FaultKind.NO_PTS, 2, 7),
              Fault(FaultKind.MISSING_EOF, 4), Fault(FaultKind.SHORT_FRAME, 5, 100),
              Fault(FaultKind.FID_TOGGLE, 7, 75), Fault(FaultKind.READ_TIMEOUT, 8, count=3),
              Fault(FaultKind.LONG_FRAME, 9, 2), Fault(FaultKind.BAD_HEADER, 10, 150)]
    fake, camera = make_camera(640, 480, 75, faults=faults, frame_limit=12)
    sink = recording_sink(camera.mode.frame_bytes)
    stream = CameraStream(camera, sink)
    camera.start()
    drain(stream, fake)
    assert sink.frame_numbers == [0, 3, 6, 8, 11]
    assert sink.all_verified()
    c = stream.counters
    # VGA: 151 payloads per frame, the last one (index 150) short and carrying EOF.
    assert counters_except_transfers(c) == {
        "payloads_error_flag": 1, "payloads_without_pts": 1, "payloads_bad_header": 1,
        "frames_abandoned": 2 + 1,  # ERR and no-PTS cut frames 1 and 2; the bad EOF header cuts frame 10
        "payloads_skipped": (151 - 41) + (151 - 8) + 1,  # rests of frames 1 and 2; frame 9's EOF payload
        "frames_missing_eof": 1, "frames_wrong_size": 1 + 1 + 1,  # short 5, tail of 7, long 9
        "frames_fid_restart": 1,
    }
    assert c.frames_discarded == 8  # 7 camera frames lost; the FID toggle split frame 7 in two
    assert c.read_timeouts == fake.timeouts_raised >= 3


def test_device_time_follows_pts_across_the_32_bit_wrap(make_camera, recording_sink) -> None:
    step = DEFAULT_PTS_CLOCK_HZ // 187
    first_pts = (1 << 32) - 3 * step  # frames 3.. carry wrapped PTS
    fake, camera = make_camera(320, 240, 187, frame_limit=6, first_pts=first_pts)
    sink = recording_sink(camera.mode.frame_bytes)
    stream = CameraStream(camera, sink)
    camera.start()
    drain(stream, fake)
    assert [fake.frame_pts(n) < first_pts for n in range(6)] == [False] * 3 + [True] * 3
    expected = [(first_pts + n * DEFAULT_PTS_CLOCK_HZ // 187) * 10**9 // DEFAULT_PTS_CLOCK_HZ
                for n in range(6)]
    assert [d.device_time_ns for d in sink.delivered] == expected
    host = [d.host_time_ns for d in sink.delivered]
    assert host == sorted(host)


def test_reader_thread_streams_until_stopped(make_camera, recording_sink) -> None:
    fake, camera = make_camera(320, 240, 187, frame_limit=60)
    sink = recording_sink(camera.mode.frame_bytes)
    stream = CameraStream(camera, sink)
    stream.start()
    deadline = time.monotonic() + 10
    while stream.counters.frames_delivered < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    stream.stop()
    assert stream.state is StreamState.STOPPED and stream.wait(0)
    assert sink.frame_numbers == list(range(60)) and sink.all_verified()
    assert [value for reg, value in fake.bridge_writes if reg == 0xE0][-1] == 0x09
    assert not fake.streaming and not fake.led_on


def test_realtime_fake_paces_at_the_mode_rate(make_camera, recording_sink) -> None:
    fake, camera = make_camera(320, 240, 187, frame_limit=48, realtime=True)
    sink = recording_sink(camera.mode.frame_bytes)
    stream = CameraStream(camera, sink, timeout_ms=50)
    stream.start()
    deadline = time.monotonic() + 10
    while stream.counters.frames_delivered < 48 and time.monotonic() < deadline:
        time.sleep(0.01)
    stream.stop()
    host = [d.host_time_ns for d in sink.delivered]
    assert len(host) == 48 and sink.all_verified()
    mean_interval_s = (host[-1] - host[0]) / 47 / 1e9
    # Absolute deadlines in the fake: the mean holds even on a loaded machine.
    assert 0.9 / 187 < mean_interval_s < 1.5 / 187


def test_disconnect_mid_stream_ends_the_thread_and_reconnect_resumes(make_camera, recording_sink) -> None:
    fake, camera = make_camera(320, 240, 187, faults=[Fault(FaultKind.DISCONNECT, 10)], frame_limit=20)
    sink = recording_sink(camera.mode.frame_bytes)
    stream = CameraStream(camera, sink)
    stream.start()
    assert stream.wait(5), "the reader thread should end on a disconnect"
    assert stream.state is StreamState.DISCONNECTED and is_disconnect(stream.error)
    assert stream.counters.usb_disconnects == 1
    assert sink.frame_numbers == list(range(10)) and sink.all_verified()
    stream.stop()  # stopping a dead camera is not an error
    camera.close()

    fake.faults = []
    fake.reconnect(address=7)
    backend = FakeUSBBackend([fake])
    again = open_camera(backend, width=320, height=240, fps=187,
                        bridge_reset_wait_s=0.0, sensor_reset_wait_s=0.0)
    try:
        assert again.port_path == "1-4"  # same port after re-plugging, new address
        assert again.device.address == 7
        resumed = CameraStream(again, sink, counters=stream.counters)
        again.start()
        drain(resumed, fake)
        assert sink.frame_numbers == list(range(10)) + list(range(20))  # a re-plugged camera counts from 0
        assert sink.all_verified()
        assert resumed.counters.frames_delivered == 30 and resumed.counters.usb_disconnects == 1
    finally:
        again.close()


def test_read_size_must_keep_payload_alignment(make_camera, recording_sink) -> None:
    _, camera = make_camera()
    with pytest.raises(ValueError, match="multiple of 2048"):
        CameraStream(camera, recording_sink(camera.mode.frame_bytes), read_bytes=3000)


@pytest.mark.parametrize("read_bytes", [2048, 16 * 2048, 64 * 2048])
def test_any_aligned_read_size_assembles_the_same_frames(make_camera, recording_sink, read_bytes: int) -> None:
    fake, camera = make_camera(320, 240, 187, frame_limit=5, faults=[Fault(FaultKind.FID_TOGGLE, 2, 20)])
    sink = recording_sink(camera.mode.frame_bytes)
    stream = CameraStream(camera, sink, read_bytes=read_bytes)
    camera.start()
    drain(stream, fake)
    assert sink.frame_numbers == [0, 1, 3, 4] and sink.all_verified()
    assert counters_except_transfers(stream.counters) == {"frames_fid_restart": 1, "frames_wrong_size": 1}


def test_run_loops_in_the_callers_thread_until_stop(make_camera, recording_sink) -> None:
    fake, camera = make_camera(640, 480, 30, frame_limit=50)
    stop = threading.Event()

    class StoppingSink(recording_sink):
        def publish(self, **kwargs: int) -> None:
            super().publish(**kwargs)
            if len(self.delivered) == 10:
                stop.set()

    sink = StoppingSink(camera.mode.frame_bytes)
    stream = CameraStream(camera, sink)
    camera.start()
    assert stream.run(stop) is StreamState.STOPPED
    camera.stop()
    assert sink.frame_numbers == list(range(10)) and sink.all_verified()


def test_run_returns_disconnected_when_the_camera_is_unplugged(make_camera, recording_sink) -> None:
    fake, camera = make_camera(320, 240, 187, faults=[Fault(FaultKind.DISCONNECT, 4)])
    stream = CameraStream(camera, recording_sink(camera.mode.frame_bytes))
    camera.start()
    assert stream.run(threading.Event()) is StreamState.DISCONNECTED
    assert stream.counters.usb_disconnects == 1 and stream.counters.frames_delivered == 4
