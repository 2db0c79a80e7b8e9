"""Video files: every pixel format through every encoding, read back with PyAV; timestamps exact via the table."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from mimir.take import CameraSource, TakeWriter, open_take
from mimir.take.pixels import frame_from_payload, layout, payload_from_frame
from mimir.take.table import read_table
from mimir.take.video import FRAME_COLUMNS, pts_ms

FORMATS = ("YUYV", "GRBG", "GREY", "BGR3")
PERIOD_NS = 16_666_667


@pytest.mark.parametrize("encoding", ["ffv1", "raw"])
@pytest.mark.parametrize("pixel_format", FORMATS)
def test_lossless_round_trip_is_bit_exact(take_dir, synth, encoding, pixel_format):
    pat = synth.pattern(pixel_format)
    cam = CameraSource("cam", 32, 24, pixel_format, 60.0, encoding=encoding)
    noise_at = {3, 7}  # a few frames of pure noise: nothing left for the codec to guess
    sent = []
    with TakeWriter(take_dir, [cam]) as take:
        for n in range(12):
            t = synth.T0_NS + n * PERIOD_NS
            frame = synth.noise(cam.shape, n) if n in noise_at else pat.render(n, t)
            sent.append(frame)
            take.write_frame("cam", frame, t, sequence=n, device_time_ns=1000 + n, host_time_ns=2000 + n)
    got = open_take(take_dir).frames("cam")
    assert got.pixels.shape == (12, *cam.shape)
    for n in range(12):
        assert np.array_equal(got.pixels[n], sent[n]), f"frame {n} differs"
        if n not in noise_at:
            assert pat.verify(got.pixels[n]) == (n, synth.T0_NS + n * PERIOD_NS)
    assert got.canonical_ns.tolist() == [synth.T0_NS + n * PERIOD_NS for n in range(12)]
    assert got.sequence.tolist() == list(range(12))
    assert got.device_time_ns.tolist() == [1000 + n for n in range(12)]
    assert got.host_time_ns.tolist() == [2000 + n for n in range(12)]


@pytest.mark.parametrize("pixel_format", FORMATS)
def test_h264_is_lossy_but_close_and_timed(take_dir, synth, pixel_format):
    pat = synth.pattern(pixel_format, 64, 48)
    cam = CameraSource("cam", 64, 48, pixel_format, 60.0, encoding="h264")
    sent = []
    with TakeWriter(take_dir, [cam]) as take:
        for n in range(10):
            t = synth.T0_NS + n * PERIOD_NS
            sent.append(pat.render(n, t))
            take.write_frame("cam", sent[-1], t, sequence=n)
    got = open_take(take_dir).frames("cam")
    assert got.pixels.shape == (10, *cam.shape)
    assert got.canonical_ns.tolist() == [synth.T0_NS + n * PERIOD_NS for n in range(10)]
    assert got.pts_ms.tolist() == [pts_ms(synth.T0_NS + n * PERIOD_NS) for n in range(10)]
    for n in range(10):
        err = np.abs(got.pixels[n].astype(int) - sent[n].astype(int))
        assert err.mean() < 2.5, f"frame {n}: mean error {err.mean():.1f}"


def test_payload_conversions_are_exact_for_every_layout(synth):
    for pixel_format in FORMATS:
        shape = CameraSource("c", 10, 6, pixel_format, 1.0).shape
        payload = synth.noise(shape, 1)
        for encoding in ("ffv1", "raw", "h264"):
            lay = layout(encoding, pixel_format)
            assert np.array_equal(payload_from_frame(frame_from_payload(payload, lay.av_format), pixel_format), payload)


def test_matroska_forces_milliseconds_so_the_table_keeps_the_nanoseconds(tmp_path):
    """The reason for the timestamp table: ask FFmpeg's Matroska muxer for ns, get ms back."""
    path = tmp_path / "probe.mkv"
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("ffv1")
        stream.width, stream.height, stream.pix_fmt = 16, 16, "gray"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1_000_000_000)
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16), np.uint8), format="gray")
        frame.pts, frame.time_base = 1_234_567_891, Fraction(1, 1_000_000_000)
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with av.open(str(path)) as inp:
        assert inp.streams.video[0].time_base == Fraction(1, 1000)
        assert [p.pts for p in inp.demux(video=0) if p.size] == [1235]


def test_nanoseconds_round_trip_exactly_and_pts_is_the_rounded_millisecond(take_dir, synth):
    cam = CameraSource("cam", 16, 8, "GREY", 1000.0)
    # Odd spacings, a half-millisecond tie (rounds up), and two frames 300 us apart (same ms: the later is bumped).
    times = [synth.T0_NS, synth.T0_NS + 1_499_999, synth.T0_NS + 2_500_000 - 123_456_789 % 1_000_000 + 500_000,
             synth.T0_NS + 10_000_000, synth.T0_NS + 10_300_000, synth.T0_NS + 123_456_789_012]
    times = sorted(times)
    with TakeWriter(take_dir, [cam]) as take:
        for n, t in enumerate(times):
            take.write_frame("cam", synth.noise(cam.shape, n), t, sequence=n)
    table = read_table(take_dir / "cam" / "00000.frames.csv", FRAME_COLUMNS)
    assert table["canonical_ns"].tolist() == times
    expected_pts, last = [], None
    for t in times:
        p = pts_ms(t)
        p = last + 1 if last is not None and p <= last else p
        expected_pts.append(p)
        last = p
    assert table["pts"].tolist() == expected_pts
    assert expected_pts[4] == expected_pts[3] + 1  # the bumped one
    got = open_take(take_dir).frames("cam")
    assert got.pts_ms.tolist() == expected_pts  # what PyAV reads from the Matroska file
    assert got.canonical_ns.tolist() == times
    assert pts_ms(1_499_999) == 1 and pts_ms(1_500_000) == 2 and pts_ms(-1) == 0


def test_a_table_that_disagrees_with_its_video_is_refused(take_dir, synth):
    cam = CameraSource("cam", 16, 8, "GREY", 60.0)
    with TakeWriter(take_dir, [cam]) as take:
        for n in range(3):
            take.write_frame("cam", synth.noise(cam.shape, n), synth.T0_NS + n * PERIOD_NS, sequence=n)
    table = take_dir / "cam" / "00000.frames.csv"
    lines = table.read_text().splitlines()
    fields = lines[2].split(",")
    fields[2] = str(int(fields[2]) + 5)  # pts of frame 1
    lines[2] = ",".join(fields)
    table.write_text("\n".join(lines) + "\n")
    from mimir.take import TakeError

    with pytest.raises(TakeError, match="frame 1 has presentation time"):
        open_take(take_dir).frames("cam")
