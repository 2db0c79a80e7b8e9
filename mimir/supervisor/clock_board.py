"""The rig's canonical clock in shared memory: the present host-to-canonical line and its segment history.

Ownership: the supervisor creates the ``clk`` snapshot ring (object id
:data:`mimir.topology.CLOCK`), publishes the clock after every tick and every
segment change, and unlinks it at stop. Anyone reads it with
:func:`read_clock`: the audio worker, to start its witness where the rig's
schedule is (a restarted emitter continues the rig's timeline instead of
re-anchoring to the wall clock); status; snapshots and recorders, to write a
clock step as a step.

The record is a seqlocked snapshot (:meth:`ringbuf.RingReader.latest`):
never torn, no JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np

from mimir.supervisor.clock import CanonicalClock, ClockSegment, ClockState, SegmentReason
from mimir.topology import CLOCK
from ringbuf import F64, I64, U32, U64, Ring, RingReader, SegmentMissing

__all__ = ["ClockHeader", "ClockSegmentRow", "ClockBoard", "ClockSnapshot", "read_clock", "MAX_SEGMENTS"]

MAX_SEGMENTS = 32


class ClockHeader(msgspec.Struct):
    state: U32                 # ClockState
    stream: U32                # audio stream incarnation (a worker restart is a new stream)
    segment: U64               # index of the current segment
    segments: U32              # segment rows in the payload (newest last)
    relocks: U32
    origin_host_ns: U64        # the present line: canonical = origin_canonical + scale * (host - origin_host)
    origin_canonical_ns: I64
    scale: F64
    last_step_ns: I64
    published_host_ns: U64


class ClockSegmentRow(msgspec.Struct):
    index: U64
    state: U32
    reason: U32                # SegmentReason
    started_host_ns: U64
    started_canonical_ns: I64
    step_ns: I64
    stream: U32
    authority: U32             # 0 the local reference channel; k network.sources[k - 1] (a remote authority)


class ClockBoard:
    """The writer side (the supervisor)."""

    def __init__(self, rig: str) -> None:
        self.ring = Ring.create(CLOCK, rig=rig, descriptor=ClockHeader, capacity=4, label=f"{rig}/clock",
                                payload_shape=(MAX_SEGMENTS,), payload_dtype=ClockSegmentRow)

    def publish(self, clock: CanonicalClock, now_ns: int) -> None:
        rows = self.ring.claim()
        segments = list(clock.segments)[-MAX_SEGMENTS:]
        for i, s in enumerate(segments):
            rows[i] = (s.index, int(s.state), int(s.reason), s.started_host_ns, s.started_canonical_ns, s.step_ns,
                       s.stream, s.authority)
        origin_host, origin_canonical, scale = clock.host_affine(now_ns)
        self.ring.publish(int(clock.state), clock.stream, clock.segment.index, len(segments), clock.relocks,
                          origin_host, origin_canonical, scale, clock.last_step_ns, now_ns)

    def close(self) -> None:
        self.ring.close()


@dataclass(frozen=True)
class ClockSnapshot:
    """The rig's clock as last published: the present line and the recent segments (oldest first)."""

    state: ClockState
    stream: int
    segment: int
    relocks: int
    origin_host_ns: int
    origin_canonical_ns: int
    scale: float
    last_step_ns: int
    published_host_ns: int
    segments: tuple[ClockSegment, ...]

    def canonical_ns_at(self, host_ns: int) -> int:
        """Canonical ns at host monotonic ``host_ns`` on the present line (good for seconds around publication)."""
        return self.origin_canonical_ns + int((host_ns - self.origin_host_ns) * self.scale)


def read_clock(rig: str) -> ClockSnapshot | None:
    """The clock of running rig ``rig``; None when no supervisor publishes one (a worker started by hand)."""
    try:
        reader = RingReader.attach(CLOCK, rig=rig, descriptor=ClockHeader, register=False)
    except (SegmentMissing, ValueError):
        return None
    try:
        item = reader.latest()
    finally:
        reader.close()
    if item is None:
        return None
    assert item.payload is not None, "the clock ring is created with a payload of segment records"
    h = dict(zip(ClockHeader.__struct_fields__, item.descriptor))
    rows: np.ndarray = item.payload[: h["segments"]]
    segments = tuple(
        ClockSegment(int(r["index"]), ClockState(int(r["state"])), SegmentReason(int(r["reason"])),
                     int(r["started_host_ns"]), int(r["started_canonical_ns"]), int(r["step_ns"]), int(r["stream"]),
                     int(r["authority"]))
        for r in rows
    )
    return ClockSnapshot(ClockState(h["state"]), h["stream"], h["segment"], h["relocks"], h["origin_host_ns"],
                         h["origin_canonical_ns"], h["scale"], h["last_step_ns"], h["published_host_ns"], segments)
