"""Each recorded item's clock segment, from the rig's clock board, as the recording goes.

The supervisor starts a new clock segment at every lock, step over 0.1 ms,
audio stream restart or lost lock, and publishes the newest 32 on its
``clk`` board right away, in the same tick, before it indexes anything
more (:mod:`mimir.supervisor.clock_board`). Every item carries the host time
it was indexed at (``arrival_ns``). So once the recorder has read a batch of
items, a read of the board *after* it holds the segment of every item of
the batch: the newest segment that started at or before the item's
``arrival_ns`` (exact, as for snapshots: :mod:`mimir.snapshot.segments`).

The recorder sees each segment while it is the rig's current one, so it
can record each locked segment's witness fit (``local_sample_at_epoch``,
``rate_hz``, ``confidence``), which the rig publishes on its status board
for the segment in effect only. A locked segment's items wait (at most
``fit_wait_s``) until the status board shows that segment's fit; a segment
that ended before that is written without it and listed as missing.

Ownership: the reader thread calls :meth:`ClockTracker.refresh` and
:meth:`ClockTracker.slot_for`; the writer thread only reads
:attr:`SegmentSlot.take` once :attr:`SegmentSlot.ready` is true.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable

import numpy as np

from mimir.snapshot.segments import Fit, take_segment
from mimir.supervisor.clock import ClockSegment as RigSegment
from mimir.supervisor.clock import ClockState, SegmentReason
from mimir.supervisor.clock_board import ClockHeader, ClockSnapshot
from mimir.take import ClockSegment, Missing
from mimir.topology import CLOCK, RigPlan
from ringbuf import RingReader, SegmentMissing

__all__ = ["SegmentSlot", "ClockTracker", "ClockBoardReader", "fit_now"]


class SegmentSlot:
    """One rig clock segment; ``take`` (the take's record of it) is set once the segment is ready to write."""

    __slots__ = ("rig", "take", "first_seen_ns")

    def __init__(self, rig: RigSegment, first_seen_ns: int) -> None:
        self.rig = rig
        self.take: ClockSegment | None = None
        self.first_seen_ns = first_seen_ns

    @property
    def ready(self) -> bool:
        return self.take is not None

    @property
    def index(self) -> int:
        return self.rig.index


def fit_now(rig: str) -> tuple[int, Fit | None]:
    """``(the rig's current segment index, its reference channel's fit or None)`` from the status board."""
    from mimir.supervisor.status import read_status

    try:
        status = read_status(rig)
    except (SegmentMissing, FileNotFoundError):
        return -1, None
    segment = int(status.header.get("clock_segment", -1))
    reference = status.header.get("clock_reference", 0)
    for row in status.sources:
        if row["name"] == f"audio.ch{reference}" and row["clock_locked"]:
            return segment, Fit(float(row["clock_local_sample_at_epoch"]), float(row["clock_rate_hz"]),
                                float(row["clock_confidence"]))
    return segment, None


class ClockBoardReader:
    """:func:`mimir.supervisor.clock_board.read_clock` with the board kept mapped between reads.

    The recorder reads the board after every batch of items (50 times a
    second); mapping it anew each time costs more than the rest of a pass.
    A board whose writer closed it (a supervisor that stopped) is let go and
    looked up again on the next read.
    """

    def __init__(self) -> None:
        self._reader: RingReader | None = None

    def __call__(self, rig: str) -> ClockSnapshot | None:
        reader = self._reader
        if reader is None or reader.writer_closed:
            self.close()
            try:
                reader = self._reader = RingReader.attach(CLOCK, rig=rig, descriptor=ClockHeader, register=False)
            except (SegmentMissing, ValueError):
                return None
        item = reader.latest()
        if item is None or item.payload is None:
            return None
        h = dict(zip(ClockHeader.__struct_fields__, item.descriptor, strict=True))
        rows: np.ndarray = item.payload[: h["segments"]]
        segments = tuple(
            RigSegment(int(r["index"]), ClockState(int(r["state"])), SegmentReason(int(r["reason"])),
                       int(r["started_host_ns"]), int(r["started_canonical_ns"]), int(r["step_ns"]), int(r["stream"]),
                       int(r["authority"]))
            for r in rows
        )
        return ClockSnapshot(ClockState(h["state"]), h["stream"], h["segment"], h["relocks"], h["origin_host_ns"],
                             h["origin_canonical_ns"], h["scale"], h["last_step_ns"], h["published_host_ns"], segments)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class ClockTracker:
    """Every clock segment seen during the recording, and what the take must say about them."""

    def __init__(self, rig: str, plan: RigPlan, *, fit_wait_s: float = 1.0, fit_poll_s: float = 0.1,
                 clock_reader: Callable[[str], ClockSnapshot | None] | None = None,
                 fit_reader: Callable[[str], tuple[int, Fit | None]] = fit_now) -> None:
        self.rig = rig
        w = plan.witness
        self.witness = f"codebook {w.codebook_id} seed {w.seed} (epoch {w.epoch_unix_s:.0f} s)"
        self.remote_sources = plan.remote_sources
        self.fit_wait_ns = round(fit_wait_s * 1e9)
        self.fit_poll_ns = round(fit_poll_s * 1e9)
        self._board = ClockBoardReader()
        self._read_clock: Callable[[str], ClockSnapshot | None] = clock_reader or self._board
        self._read_fit = fit_reader
        self.slots: list[SegmentSlot] = []        # oldest first (indices and start times increase)
        self._starts: list[int] = []
        self.current = -1
        self.available = False                    # the rig publishes a clock board
        self.missing: list[Missing] = []
        self._pending: list[SegmentSlot] = []
        self._next_fit_ns = 0
        self._predates_noted = False

    @property
    def pending(self) -> bool:
        """True while a locked segment waits for its fit (its items wait with it)."""
        return bool(self._pending)

    def refresh(self, now_ns: int | None = None) -> None:
        """Read the clock board (after reading a batch of items) and settle the segments that became ready."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        clock = self._read_clock(self.rig)
        if clock is not None and clock.segments:
            self.available = True
            self.current = clock.segment
            newest = self.slots[-1].index if self.slots else -1
            for seg in clock.segments:
                if seg.index > newest:
                    slot = SegmentSlot(seg, now_ns)
                    self.slots.append(slot)
                    self._starts.append(seg.started_host_ns)
                    self._pending.append(slot)
        if self._pending:
            self._settle(now_ns)

    def _settle(self, now_ns: int) -> None:
        fit_index, fit = -1, None
        wants_fit = any(s.rig.state == ClockState.LOCKED and s.index == self.current for s in self._pending)
        if wants_fit and now_ns >= self._next_fit_ns:
            fit_index, fit = self._read_fit(self.rig)
            self._next_fit_ns = now_ns + self.fit_poll_ns
        still = []
        for slot in self._pending:
            seg = slot.rig
            if seg.state != ClockState.LOCKED:
                slot.take = take_segment(seg, first_in_span=False, current_index=self.current, fit_now=None,
                                         witness=self.witness, remote_sources=self.remote_sources)
                if seg.state == ClockState.HOLDOVER:
                    reason = seg.reason.name.lower().replace("_", " ")
                    self.missing.append(Missing(None, f"a witness fit for clock segment {seg.index}",
                                                f"holdover after a {reason}: canonical time continued on the last "
                                                "line; written as provisional"))
            elif fit is not None and fit_index == seg.index:
                slot.take = take_segment(seg, first_in_span=False, current_index=seg.index, fit_now=fit,
                                         witness=self.witness, remote_sources=self.remote_sources)
            elif seg.index != self.current or now_ns - slot.first_seen_ns >= self.fit_wait_ns:
                slot.take = take_segment(seg, first_in_span=False, current_index=-1, fit_now=None,
                                         witness=self.witness, remote_sources=self.remote_sources)
                self.missing.append(Missing(None, f"the witness fit of clock segment {seg.index}",
                                            "the rig's status board did not show it while the segment was current "
                                            "(the segment's timestamps are exact)"))
            else:
                still.append(slot)
        self._pending = still

    def slot_for(self, arrival_ns: int) -> SegmentSlot | None:
        """The segment an item indexed at ``arrival_ns`` belongs to (None when the rig publishes no clock)."""
        if not self.slots:
            return None
        i = bisect.bisect_right(self._starts, arrival_ns) - 1
        if i < 0:
            if not self._predates_noted:
                self._predates_noted = True
                self.missing.append(Missing(None, "clock history of the take's beginning",
                                            f"items indexed before clock segment {self.slots[0].index} began "
                                            "(the oldest the rig still published) are put in it"))
            i = 0
        return self.slots[i]

    def close_pending(self) -> None:
        """At the end of the recording: one last look at the status board for the current segment's fit, then
        settle what still waits without it. (A rig that locked within the last poll interval before a stop has its
        fit on the board already; without the last look, the take listed it as missing.)"""
        if self._pending:
            self._next_fit_ns = 0
            self._settle(time.monotonic_ns())
        self.current = -1
        if self._pending:
            self._settle(time.monotonic_ns() + self.fit_wait_ns)

    def close(self) -> None:
        """Let go of the clock board."""
        self._board.close()
