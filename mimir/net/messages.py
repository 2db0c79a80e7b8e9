"""Wire messages between ``mimir receiver`` and the supervisor's listener: msgspec Structs in MessagePack.

Uplink (receiver -> listener): one ZeroMQ frame holding an :class:`Envelope`::

    [v, source_id, session, seq, low_water, sent_unix_ns, body]

* ``v``: :data:`SCHEMA_VERSION`; anything else is rejected as ``wrong_schema``.
* ``source_id``: who the sender claims to be. The listener compares it with the
  identity its CURVE key authenticated; a mismatch is ``wrong_source_id``.
* ``session``: chosen once per receiver process (start time in ns); a restarted
  receiver starts a new session and its sequence numbers start again at 0.
* ``seq``: per-session sequence number, one per message, never reused.
* ``low_water``: the oldest sequence number the sender still holds for
  (re)transmission; everything below it is either acknowledged or was dropped by
  the sender's bounded backlog. ``low_water <= seq`` always.
* ``sent_unix_ns``: the sender's wall clock at encoding. Metadata only: it is
  shown as a network-delay estimate and never orders, accepts or times anything.
* ``body``: one of :data:`UplinkBody` (a tagged union; the tag is a small int).

Downlink (listener -> receiver): :class:`DownEnvelope` ``[v, body]`` with an
acknowledgement, a refusal notice, a raw-audio request or a time probe.

Time transfer (``docs/net.md``, section "Time transfer"): the listener sends a
:class:`TimeProbe` carrying its monotonic send time; the receiver answers at
once with a :class:`TimeEcho` (the probe's time, its own receive and send
times, and canonical time at its send time). An echo is *unsequenced*: its
``seq`` and ``low_water`` are 0 and ignored, it is never acknowledged nor
retransmitted (a late echo is worthless), and each probe can be answered once.
A receiver that predates probes counts them as malformed downlink frames and
carries on; a listener that predates echoes never sends a probe.

All Structs are ``array_like`` (positional, compact) and
``forbid_unknown_fields``; lists, strings and byte strings carry length limits,
floats carry finite ranges (so NaN and infinities are rejected by the decoder).
:func:`decode_uplink` never raises anything but :class:`MessageRejected`, whose
``cause`` is one of :data:`DECODE_CAUSES`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import msgspec

__all__ = [
    "DECODE_CAUSES",
    "MAX_ANCHORS_PER_BATCH",
    "MAX_AUDIO_BYTES",
    "MAX_AUDIO_SECONDS",
    "MAX_MESSAGE_BYTES",
    "SCHEMA_VERSION",
    "Ack",
    "Anchor",
    "AnchorBatch",
    "AudioRequest",
    "AudioWindow",
    "BandStat",
    "BufferHealth",
    "ClockFitSummary",
    "DownEnvelope",
    "DownlinkBody",
    "Envelope",
    "MessageRejected",
    "Refusal",
    "RejectCause",
    "ResponseUpdate",
    "SymbolStat",
    "TimeEcho",
    "TimeProbe",
    "UplinkBody",
    "body_kind",
    "decode_downlink",
    "decode_uplink",
    "encode",
]

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024     # application limit: larger uplink frames are rejected as `oversized`
MAX_AUDIO_SECONDS = 1.0            # longest raw audio window one request may ask for
MAX_AUDIO_BYTES = 192_000 * 2      # 1 s of int16 at 192 kHz
MAX_ANCHORS_PER_BATCH = 64
MAX_SEQ = 2**63 - 1

SourceId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1, max_length=40)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
Finite = Annotated[float, msgspec.Meta(ge=-1e15, le=1e15)]     # excludes NaN and infinities
Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Rate = Annotated[float, msgspec.Meta(gt=0.0, le=1e7)]
Small = Annotated[str, msgspec.Meta(max_length=64)]
Text = Annotated[str, msgspec.Meta(max_length=240)]
CanonicalNs = Annotated[int, msgspec.Meta(ge=-(2**62), le=2**62)]
HostClock = Literal["adc", "entry", "pacing", "none"]

RejectCause = Literal["oversized", "truncated", "malformed", "wrong_schema"]
DECODE_CAUSES: tuple[str, ...] = ("oversized", "truncated", "malformed", "wrong_schema")


class _Struct(msgspec.Struct, array_like=True, forbid_unknown_fields=True, omit_defaults=False):
    pass


# ---------------------------------------------------------------------------------------------------- uplink bodies
class Anchor(_Struct):
    """One decoded, code-valid witness event: canonical event ``event_index`` heard at ``local_sample``."""

    event_index: Annotated[int, msgspec.Meta(ge=-(2**40), le=2**40)]
    canonical_s: Finite
    local_sample: Finite
    confidence: Unit
    residual_samples: Finite = 0.0


class ClockFitSummary(_Struct, tag=1):
    """The receiver's current fit ``local_sample = local_sample_at_epoch + canonical_s * rate_hz``.

    ``segment`` counts fit segments (it grows at every discontinuity or relock);
    ``stream_sample`` is how far the receiver had read when it made the report.
    """

    codebook_id: Small
    seed: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
    nominal_rate_hz: Rate
    locked: bool
    segment: Count
    stream_sample: Count
    local_sample_at_epoch: Finite | None = None
    rate_hz: Rate | None = None
    confidence: Unit = 0.0
    mae_samples: Finite | None = None
    offset_sigma_samples: Finite | None = None
    rate_sigma_ppm: Finite | None = None
    anchor_count: Count = 0
    first_canonical_s: Finite | None = None
    last_canonical_s: Finite | None = None


class AnchorBatch(_Struct, tag=2):
    """Anchors decoded since the previous batch. ``decoded_unix_ns``: sender wall clock when the newest was
    decoded (metadata, used only for the decode-to-listener latency figure)."""

    segment: Count
    decoded_unix_ns: Count
    anchors: Annotated[list[Anchor], msgspec.Meta(max_length=MAX_ANCHORS_PER_BATCH)]


class BandStat(_Struct):
    low_hz: Finite
    high_hz: Finite
    gain_db: Finite | None = None
    reliability: Unit | None = None
    timing_residual_samples: Finite | None = None


class SymbolStat(_Struct):
    count: Count = 0
    reliability: Unit | None = None
    mean_score: Finite | None = None
    timing_residual_samples: Finite | None = None


class ResponseUpdate(_Struct, tag=3):
    """Response / confusion summary (per sub-band and per symbol; symbol ``k`` is ``symbols[k]``)."""

    bands: Annotated[list[BandStat], msgspec.Meta(max_length=32)]
    symbols: Annotated[list[SymbolStat], msgspec.Meta(max_length=64)]
    events_checked: Count = 0
    confusion_rate: Unit | None = None


class BufferHealth(_Struct, tag=4):
    """Decoder health and the sender's own accounting (backlog, drops, reconnects)."""

    state: Small
    samples_consumed: Count
    gap_samples: Count = 0
    non_finite_samples: Count = 0
    anchors_accepted: Count = 0
    anchors_rejected: Count = 0
    events_missed: Count = 0
    locks: Count = 0
    relocks: Count = 0
    discontinuities: Count = 0
    input_blocks_dropped: Count = 0      # audio blocks the capture queue had to drop (decoder too slow)
    input_overflows: Count = 0           # device-reported input overflows
    decode_lag_s: Finite = 0.0           # how far decoding runs behind the audio clock
    backlog_messages: Count = 0
    backlog_bytes: Count = 0
    backlog_dropped_messages: Count = 0  # evicted from the bounded backlog before being acknowledged
    backlog_dropped_bytes: Count = 0
    retransmits: Count = 0
    connects: Count = 0
    auth_failures: Count = 0


class AudioWindow(_Struct, tag=5):
    """Raw audio the listener asked for: ``samples = int16(pcm_s16le) * scale`` from ``local_start_sample``.

    ``status``: ``ok``; ``unavailable`` (no longer in the receiver's ring, or never will be); ``too_long``.
    """

    request_id: Count
    status: Literal["ok", "unavailable", "too_long"]
    sample_rate_hz: Rate
    local_start_sample: Count = 0
    scale: Finite = 0.0
    pcm_s16le: Annotated[bytes, msgspec.Meta(max_length=MAX_AUDIO_BYTES)] = b""


class TimeEcho(_Struct, tag=6):
    """The answer to one :class:`TimeProbe`: canonical time at this receiver's host time ``sent_ns``.

    ``probe_sent_ns`` (t1) is the probe's ``sent_ns``, echoed; ``received_ns``
    (t2) and ``sent_ns`` (t3) are the receiver's monotonic clock when the probe
    arrived and when this echo left; ``canonical_ns`` is canonical time at t3
    by the receiver's fit (None when it has none: not locked, or no host clock
    for its audio); ``segment`` is the fit segment it came from (the
    :class:`ClockFitSummary` numbering); ``clock`` says how the receiver's audio
    is placed on its host clock: the driver's ADC times, callback entry times,
    a file's pacing clock, or none (a file decoded as fast as possible).
    """

    probe_sent_ns: Count
    received_ns: Count
    sent_ns: Count
    canonical_ns: CanonicalNs | None
    segment: Count
    clock: HostClock


UplinkBody = Union[ClockFitSummary, AnchorBatch, ResponseUpdate, BufferHealth, AudioWindow, TimeEcho]

_KIND_NAMES: dict[type, str] = {ClockFitSummary: "clock_fit", AnchorBatch: "anchors", ResponseUpdate: "response",
               BufferHealth: "health", AudioWindow: "audio", TimeEcho: "time_echo"}


def body_kind(body: object) -> str:
    """Short name of a body's kind: clock_fit, anchors, response, health, audio, time_echo (ack, refusal,
    audio_request, time_probe)."""
    return _KIND_NAMES.get(type(body)) or _DOWN_NAMES.get(type(body), type(body).__name__)


class Envelope(_Struct):
    v: int
    source_id: SourceId
    session: Seq
    seq: Seq
    low_water: Seq
    sent_unix_ns: Count
    body: UplinkBody


# --------------------------------------------------------------------------------------------------- downlink
class Ack(_Struct, tag=1):
    """Every sequence number ``<= through`` of ``session`` was received (or is known to be lost)."""

    session: Seq
    through: Annotated[int, msgspec.Meta(ge=-1, le=MAX_SEQ)]


class Refusal(_Struct, tag=2):
    """The listener rejected a message of this peer and why (sent at most about once a second)."""

    cause: Small
    detail: Text = ""


class AudioRequest(_Struct, tag=3):
    """Send ``duration_s`` of raw audio from ``local_start_sample`` (None: the most recent audio)."""

    request_id: Count
    duration_s: Annotated[float, msgspec.Meta(gt=0.0, le=MAX_AUDIO_SECONDS)]
    local_start_sample: Count | None = None


class TimeProbe(_Struct, tag=4):
    """Answer at once with a :class:`TimeEcho`. ``sent_ns``: the listener's ``time.monotonic_ns()`` at sending."""

    sent_ns: Count


DownlinkBody = Union[Ack, Refusal, AudioRequest, TimeProbe]
_DOWN_NAMES: dict[type, str] = {Ack: "ack", Refusal: "refusal", AudioRequest: "audio_request",
                                TimeProbe: "time_probe"}


class DownEnvelope(_Struct):
    v: int
    body: DownlinkBody


# ---------------------------------------------------------------------------------------------------- codec
class MessageRejected(Exception):
    """A frame that is not a valid message; ``cause`` is one of :data:`DECODE_CAUSES`."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause
        self.detail = detail


class _Probe(msgspec.Struct, array_like=True):
    v: int


_encoder = msgspec.msgpack.Encoder()
_probe = msgspec.msgpack.Decoder(_Probe)
_uplink = msgspec.msgpack.Decoder(Envelope)
_downlink = msgspec.msgpack.Decoder(DownEnvelope)


def encode(message: Envelope | DownEnvelope) -> bytes:
    return _encoder.encode(message)


def _classify(exc: msgspec.MsgspecError) -> MessageRejected:
    text = str(exc)
    if "truncated" in text:
        return MessageRejected("truncated", text)
    return MessageRejected("malformed", text)


def _decode(raw: bytes | memoryview, decoder: msgspec.msgpack.Decoder, limit: int):
    size = len(raw)
    if size > limit:
        raise MessageRejected("oversized", f"{size} bytes > {limit}")
    if size == 0:
        raise MessageRejected("truncated", "empty frame")
    try:
        version = _probe.decode(raw).v
    except msgspec.MsgspecError as exc:
        raise _classify(exc) from None
    if version != SCHEMA_VERSION:
        raise MessageRejected("wrong_schema", f"schema version {version}, this side speaks {SCHEMA_VERSION}")
    try:
        return decoder.decode(raw)
    except msgspec.MsgspecError as exc:
        raise _classify(exc) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # defensive: never escape as a crash
        raise MessageRejected("malformed", f"{type(exc).__name__}: {exc}") from None


def decode_uplink(raw: bytes | memoryview, limit: int = MAX_MESSAGE_BYTES) -> Envelope:
    """Decode one uplink frame; raise :class:`MessageRejected` (never anything else) when it is not valid."""
    env = _decode(raw, _uplink, limit)
    if env.low_water > env.seq:
        raise MessageRejected("malformed", f"low_water {env.low_water} > seq {env.seq}")
    body = env.body
    if isinstance(body, AudioWindow) and len(body.pcm_s16le) % 2:
        raise MessageRejected("malformed", "odd number of bytes of int16 audio")
    return env


def decode_downlink(raw: bytes | memoryview, limit: int = 4096) -> DownEnvelope:
    """Decode one downlink frame (the receiver's side); raise :class:`MessageRejected` when invalid."""
    return _decode(raw, _downlink, limit)
