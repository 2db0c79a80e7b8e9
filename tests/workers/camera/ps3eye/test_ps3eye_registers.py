"""The register tables and the mode table are self-consistent and match the references."""

from __future__ import annotations

import pytest

from workers.camera.ps3eye import registers as r


@pytest.mark.parametrize("size", [(640, 480), (320, 240)])
def test_start_tables_program_the_frame_size_of_their_resolution(size: tuple[int, int]) -> None:
    assert r.encoded_frame_bytes(r.BRIDGE_START[size]) == size[0] * size[1]


def test_init_table_programs_raw8_vga_with_2048_byte_payloads() -> None:
    bank = [value for register, value in r.BRIDGE_INIT if register == r.BRIDGE_VIDEO_FORMAT_DATA]
    assert bank[0] == 0x00  # RAW8
    assert ((bank[1] << 8) | bank[2]) * 4 == 2048
    assert r.encoded_frame_bytes(r.BRIDGE_INIT) == 640 * 480


def test_qvga_sensor_start_sets_the_qvga_bit_and_vga_does_not() -> None:
    com7 = {size: dict(table)[r.SENSOR_COM7] for size, table in r.SENSOR_START.items()}
    assert com7[(320, 240)] & 0x40 and not com7[(640, 480)] & 0x40
    assert all(value & 0x01 for value in com7.values())  # raw Bayer in both


def test_modes_are_exactly_the_issue_list() -> None:
    vga = sorted(m.fps for m in r.SUPPORTED_MODES if m.width == 640)
    qvga = sorted(m.fps for m in r.SUPPORTED_MODES if m.width == 320)
    assert vga == [15, 30, 40, 50, 60, 75]
    assert max(qvga) == 187 == r.FASTEST_FPS
    assert all(m.frame_bytes == m.width * m.height for m in r.SUPPORTED_MODES)


def test_rate_registers_match_ps3eyedriver_values() -> None:
    assert r.find_mode(320, 240, 187).rate == r.RateRegisters(0x01, 0x81, 0x02)
    assert r.find_mode(640, 480, 75).rate == r.RateRegisters(0x01, 0x81, 0x02)
    assert r.find_mode(640, 480, 30).rate == r.RateRegisters(0x04, 0x81, 0x02)


def test_unsupported_mode_lists_every_supported_mode() -> None:
    with pytest.raises(ValueError) as caught:
        r.find_mode(640, 480, 90)
    message = str(caught.value)
    assert "640x480 at 90 fps" in message
    assert "640x480 at 15/30/40/50/60/75 fps" in message
    assert "320x240 at 30/37/40/50/60/75/90/100/125/137/150/187 fps" in message
