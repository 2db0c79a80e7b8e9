"""XDF: what pyxdf itself reads back from the writer's files (timestamps within 1 us, data exact)."""

from __future__ import annotations

import struct
from fractions import Fraction

import numpy as np
import pytest
import pyxdf

from mimir.take import AudioSource, CameraSource, ClockSegment, TakeWriter
from mimir.take.table import read_table
from mimir.take.xdf import (
    StreamInfo,
    XdfWriter,
    block_records,
    seconds,
    truncate_torn_tail,
    varlen,
    walk_chunks,
)

RATE = 48_000
EPOCHS = {
    "2026 epoch, one year in": 31_536_000_123_456_789,
    "unix epoch (1.8e18 ns)": 1_798_765_432_109_876_543,
}


def _exact_error_s(ns: int, s: float) -> Fraction:
    return abs(Fraction(s) - Fraction(ns, 1_000_000_000))


def test_seconds_rounds_once_and_stays_within_a_microsecond_for_any_int64():
    rng = np.random.default_rng(7)
    values = [0, 1, 999_999_999, 10**9, 2**53, 2**53 + 1, 2**62 + 12345, 2**63 - 1,
              *EPOCHS.values(), *(int(v) for v in rng.integers(0, 2**63 - 1, 2000, dtype=np.int64))]
    arr = seconds(np.array(values, dtype=np.int64))
    for ns, s_arr in zip(values, arr.tolist(), strict=True):
        s_int = seconds(ns)
        half_ulp = Fraction(np.spacing(s_int)) / 2
        assert _exact_error_s(ns, s_int) <= half_ulp  # Python's int / int: correctly rounded
        assert _exact_error_s(ns, s_arr) <= 2 * half_ulp  # numpy path: whole seconds exact, one more rounding
        assert _exact_error_s(ns, s_arr) < Fraction(1, 1_000_000)
    # How fine the grid is where Mimir's canonical times live: ~3.7 ns a year after the 2026 epoch.
    assert np.spacing(seconds(EPOCHS["2026 epoch, one year in"])) < 4e-9


def test_varlen_widths():
    assert varlen(255) == b"\x01\xff"
    assert varlen(256) == b"\x04" + struct.pack("<I", 256)
    assert varlen(2**32) == b"\x08" + struct.pack("<Q", 2**32)


@pytest.mark.parametrize("epoch", list(EPOCHS), ids=list(EPOCHS))
def test_pyxdf_gives_back_every_timestamp_within_a_microsecond(take_dir, synth, epoch):
    t0 = EPOCHS[epoch]
    cams = [CameraSource("cam0", 16, 8, "GREY", 60.0), CameraSource("cam1", 16, 8, "YUYV", 187.0)]
    mic = AudioSource("mic", 2, RATE, "float32", channel_labels=["left", "right"])
    frame_ns = {"cam0": [], "cam1": []}
    block_ns, blocks = [], []
    with TakeWriter(take_dir, [*cams, mic], flush_interval_s=0.05) as take:
        take.begin_clock_segment("mic", ClockSegment(0, "locked", 123.5, 48000.01, 0.97, "codebook 7 / emitter A"))
        sample = 0
        for n in range(150):
            for cam, period in (("cam0", 16_666_667), ("cam1", 5_347_594)):
                t = t0 + n * period + 17 * n % 1000  # irregular nanoseconds
                frame_ns[cam].append(t)
                take.write_frame(cam, synth.noise(cams[0 if cam == "cam0" else 1].shape, n), t, sequence=n)
            if n % 2 == 0:
                block = np.random.default_rng(n).standard_normal((256, 2)).astype(np.float32)
                t = t0 + sample * 1_000_000_000 // RATE + 3 * n  # a fitted clock is not exactly nominal
                blocks.append(block)
                block_ns.append(t)
                take.write_audio("mic", block, t, start_sample=sample)
                sample += 256
    streams, header = pyxdf.load_xdf(str(take_dir / "take_00000.xdf"), dejitter_timestamps=False)
    by_name = {s["info"]["name"][0]: s for s in streams}
    assert set(by_name) == {"cam0", "cam1", "mic"}
    assert header["info"]["mimir"][0]["part"] == ["0"]
    for cam in ("cam0", "cam1"):
        s = by_name[cam]
        want = np.array(frame_ns[cam], dtype=np.int64)
        got_ns = np.round(s["time_stamps"] * 1e9).astype(np.int64)
        assert np.abs(got_ns - want).max() < 1000, f"{cam}: off by {np.abs(got_ns - want).max()} ns"
        assert s["info"]["type"] == ["VideoFrameIndex"] and s["info"]["channel_format"] == ["int64"]
        series = s["time_series"]
        assert series[:, 0].tolist() == [0] * 150  # file 00000
        assert series[:, 1].tolist() == list(range(150))  # frame index in the file
        assert series[:, 2].tolist() == list(range(150))  # sequence
        table = read_table(take_dir / cam / "00000.frames.csv")
        assert table["canonical_ns"].tolist() == frame_ns[cam]  # the exact values, for comparison
    s = by_name["mic"]
    stamps = s["time_stamps"]
    assert len(stamps) == 256 * len(blocks)
    first_of_block = stamps[::256]
    err_ns = np.abs(np.round(first_of_block * 1e9).astype(np.int64) - np.array(block_ns))
    assert err_ns.max() < 1000
    assert np.array_equal(s["time_series"].view(np.uint32), np.concatenate(blocks).view(np.uint32))
    desc = s["info"]["desc"][0]
    assert desc["clock"][0]["witness"] == ["codebook 7 / emitter A"]
    assert desc["clock"][0]["state"] == ["locked"]
    assert float(desc["clock"][0]["rate_hz"][0]) == 48000.01
    assert [c["label"][0] for c in desc["channels"][0]["channel"]] == ["left", "right"]
    assert s["info"]["nominal_srate"] == ["48000.0"]
    assert s["footer"]["info"]["sample_count"] == [str(256 * len(blocks))]
    # One zero clock offset per stream: pyxdf adds exactly 0.0 and keeps one clock segment.
    assert s["clock_values"] == [0.0] and s["info"]["clock_segments"] == [(0, len(stamps) - 1)]


def test_a_torn_tail_is_skipped_by_pyxdf_and_cut_by_truncate(tmp_path):
    path = tmp_path / "t.xdf"
    xdf = XdfWriter(path, {"note": "torn"})
    sid = xdf.add_stream(StreamInfo("a", "Audio", 1, 1000.0, "int16", "a"), 1.0)
    xdf.append(sid, block_records(np.arange(10, dtype=np.int16)[:, None], 1.0), 10, 1.0, 1.009)
    xdf.flush()
    whole = path.stat().st_size
    xdf.append(sid, block_records(np.arange(10, 20, dtype=np.int16)[:, None], 2.0), 10, 2.0, 2.009)
    xdf.flush()
    xdf._file.close()
    chunks, good = walk_chunks(path)
    assert good == path.stat().st_size and [c[0] for c in chunks] == [1, 2, 4, 3, 5, 3, 5]
    with open(path, "r+b") as f:  # cut inside the second Samples chunk
        f.truncate(whole + 12)
    streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=False)
    assert streams[0]["time_series"][:, 0].tolist() == list(range(10))
    assert truncate_torn_tail(path) == 12
    assert path.stat().st_size == whole
    streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=False)
    assert streams[0]["time_series"][:, 0].tolist() == list(range(10))
