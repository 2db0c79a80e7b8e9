"""Frame assembly rules, counters, PTS unwrapping, and fast path == payload-by-payload path.

Payloads here are built by hand (not by the fake), from the header layout in
REFERENCE.md section 3, with small frames so cases stay readable.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.camera.ps3eye.assembler import (
    DEFAULT_PTS_CLOCK_HZ, PAYLOAD_BYTES, FrameAssembler, StreamCounters,
)

DATA = PAYLOAD_BYTES - 12
FRAME_BYTES = 3 * DATA + 100  # three full payloads and a short one
EOH, ERR, PTS, EOF, FID = 0x80, 0x40, 0x04, 0x02, 0x01


class ListSink:
    def __init__(self) -> None:
        self.slot = np.zeros(FRAME_BYTES, np.uint8)
        self.frames: list[tuple[bytes, int]] = []

    def claim(self) -> np.ndarray:
        return self.slot

    def publish(self, *, device_time_ns: int, host_time_ns: int, byte_length: int) -> None:
        self.frames.append((self.slot[:byte_length].tobytes(), device_time_ns))


def payload(flags: int, pts: int, data: bytes, header_length: int = 12) -> bytes:
    return bytes([header_length, flags]) + pts.to_bytes(4, "little") + bytes(6) + data


def frame_data(number: int, nbytes: int = FRAME_BYTES) -> bytes:
    return bytes((i * 7 + number * 13) % 256 for i in range(nbytes))


def frame_payloads(number: int, pts: int, *, fid: int | None = None, nbytes: int = FRAME_BYTES,
                   eof: bool = True) -> list[bytes]:
    data = frame_data(number, nbytes)
    flags = EOH | PTS | (number & 1 if fid is None else fid)
    chunks = [data[i:i + DATA] for i in range(0, len(data), DATA)]
    out = [payload(flags, pts, chunk) for chunk in chunks]
    if eof:
        out[-1] = payload(flags | EOF, pts, chunks[-1])
    return out


def run(payloads: list[bytes], read_payloads: int = 64, **kwargs: object) -> tuple[ListSink, StreamCounters]:
    """Feed payloads in reads of up to ``read_payloads``; a short payload ends a read, as on USB."""
    sink = ListSink()
    counters = StreamCounters()
    assembler = FrameAssembler(sink, FRAME_BYTES, counters, **kwargs)
    for chunk in split_reads(payloads, [read_payloads] * len(payloads)):
        buffer = np.frombuffer(b"".join(chunk), np.uint8)
        assembler.feed(buffer, len(buffer))
    return sink, counters


def split_reads(payloads: list[bytes], sizes: list[int]) -> list[list[bytes]]:
    reads: list[list[bytes]] = []
    current: list[bytes] = []
    size_iter = iter(sizes)
    limit = next(size_iter, 1)
    for p in payloads:
        current.append(p)
        if len(p) < PAYLOAD_BYTES or len(current) >= limit:
            reads.append(current)
            current = []
            limit = next(size_iter, 1)
    if current:
        reads.append(current)
    return reads


def nonzero(counters: StreamCounters) -> dict[str, int]:
    skip = {"payloads_seen", "frames_delivered", "bulk_reads", "bulk_bytes"}
    return {name: getattr(counters, name) for name in counters.__struct_fields__
            if name not in skip and getattr(counters, name)}


def test_clean_frames_are_delivered_byte_exact() -> None:
    payloads = [p for n in range(3) for p in frame_payloads(n, 1000 + n)]
    sink, counters = run(payloads)
    assert [f[0] for f in sink.frames] == [frame_data(n) for n in range(3)]
    assert counters.frames_delivered == 3 and counters.payloads_seen == 12
    assert nonzero(counters) == {}


def test_err_payload_mid_frame_abandons_that_frame_only() -> None:
    bad = frame_payloads(1, 1001)
    bad[1] = payload(EOH | PTS | ERR | 1, 1001, bad[1][12:])
    sink, counters = run(frame_payloads(0, 1000) + bad + frame_payloads(2, 1002))
    assert [f[0] for f in sink.frames] == [frame_data(0), frame_data(2)]
    assert nonzero(counters) == {"payloads_error_flag": 1, "frames_abandoned": 1, "payloads_skipped": 2}


def test_payload_without_pts_and_bad_header_are_counted_apart() -> None:
    a = frame_payloads(1, 1001)
    a[2] = payload(EOH | 1, 1001, a[2][12:])
    b = frame_payloads(2, 1002)
    b[1] = payload(EOH | PTS, 1002, b[1][12:], header_length=11)
    sink, counters = run(frame_payloads(0, 1000) + a + b + frame_payloads(3, 1003))
    assert [f[0] for f in sink.frames] == [frame_data(0), frame_data(3)]
    assert nonzero(counters) == {"payloads_without_pts": 1, "payloads_bad_header": 1,
                                 "frames_abandoned": 2, "payloads_skipped": 1 + 2}


def test_missing_eof_discards_the_frame_when_the_next_pts_arrives() -> None:
    sink, counters = run(frame_payloads(0, 1000, eof=False) + frame_payloads(1, 1001))
    assert [f[0] for f in sink.frames] == [frame_data(1)]
    assert nonzero(counters) == {"frames_missing_eof": 1}


def test_wrong_sizes_are_discarded_short_and_long() -> None:
    short = frame_payloads(1, 1001)
    del short[1]
    long = frame_payloads(2, 1002)
    long.insert(1, long[1])
    sink, counters = run(frame_payloads(0, 1000) + short + long + frame_payloads(3, 1003))
    assert [f[0] for f in sink.frames] == [frame_data(0), frame_data(3)]
    # The long frame overflows at its fourth full payload; its EOF payload is then skipped.
    assert nonzero(counters) == {"frames_wrong_size": 2, "payloads_skipped": 1}


def test_fid_toggle_mid_frame_restarts_and_discards_both_halves() -> None:
    toggled = frame_payloads(1, 1001)
    toggled[2:] = [bytes([p[0], p[1] ^ FID]) + p[2:] for p in toggled[2:]]
    sink, counters = run(frame_payloads(0, 1000) + toggled + frame_payloads(2, 1002))
    assert [f[0] for f in sink.frames] == [frame_data(0), frame_data(2)]
    assert nonzero(counters) == {"frames_fid_restart": 1, "frames_wrong_size": 1}
    assert counters.frames_discarded == 2


def test_same_pts_new_fid_starts_a_frame_as_the_rules_say() -> None:
    sink, _ = run(frame_payloads(0, 5000, fid=0) + frame_payloads(1, 5000, fid=1))
    assert len(sink.frames) == 2


def test_pts_is_unwrapped_across_32_bit_wraparound() -> None:
    step = 1 << 28
    raw = [(0xFFFF_FFFF - 2 * step + n * step) & 0xFFFF_FFFF for n in range(6)]
    payloads = [p for n, pts in enumerate(raw) for p in frame_payloads(n, pts)]
    sink, _ = run(payloads, pts_clock_hz=DEFAULT_PTS_CLOCK_HZ)
    ticks = [raw[0] + n * step for n in range(6)]
    assert [f[1] for f in sink.frames] == [t * 10**9 // DEFAULT_PTS_CLOCK_HZ for t in ticks]


def test_pts_stepping_back_is_not_taken_for_a_wrap() -> None:
    sink, _ = run(frame_payloads(0, 10_000_000) + frame_payloads(1, 9_000_000), pts_clock_hz=1_000_000)
    assert [f[1] for f in sink.frames] == [10 * 10**9, 9 * 10**9]


def test_one_claim_per_frame_start_and_a_discarded_frame_reuses_the_slot() -> None:
    claims = []

    class CountingSink(ListSink):
        def claim(self) -> np.ndarray:
            claims.append(len(self.frames))
            return self.slot

    sink = CountingSink()
    assembler = FrameAssembler(sink, FRAME_BYTES)
    for chunk in split_reads(frame_payloads(0, 1, eof=False) + frame_payloads(1, 2), [64, 64]):
        buffer = np.frombuffer(b"".join(chunk), np.uint8)
        assembler.feed(buffer, len(buffer))
    assert claims == [0, 0]  # both claims before any publish: the same slot
    assert len(sink.frames) == 1


FAULTS = st.sampled_from(["none", "none", "none", "err", "nopts", "badhdr", "noeof", "short",
                          "long", "fid", "trailing"])


def faulty_frame(number: int, fault: str, position: int) -> list[bytes]:
    pts = 0xFFFF_FF00 + number * 97  # crosses the 32-bit wrap within the stream
    payloads = frame_payloads(number, pts & 0xFFFF_FFFF, eof=fault != "noeof")
    p = position % 3
    if fault == "err":
        payloads[p] = payload(payloads[p][1] | ERR, pts & 0xFFFF_FFFF, payloads[p][12:])
    elif fault == "nopts":
        payloads[p] = payload(payloads[p][1] & ~PTS, pts & 0xFFFF_FFFF, payloads[p][12:])
    elif fault == "badhdr":
        payloads[p] = bytes([9]) + payloads[p][1:]
    elif fault == "short":
        del payloads[p]
    elif fault == "long":
        payloads.insert(p, payloads[p])
    elif fault == "fid":
        payloads[p:] = [bytes([x[0], x[1] ^ FID]) + x[2:] for x in payloads[p:]]
    elif fault == "trailing":
        payloads.append(payloads[-1])  # a stray payload after EOF, same PTS and FID
    return payloads


@settings(max_examples=60, deadline=None)
@given(frames=st.lists(st.tuples(FAULTS, st.integers(0, 2)), min_size=1, max_size=12),
       read_sizes=st.lists(st.integers(1, 9), min_size=1, max_size=40))
def test_any_read_split_gives_the_same_result_as_payload_by_payload(
        frames: list[tuple[str, int]], read_sizes: list[int]) -> None:
    payloads = [p for n, (fault, pos) in enumerate(frames) for p in faulty_frame(n, fault, pos)]
    reference_sink, reference = run(payloads, read_payloads=1)
    sink = ListSink()
    counters = StreamCounters()
    assembler = FrameAssembler(sink, FRAME_BYTES, counters)
    for chunk in split_reads(payloads, read_sizes):
        buffer = np.frombuffer(b"".join(chunk), np.uint8)
        assembler.feed(buffer, len(buffer))
    assert sink.frames == reference_sink.frames
    assert counters == reference
    clean = [n for n, (fault, pos) in enumerate(frames)
             if fault in ("none", "trailing") or (fault == "fid" and pos % 3 == 0)]
    assert [f[0] for f in sink.frames] == [frame_data(n) for n in clean]
