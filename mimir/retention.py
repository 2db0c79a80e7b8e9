"""Payload retention per source: how many seconds of payload each ring really holds, against the window.

The reservoir indexes descriptors; their payloads live in the worker rings.
The rig contract sizes every ring to hold the reservoir window
(:func:`mimir.topology.ring_capacity`). :func:`payload_retention` checks it
on a running rig, per source:

* ``held_s``: the capture time the ring's live items span now (host time of
  its newest item minus its oldest, plus one item period), from the ring
  itself;
* ``window_items``: the source's samples in the reservoir window, and
  ``unbacked``: how many of those point at a payload the ring has already
  overwritten. Zero is the invariant "every sample in the window has a live
  payload"; anything else is a retention failure (`mimir status` shows it).

Cost: one vectorised copy of two reservoir views, one binary search per
source over its ring sequence numbers, a few shared-memory reads per ring. A
reader only: takes no reader slot and moves no cursor.
"""

from __future__ import annotations

import msgspec
import numpy as np

from mimir.contract import read_plan
from mimir.descriptors import HANDLE_SEQUENCE_MASK, SampleKind
from mimir.reservoir import Evicted, ReservoirView
from mimir.topology import RESERVOIR, RigPlan, SourceSpec
from ringbuf import RingReader, SegmentMissing, StaleItem

__all__ = ["SourceRetention", "payload_retention", "retention_lines"]

_HANDLE_FIELD = {int(SampleKind.CAMERA_FRAME): "payload_handle", int(SampleKind.AUDIO_BLOCK): "data_handle"}


class SourceRetention(msgspec.Struct, frozen=True):
    """Retention of one source at one moment (see the module docstring)."""

    source: str
    kind: int                 # mimir.descriptors.SampleKind
    ring_capacity: int        # items
    held_items: int           # items the ring holds now (its capacity once it has wrapped)
    held_s: float             # capture seconds those items span; nan while the ring is empty or gone
    window_s: float           # the reservoir window
    window_items: int         # the source's samples in the window
    unbacked: int             # window samples whose payload the ring has overwritten (the invariant: 0)
    ring_present: bool = True

    @property
    def ok(self) -> bool:
        return self.ring_present and self.unbacked == 0


def payload_retention(rig: str, *, plan: RigPlan | None = None,
                      view: ReservoirView | None = None) -> list[SourceRetention]:
    """Retention of every camera and audio source of running rig ``rig`` (RigNotRunning / SegmentMissing if none)."""
    plan = plan if plan is not None else read_plan(rig)
    own_view = view is None
    reservoir = ReservoirView.attach(rig, RESERVOIR) if view is None else view
    try:
        out = []
        snapshots = {}
        for spec in plan.sources:
            if spec.kind not in _HANDLE_FIELD:
                continue
            if spec.kind not in snapshots:
                snapshots[spec.kind] = reservoir.typed_snapshot(spec.kind)
            out.append(_one(rig, plan, reservoir, spec, *snapshots[spec.kind]))
        return out
    finally:
        if own_view:
            reservoir.close()


def _one(rig: str, plan: RigPlan, view: ReservoirView, spec: SourceSpec, rows: np.ndarray,
         descriptors: np.ndarray) -> SourceRetention:
    window_s = plan.window_ns / 1e9
    mine = rows["sensor_id_hash"] == spec.source_hash
    positions = rows["position"][mine]
    sequences = descriptors[_HANDLE_FIELD[spec.kind]][mine] & np.uint64(HANDLE_SEQUENCE_MASK)
    try:
        reader = RingReader.attach(spec.ring.object_id, rig=rig, register=False)
    except SegmentMissing:
        return SourceRetention(spec.name, spec.kind, spec.ring.capacity, 0, float("nan"), window_s,
                               int(mine.sum()), int(mine.sum()), ring_present=False)
    try:
        # Sequences grow along the source's samples and a ring keeps a suffix of them: the overwritten ones
        # are a prefix. Find it, then keep only those still in the window (the window moves meanwhile).
        gone = _first_true(len(sequences), lambda i: reader.valid(int(sequences[i])))
        unbacked = gone - _first_true(gone, lambda i: _in_window(view, int(positions[i])))
        published = reader.published
        held = min(published, reader.capacity)
        held_s = _held_seconds(reader, published, spec.nominal_hz)
        return SourceRetention(spec.name, spec.kind, reader.capacity, held, held_s, window_s, int(mine.sum()),
                               unbacked)
    finally:
        reader.close()


def _first_true(n: int, test) -> int:
    """The first index in ``[0, n)`` where the monotone predicate ``test`` holds (``n`` if none)."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if test(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _in_window(view: ReservoirView, position: int) -> bool:
    try:
        view.read_at(position)
        return True
    except Evicted:
        return False


def _held_seconds(reader: RingReader, published: int, nominal_hz: float) -> float:
    """Capture seconds between the ring's oldest live item and its newest, plus one item period."""
    if published == 0:
        return float("nan")
    names = reader.descriptor_dtype.names
    assert names is not None, "ring descriptors are Struct records"
    host = names.index("host_time_ns")
    newest = reader.descriptor_of(published - 1)[host]
    for oldest_seq in range(max(0, published - reader.capacity), published):
        try:
            oldest = reader.descriptor_of(oldest_seq)[host]
            break
        except StaleItem:  # overwritten while we looked: the next one is the oldest now
            continue
    else:
        return float("nan")
    return (newest - oldest) / 1e9 + 1.0 / nominal_hz


def retention_lines(rows: list[SourceRetention]) -> list[str]:
    """`mimir status` lines: per source, payload held against the window, and any sample without a payload."""
    lines = [f"{'payload retention':24s} {'held':>9s} {'window':>7s} {'ring':>6s} {'in window':>10s} {'unbacked':>9s}"]
    for r in rows:
        held = "gone" if not r.ring_present else ("-" if r.held_s != r.held_s else f"{r.held_s:.2f} s")
        mark = "" if r.ok else "  RETENTION FAILED: samples in the window without a payload"
        lines.append(f"{r.source:24s} {held:>9s} {r.window_s:>5.2f} s {r.ring_capacity:>6d} {r.window_items:>10,d} "
                     f"{r.unbacked:>9,d}{mark}")
    return lines
