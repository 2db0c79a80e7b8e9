"""Binary records of the audio worker beyond :class:`mimir.descriptors.AudioBlockRecord`.

Rings of one audio worker (``<ring>`` defaults to ``audio``)::

    <ring>          AudioBlockRecord per block; payload float32[slot_frames, channels]
                    (interleaved, the first ``frame_count`` rows valid);
                    status record: AudioStatus (health and counters, for `mimir status`)
    <ring>.metrics  CallbackMetric per callback, descriptor only

Flag bits (``status_flags`` of AudioBlockRecord, ``flags`` of CallbackMetric)
are the callback's xrun flags mapped from PortAudio's, plus bits the worker
adds; :data:`PA_FLAGS_TO_MIMIR` is the mapping (a lookup table, so the hot
path does one index).
"""

from __future__ import annotations

import enum

import msgspec

from ringbuf.layout import F32, U32, U64

__all__ = [
    "AudioStatus", "CallbackMetric", "Health", "EngineState", "BackendKind", "OutputKind",
    "FLAG_INPUT_OVERFLOW", "FLAG_OUTPUT_UNDERFLOW", "FLAG_INPUT_UNDERFLOW", "FLAG_OUTPUT_OVERFLOW",
    "FLAG_PRIMING_OUTPUT", "FLAG_DEADLINE_MISS", "FLAG_TRUNCATED", "XRUN_MASK",
    "PA_INPUT_UNDERFLOW", "PA_INPUT_OVERFLOW", "PA_OUTPUT_UNDERFLOW", "PA_OUTPUT_OVERFLOW", "PA_PRIMING_OUTPUT",
    "PA_FLAGS_TO_MIMIR", "metrics_ring_name", "describe_flags",
]

# Mimir flag bits. Bits 0 and 1 are fixed by AudioBlockRecord's documentation.
FLAG_INPUT_OVERFLOW = 1 << 0
FLAG_OUTPUT_UNDERFLOW = 1 << 1
FLAG_INPUT_UNDERFLOW = 1 << 2
FLAG_OUTPUT_OVERFLOW = 1 << 3
FLAG_PRIMING_OUTPUT = 1 << 4
FLAG_DEADLINE_MISS = 1 << 5   # CallbackMetric only: this callback ran longer than its block period
FLAG_TRUNCATED = 1 << 6       # the device delivered more frames than a ring slot holds; the rest was dropped
XRUN_MASK = FLAG_INPUT_OVERFLOW | FLAG_OUTPUT_UNDERFLOW | FLAG_INPUT_UNDERFLOW | FLAG_OUTPUT_OVERFLOW

# PortAudio's PaStreamCallbackFlags.
PA_INPUT_UNDERFLOW = 0x01
PA_INPUT_OVERFLOW = 0x02
PA_OUTPUT_UNDERFLOW = 0x04
PA_OUTPUT_OVERFLOW = 0x08
PA_PRIMING_OUTPUT = 0x10

_PAIRS = (
    (PA_INPUT_UNDERFLOW, FLAG_INPUT_UNDERFLOW), (PA_INPUT_OVERFLOW, FLAG_INPUT_OVERFLOW),
    (PA_OUTPUT_UNDERFLOW, FLAG_OUTPUT_UNDERFLOW), (PA_OUTPUT_OVERFLOW, FLAG_OUTPUT_OVERFLOW),
    (PA_PRIMING_OUTPUT, FLAG_PRIMING_OUTPUT),
)
PA_FLAGS_TO_MIMIR: tuple[int, ...] = tuple(
    sum(m for p, m in _PAIRS if pa & p) for pa in range(32)
)

_FLAG_NAMES = (
    (FLAG_INPUT_OVERFLOW, "input_overflow"), (FLAG_OUTPUT_UNDERFLOW, "output_underflow"),
    (FLAG_INPUT_UNDERFLOW, "input_underflow"), (FLAG_OUTPUT_OVERFLOW, "output_overflow"),
    (FLAG_PRIMING_OUTPUT, "priming_output"), (FLAG_DEADLINE_MISS, "deadline_miss"),
    (FLAG_TRUNCATED, "truncated"),
)


def describe_flags(flags: int) -> list[str]:
    """Names of the Mimir flag bits set in ``flags`` (for reports, not hot paths)."""
    return [name for bit, name in _FLAG_NAMES if flags & bit]


class Health(enum.IntEnum):
    """Health published in :class:`AudioStatus`: GREEN only when every callback of the window met its deadline."""

    UNKNOWN = 0   # not running, or no callback yet
    GREEN = 1     # callbacks arriving; none late and no xrun within the health window
    RED = 2       # an xrun or a deadline miss within the window, or callbacks stalled


class EngineState(enum.IntEnum):
    NEW = 0
    INITIALIZED = 1
    RUNNING = 2
    STOPPED = 3
    FINISHED = 4   # the source ended (file backend without --loop)
    FAILED = 5     # the callback raised or the stream died
    CLOSED = 6


class BackendKind(enum.IntEnum):
    SOUNDDEVICE = 1
    SYNTHETIC = 2
    FILE = 3


class OutputKind(enum.IntEnum):
    NONE = 0       # input-only stream
    PASSTHROUGH = 1
    SILENCE = 2
    WITNESS = 3
    IMPULSE = 4
    MLS = 5


class AudioStatus(msgspec.Struct):
    """The audio worker's status record in its ring header (writer: the worker's health thread, ~10 Hz).

    Counters are cumulative since ``init``. ``frames`` is the device frame
    counter (the ``start_sample`` the next block will carry). Latencies are
    what the stream reports. Fields are written one by one, so a reader may
    see two neighbouring updates mixed; ``updated_host_ns`` is written last.
    """

    state: U32
    health: U32
    backend: U32
    output_kind: U32
    sample_rate_hz: U32
    block_frames: U32            # 0: the host's own block size (frames vary per callback)
    slot_frames: U32             # rows of one payload slot
    channels: U32
    output_channels: U32
    health_window_ms: U32
    callbacks: U64
    frames: U64
    xruns: U64                   # callbacks flagged with any xrun bit
    input_overflows: U64
    output_underflows: U64
    deadline_misses: U64
    failures: U64                # callback exceptions and publish errors
    max_callback_ns: U64
    last_callback_host_ns: U64
    last_bad_host_ns: U64        # last xrun or deadline miss (host monotonic ns), 0 if none
    input_latency_ns: U64
    output_latency_ns: U64
    started_host_ns: U64
    cpu_load: F32                # the stream's CPU load (PortAudio) or callback time / block period (paced)
    pid: U32
    updated_host_ns: U64


class CallbackMetric(msgspec.Struct):
    """One callback, published into ``<ring>.metrics`` right after the block's AudioBlockRecord.

    ``duration_ns``: callback entry to just after the audio block was
    published (input conversion, output stage, publish, counters); it
    excludes this record's own publication and the CPU-load query.
    ``interval_ns``: entry to entry (0 for the first callback).
    """

    block_sequence: U64
    start_sample: U64
    host_time_ns: U64
    duration_ns: U32
    interval_ns: U32
    flags: U32
    frames: U32
    cpu_load: F32


def metrics_ring_name(ring: str) -> str:
    """The object name of the metrics ring that goes with audio ring ``ring`` (short: names must fit macOS)."""
    return f"{ring}m"
