"""Batched pushes: many samples per call, the same result as pushing them one by one.

:class:`BatchPush` extends the writer's window state machine
(:class:`mimir.reservoir.writer.WindowWriter`) with the batch path;
:class:`mimir.reservoir.store.Reservoir` builds on it.

The vectorised path (:meth:`BatchPush._push_run`) takes rows in timestamp
order that are all at or after the edge, so none is late or out of order and
they all extend the last suffix-minimum run. For step ``j`` of such a run the
window head is ``max(W_j, C_j)``: ``W_j`` is one past the newest suffix
minimum with a timestamp before ``window_start_j`` and ``C_j = tail_j -
capacity``. Both only grow, so the final head is their last value, and each
evicted sample is classified (aged / disorder / capacity) by the first step
whose head passes it, exactly as the one-at-a-time path would. Rows up to the
last one that arrived out of order go through the one-at-a-time path first.

Publication: the eviction of already published samples is published first
(one generation), then the surviving rows are written under stamp 0 and
stamped, then the new tail, heads and counters are published (one generation).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from mimir.descriptors import SampleHandle
from ringbuf import fence
from ringbuf.layout import dtype_of

from .errors import UnknownKind
from .layout import KIND_COUNT, KIND_SHIFT, check_kind, struct_fields
from .results import LATE, BatchResult
from .writer import WindowWriter

__all__ = ["BatchPush", "SAMPLE_DTYPE", "u64_column"]

SAMPLE_DTYPE = dtype_of(SampleHandle)
_SAMPLE_FIELDS = [name for name, _, _ in struct_fields(SAMPLE_DTYPE)]
_STORE_FENCE = None if fence.TSO else fence.store_fence


@dataclass(frozen=True)
class _Evictions:
    """What a vectorised run evicts: samples stored before the run (``old_*``) and rows of the run (``new_*``).

    Each evicted sample is counted once, by the first step whose head passes
    it: aged (its timestamp is before that step's window start), disorder
    (passed with an older, later-pushed sample) or capacity.
    """

    old_per_kind: np.ndarray  # int64[KIND_COUNT]
    new_per_kind: np.ndarray  # int64[KIND_COUNT]
    old_count: int = 0
    old_aged: int = 0
    old_disorder: int = 0
    old_capacity: int = 0
    new_aged: int = 0
    new_disorder: int = 0
    new_capacity: int = 0


_NO_EVICTIONS = _Evictions(np.zeros(KIND_COUNT, dtype=np.int64), np.zeros(KIND_COUNT, dtype=np.int64))


class BatchPush(WindowWriter):
    """The reservoir writer with batched pushes (see the module docstring)."""

    def push_batch(self, kinds: int | np.ndarray, samples: np.ndarray) -> BatchResult:
        """Push many samples at once; same result as pushing them one by one, in order.

        ``samples``: structured array with the SampleHandle fields (e.g. of
        :data:`SAMPLE_DTYPE`). ``kinds``: one kind for all rows or an array of
        kinds. Rows with non-zero flags are skipped and counted as rejected.
        The vectorised path covers the rows after the last one that arrived out
        of timestamp order; rows before it go through the one-at-a-time path.
        """
        row_count = len(samples)
        names = samples.dtype.names or ()
        missing = [f for f in _SAMPLE_FIELDS if f not in names]
        if missing:
            raise TypeError(f"push_batch: samples need the SampleHandle fields; missing {missing} (use SAMPLE_DTYPE)")
        kind_column = _kind_column(kinds, row_count)
        flagged = samples["flags"] != 0
        rejected = int(flagged.sum())
        if rejected:
            self._reject(rejected)
            keep = ~flagged
            samples = samples[keep]
            kind_column = kind_column[keep]
        columns = [u64_column(f, samples[f]) for f in
                   ("sensor_id_hash", "timestamp_ns", "arrival_ns", "sequence", "payload_handle", "reserved")]
        result = self._push_arrays(kind_column, *columns, descriptor_kind=None, descriptors=None)
        return BatchResult(result.stored, result.late, rejected, result.first_position)

    def _register_pairs(self, kinds: np.ndarray, sensors: np.ndarray) -> None:
        """Insert every new (kind, sensor) pair of a batch in the latest table before anything is pushed."""
        for kind in np.unique(kinds).tolist():
            known = self._latest_words[kind]
            for sensor in np.unique(sensors[kinds == kind]).tolist():
                if sensor not in known:
                    self._latest_word_for(kind, sensor)

    def _push_arrays(self, kinds: np.ndarray, sensors: np.ndarray, timestamps_ns: np.ndarray,
                     arrivals_ns: np.ndarray, sequences: np.ndarray, payloads: np.ndarray, reserved: np.ndarray, *,
                     descriptor_kind: int | None, descriptors: np.ndarray | None) -> BatchResult:
        """Push validated live rows (u8 kinds, u64 columns). Rows before the last disorder go one by one.

        ``descriptors`` (rows of ``descriptor_kind``'s descriptor dtype) are
        stored beside the rows, whose payload handles become descriptor handles.
        """
        row_count = len(timestamps_ns)
        first_position = self._tail
        if row_count == 0:
            return BatchResult(0, 0, 0, first_position)
        self._register_pairs(kinds, sensors)
        # edge_before[i]: the edge when row i is pushed; a row below it arrived out of order.
        edge_before = np.empty(row_count, dtype=np.uint64)
        edge_before[0] = self._edge_ns
        if row_count > 1:
            np.maximum(np.maximum.accumulate(timestamps_ns[:-1]), np.uint64(self._edge_ns), out=edge_before[1:])
        disorder = np.flatnonzero(timestamps_ns < edge_before)
        split = int(disorder[-1]) + 1 if disorder.size else 0
        late = 0
        if split:
            late = self._push_one_by_one(
                [c[:split] for c in (kinds, sensors, timestamps_ns, arrivals_ns, sequences, payloads, reserved)],
                descriptor_kind, None if descriptors is None else descriptors[:split])
        if split < row_count:
            self._push_run(kinds[split:], sensors[split:], timestamps_ns[split:], arrivals_ns[split:],
                           sequences[split:], payloads[split:], reserved[split:], descriptor_kind,
                           None if descriptors is None else descriptors[split:])
        return BatchResult(row_count - late, late, 0, first_position)

    def _push_one_by_one(self, columns: list[np.ndarray], descriptor_kind: int | None,
                         descriptors: np.ndarray | None) -> int:
        """Push rows through the one-at-a-time path (pairs already registered); return how many were late."""
        descriptor_pack = None if descriptor_kind is None else self._descriptor_pack[descriptor_kind]
        descriptor_rows = descriptors.tolist() if descriptors is not None else None
        latest_words = self._latest_words
        late = 0
        rows = zip(*[c.tolist() for c in columns])
        for i, (kind, sensor, timestamp_ns, arrival_ns, sequence, payload, reserved) in enumerate(rows):
            position = self._push(kind, sensor, timestamp_ns, arrival_ns, sequence, payload, reserved,
                                  latest_words[kind][sensor], descriptor_pack,
                                  descriptor_rows[i] if descriptor_rows is not None else ())
            if position == LATE:
                late += 1
        return late

    def _run_cut(self, start: int, end: int, window_start_ns: int) -> int:
        """First position in suffix-minimum run [start, end) whose timestamp is >= ``window_start_ns`` (bisection)."""
        timestamp_at = self._timestamp_at
        lo, hi = start, end
        while lo < hi:
            mid = (lo + hi) // 2
            if timestamp_at(mid) < window_start_ns:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _push_run(self, kinds: np.ndarray, sensors: np.ndarray, timestamps_ns: np.ndarray, arrivals_ns: np.ndarray,
                  sequences: np.ndarray, payloads: np.ndarray, reserved: np.ndarray, descriptor_kind: int | None,
                  descriptors: np.ndarray | None) -> None:
        """Vectorised push of rows in timestamp order, each >= the edge (so none is late or out of order).

        Reproduces the one-at-a-time result exactly: for step j the window
        head is ``max(W_j, C_j)`` where ``W_j`` follows the last suffix
        minimum before the step's window start and ``C_j = tail_j - capacity``;
        each evicted sample is classified by the first step that evicts it.
        Publishes in three phases (module docstring): old evictions, rows, tail.
        """
        row_count = len(timestamps_ns)
        capacity = self._capacity
        first_position = self._tail
        old_head = self._head
        positions = first_position + np.arange(row_count, dtype=np.int64)
        duration_ns = np.uint64(self._duration_ns)
        window_starts_ns = np.maximum(timestamps_ns, duration_ns) - duration_ns
        window_heads = self._window_heads(timestamps_ns, positions, window_starts_ns)
        new_head = max(old_head, int(window_heads[-1]), int(positions[-1]) + 1 - capacity)
        evictions = self._classify_evictions(new_head, kinds, timestamps_ns, window_starts_ns, window_heads)
        if evictions.old_count:  # phase A: old samples leave before their slots are reused
            self._retire_old(evictions, min(new_head, first_position))
        kind_positions, rows_of_kind = self._kind_positions(kinds)
        first_kept = max(0, new_head - first_position)  # rows before it are evicted within the batch
        if descriptor_kind is not None:
            payloads = np.uint64(self._descriptor_handle_base) | positions.astype(np.uint64)
        kind_words = (kinds.astype(np.uint64) << np.uint64(KIND_SHIFT)) | kind_positions
        self._write_rows(first_kept, positions, (
            ("sensor_id_hash", sensors), ("timestamp_ns", timestamps_ns), ("arrival_ns", arrivals_ns),
            ("sequence", sequences), ("payload_handle", payloads), ("flags", None), ("reserved", reserved),
            ("kind_position", kind_words)), descriptor_kind, descriptors)
        kind_index = self._m.kind_index
        for kind, rows in rows_of_kind.items():
            kept = rows[rows >= first_kept]
            if kept.size:
                kind_index[kind][(kind_positions[kept] % np.uint64(capacity)).astype(np.intp)] = \
                    positions[kept].astype(np.uint64)
            self._kind_tail[kind] += int(rows.size)
            self._kind_head[kind] += int(evictions.new_per_kind[kind])
        self._finish_run(old_head, first_position, new_head, int(timestamps_ns[-1]), int(window_starts_ns[-1]),
                         row_count, evictions)
        self._publish_latest(rows_of_kind, sensors, positions)

    def _window_heads(self, timestamps_ns: np.ndarray, positions: np.ndarray, window_starts_ns: np.ndarray
                      ) -> np.ndarray:
        """``W_j`` for every step j: one past the newest suffix minimum before step j's window start (or the head).

        The candidates are the suffix minima of the window (old runs, oldest
        first) and every row of the run (each extends the last run), all with
        a timestamp before the final window start; in push order their
        timestamps are non-decreasing, so one ``searchsorted`` finds each step's.
        """
        old_head = self._head
        first_position = self._tail
        final_window_start_ns = int(window_starts_ns[-1])
        minima_positions: list[np.ndarray] = []
        minima_timestamps: list[np.ndarray] = []
        if old_head < first_position and final_window_start_ns > self._window_start_ns:
            records = self._m.records
            # Only the first runs up to the final window start matter: walk them lazily, without copying the list.
            for start, end in itertools.chain(self._minima_runs, ((self._last_run_start, first_position),)):
                if start >= end:
                    continue
                cut = self._run_cut(start, end, final_window_start_ns)
                if cut > start:
                    old = np.arange(start, cut, dtype=np.int64)
                    minima_positions.append(old)
                    minima_timestamps.append(records["timestamp_ns"][old % self._capacity])
                if cut < end:
                    break
        new_before = int(np.searchsorted(timestamps_ns, final_window_start_ns, side="left"))
        if new_before:
            minima_positions.append(positions[:new_before])
            minima_timestamps.append(timestamps_ns[:new_before])
        if not minima_positions:
            return np.full(len(timestamps_ns), old_head, dtype=np.int64)
        candidates = np.concatenate(minima_positions)
        passed = np.searchsorted(np.concatenate(minima_timestamps), window_starts_ns, side="left")
        return np.where(passed > 0, candidates[np.maximum(passed - 1, 0)] + 1, old_head)

    def _classify_evictions(self, new_head: int, kinds: np.ndarray, timestamps_ns: np.ndarray,
                            window_starts_ns: np.ndarray, window_heads: np.ndarray) -> _Evictions:
        """Classify the positions ``[head, new_head)`` by the first step that evicts each (see :class:`_Evictions`)."""
        old_head = self._head
        if new_head <= old_head:
            return _NO_EVICTIONS
        capacity = self._capacity
        first_position = self._tail
        records = self._m.records
        evicted = np.arange(old_head, new_head, dtype=np.int64)
        window_step = np.searchsorted(window_heads, evicted, side="right")  # first step whose W passes it
        capacity_step = np.maximum(evicted - first_position + capacity, 0)  # first step whose C passes it
        by_window = window_step <= capacity_step
        old_count = int((evicted < first_position).sum())
        evicted_timestamps = np.empty(evicted.size, dtype=np.uint64)
        evicted_kinds = np.empty(evicted.size, dtype=np.uint8)
        old_slots = evicted[:old_count] % capacity
        evicted_timestamps[:old_count] = records["timestamp_ns"][old_slots]
        evicted_kinds[:old_count] = (records["kind_position"][old_slots] >> np.uint64(KIND_SHIFT)).astype(np.uint8)
        evicted_timestamps[old_count:] = timestamps_ns[evicted[old_count:] - first_position]
        evicted_kinds[old_count:] = kinds[evicted[old_count:] - first_position]
        aged = by_window & (evicted_timestamps < window_starts_ns[np.minimum(window_step, len(timestamps_ns) - 1)])
        by_capacity = ~by_window
        old_aged = int(aged[:old_count].sum())
        old_capacity = int(by_capacity[:old_count].sum())
        new_aged = int(aged[old_count:].sum())
        new_capacity = int(by_capacity[old_count:].sum())
        return _Evictions(
            old_per_kind=np.bincount(evicted_kinds[:old_count], minlength=KIND_COUNT),
            new_per_kind=np.bincount(evicted_kinds[old_count:], minlength=KIND_COUNT),
            old_count=old_count, old_aged=old_aged, old_capacity=old_capacity,
            old_disorder=old_count - old_aged - old_capacity,
            new_aged=new_aged, new_capacity=new_capacity,
            new_disorder=(evicted.size - old_count) - new_aged - new_capacity,
        )

    def _retire_old(self, evictions: _Evictions, head: int) -> None:
        """Phase A: move the head to ``head`` past the evicted old samples and publish it, before slots are reused."""
        for kind in range(KIND_COUNT):
            self._kind_head[kind] += int(evictions.old_per_kind[kind])
        self._head = head
        self._evicted_aged += evictions.old_aged
        self._evicted_disorder += evictions.old_disorder
        self._evicted_capacity += evictions.old_capacity
        self._publish_all()

    def _kind_positions(self, kinds: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Kind position of every row (continuing each kind's tail), and the rows of each kind present."""
        kind_positions = np.empty(len(kinds), dtype=np.uint64)
        present = np.unique(kinds).tolist()
        rows_of_kind = {}
        for kind in present:
            rows = np.flatnonzero(kinds == kind) if len(present) > 1 else np.arange(len(kinds), dtype=np.int64)
            rows_of_kind[kind] = rows
            kind_positions[rows] = np.uint64(self._kind_tail[kind]) + np.arange(rows.size, dtype=np.uint64)
        return kind_positions, rows_of_kind

    def _write_rows(self, first_kept: int, positions: np.ndarray,
                    columns: tuple[tuple[str, np.ndarray | None], ...], descriptor_kind: int | None,
                    descriptors: np.ndarray | None) -> None:
        """Phase B: write rows ``first_kept..`` into their slots under stamp 0, [fence], then stamp them.

        ``columns`` pairs each record field with its values per row (None: 0).
        The slots were free or already retired (phase A published it).
        """
        capacity = self._capacity
        row_count = len(positions)
        records = self._m.records
        first_slot = int(positions[first_kept]) % capacity if first_kept < row_count else 0
        spans = _spans(first_slot, first_kept, row_count - first_kept, capacity)
        stamp = records["stamp"]
        for slot, row, length in spans:
            stamp[slot:slot + length] = 0
        if _STORE_FENCE is not None:
            _STORE_FENCE()
        for slot, row, length in spans:
            for name, column in columns:
                if column is None:
                    records[name][slot:slot + length] = 0
                else:
                    records[name][slot:slot + length] = column[row:row + length]
            if descriptor_kind is not None and descriptors is not None:
                self._m.descriptor_views[descriptor_kind][slot:slot + length] = descriptors[row:row + length]
        if _STORE_FENCE is not None:
            _STORE_FENCE()
        for slot, row, length in spans:
            stamp[slot:slot + length] = positions[row:row + length].astype(np.uint64) + np.uint64(1)

    def _finish_run(self, old_head: int, first_position: int, new_head: int, last_timestamp_ns: int,
                    final_window_start_ns: int, row_count: int, evictions: _Evictions) -> None:
        """Phase C: the rows extend the last run, runs before ``new_head`` go; update the mirrors and publish."""
        if old_head == first_position:  # the window was empty: the run starts with the batch
            self._last_run_start = first_position
        runs = self._minima_runs
        while runs and runs[0][1] <= new_head:
            runs.popleft()
        if runs:
            runs[0][0] = max(runs[0][0], new_head)
        else:
            self._last_run_start = max(self._last_run_start, new_head)
        self._last_timestamp_ns = last_timestamp_ns
        self._tail = first_position + row_count
        self._head = new_head
        self._edge_ns = last_timestamp_ns
        self._window_start_ns = max(self._window_start_ns, final_window_start_ns)
        self._evicted_aged += evictions.new_aged
        self._evicted_disorder += evictions.new_disorder
        self._evicted_capacity += evictions.new_capacity
        self._publish_all()

    def _publish_latest(self, rows_of_kind: dict[int, np.ndarray], sensors: np.ndarray,
                        positions: np.ndarray) -> None:
        """Latest per (kind, sensor): the position of the pair's last row (after the rows are published)."""
        words = self._words
        latest_words = self._latest_words
        for kind, rows in rows_of_kind.items():
            kind_sensors = sensors[rows]
            if kind_sensors.size and (kind_sensors[0] == kind_sensors).all():
                words[latest_words[kind][int(kind_sensors[0])]] = int(positions[rows[-1]]) + 1
                continue
            unique, last_reversed = np.unique(kind_sensors[::-1], return_index=True)
            last_rows = rows[kind_sensors.size - 1 - last_reversed]
            for sensor, row in zip(unique.tolist(), last_rows.tolist()):
                words[latest_words[kind][sensor]] = int(positions[row]) + 1


def _kind_column(kinds: int | np.ndarray, row_count: int) -> np.ndarray:
    """``kinds`` (one kind, or one per row) as a u8 column of ``row_count`` checked SampleKind ids."""
    if np.ndim(kinds) == 0:
        return np.full(row_count, check_kind(kinds), dtype=np.uint8)
    column = np.asarray(kinds)
    if column.shape != (row_count,):
        raise ValueError(f"push_batch: {column.shape[0] if column.ndim else 1} kinds for {row_count} samples")
    bad = (column < 0) | (column >= KIND_COUNT)
    if bad.any():
        raise UnknownKind(
            f"push_batch: unknown sample kind {column[bad][0]!r} at row {int(np.flatnonzero(bad)[0])}; "
            "nothing was pushed (kinds are SampleKind ids 0..8)"
        )
    return column.astype(np.uint8)


def u64_column(name: str, values: object, n: int | None = None) -> np.ndarray:
    """``values`` as a contiguous u64 array; integers only, none negative, ``n`` long if given."""
    array = np.asarray(values)
    if array.dtype.kind not in "ui" and not (array.dtype.kind == "O" and array.size == 0):
        raise TypeError(f"{name} must hold integers (u64 nanoseconds / handles), got dtype {array.dtype}")
    if array.dtype.kind == "i" and array.size and int(array.min()) < 0:
        raise ValueError(f"{name} holds negative values (e.g. {int(array.min())}); u64 fields cannot")
    if array.ndim != 1 or (n is not None and array.shape[0] != n):
        raise ValueError(f"{name} has shape {array.shape}, expected ({'n' if n is None else n},)")
    return np.ascontiguousarray(array, dtype=np.uint64)


def _spans(first_slot: int, first_row: int, count: int, capacity: int) -> list[tuple[int, int, int]]:
    """Split ``count`` consecutive slots starting at ``first_slot`` at the ring's end: [(slot, row, length)]."""
    if count <= 0:
        return []
    head = min(count, capacity - first_slot)
    spans = [(first_slot, first_row, head)]
    if head < count:
        spans.append((0, first_row + head, count - head))
    return spans
