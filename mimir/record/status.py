"""The recorder's status in shared memory, for `mimir status` while a recording runs.

Ownership: each running recorder creates one small snapshot ring,
``mimir-<rig>-rec<N>`` (``N`` the first free of 0 .. :data:`MAX_RECORDERS` - 1;
a dead recorder's ring is reclaimed), publishes a snapshot a few times a
second, and unlinks it when it ends. Descriptor: :class:`RecorderHeader`;
payload: :data:`MAX_SOURCES` :class:`RecorderRow` records (one per source,
with its skipped items per cause). Readers copy the newest snapshot under
the ring's seqlock (:func:`read_recorders`): never torn, no JSON, no file.
Names fit macOS's 31 characters with a 16-character rig name (27).

This module imports only ``ringbuf`` and :mod:`mimir.record.ledger`, so the
status command can import it cheaply.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec
import numpy as np

from ringbuf import F32, F64, U32, U64, ObjectMismatch, Ring, RingReader, SegmentExists, SegmentMissing

from .ledger import CAUSE_KEY, Cause

__all__ = ["MAX_RECORDERS", "MAX_SOURCES", "RecorderState", "RecorderHeader", "RecorderRow", "RecorderBoard",
           "RecorderStatus", "recorder_object_id", "read_recorders", "recorder_lines"]

MAX_RECORDERS = 8
MAX_SOURCES = 64
OBJECT_PREFIX = "rec"


# Fixed-size byte strings (NUL padded): ringbuf.layout.Bytes(n), spelled as aliases a type checker reads.
Bytes8 = Annotated[bytes, msgspec.Meta(max_length=8, extra={"dtype": "|S8"})]
Bytes32 = Annotated[bytes, msgspec.Meta(max_length=32, extra={"dtype": "|S32"})]
Bytes200 = Annotated[bytes, msgspec.Meta(max_length=200, extra={"dtype": "|S200"})]


def recorder_object_id(index: int) -> str:
    return f"{OBJECT_PREFIX}{index}"


class RecorderState(enum.IntEnum):
    RECORDING = 0
    DRAINING = 1     # no new items: writing what is queued, then closing the take
    DONE = 2
    FAILED = 3


class RecorderHeader(msgspec.Struct):
    pid: U32
    state: U32                 # RecorderState
    started_unix_ns: U64
    seconds: F64               # wall seconds recorded
    written_bytes: U64         # payload bytes written (frames and samples)
    mb_per_s: F32              # payload MB/s over the last second
    free_bytes: U64            # free space on the take's file system
    staged_bytes: U64          # frames copied into memory ahead of the writer
    lag_ms: F32                # newest indexed item to newest written item, canonical ms
    sources: U32
    split_seconds: F64         # 0: no splitting
    video: Bytes8
    out: Bytes200
    error: Bytes200


class RecorderRow(msgspec.Struct):
    name: Bytes32
    camera: U32                # 1 camera, 0 audio
    published: U64
    written: U64
    not_indexed: U64
    evicted: U64
    lapped: U64
    behind: U64
    memory: U64
    failed: U64


_ROW_CAUSES = tuple(CAUSE_KEY[c] for c in Cause)
assert all(name in RecorderRow.__struct_fields__ for name in _ROW_CAUSES)


class RecorderBoard:
    """The writer side (the recorder). ``object_id`` is the ``recN`` it took."""

    def __init__(self, rig: str, label: str = "") -> None:
        last: Exception | None = None
        for index in range(MAX_RECORDERS):
            object_id = recorder_object_id(index)
            try:
                self.ring = Ring.create(object_id, rig=rig, descriptor=RecorderHeader, capacity=4,
                                        label=label or f"{rig}/recorder", payload_shape=(MAX_SOURCES,),
                                        payload_dtype=RecorderRow)
            except SegmentExists as exc:  # a live recorder has it (or another program's object of that name)
                last = exc
                continue
            self.object_id = object_id
            return
        raise SegmentExists(f"rig {rig!r} already has {MAX_RECORDERS} recorders running: {last}")

    def publish(self, header: RecorderHeader, rows: list[tuple]) -> None:
        """Publish one snapshot; ``rows`` are tuples in :class:`RecorderRow` field order."""
        payload = self.ring.claim()
        payload[:] = np.zeros((), payload.dtype)
        for i, row in enumerate(rows[:MAX_SOURCES]):
            payload[i] = row
        self.ring.publish(*msgspec.structs.astuple(header))

    def close(self) -> None:
        self.ring.close()


class RecorderStatus(msgspec.Struct):
    """One recorder's newest snapshot (what `mimir status --json` lists under ``recorders``)."""

    object_id: str
    alive: bool
    header: dict
    sources: list[dict]


def _decode(value):
    return value.rstrip(b"\0").decode(errors="replace") if isinstance(value, bytes) else value


def read_recorders(rig: str) -> list[RecorderStatus]:
    """Every recorder of ``rig`` that has published a snapshot (a killed one's last snapshot has ``alive`` False)."""
    out = []
    for index in range(MAX_RECORDERS):
        object_id = recorder_object_id(index)
        try:
            reader = RingReader.attach(object_id, rig=rig, descriptor=RecorderHeader, register=False)
        except (SegmentMissing, ObjectMismatch, ValueError, PermissionError):
            continue
        try:
            item = reader.latest()
            alive = reader.writer_alive()
        finally:
            reader.close()
        if item is None or item.payload is None:
            continue
        header = {k: _decode(v) for k, v in zip(RecorderHeader.__struct_fields__, item.descriptor, strict=True)}
        payload = item.payload
        rows = [{name: _decode(row[name].item()) for name in RecorderRow.__struct_fields__}
                for row in payload[: header["sources"]]]
        out.append(RecorderStatus(object_id, alive, header, rows))
    return out


_STATES = {s.value: s.name.lower() for s in RecorderState}


def recorder_lines(recorders: list[RecorderStatus]) -> list[str]:
    """`mimir status` lines: per recorder, where it writes and how fast; per source, written and skipped by cause."""
    lines: list[str] = []
    for r in recorders:
        h = r.header
        state = _STATES.get(h["state"], "?") if r.alive else "GONE (killed? `mimir record --repair` its take)"
        split = f", split every {h['split_seconds']:g} s" if h["split_seconds"] else ""
        lines.append(
            f"recorder {r.object_id} pid {h['pid']} {state}: {h['out']} ({h['video']}{split}), "
            f"{h['seconds']:.1f} s, {h['written_bytes'] / 1e6:,.0f} MB at {h['mb_per_s']:.1f} MB/s, "
            f"lag {h['lag_ms']:.0f} ms, staged {h['staged_bytes'] / 1e6:,.0f} MB, "
            f"disk free {h['free_bytes'] / 1e9:,.1f} GB" + (f"; ERROR {h['error']}" if h["error"] else "")
        )
        lines.append(f"  {'source':24s} {'published':>10s} {'written':>10s} {'skipped':>8s}  by cause")
        for s in r.sources:
            causes = {k: s[k] for k in _ROW_CAUSES if s[k]}
            skipped = sum(causes.values())
            lines.append(f"  {s['name']:24s} {s['published']:>10,d} {s['written']:>10,d} {skipped:>8,d}  "
                         + (", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in causes.items()) or "-"))
    return lines
