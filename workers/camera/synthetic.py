"""The ``synthetic`` family: deterministic moving test cameras with a decodable stamp in every frame.

Frame content (any resolution, YUYV / BGR3 / GREY / GRBG, any fps)
    Bytes are addressed as rows of ``stride_bytes``. Frame ``n`` shows rows
    ``o .. o+height`` of a diagonal ramp ``value(row, group, k) = (3*row +
    group + 85*k) mod 256`` (``group`` = pixel group: 2 px for YUYV, 1 px
    otherwise; ``k`` = byte within the group), ``o = (STEP_ROWS * n) mod 256``:
    the pattern scrolls up ``STEP_ROWS`` rows per frame and repeats every 256
    frames. Frame ``n`` is a pure function of ``n``, and rendering it is one
    contiguous copy (plus the stamp).

    The top band carries the stamp: 192 bits (``sequence``, ``timestamp_ns``
    and a check word, three little-endian u64) as cells of 4 bytes by 4 rows
    (2x2 or 1x1 in frames too small for that; the stamp must fit in the top
    half), each cell all 0x00 or all 0xFF, bits filling the band row-major;
    unused band bytes are 0. :func:`verify_frame` decodes the stamp, checks
    the check word, and compares every byte below the band with the ramp of
    that sequence: a torn frame (stamp of one frame, rows of another) or a
    corrupted byte fails. The stamped ``sequence`` is the device's frame
    number ``n``; the descriptor's ``sequence`` is the ring's (they differ by
    the frames the device dropped).

Timing
    Frame ``n`` is due at ``t0 + n * period_ns`` (absolute deadlines: no
    drift; ``t0`` is staggered by ``index/8`` of a period between devices,
    as unsynchronised cameras are). Its ``device_time_ns`` is that deadline.
    Like a driver with a queue of ``QUEUE_FRAMES`` buffers, a frame may be
    delivered up to that many periods late; later than that the missed
    frames are skipped and counted as dropped by the device, and the stamp's
    sequence jumps.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache

import numpy as np

from mimir.descriptors import PixelFormat

from .family import CameraMode, DeviceInfo, DiscoveryHints, FrameSink, ModeRequest, UnsupportedMode, format_name
from .sink import shaped_claim

__all__ = [
    "SyntheticFamily", "SyntheticCamera", "SyntheticPattern", "FrameMismatch", "verify_frame",
    "DEFAULT_MODE", "SUPPORTED_FORMATS",
]

STEP_ROWS = 3  # scroll per frame; coprime with 256 so the pattern cycles every 256 frames
PERIOD_ROWS = 256
CELL_BYTES = 4
CELL_ROWS = 4
STAMP_WORDS = 3
STAMP_BITS = STAMP_WORDS * 64
_CHECK_SALT = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
QUEUE_FRAMES = 4
_MAX_SLEEP_NS = 100_000_000  # bounds the stop latency at low frame rates
SUPPORTED_FORMATS = (PixelFormat.YUYV, PixelFormat.BGR3, PixelFormat.GREY, PixelFormat.GRBG)
DEFAULT_MODE = CameraMode(640, 480, 60.0, PixelFormat.YUYV)
_GROUP_BYTES = {PixelFormat.YUYV: 4, PixelFormat.BGR3: 3, PixelFormat.GREY: 1, PixelFormat.GRBG: 1}


class FrameMismatch(AssertionError):
    """A frame does not carry a valid stamp, or its pixels differ from the pattern of its stamp."""


def _check_word(sequence: int, timestamp_ns: int) -> int:
    return ((sequence * _CHECK_SALT) ^ timestamp_ns ^ 0x4D494D4952) & _MASK64


class SyntheticPattern:
    """Renders and verifies frames of one mode. Render into preallocated memory only (no allocation)."""

    def __init__(self, mode: CameraMode) -> None:
        if mode.pixel_format not in SUPPORTED_FORMATS:
            raise UnsupportedMode(f"synthetic: format {mode} not supported; formats: YUYV, BGR3, GREY, GRBG")
        self.mode = mode
        self.stride = mode.stride_bytes
        self.height = mode.height
        self.group_bytes = _GROUP_BYTES[mode.pixel_format]
        if mode.pixel_format == PixelFormat.YUYV and mode.width % 2:
            raise UnsupportedMode(f"synthetic: YUYV needs an even width, got {mode.width}")
        # Stamp cells: 4x4 bytes where they fit in half the frame, else 2x2, else 1x1.
        for cell_bytes, cell_rows in ((CELL_BYTES, CELL_ROWS), (2, 2), (1, 1)):
            bits_per_row = self.stride // cell_bytes
            lines = -(-STAMP_BITS // bits_per_row) if bits_per_row else self.height
            if lines * cell_rows * 2 <= self.height:
                break
        else:
            raise UnsupportedMode(
                f"synthetic: {mode} is too small for the {STAMP_BITS}-bit stamp "
                f"(it needs {STAMP_BITS} B in the top half of the frame)"
            )
        self.cell_bytes = cell_bytes
        self.cell_height = cell_rows
        self.cell_rows = lines
        self.band_rows = lines * cell_rows
        # Base ramp, tall enough for every scroll offset: (height + one period) rows x stride.
        gb = self.group_bytes
        cols = np.arange(self.stride)
        rows = np.arange(self.height + PERIOD_ROWS)[:, None]
        self.base = ((3 * rows + cols // gb + 85 * (cols % gb)) & 0xFF).astype(np.uint8)
        # Stamp machinery: words -> bytes -> (LUT) cell bytes of the band's first cell row.
        self._words = np.zeros(STAMP_WORDS, dtype="<u8")
        self._word_bytes = self._words.view(np.uint8)
        bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
        self._lut = np.repeat(bits * np.uint8(255), cell_bytes, axis=1)  # (256, 8 * cell_bytes)
        self._line = np.zeros(self.cell_rows * self.stride, dtype=np.uint8)
        self._line_cells = self._line[: STAMP_BITS * cell_bytes].reshape(STAMP_WORDS * 8, 8 * cell_bytes)
        self._band_src = self._line.reshape(self.cell_rows, 1, self.stride)

    def offset_rows(self, sequence: int) -> int:
        return (sequence * STEP_ROWS) % PERIOD_ROWS

    def render_into(self, rows: np.ndarray, sequence: int, timestamp_ns: int) -> None:
        """Write frame ``sequence`` stamped with ``timestamp_ns`` into ``rows`` ((height, stride) uint8)."""
        band = self.band_rows
        off = self.offset_rows(sequence)
        np.copyto(rows[band:], self.base[off + band:off + self.height])
        words = self._words
        words[0] = sequence
        words[1] = timestamp_ns
        words[2] = _check_word(sequence, timestamp_ns)
        np.take(self._lut, self._word_bytes, axis=0, out=self._line_cells)
        np.copyto(rows[:band].reshape(self.cell_rows, self.cell_height, self.stride), self._band_src)

    def render(self, sequence: int, timestamp_ns: int) -> np.ndarray:
        """A new frame in the mode's payload shape (allocates: for tests and tools)."""
        out = np.empty(self.mode.payload_shape, dtype=np.uint8)
        self.render_into(out.reshape(self.height, self.stride), sequence, timestamp_ns)
        return out

    def decode_stamp(self, rows: np.ndarray) -> tuple[int, int]:
        """``(sequence, timestamp_ns)`` from the band; :class:`FrameMismatch` if the band is not a valid stamp."""
        band = rows[: self.band_rows].reshape(self.cell_rows, self.cell_height, self.stride)
        if not (band == band[:, :1, :]).all():
            raise FrameMismatch("stamp band rows differ within a cell (torn or foreign frame)")
        line = band[:, 0, :].reshape(-1)
        cells = line[: STAMP_BITS * self.cell_bytes].reshape(STAMP_BITS, self.cell_bytes)
        if line[STAMP_BITS * self.cell_bytes:].any():
            raise FrameMismatch("stamp band padding is not zero")
        first = cells[:, :1]
        if not ((cells == first).all() and np.isin(first, (0, 255)).all()):
            raise FrameMismatch("stamp cells are not uniform 0x00/0xFF")
        raw = np.packbits(first[:, 0] == 255, bitorder="little").view("<u8")
        sequence, timestamp_ns, check = (int(v) for v in raw)
        if check != _check_word(sequence, timestamp_ns):
            raise FrameMismatch(f"stamp check word mismatch (decoded sequence {sequence}, timestamp {timestamp_ns})")
        return sequence, timestamp_ns

    def verify(self, pixels: np.ndarray) -> tuple[int, int]:
        """Decode the stamp and check every byte below it against the pattern of that sequence."""
        if pixels.size != self.mode.byte_length:
            raise FrameMismatch(f"frame has {pixels.size} B, mode {self.mode} has {self.mode.byte_length} B")
        rows = np.ascontiguousarray(pixels).reshape(self.height, self.stride)
        sequence, timestamp_ns = self.decode_stamp(rows)
        off = self.offset_rows(sequence)
        expected = self.base[off + self.band_rows:off + self.height]
        body = rows[self.band_rows:]
        if not np.array_equal(body, expected):
            bad = np.argwhere(body != expected)
            r, c = (int(v) for v in bad[0])
            raise FrameMismatch(
                f"frame stamped sequence {sequence}: {len(bad)} bytes differ from its pattern, first at "
                f"row {r + self.band_rows} byte {c} (got {int(body[r, c])}, expected {int(expected[r, c])})"
            )
        return sequence, timestamp_ns


@lru_cache(maxsize=16)
def _pattern(mode: CameraMode) -> SyntheticPattern:
    return SyntheticPattern(mode)


def verify_frame(pixels: np.ndarray, mode: CameraMode) -> tuple[int, int]:
    """Decode a synthetic frame: ``(sequence, timestamp_ns)``; raises :class:`FrameMismatch` if it is not intact."""
    return _pattern(mode).verify(pixels)


class SyntheticCamera:
    """One synthetic device: renders frames into the sink on absolute deadlines."""

    def __init__(self, device: DeviceInfo, mode: CameraMode, *, queue_frames: int = QUEUE_FRAMES) -> None:
        self.device = device
        self.mode = mode
        self.pattern = SyntheticPattern(mode)
        self.queue_frames = queue_frames
        self.dropped = 0
        self.next_sequence = 0  # frame index of the next frame (continues across capture() calls)

    def capture(self, sink: FrameSink, stop: threading.Event) -> None:
        claim_rows = shaped_claim(sink, (self.pattern.height, self.pattern.stride))
        render_into = self.pattern.render_into
        period_ns = self.mode.period_ns
        late_limit_ns = self.queue_frames * period_ns
        byte_length = self.mode.byte_length
        monotonic_ns = time.monotonic_ns
        sleep = time.sleep
        n = self.next_sequence
        t0 = monotonic_ns() - n * period_ns + (self.device.index % 8) * period_ns // 8  # stagger phases
        while not stop.is_set():
            deadline = t0 + n * period_ns
            now = monotonic_ns()
            if now < deadline:
                sleep(min(deadline - now, _MAX_SLEEP_NS) * 1e-9)
                continue  # re-check stop and the clock
            late = now - deadline
            if late > late_limit_ns:
                skip = late // period_ns
                n += skip
                self.dropped += skip
                deadline = t0 + n * period_ns
            rows = claim_rows()
            render_into(rows, n, deadline)
            sink.publish(device_time_ns=deadline, host_time_ns=monotonic_ns(), byte_length=byte_length)
            n += 1
            self.next_sequence = n

    def device_counters(self) -> tuple[int, int]:
        return self.dropped, 0

    def close(self) -> None:
        pass


class SyntheticFamily:
    """Virtual devices ``synthetic:0`` ...: one for every index asked for (``--count N`` makes 0..N-1 exist,
    ``--device 3`` makes 0..3 exist); every supported mode is available."""

    name = "synthetic"

    def discover(self, hints: DiscoveryHints) -> list[DeviceInfo]:
        count = hints.count if hints.count is not None else 1
        indices = [int(s) for s in hints.specs if s.isdigit()]
        if indices:
            count = max(count, max(indices) + 1)  # virtual devices: the ones named exist
        return [DeviceInfo(self.name, i, str(i), f"synthetic pattern {i}") for i in range(count)]

    def open(self, device: DeviceInfo, request: ModeRequest) -> SyntheticCamera:
        d = DEFAULT_MODE
        fmt = request.pixel_format if request.pixel_format is not None else d.pixel_format
        if fmt not in SUPPORTED_FORMATS:
            raise UnsupportedMode(
                f"synthetic: format {format_name(fmt)} not supported; supported modes: any WxH (stamp permitting) "
                f"at any fps in {', '.join(format_name(f) for f in SUPPORTED_FORMATS)}"
            )
        mode = CameraMode(
            request.width or d.width, request.height or d.height, request.fps or d.fps, fmt,
        )
        return SyntheticCamera(device, mode)
