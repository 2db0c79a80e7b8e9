"""The real driver against the fake camera: discovery, init, SCCB, modes, controls, start/stop.

Register values that matter are written out literally here (from REFERENCE.md
and the reference drivers), not taken from the driver's own tables.
"""

from __future__ import annotations

import pytest
import usb.core

from workers.camera.ps3eye import registers as r
from workers.camera.ps3eye.device import (
    CameraNotFoundError, PS3Eye, SensorError, find_cameras, open_camera,
)
from workers.camera.ps3eye.fake import FakePS3Eye, FakeUSBBackend

NO_WAIT = {"bridge_reset_wait_s": 0.0, "sensor_reset_wait_s": 0.0}


def last_write(writes: list[tuple[int, int]], register: int) -> int:
    return [value for reg, value in writes if reg == register][-1]


# -- discovery ---------------------------------------------------------------------------

def test_pyusb_finds_the_fake_camera_by_vendor_and_product() -> None:
    fake = FakePS3Eye()
    device = usb.core.find(idVendor=0x1415, idProduct=0x2000, backend=FakeUSBBackend([fake]))
    assert device is not None and device.address == fake.address


def test_no_camera_error_lists_the_devices_found(other_devices) -> None:
    with pytest.raises(CameraNotFoundError) as caught:
        open_camera(FakeUSBBackend(other_devices()), **NO_WAIT)
    message = str(caught.value)
    assert "1415:2000" in message and "0 PS3 Eye(s) present" in message
    assert "046d:c52b bus 1 address 3 (USB Receiver)" in message
    assert "1d6b:0002 bus 1 address 1 (EHCI Host Controller)" in message


def test_no_devices_at_all_is_said_plainly() -> None:
    with pytest.raises(CameraNotFoundError, match="no USB devices at all"):
        open_camera(FakeUSBBackend([]), **NO_WAIT)


def test_a_disconnected_camera_is_not_found() -> None:
    fake = FakePS3Eye()
    fake.disconnect()
    assert find_cameras(FakeUSBBackend([fake])) == []


def test_cameras_are_ordered_by_port_and_picked_by_index(other_devices) -> None:
    far, near = FakePS3Eye(address=9), FakePS3Eye(address=5)
    backend = FakeUSBBackend([far, *other_devices(), near])
    assert [d.address for d in find_cameras(backend)] == [5, 9]
    camera = open_camera(backend, index=1, **NO_WAIT)
    try:
        assert camera.port_path == "1-9"
        assert far.bridge_writes and not near.bridge_writes
    finally:
        camera.close()
    with pytest.raises(CameraNotFoundError, match=r"#2 .*2 PS3 Eye\(s\) present"):
        open_camera(backend, index=2, **NO_WAIT)


def test_a_bound_kernel_driver_is_detached_before_claiming() -> None:
    fake = FakePS3Eye()
    fake.kernel_driver_bound.add(0)
    camera = open_camera(FakeUSBBackend([fake]), **NO_WAIT)
    try:
        assert 0 in fake.claimed and not fake.kernel_driver_bound
    finally:
        camera.close()
    assert 0 not in fake.claimed


def test_unsupported_mode_is_refused_before_touching_the_device() -> None:
    fake = FakePS3Eye()
    with pytest.raises(ValueError, match=r"320x240 at 200 fps.*640x480 at 15/30/40/50/60/75 fps"):
        open_camera(FakeUSBBackend([fake]), width=320, height=240, fps=200, **NO_WAIT)
    assert fake.bridge_writes == []


# -- init --------------------------------------------------------------------------------

def test_init_resets_bridge_then_sensor_and_loads_both_tables(make_camera) -> None:
    fake, camera = make_camera()
    writes = fake.bridge_writes
    assert writes[:3] == [(0xE7, 0x3A), (0xE0, 0x08), (0xF1, 0x42)]  # bridge reset, sensor address
    assert fake.sensor_writes[0] == (0x12, 0x80)  # sensor reset before anything else
    assert camera.sensor_id == 0x7721
    init_start = writes.index((0x92, 0x01))
    assert writes[init_start - 2:init_start + len(r.BRIDGE_INIT) - 2] == list(r.BRIDGE_INIT)
    assert fake.sensor_writes[1:] == list(r.SENSOR_INIT)
    assert last_write(writes, 0xE0) == 0x09  # left stopped
    assert not fake.led_on and not fake.streaming


def test_init_polls_sccb_status_through_busy() -> None:
    fake = FakePS3Eye(sccb_busy_polls=4)  # four 0x03 reads, then 0x00 on the fifth poll
    camera = open_camera(FakeUSBBackend([fake]), **NO_WAIT)
    camera.close()
    assert camera.sensor_id == 0x7721


def test_sccb_that_stays_busy_is_an_error() -> None:
    fake = FakePS3Eye(sccb_busy_polls=5)
    with pytest.raises(SensorError, match="still busy after 5 polls"):
        open_camera(FakeUSBBackend([fake]), **NO_WAIT)


def test_sccb_nack_is_an_error() -> None:
    fake = FakePS3Eye()
    fake.sensor_nack = True
    with pytest.raises(SensorError, match=r"write 0x12 failed \(status 0x04\)"):
        open_camera(FakeUSBBackend([fake]), **NO_WAIT)


def test_a_sensor_that_is_not_an_ov772x_is_refused() -> None:
    with pytest.raises(SensorError, match="sensor id 0x7673"):
        open_camera(FakeUSBBackend([FakePS3Eye(sensor_id=0x7673)]), **NO_WAIT)


# -- modes and start/stop --------------------------------------------------------------

@pytest.mark.parametrize("mode", r.SUPPORTED_MODES, ids=str)
def test_start_programs_every_supported_mode(make_camera, mode: r.Mode) -> None:
    fake, camera = make_camera(mode.width, mode.height, mode.fps)
    camera.start()
    assert fake.streaming
    assert fake.payload_bytes == 2048 and fake.frame_bytes == mode.width * mode.height
    assert fake.configured_mode == mode


def test_qvga_187_rate_registers_literally(make_camera) -> None:
    fake, camera = make_camera(320, 240, 187)
    camera.start()
    assert (fake.sensor[0x11], fake.sensor[0x0D], fake.bridge[0xE5]) == (0x01, 0x81, 0x02)
    assert fake.sensor[0x12] == 0x41  # QVGA, raw Bayer


def test_start_ends_with_led_on_and_stream_start_and_stop_reverses_it(make_camera) -> None:
    fake, camera = make_camera()
    camera.start()
    assert fake.bridge_writes[-1] == (0xE0, 0x00)
    assert fake.led_on and camera.streaming
    camera.stop()
    assert last_write(fake.bridge_writes, 0xE0) == 0x09
    assert not fake.led_on and not fake.streaming and not camera.streaming


def test_mode_cannot_change_while_streaming(make_camera) -> None:
    _, camera = make_camera()
    camera.start()
    with pytest.raises(RuntimeError, match="stop the stream"):
        camera.set_mode(640, 480, 30)
    camera.stop()
    assert camera.set_mode(640, 480, 30) == r.Mode(640, 480, 30)


def test_start_before_initialize_is_refused() -> None:
    fake = FakePS3Eye()
    device = usb.core.find(idVendor=0x1415, idProduct=0x2000, backend=FakeUSBBackend([fake]))
    camera = PS3Eye(device)
    camera.open()
    try:
        with pytest.raises(RuntimeError, match="initialize"):
            camera.start()
    finally:
        camera.close()


def test_stop_and_close_tolerate_an_unplugged_camera(make_camera) -> None:
    fake, camera = make_camera()
    camera.start()
    fake.disconnect()
    camera.stop()
    camera.close()
    camera.close()
    with pytest.raises(usb.core.USBError):
        camera.set_led(True)


# -- controls ------------------------------------------------------------------------------

def test_gain_maps_its_coarse_range_to_the_sensor_thermometer_code(make_camera) -> None:
    fake, camera = make_camera()
    for gain, register in [(5, 0x05), (0x1A, 0x3A), (37, 0x75), (63, 0xFF)]:
        camera.set_gain(gain)
        assert fake.sensor[0x00] == register


def test_exposure_is_split_across_aech_and_aec(make_camera) -> None:
    fake, camera = make_camera()
    camera.set_exposure(200)
    assert (fake.sensor[0x08], fake.sensor[0x10]) == (0x01, 0x90)
    camera.set_exposure(100)
    assert (fake.sensor[0x08], fake.sensor[0x10]) == (0x00, 0xC8)


def test_auto_gain_toggles_agc_aec_and_restores_manual_values(make_camera) -> None:
    fake, camera = make_camera()
    camera.set_gain(10)
    camera.set_exposure(50)
    camera.set_auto_gain(True)
    assert fake.sensor[0x13] & 0x05 == 0x05 and fake.sensor[0x64] & 0x03 == 0x03
    fake.sensor[0x00] = 0x00  # the sensor's own AGC moved the gain
    camera.set_auto_gain(False)
    assert fake.sensor[0x13] & 0x05 == 0 and fake.sensor[0x64] & 0x03 == 0
    assert fake.sensor[0x00] == 10 and fake.sensor[0x10] == 100


def test_auto_white_balance_toggles_com8_and_awb_ctrl(make_camera) -> None:
    fake, camera = make_camera()
    camera.set_auto_white_balance(True)
    assert fake.sensor[0x13] & 0x02 and fake.sensor[0x63] & 0xC0 == 0xC0
    camera.set_auto_white_balance(False)
    assert not fake.sensor[0x13] & 0x02 and fake.sensor[0x63] & 0xC0 == 0


@pytest.mark.parametrize(("horizontal", "vertical", "bits"),
                         [(False, False, 0xC0), (True, False, 0x80), (False, True, 0x40), (True, True, 0x00)])
def test_flip_bits_are_inverted_on_this_sensor(make_camera, horizontal: bool, vertical: bool,
                                               bits: int) -> None:
    fake, camera = make_camera()
    camera.set_flip(horizontal=horizontal, vertical=vertical)
    assert fake.sensor[0x0C] & 0xC0 == bits


def test_controls_set_before_init_are_applied_at_start() -> None:
    fake = FakePS3Eye()
    device = usb.core.find(idVendor=0x1415, idProduct=0x2000, backend=FakeUSBBackend([fake]))
    camera = PS3Eye(device, **NO_WAIT)
    camera.set_gain(33)
    camera.set_auto_white_balance(True)
    camera.set_flip(horizontal=True, vertical=True)
    assert fake.bridge_writes == []  # not opened yet: nothing sent
    camera.open()
    camera.initialize()
    camera.start()
    try:
        assert fake.sensor[0x00] == 0x71
        assert fake.sensor[0x13] & 0x02 and fake.sensor[0x0C] & 0xC0 == 0
    finally:
        camera.close()


def test_control_ranges_are_checked(make_camera) -> None:
    _, camera = make_camera()
    with pytest.raises(ValueError, match="gain must be in 0..63"):
        camera.set_gain(64)
    with pytest.raises(ValueError, match="exposure must be in 0..255"):
        camera.set_exposure(-1)
