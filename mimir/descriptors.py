"""Fixed binary descriptors shared by workers, rings, the reservoir and consumers.

Every record here is a msgspec Struct whose fields carry their binary type
(:mod:`ringbuf.layout`); numpy dtypes and struct packers are derived from these
declarations and nowhere else. Sizes match the upstream C ABI where one exists
(sample handle 48 B, audio block 40 B, render packet 64 B, render point 56 B);
:data:`EXPECTED_SIZES` pins them and the tests check it.

Payload handles
    A payload handle is a 64-bit value any process attached to the rig can
    resolve: ``ring_id << 48 | item_sequence`` (see :func:`make_handle`). The
    ring id is a 16-bit id of the ring (hash of its name); the item sequence is
    the 0-based publish counter of that ring, so the slot is
    ``sequence % capacity`` and the slot's seqlock word tells whether the item
    is still there. 48 bits of sequence last 8.9 years at a million items/s.
"""

from __future__ import annotations

import enum

import msgspec

from ringbuf.layout import F32, F64, I64, U32, U64

__all__ = [
    "SampleKind", "SampleHandle", "AudioBlockDescriptor", "AudioBlockRecord",
    "CameraFrameDescriptor", "CameraFeature", "RenderPacketDescriptor", "RenderPoint",
    "SampleFormat", "PixelFormat", "FLAG_DIAGNOSTIC", "EXPECTED_SIZES",
    "make_handle", "split_handle", "fourcc", "FitsHeader", "FitRow", "MAX_FIT_ROWS",
]

FLAG_DIAGNOSTIC = 1 << 0
HANDLE_SEQUENCE_BITS = 48
HANDLE_SEQUENCE_MASK = (1 << HANDLE_SEQUENCE_BITS) - 1


class SampleKind(enum.IntEnum):
    CAMERA_FRAME = 0
    CAMERA_FEATURE = 1
    SCENE_RAY = 2
    SURFACE_CLAIM = 3
    MATERIAL_CLAIM = 4
    AUDIO_BLOCK = 5
    PHASE_CLAIM = 6
    EVENT_CLAIM = 7
    RENDER_PACKET = 8


class SampleFormat(enum.IntEnum):
    """Audio sample formats (upstream: 1 = f32 interleaved)."""

    F32_INTERLEAVED = 1
    I32_INTERLEAVED = 2
    I16_INTERLEAVED = 3


def fourcc(code: str) -> int:
    """The little-endian 32-bit FOURCC of a 4-character pixel format code."""
    if len(code) != 4:
        raise ValueError(f"FOURCC must have 4 characters, got {code!r}")
    return int.from_bytes(code.encode("ascii"), "little")


class PixelFormat(enum.IntEnum):
    YUYV = fourcc("YUYV")
    GRBG = fourcc("GRBG")  # 8-bit Bayer, as the PS3 Eye sends it
    BGR3 = fourcc("BGR3")  # packed 8-bit BGR, OpenCV's native layout
    GREY = fourcc("GREY")
    MJPG = fourcc("MJPG")


class SampleHandle(msgspec.Struct):
    """One indexed sample in the reservoir (upstream LocalcastSampleHandle, 48 B)."""

    sensor_id_hash: U64
    timestamp_ns: U64
    arrival_ns: U64
    sequence: U64
    payload_handle: U64
    flags: U32
    reserved: U32


class AudioBlockDescriptor(msgspec.Struct):
    """Upstream LocalcastAudioBlockDescriptor (40 B)."""

    data_handle: U64
    frame_count: U32
    channel_count: U32
    sample_rate_hz: U32
    sample_format: U32
    start_sample: U64
    channel_layout_hash: U64


class AudioBlockRecord(AudioBlockDescriptor):
    """What the audio worker publishes per block: the descriptor plus the driver's timing.

    ``adc_time_ns`` is the block's first input sample's ADC time on the
    stream clock (PortAudio ``inputBufferAdcTime``; the driver's sample
    position: ASIO's ``bufferSwitchTimeInfo``), ``stream_time_ns`` the stream
    clock when the callback was invoked (``currentTime``) and
    ``host_time_ns`` the host monotonic clock (``time.monotonic_ns``) at
    callback entry. The supervisor places ADC times on the host clock with
    the smallest ``host_time_ns - stream_time_ns`` seen (a late callback only
    makes that difference larger), so block timing follows the driver's
    clock, not when the callback happened to run; 0 in either driver field
    means the backend gives none, and the entry time is used.
    ``status_flags`` are the callback's xrun flags (bit 0 input overflow,
    bit 1 output underflow).
    """

    adc_time_ns: I64
    host_time_ns: U64
    status_flags: U32
    callback_ns: U32
    stream_time_ns: I64


class CameraFrameDescriptor(msgspec.Struct):
    """One captured frame (64 B): what the boundary map's frame ABI names.

    ``device_time_ns`` is the driver's timestamp where the driver gives one
    (V4L2 buffer time, Media Foundation sample time, PS3 Eye PTS scaled to ns),
    0 where it does not. ``host_time_ns`` is ``time.monotonic_ns`` at receipt.
    """

    source_id_hash: U64
    sequence: U64
    device_time_ns: U64
    host_time_ns: U64
    width: U32
    height: U32
    pixel_format: U32
    stride_bytes: U32
    byte_length: U64
    payload_handle: U64


class CameraFeature(msgspec.Struct):
    """Motion features of one camera frame against the previous one (48 B; :mod:`mimir.gpu.features` defines them).

    ``source_id_hash`` and ``sequence`` name the frame (its camera's source
    hash and ``CameraFrameDescriptor.sequence``); ``canonical_ns`` is the
    frame's canonical time, filled by the supervisor (a producer writes 0).
    """

    source_id_hash: U64
    sequence: U64
    canonical_ns: U64
    previous_sequence: U64
    motion_energy: F32
    changed_fraction: F32
    mean_luma: F32
    changed_threshold: U32


class RenderPacketDescriptor(msgspec.Struct):
    """Upstream LocalcastRenderPacketDescriptor (64 B)."""

    point_buffer_handle: U64
    point_count: U32
    point_stride_bytes: U32
    target_width: U32
    target_height: U32
    source_time_min_ns: U64
    source_time_max_ns: U64
    present_time_ns: U64
    audio_alignment_time_ns: U64
    metadata_handle: U64


class RenderPoint(msgspec.Struct):
    """Upstream LocalcastRenderPoint (56 B)."""

    stable_key_hash: U64
    source_timestamp_ns: U64
    x: F32
    y: F32
    z: F32
    radius_m: F32
    red: F32
    green: F32
    blue: F32
    alpha: F32
    confidence: F32
    reserved: U32 = 0  # the C struct's tail padding to 8-byte alignment (52 -> 56 B)


MAX_FIT_ROWS = 32  # fit rows per snapshot of the sync worker's fits ring (one per audio channel)


class FitsHeader(msgspec.Struct):
    """One clock-fit snapshot of the sync worker (ring ``sync.fits``, object :data:`mimir.topology.FITS`).

    The payload is :data:`MAX_FIT_ROWS` :class:`FitRow` records, the first
    ``sources`` of them valid. Written only by the sync worker
    (``workers.sync``), read with ``RingReader.latest()`` by the supervisor:
    never torn, no JSON.
    """

    sources: U32
    sample_rate_hz: U32
    published_host_ns: U64
    blocks_read: U64
    blocks_lost: U64            # audio blocks the sync worker could not read in time (ring overrun)
    stream_pid: U64             # writer pid of the audio ring these fits were measured on (its stream)


class FitRow(msgspec.Struct):
    """One audio channel's clock fit: ``device_sample = local_sample_at_epoch + canonical_s * rate_hz``.

    The names are the sync report's (:class:`mimir.sync.report.ClockFitReport`,
    :class:`mimir.sync.report.Health`, :class:`mimir.sync.report.PathProfile`); 0 where the report has
    none (not locked), NaN for the path profile's figures (0 is a real DRR).
    """

    channel: U32
    locked: U32
    local_sample_at_epoch: F64  # device sample at canonical second 0
    rate_hz: F64                # effective sample rate of the device clock
    confidence: F32
    mae_samples: F32
    anchors_accepted: U64
    anchors_rejected: U64
    samples_consumed: U64
    locks: U32
    relocks: U32
    discontinuities: U32
    # the channel's path profile (mimir.sync.report.PathProfile); NaN where the report has none yet
    strongest_minus_direct_ms: F32  # the strongest arrival after the direct path the fit times
    drr_db: F32                     # direct-to-reverberant ratio (the room measurement)
    rt60_s: F32                     # reverberation time (the room measurement: T20, else EDT)


EXPECTED_SIZES = {
    SampleHandle: 48,
    AudioBlockDescriptor: 40,
    CameraFrameDescriptor: 64,
    CameraFeature: 48,
    RenderPacketDescriptor: 64,
    RenderPoint: 56,
}


def make_handle(ring_id: int, sequence: int) -> int:
    """Pack a ring id (16 bits) and an item sequence (48 bits) into one payload handle."""
    return (ring_id & 0xFFFF) << HANDLE_SEQUENCE_BITS | (sequence & HANDLE_SEQUENCE_MASK)


def split_handle(handle: int) -> tuple[int, int]:
    """Inverse of :func:`make_handle`: ``(ring_id, sequence)``."""
    return handle >> HANDLE_SEQUENCE_BITS, handle & HANDLE_SEQUENCE_MASK

