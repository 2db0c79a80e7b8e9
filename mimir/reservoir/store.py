"""The reservoir writer: one rolling edge over every sample kind, in a shared-memory segment.

Ownership
    The supervisor creates the reservoir (:meth:`Reservoir.create`), is the only
    process that writes it and the only one that unlinks it (:meth:`close`).
    Other processes attach read-only (:class:`mimir.reservoir.ReservoirView`).
    Creating over a segment whose writer died reclaims it; creating while the
    writer lives fails with ``SegmentExists``.

Window semantics (the issue's, and upstream's where they agree)
    * push moves ``edge = max(edge, timestamp)``; :meth:`set_edge` only moves it
      forward; ``window_start = max(0, edge - duration)``.
    * A sample with ``timestamp < window_start`` is *late*: accepted, counted in
      ``late``, never stored or visible (upstream: accepted and evicted at once).
    * The window is a push-order FIFO ``[head, tail)``. After each push or
      set_edge the head moves past **every sample up to the newest-pushed one
      whose timestamp is before the window start**. So no sample older than
      the window start is ever visible, and the visible samples are always a
      contiguous push-order range, which is what makes indexed reads O(1).
      A sample that arrived out of order (timestamp < edge, counted in
      ``out_of_order``) and later ages out takes with it the samples pushed
      before it, even if their own timestamps are still inside the window:
      they leave early by at most that sample's lateness and are counted in
      ``evicted_disorder``. (Upstream keeps those and removes from the middle
      with an O(n) ``retain``.)
    * Capacity is fixed at creation. A push into a full window evicts the
      oldest sample first (``evicted_capacity``).
    * Flags must be 0: anything else is refused and counted in ``rejected``.

Eviction, the suffix-minimum runs that keep it amortised O(1), and the hot
path are in :mod:`mimir.reservoir.writer`; batches in :mod:`mimir.reservoir.batch`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import msgspec

from mimir.descriptors import SampleHandle
from ringbuf.layout import packer_of
from ringbuf.ring import ring_id_of
from ringbuf.shared import SharedObject

from .batch import SAMPLE_DTYPE, BatchPush
from .capacity import latest_slots_for
from .errors import RejectedSample
from .layout import (
    DEFAULT_NAME, DEFAULT_WINDOW_NS, KIND, KIND_COUNT, TYPED_DESCRIPTORS, VERSION, check_kind, layout_document, plan,
)
from .mapping import Mapped, write_geometry
from .producer import Producer
from .queries import _ClosedWords
from .results import Refused
from .writer import MAX_U64

# kind -> the struct.Struct of its descriptor: push_observed checks a descriptor's values before storing them
_DESCRIPTOR_STRUCTS = {int(kind): packer_of(cls) for kind, cls in TYPED_DESCRIPTORS.items()}

__all__ = ["Reservoir", "SAMPLE_DTYPE"]


class Reservoir(BatchPush):
    """The single writer of a rig's reservoir. Also answers every query of :class:`ReservoirQueries`."""

    # ---- creation and teardown ----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        rig: str,
        *,
        capacity: int,
        duration_ns: int = DEFAULT_WINDOW_NS,
        max_sensors: int = 256,
        name: str = DEFAULT_NAME,
    ) -> "Reservoir":
        """Create reservoir ``name`` of ``rig`` in segment ``mimir-<rig>-<name>``.

        ``capacity``: samples the window can hold (see :func:`capacity_for`).
        ``duration_ns``: window length; 0 means the default 5 s (as upstream).
        ``max_sensors``: distinct (kind, sensor) pairs the latest-for-sensor
        table holds. Reclaims the segment of a dead writer; fails with
        ``SegmentExists`` while its writer lives.
        """
        if not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"reservoir {name}: capacity must be a positive int, got {capacity!r} (see capacity_for)")
        if capacity >= 1 << 32:
            raise ValueError(f"reservoir {name}: capacity {capacity} is beyond 2**32 samples; split the rig")
        if not isinstance(duration_ns, int) or duration_ns < 0:
            raise ValueError(
                f"reservoir {name}: duration_ns must be an int >= 0 (0 = default 5 s), got {duration_ns!r}"
            )
        if not isinstance(max_sensors, int) or max_sensors <= 0:
            raise ValueError(f"reservoir {name}: max_sensors must be a positive int, got {max_sensors!r}")
        duration_ns = duration_ns or DEFAULT_WINDOW_NS
        doc = msgspec.json.encode(layout_document())
        geometry = plan(capacity, latest_slots_for(max_sensors), doc)
        obj = SharedObject.create(rig, name, kind=KIND, version=VERSION, doc=doc, size=geometry.total_bytes,
                                  doc_offset=geometry.layout_doc_offset)
        try:
            write_geometry(obj, geometry, duration_ns=duration_ns, max_sensors=max_sensors,
                           handle_id=ring_id_of(rig, name))
            obj.publish()  # last: attachers ignore an object without magic
            mapped = Mapped(obj)
        except BaseException:
            obj.close()
            obj.unmap()
            raise
        return cls(mapped)

    def close(self) -> None:
        """Mark closed, unlink the segment, unmap. Idempotent. Attached views keep their mapping until they close."""
        if self._closed:
            return
        self._closed = True
        mapped = self._m
        mapped.obj.close()  # closed flag, then unlink
        self._words = _ClosedWords()
        self._buf = None
        mapped.release()

    def __enter__(self) -> "Reservoir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- producers ------------------------------------------------------------------------------------------
    def producer(
        self,
        kind: int,
        source: bytes | str | None = None,
        *,
        sensor_id_hash: int | None = None,
        initial_sequence: int = 0,
    ) -> Producer:
        """A :class:`Producer` of ``kind`` for ``source`` (hashed with FNV-1a 64) or an explicit ``sensor_id_hash``.

        Fails with :class:`UnknownKind` for a kind outside SampleKind and with
        :class:`EmptySourceId` for an empty source or sensor hash 0.
        """
        return Producer._create(self, kind, source, sensor_id_hash=sensor_id_hash, initial_sequence=initial_sequence)

    # ---- pushing --------------------------------------------------------------------------------------------
    def push(self, kind: int, sample: SampleHandle | Sequence[int]) -> int:
        """Push one sample of ``kind`` (upstream ``localcast_reservoir_push``); return its position.

        ``sample`` is a SampleHandle or its 7 field values in order. Returns
        :data:`LATE` (-1) for a sample before the window start. Raises
        :class:`RejectedSample` (and counts it) for non-zero flags,
        :class:`UnknownKind` for a kind outside SampleKind.
        """
        if not 0 <= kind < KIND_COUNT:
            check_kind(kind)
        try:
            if isinstance(sample, SampleHandle):
                sensor, timestamp_ns, arrival_ns, sequence, payload_handle, flags, reserved = \
                    msgspec.structs.astuple(sample)
            else:
                sensor, timestamp_ns, arrival_ns, sequence, payload_handle, flags, reserved = sample
        except (TypeError, ValueError):
            raise TypeError(
                "a sample is a SampleHandle or its 7 values (sensor_id_hash, timestamp_ns, arrival_ns, sequence, "
                f"payload_handle, flags, reserved), got {sample!r}"
            ) from None
        if flags:
            self._reject(1)
            raise RejectedSample(
                f"reservoir {self._m.name}: sample flags {flags:#x} "
                f"({'diagnostic' if flags == 1 else 'diagnostic/unknown'}); the live reservoir takes flags == 0 "
                "only (refusal counted in status().rejected); route diagnostic samples elsewhere"
            )
        latest_word = self._latest_words[kind].get(sensor)
        if latest_word is None:
            latest_word = self._latest_word_for(kind, sensor)
        return self._push(kind, sensor, timestamp_ns, arrival_ns, sequence, payload_handle, reserved, latest_word,
                          None, ())

    def push_observed(self, kind: int, sensor: int, timestamp_ns: int, arrival_ns: int, sequence: int,
                      descriptor: Sequence[int | float] | None = None) -> int:
        """Store one *observed* sample, a claim from outside the rig; return its position, or a :class:`Refused`.

        For samples nobody here measured (a remote receiver's anchors): they may
        never move the edge and never evict. Refused, and nothing changed, when
        the timestamp is after the edge (:attr:`Refused.AFTER_EDGE`) or before
        the window start (``BEFORE_WINDOW``), when the window holds ``capacity``
        samples (``FULL``), or when a value is not a u64 int (``INVALID``). The
        caller moves the edge with trusted time (:meth:`set_edge`) and counts
        refusals. Accepted, it is an ordinary sample (an out-of-order one counts
        in ``out_of_order``, see the module doc's disorder rule). Not the hot
        path: it goes through the same :meth:`_push` as every sample. A kind
        with a typed descriptor (:data:`~mimir.reservoir.layout.TYPED_DESCRIPTORS`)
        needs ``descriptor``, its values in field order (``INVALID`` without
        them); other kinds take none.
        """
        if not 0 <= kind < KIND_COUNT:
            check_kind(kind)
        if timestamp_ns.__class__ is not int or arrival_ns.__class__ is not int \
                or not (0 <= timestamp_ns <= MAX_U64 and 0 <= arrival_ns <= MAX_U64):
            return Refused.INVALID
        if timestamp_ns > self._edge_ns:
            return Refused.AFTER_EDGE
        if timestamp_ns < self._window_start_ns:
            return Refused.BEFORE_WINDOW
        if self._tail - self._head >= self._capacity:
            return Refused.FULL
        latest_word = self._latest_words[kind].get(sensor)
        if latest_word is None:
            latest_word = self._latest_word_for(kind, sensor)
        pack = self._descriptor_pack.get(kind)
        if (pack is None) != (descriptor is None):
            return Refused.INVALID
        if descriptor is None:
            return self._push(kind, sensor, timestamp_ns, arrival_ns, sequence, 0, 0, latest_word, None, ())
        try:  # checked before anything moves: a value its field cannot hold refuses the whole sample
            _DESCRIPTOR_STRUCTS[kind].pack(*descriptor)
        except (TypeError, OverflowError, struct.error):
            return Refused.INVALID
        return self._push(kind, sensor, timestamp_ns, arrival_ns, sequence, 0, 0, latest_word, pack, descriptor)

    def set_edge(self, edge_ns: int) -> int:
        """Move the edge forward to ``edge_ns`` (never back) and evict what left the window; return the edge."""
        if not isinstance(edge_ns, int) or not 0 <= edge_ns <= MAX_U64:
            raise ValueError(f"edge_ns must be a u64 int, got {edge_ns!r}")
        if edge_ns > self._edge_ns:
            self._edge_ns = edge_ns
            window_start_ns = edge_ns - self._duration_ns if edge_ns > self._duration_ns else 0
            if window_start_ns > self._window_start_ns:
                self._window_start_ns = window_start_ns
                if self._head < self._tail:
                    self._evict_aged(window_start_ns)
            self._publish_all()
        return self._edge_ns
