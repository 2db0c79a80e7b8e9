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

How eviction stays amortised O(1)
    The writer keeps the push-order suffix minima of the timestamps (positions
    whose timestamp is <= every later one) as runs of consecutive positions.
    While pushes arrive in timestamp order that is one run ``[head, tail)``
    and eviction is "advance the head while its timestamp is before the window
    start". An out-of-order push trims the last run from the back; eviction
    consumes runs from the front. Each position enters and leaves once.

Hot path
    :meth:`_push` (behind ``Producer.push`` and :meth:`push`) takes no lock,
    allocates no container and logs nothing: about ten aligned 8-byte stores
    and one ``struct.pack_into`` into the shared segment.
"""

from __future__ import annotations

import operator
import struct
from collections import deque
from collections.abc import Sequence

import msgspec

from mimir.descriptors import SampleHandle
from ringbuf import fence
from ringbuf.layout import packer_of
from ringbuf.ring import ring_id_of
from ringbuf.shared import SharedObject

from .batch import SAMPLE_DTYPE, BatchPush
from .capacity import latest_slots_for
from .errors import RejectedSample, SensorTableFull
from .layout import (
    DEFAULT_NAME, DEFAULT_WINDOW_NS, DESCRIPTOR_SLOT_BYTES, KIND, KIND_COUNT, KIND_SHIFT, TYPED_DESCRIPTORS, VERSION, W,
    check_kind, layout_document, plan,
)
from .mapping import Mapped, write_geometry
from .producer import Producer
from .queries import _KIND_MIX, _RECORD_BODY, ReservoirQueries, _ClosedWords
from .results import LATE, Refused

__all__ = ["Reservoir", "SAMPLE_DTYPE"]

_MAX_U64 = (1 << 64) - 1
_STORE_FENCE = None if fence.TSO else fence.store_fence


class Reservoir(BatchPush, ReservoirQueries):
    """The single writer of a rig's reservoir. Also answers every query of :class:`ReservoirQueries`."""

    def __init__(self, mapped: Mapped) -> None:
        self._bind(mapped)
        self._closed = False
        self._dur = mapped.duration_ns
        self._hid_shifted = mapped.handle_id << 48
        self._desc0 = mapped.descriptors_offset
        self._pack_body = _RECORD_BODY.pack_into
        # Private mirrors of the status words (the writer never reads shared memory to decide).
        self._gen = 0
        self._edge = 0
        self._ws = 0
        self._head = 0
        self._tail = 0
        self._late = 0
        self._ooo = 0
        self._rejected = 0
        self._ev_aged = 0
        self._ev_dis = 0
        self._ev_cap = 0
        self._sensors = 0
        self._kh = [0] * KIND_COUNT
        self._kt = [0] * KIND_COUNT
        # Suffix minima of the window's timestamps as runs: closed runs [start, end] oldest first,
        # then the last run [last_start, tail). Empty window <=> no runs and last_start == tail.
        self._runs: deque[list[int]] = deque()
        self._last_start = 0
        self._last_ts = 0
        # Latest-table entry word of each (kind, sensor): kind -> {sensor: word index of position_plus_one}.
        self._latest_word: list[dict[int, int]] = [{} for _ in range(KIND_COUNT)]
        self._desc_pack = {int(k): packer_of(cls).pack_into for k, cls in TYPED_DESCRIPTORS.items()}

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
        m = self._m
        m.obj.close()  # closed flag, then unlink
        self._words = _ClosedWords()
        self._buf = None
        m.release()

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

    def _latest_entry(self, kind: int, sensor: int) -> int:
        """The word of ``position_plus_one`` in the latest-table entry of (kind, sensor), inserting it if new."""
        word = self._latest_word[kind].get(sensor)
        if word is not None:
            return word
        if not 0 <= sensor <= _MAX_U64:
            raise ValueError(f"sensor_id_hash {sensor!r} is not a u64")
        m = self._m
        if self._sensors >= m.max_sensors:
            raise SensorTableFull(
                f"reservoir {m.name}: {self._sensors} (kind, sensor) pairs already indexed, the table holds "
                f"max_sensors={m.max_sensors}; create the reservoir with a larger max_sensors"
            )
        words = self._words
        mask = self._lmask
        slot = (sensor ^ _KIND_MIX[kind]) & mask
        while True:
            entry = self._lw0 + (slot << 2)
            tag = words[entry]
            if tag == 0:
                break
            if tag == kind + 1 and words[entry + 1] == sensor:
                self._latest_word[kind][sensor] = entry + 2
                return entry + 2
            slot = (slot + 1) & mask
        words[entry + 1] = sensor
        words[entry + 2] = 0
        words[entry + 3] = 0
        if _STORE_FENCE is not None:
            _STORE_FENCE()
        words[entry] = kind + 1
        self._sensors += 1
        self._publish_all()
        self._latest_word[kind][sensor] = entry + 2
        return entry + 2

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
                sensor, ts, arrival, seq, payload, flags, reserved = msgspec.structs.astuple(sample)
            else:
                sensor, ts, arrival, seq, payload, flags, reserved = sample
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
        word = self._latest_word[kind].get(sensor)
        if word is None:
            word = self._latest_entry(kind, sensor)
        return self._push(kind, sensor, ts, arrival, seq, payload, reserved, word, None, None)

    def _push(self, kind: int, sensor: int, ts: int, arrival: int, seq: int, payload: int, reserved: int,
              latest_word: int, desc_pack, desc_values) -> int:
        """Store one live sample (flags 0, kind and latest entry already checked). Returns its position or LATE.

        With ``desc_pack`` the descriptor is stored beside the record and the
        sample's payload handle becomes the descriptor handle.
        """
        if ts.__class__ is not int:
            ts = _u64(ts, "timestamp_ns")
        words = self._words
        cap = self._cap
        rw0 = self._rw0
        head = self._head
        tail = self._tail
        evicted_kinds = 0
        edge_moved = False
        out_of_order = False
        if ts > self._edge:
            if ts > _MAX_U64:
                raise ValueError(f"timestamp_ns {ts} is not a u64")
            edge_moved = True
            self._edge = ts
            ws = ts - self._dur if ts > self._dur else 0
            if ws > self._ws:
                self._ws = ws
                if head < tail:
                    if self._runs or self._last_start != head:
                        evicted_kinds = self._evict_window(ws)
                        head = self._head
                    else:
                        # In-order window: evict from the head while it is before the window start.
                        kh = self._kh
                        while head < tail:
                            rw = rw0 + (head % cap) * 8
                            if words[rw + 2] >= ws:
                                break
                            k = words[rw + 7] >> KIND_SHIFT
                            kh[k] += 1
                            evicted_kinds |= 1 << k
                            head += 1
                        if evicted_kinds:
                            self._ev_aged += head - self._head
                            self._head = head
                            self._last_start = head
        elif ts < self._ws:
            self._late += 1
            gen = self._gen + 1
            words[W.GENERATION] = gen
            words[W.LATE] = self._late
            words[W.GENERATION] = gen + 1
            self._gen = gen + 1
            return LATE
        elif ts < self._edge:
            out_of_order = True
        if tail - head >= cap:
            evicted_kinds |= self._evict_capacity()
            head = self._head
        position = tail
        slot = position % cap
        rw = rw0 + slot * 8
        kt = self._kt[kind]
        if desc_pack is not None:
            payload = self._hid_shifted | position
        words[rw] = 0
        try:
            self._pack_body(self._buf, rw * 8 + 8, sensor, ts, arrival, seq, payload, 0, reserved,
                            (kind << KIND_SHIFT) | kt)
            if desc_pack is not None:
                desc_pack(self._buf, self._desc0 + slot * DESCRIPTOR_SLOT_BYTES, *desc_values)
        except (struct.error, TypeError, OverflowError) as exc:
            self._publish_all()  # evictions this push already made stay valid
            raise ValueError(
                f"reservoir {self._m.name}: sample or descriptor values do not fit their u64/u32 fields "
                f"({exc}); sensor={sensor!r} timestamp_ns={ts!r} arrival_ns={arrival!r} sequence={seq!r} "
                f"payload_handle={payload!r} reserved={reserved!r} descriptor={desc_values!r}"
            ) from None
        if _STORE_FENCE is not None:
            _STORE_FENCE()
        words[rw] = position + 1
        words[self._kw0 + kind * cap + kt % cap] = position
        # Suffix minima: an in-order push extends the last run.
        if head == tail:
            self._runs.clear()
            self._last_start = position
        elif ts < self._last_ts:
            self._pop_disorder(ts, position)
        self._last_ts = ts
        self._tail = tail + 1
        self._kt[kind] = kt + 1
        if out_of_order:
            self._ooo += 1
        gen = self._gen + 1
        words[W.GENERATION] = gen
        words[W.TAIL] = tail + 1
        words[W.KIND_TAIL + kind] = kt + 1
        if edge_moved:
            words[W.EDGE_NS] = ts
            words[W.WINDOW_START_NS] = self._ws
        if evicted_kinds:
            words[W.HEAD] = head
            kh = self._kh
            if evicted_kinds & (evicted_kinds - 1):
                for k in range(KIND_COUNT):
                    words[W.KIND_HEAD + k] = kh[k]
            else:
                k = evicted_kinds.bit_length() - 1
                words[W.KIND_HEAD + k] = kh[k]
            words[W.EVICTED_AGED] = self._ev_aged
            words[W.EVICTED_DISORDER] = self._ev_dis
            words[W.EVICTED_CAPACITY] = self._ev_cap
        if out_of_order:
            words[W.OUT_OF_ORDER] = self._ooo
        words[W.GENERATION] = gen + 1
        self._gen = gen + 1
        words[latest_word] = position + 1
        return position

    def push_observed(self, kind: int, sensor: int, timestamp_ns: int, arrival_ns: int, sequence: int) -> int:
        """Store one *observed* sample, a claim from outside the rig; return its position, or a :class:`Refused`.

        For samples nobody here measured (a remote receiver's anchors): they may
        never move the edge and never evict. Refused, and nothing changed, when
        the timestamp is after the edge (:attr:`Refused.AFTER_EDGE`) or before
        the window start (``BEFORE_WINDOW``), when the window holds ``capacity``
        samples (``FULL``), or when a value is not a u64 int (``INVALID``). The
        caller moves the edge with trusted time (:meth:`set_edge`) and counts
        refusals. Accepted, it is an ordinary sample (an out-of-order one counts
        in ``out_of_order``, see the module doc's disorder rule). Not the hot
        path: :meth:`_push` is left as it is.
        """
        if not 0 <= kind < KIND_COUNT:
            check_kind(kind)
        if timestamp_ns.__class__ is not int or arrival_ns.__class__ is not int \
                or not (0 <= timestamp_ns <= _MAX_U64 and 0 <= arrival_ns <= _MAX_U64):
            return Refused.INVALID
        if timestamp_ns > self._edge:
            return Refused.AFTER_EDGE
        if timestamp_ns < self._ws:
            return Refused.BEFORE_WINDOW
        if self._tail - self._head >= self._cap:
            return Refused.FULL
        word = self._latest_word[kind].get(sensor)
        if word is None:
            word = self._latest_entry(kind, sensor)
        return self._push(kind, sensor, timestamp_ns, arrival_ns, sequence, 0, 0, word, None, None)

    def set_edge(self, edge_ns: int) -> int:
        """Move the edge forward to ``edge_ns`` (never back) and evict what left the window; return the edge."""
        if not isinstance(edge_ns, int) or not 0 <= edge_ns <= _MAX_U64:
            raise ValueError(f"edge_ns must be a u64 int, got {edge_ns!r}")
        if edge_ns > self._edge:
            self._edge = edge_ns
            ws = edge_ns - self._dur if edge_ns > self._dur else 0
            if ws > self._ws:
                self._ws = ws
                if self._head < self._tail:
                    self._evict_window(ws)
            self._publish_all()
        return self._edge

    # ---- eviction ---------------------------------------------------------------------------------------------
    def _ts_at(self, position: int) -> int:
        return self._words[self._rw0 + (position % self._cap) * 8 + 2]

    def _evict_window(self, ws: int) -> int:
        """Advance the head past the newest suffix minimum before ``ws``; return the bit mask of evicted kinds."""
        ts_at = self._ts_at
        runs = self._runs
        new_head = self._head
        while True:
            if runs:
                run = runs[0]
                start, end = run
            else:
                run = None
                start, end = self._last_start, self._tail
                if start >= end:
                    break
            if ts_at(start) >= ws:
                break
            p = start + 1
            while p < end and ts_at(p) < ws:
                p += 1
            new_head = p
            if run is None:
                self._last_start = p
                break
            if p < end:
                run[0] = p
                break
            runs.popleft()
        if new_head <= self._head:
            return 0
        words = self._words
        cap = self._cap
        rw0 = self._rw0
        kh = self._kh
        mask = 0
        aged = 0
        for p in range(self._head, new_head):
            rw = rw0 + (p % cap) * 8
            k = words[rw + 7] >> KIND_SHIFT
            kh[k] += 1
            mask |= 1 << k
            if words[rw + 2] < ws:
                aged += 1
        self._ev_aged += aged
        self._ev_dis += new_head - self._head - aged
        self._head = new_head
        if new_head == self._tail:
            runs.clear()
            self._last_start = new_head
        return mask

    def _evict_capacity(self) -> int:
        """Evict the oldest sample to make room; return the bit of its kind."""
        head = self._head
        k = self._words[self._rw0 + (head % self._cap) * 8 + 7] >> KIND_SHIFT
        self._kh[k] += 1
        self._ev_cap += 1
        self._head = head + 1
        runs = self._runs
        if runs:
            run = runs[0]
            if run[0] == head:
                run[0] = head + 1
                if run[0] >= run[1]:
                    runs.popleft()
        elif self._last_start == head:
            self._last_start = head + 1
        return 1 << k

    def _pop_disorder(self, ts: int, position: int) -> None:
        """An out-of-order push at ``position``: drop suffix minima later than ``ts``, start a new last run."""
        ts_at = self._ts_at
        start = self._last_start
        p = position - 1
        while p >= start and ts_at(p) > ts:
            p -= 1
        if p >= start:
            self._runs.append([start, p + 1])
        else:
            runs = self._runs
            while runs:
                run = runs[-1]
                p = run[1] - 1
                while p >= run[0] and ts_at(p) > ts:
                    p -= 1
                if p >= run[0]:
                    run[1] = p + 1
                    break
                runs.pop()
        self._last_start = position

    # ---- publication ----------------------------------------------------------------------------------------
    def _publish_all(self) -> None:
        """Store every status word from the private mirrors inside one generation (slow path)."""
        words = self._words
        gen = self._gen + 1
        words[W.GENERATION] = gen
        words[W.EDGE_NS] = self._edge
        words[W.WINDOW_START_NS] = self._ws
        words[W.HEAD] = self._head
        words[W.TAIL] = self._tail
        words[W.LATE] = self._late
        words[W.OUT_OF_ORDER] = self._ooo
        words[W.REJECTED] = self._rejected
        words[W.EVICTED_AGED] = self._ev_aged
        words[W.EVICTED_DISORDER] = self._ev_dis
        words[W.EVICTED_CAPACITY] = self._ev_cap
        words[W.SENSORS] = self._sensors
        for k in range(KIND_COUNT):
            words[W.KIND_HEAD + k] = self._kh[k]
            words[W.KIND_TAIL + k] = self._kt[k]
        words[W.GENERATION] = gen + 1
        self._gen = gen + 1

    def _reject(self, count: int) -> None:
        self._rejected += count
        words = self._words
        gen = self._gen + 1
        words[W.GENERATION] = gen
        words[W.REJECTED] = self._rejected
        words[W.GENERATION] = gen + 1
        self._gen = gen + 1


def _u64(value: object, what: str) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int (u64 nanoseconds), got {type(value).__name__} {value!r}") from None
    if not 0 <= value <= _MAX_U64:
        raise ValueError(f"{what} {value} is outside u64")
    return value

