"""Remote event claims into the rig's *observed* reservoir: bounded per source in time, rate and count.

A remote receiver's anchors and fits (:class:`~mimir.net.sources.EventClaim`)
are claims nobody in the rig measured. Decoding the witness needs only the
codebook, and a listed key may still lie, so a claim must never be able to
change what the rig itself recorded (seed 003: "Codebook possession should
be enough to decode time, not enough to control Mimir").

Invariants (tested in ``tests/mimir/net/test_net_claims.py`` and with real
CURVE clients in ``tests/faults/test_hostile_receivers.py``):

* claims go into a reservoir of their own (:class:`ClaimStore`, the rig's
  ``obs`` object), never the rig's main reservoir, so no claim can move the
  main reservoir's edge or evict (early or for capacity) a local sample;
* the observed store's edge follows the rig's own canonical clock
  (:meth:`ClaimStore.push`'s ``now_ns``), never a claim: a claim after now is
  refused (``after_now``), one before the window is refused (``before_window``),
  through :meth:`mimir.reservoir.Reservoir.push_observed`, which never evicts;
* per source, a token bucket bounds the claims it makes per second (in
  :class:`~mimir.net.sources.SourceTable`, before a claim is queued, so a
  flood never crowds out another source's claims: ``claims_rate_limited`` in
  its counters), and a cap bounds its claims inside the window here
  (``window_cap``); the store holds every source's cap, so one source can
  never push out another's claims for capacity (``store_full`` counts the
  impossible case anyway);
* every claim queued ends in exactly one counter of its source's :class:`ClaimCounts`.

What a source *can* still do to other sources' claims: an accepted claim that
is older than claims pushed before it makes them leave the window early when
it ages out (the reservoir's disorder rule, counted in its ``evicted_disorder``),
by at most its own lateness.

Ownership: the supervisor creates the store (:meth:`ClaimStore.create`), is
its only writer and closes it. One thread.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import msgspec

from mimir.config import NetworkConfig
from mimir.descriptors import SampleKind
from mimir.reservoir import Refused, Reservoir, segment_bytes

if TYPE_CHECKING:
    from mimir.reservoir import Producer

    from .sources import EventClaim

__all__ = ["ClaimLimits", "ClaimCounts", "ClaimStore", "CLAIM_BURST", "MIN_CLAIMS_PER_WINDOW"]

CLAIM_BURST = 64            # claims a source may send at once: one full AnchorBatch (MAX_ANCHORS_PER_BATCH)
MIN_CLAIMS_PER_WINDOW = 16
_MAX_U64 = (1 << 64) - 1


class ClaimLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Per-source bounds: ``per_second`` and ``burst`` for the claims a source makes (a token bucket in the
    SourceTable); ``per_window``, its claims inside the window at once (None: what the rate and burst allow in
    one window, ``burst + per_second x window``, so the cap never refuses a source within its rate)."""

    per_second: float = NetworkConfig().max_claims_per_s  # about 7 a second: 5 anchors (one per event) and 2 fits
    burst: int = CLAIM_BURST
    per_window: int | None = None

    def window_cap(self, window_ns: int) -> int:
        if self.per_window is not None:
            return self.per_window
        return max(MIN_CLAIMS_PER_WINDOW, self.burst + math.ceil(self.per_second * window_ns / 1e9))


class ClaimCounts(msgspec.Struct, kw_only=True):
    """What became of one source's claims; each claim ends in exactly one field."""

    stored: int = 0          # in the observed reservoir
    window_cap: int = 0      # the source already has its cap of claims inside the window
    after_now: int = 0       # claims a time after the rig's canonical now (the future)
    before_window: int = 0   # claims a time before the window start (or before the epoch)
    store_full: int = 0      # the store was full (cannot happen while every source keeps its cap)

    def refused(self) -> int:
        return self.window_cap + self.after_now + self.before_window + self.store_full

    def total(self) -> int:
        return self.stored + self.refused()


class _Source:
    __slots__ = ("in_window", "counts", "producer")

    def __init__(self) -> None:
        self.in_window: list[int] = []   # min-heap of the timestamps of its stored claims not yet aged out
        self.counts = ClaimCounts()
        self.producer: Producer | None = None


class ClaimStore:
    """The observed reservoir and the per-source bounds in front of it (see the module doc)."""

    def __init__(self, reservoir: Reservoir, limits: ClaimLimits, window_ns: int) -> None:
        self.reservoir = reservoir
        self.limits = limits
        self.window_ns = window_ns
        self.cap = limits.window_cap(window_ns)
        self._sources: dict[str, _Source] = {}

    @staticmethod
    def capacity_for(sources: int, limits: ClaimLimits, window_ns: int) -> int:
        """Samples the store needs so that every source can hold its cap at once (never FULL)."""
        return max(1, sources) * limits.window_cap(window_ns)

    @staticmethod
    def bytes_for(sources: int, limits: ClaimLimits, window_ns: int) -> int:
        """Shared memory of the store (for the rig's budget)."""
        return segment_bytes(ClaimStore.capacity_for(sources, limits, window_ns))

    @classmethod
    def create(cls, rig: str, name: str, *, sources: int, limits: ClaimLimits, window_ns: int) -> "ClaimStore":
        """Create the observed reservoir ``name`` of ``rig`` sized for ``sources`` sources."""
        capacity = cls.capacity_for(sources, limits, window_ns)
        reservoir = Reservoir.create(rig, name=name, capacity=capacity, duration_ns=window_ns,
                                     max_sensors=max(16, 2 * sources))
        return cls(reservoir, limits, window_ns)

    def close(self) -> None:
        self.reservoir.close()

    # ---- pushing --------------------------------------------------------------------------------------------
    def push(self, claims: Iterable[EventClaim], *, now_ns: int, canonical_of_arrival: Callable[[int], int]) -> None:
        """Store what may be stored of ``claims``, counting the rest by cause.

        ``now_ns``: the rig's canonical now (its own clock): the store's edge
        moves there first, so it ages out claims even when none arrive and no
        claim can be after it. ``canonical_of_arrival(arrival_ns)``: the rig's
        canonical time of a host monotonic time, for claims without a time of
        their own (trust decisions), which are stamped with their arrival.
        """
        if now_ns > 0:
            self.reservoir.set_edge(now_ns)
        for claim in claims:
            self._push(claim, now_ns, canonical_of_arrival)

    def _push(self, claim: EventClaim, now_ns: int, canonical_of_arrival: Callable[[int], int]) -> None:
        src = self._sources.get(claim.source_id)
        if src is None:
            src = self._sources[claim.source_id] = _Source()
        c = src.counts
        if claim.canonical_ns is None:
            ts = min(int(canonical_of_arrival(claim.arrival_ns)), now_ns)
        else:
            ts = claim.canonical_ns
        if ts > _MAX_U64:
            c.after_now += 1
            return
        if ts < 0:
            c.before_window += 1
            return
        heap = src.in_window
        window_start = self.reservoir.window_start_ns
        while heap and heap[0] < window_start:
            heapq.heappop(heap)
        if len(heap) >= self.cap:
            c.window_cap += 1
            return
        if src.producer is None:
            src.producer = self.reservoir.producer(SampleKind.EVENT_CLAIM, sensor_id_hash=claim.sensor_id_hash)
        position = src.producer.push_observed(ts, claim.arrival_ns)
        if position >= 0:
            c.stored += 1
            heapq.heappush(heap, ts)
        elif position == Refused.AFTER_EDGE:
            c.after_now += 1
        elif position == Refused.BEFORE_WINDOW:
            c.before_window += 1
        elif position == Refused.FULL:
            c.store_full += 1
        else:  # Refused.INVALID: arrival_ns is the listener's monotonic clock, always a u64
            raise AssertionError(f"observed claim refused as {Refused(position).name}: {claim!r}")

    # ---- status ---------------------------------------------------------------------------------------------
    def counts(self, source_id: str) -> ClaimCounts:
        """A copy of what became of ``source_id``'s claims (all zero for a source that sent none)."""
        src = self._sources.get(source_id)
        return msgspec.structs.replace(src.counts) if src is not None else ClaimCounts()

    def in_window(self, source_id: str) -> int:
        """``source_id``'s claims stored and not yet aged out (an upper bound: disorder may take some earlier)."""
        src = self._sources.get(source_id)
        if src is None:
            return 0
        window_start = self.reservoir.window_start_ns
        return sum(1 for ts in src.in_window if ts >= window_start)
