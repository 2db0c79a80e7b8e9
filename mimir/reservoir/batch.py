"""Batched pushes: many samples per call, the same result as pushing them one by one.

:class:`BatchPush` is a mixin of :class:`mimir.reservoir.store.Reservoir`
(it uses the writer's private state and its one-at-a-time ``_push``); it
lives apart only to keep each module to one job.

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

import numpy as np

from mimir.descriptors import SampleHandle
from ringbuf import fence
from ringbuf.layout import dtype_of

from .errors import UnknownKind
from .layout import KIND_COUNT, KIND_SHIFT, check_kind
from .results import LATE, BatchResult

__all__ = ["BatchPush", "SAMPLE_DTYPE", "u64_column"]

SAMPLE_DTYPE = dtype_of(SampleHandle)
_STORE_FENCE = None if fence.TSO else fence.store_fence


class BatchPush:
    """Batched pushes of the reservoir writer (mixin; see the module docstring)."""

    def push_batch(self, kinds: int | np.ndarray, samples: np.ndarray) -> BatchResult:
        """Push many samples at once; same result as pushing them one by one, in order.

        ``samples``: structured array with the SampleHandle fields (e.g. of
        :data:`SAMPLE_DTYPE`). ``kinds``: one kind for all rows or an array of
        kinds. Rows with non-zero flags are skipped and counted as rejected.
        The vectorised path covers the rows after the last one that arrived out
        of timestamp order; rows before it go through the one-at-a-time path.
        """
        n = len(samples)
        missing = [f for f in SAMPLE_DTYPE.names if samples.dtype.names is None or f not in samples.dtype.names]
        if missing:
            raise TypeError(f"push_batch: samples need the SampleHandle fields; missing {missing} (use SAMPLE_DTYPE)")
        if np.ndim(kinds) == 0:
            kind_arr = np.full(n, check_kind(kinds), dtype=np.uint8)
        else:
            kind_arr = np.asarray(kinds)
            if kind_arr.shape != (n,):
                raise ValueError(f"push_batch: {kind_arr.shape[0] if kind_arr.ndim else 1} kinds for {n} samples")
            bad = (kind_arr < 0) | (kind_arr >= KIND_COUNT)
            if bad.any():
                raise UnknownKind(
                    f"push_batch: unknown sample kind {kind_arr[bad][0]!r} at row {int(np.flatnonzero(bad)[0])}; "
                    "nothing was pushed (kinds are SampleKind ids 0..8)"
                )
            kind_arr = kind_arr.astype(np.uint8)
        flagged = samples["flags"] != 0
        rejected = int(flagged.sum())
        if rejected:
            self._reject(rejected)
            keep = ~flagged
            samples = samples[keep]
            kind_arr = kind_arr[keep]
        columns = [u64_column(f, samples[f]) for f in
                   ("sensor_id_hash", "timestamp_ns", "arrival_ns", "sequence", "payload_handle", "reserved")]
        result = self._push_arrays(kind_arr, *columns, desc_kind=None, descriptors=None)
        return BatchResult(result.stored, result.late, rejected, result.first_position)

    def _register_pairs(self, kinds: np.ndarray, sensors: np.ndarray) -> None:
        """Insert every new (kind, sensor) pair of a batch in the latest table before anything is pushed."""
        for k in np.unique(kinds).tolist():
            known = self._latest_word[k]
            for s in np.unique(sensors[kinds == k]).tolist():
                if s not in known:
                    self._latest_entry(k, s)

    def _push_arrays(self, kinds: np.ndarray, sensors: np.ndarray, ts: np.ndarray, arrival: np.ndarray,
                     seqs: np.ndarray, payloads: np.ndarray, reserved: np.ndarray, *, desc_kind: int | None,
                     descriptors: np.ndarray | None) -> BatchResult:
        """Push validated live rows (u8 kinds, u64 columns). Rows before the last disorder go one by one."""
        n = len(ts)
        first = self._tail
        if n == 0:
            return BatchResult(0, 0, 0, first)
        self._register_pairs(kinds, sensors)
        before = np.empty(n, dtype=np.uint64)
        before[0] = self._edge
        if n > 1:
            np.maximum(np.maximum.accumulate(ts[:-1]), np.uint64(self._edge), out=before[1:])
        disorder = np.flatnonzero(ts < before)
        split = int(disorder[-1]) + 1 if disorder.size else 0
        late = 0
        if split:
            desc_pack = None if desc_kind is None else self._desc_pack[desc_kind]
            desc_rows = descriptors[:split].tolist() if descriptors is not None else None
            latest = self._latest_word
            rows = zip(kinds[:split].tolist(), sensors[:split].tolist(), ts[:split].tolist(),
                       arrival[:split].tolist(), seqs[:split].tolist(), payloads[:split].tolist(),
                       reserved[:split].tolist())
            for i, (k, s, t, a, q, p, r) in enumerate(rows):
                got = self._push(k, s, t, a, q, p, r, latest[k][s], desc_pack,
                                 desc_rows[i] if desc_rows is not None else None)
                if got == LATE:
                    late += 1
        if split < n:
            self._push_run(kinds[split:], sensors[split:], ts[split:], arrival[split:], seqs[split:],
                           payloads[split:], reserved[split:], desc_kind,
                           descriptors[split:] if descriptors is not None else None)
        return BatchResult(n - late, late, 0, first)

    def _run_cut(self, start: int, end: int, ws: int) -> int:
        """First position in suffix-minimum run [start, end) whose timestamp is >= ws (binary search)."""
        ts_at = self._ts_at
        lo, hi = start, end
        while lo < hi:
            mid = (lo + hi) // 2
            if ts_at(mid) < ws:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _push_run(self, kinds: np.ndarray, sensors: np.ndarray, ts: np.ndarray, arrival: np.ndarray,
                  seqs: np.ndarray, payloads: np.ndarray, reserved: np.ndarray, desc_kind: int | None,
                  descriptors: np.ndarray | None) -> None:
        """Vectorised push of rows in timestamp order, each >= the edge (so none is late or out of order).

        Reproduces the one-at-a-time result exactly: for step j the window
        head is ``max(W_j, C_j)`` where ``W_j`` follows the last suffix
        minimum before ``ws_j`` and ``C_j = tail_j - capacity``; each evicted
        sample is classified by the first step that evicts it.
        """
        n = len(ts)
        cap = self._cap
        dur = np.uint64(self._dur)
        g0 = self._tail
        head0 = self._head
        records = self._m.records
        steps = np.arange(n, dtype=np.int64)
        positions = g0 + steps
        ws = np.maximum(ts, dur) - dur
        ws_final = int(ws[-1])
        # Suffix minima (old runs, then every new row) with timestamps before the final window start.
        cand_pos = []
        cand_ts = []
        if head0 < g0 and ws_final > self._ws:
            # Only the first runs up to the final window start matter: walk them lazily, without copying the list.
            for start, end in itertools.chain(self._runs, ((self._last_start, g0),)):
                if start >= end:
                    continue
                cut = self._run_cut(start, end, ws_final)
                if cut > start:
                    p = np.arange(start, cut, dtype=np.int64)
                    cand_pos.append(p)
                    cand_ts.append(records["timestamp_ns"][p % cap])
                if cut < end:
                    break
        m = int(np.searchsorted(ts, ws_final, side="left"))
        if m:
            cand_pos.append(positions[:m])
            cand_ts.append(ts[:m])
        if cand_pos:
            cpos = np.concatenate(cand_pos)
            cts = np.concatenate(cand_ts)
            idx = np.searchsorted(cts, ws, side="left")
            w_head = np.where(idx > 0, cpos[np.maximum(idx - 1, 0)] + 1, head0)
        else:
            w_head = np.full(n, head0, dtype=np.int64)
        c_head = positions + 1 - cap
        head_final = max(head0, int(w_head[-1]), int(c_head[-1]))
        # Classify the evicted positions [head0, head_final) by the first step that evicts each.
        kh = self._kh
        aged_old = dis_old = cap_old = 0
        aged_new = dis_new = cap_new = 0
        new_evicted_counts = np.zeros(KIND_COUNT, dtype=np.int64)
        if head_final > head0:
            ev = np.arange(head0, head_final, dtype=np.int64)
            jw = np.searchsorted(w_head, ev, side="right")
            jc = np.maximum(ev - g0 + cap, 0)
            by_window = jw <= jc
            old = ev < g0
            ev_ts = np.empty(ev.size, dtype=np.uint64)
            ev_kind = np.empty(ev.size, dtype=np.uint8)
            n_old = int(old.sum())
            old_slots = ev[:n_old] % cap
            ev_ts[:n_old] = records["timestamp_ns"][old_slots]
            ev_kind[:n_old] = (records["kind_position"][old_slots] >> np.uint64(KIND_SHIFT)).astype(np.uint8)
            ev_ts[n_old:] = ts[ev[n_old:] - g0]
            ev_kind[n_old:] = kinds[ev[n_old:] - g0]
            aged = by_window & (ev_ts < ws[np.minimum(jw, n - 1)])
            by_cap = ~by_window
            aged_old = int(aged[:n_old].sum())
            cap_old = int(by_cap[:n_old].sum())
            dis_old = n_old - aged_old - cap_old
            aged_new = int(aged[n_old:].sum())
            cap_new = int(by_cap[n_old:].sum())
            dis_new = (ev.size - n_old) - aged_new - cap_new
            old_counts = np.bincount(ev_kind[:n_old], minlength=KIND_COUNT)
            new_evicted_counts = np.bincount(ev_kind[n_old:], minlength=KIND_COUNT)
            if n_old:
                # Phase A: publish the eviction of old samples before their slots are reused.
                for k in range(KIND_COUNT):
                    kh[k] += int(old_counts[k])
                self._head = min(head_final, g0)
                self._ev_aged += aged_old
                self._ev_dis += dis_old
                self._ev_cap += cap_old
                self._publish_all()
        # Kind positions of the new rows.
        kt = self._kt
        kind_pos = np.empty(n, dtype=np.uint64)
        present = np.unique(kinds).tolist()
        rows_of_kind = {}
        for k in present:
            rows = np.flatnonzero(kinds == k) if len(present) > 1 else steps
            rows_of_kind[k] = rows
            kind_pos[rows] = np.uint64(kt[k]) + np.arange(rows.size, dtype=np.uint64)
        # Phase B: write the rows that survive the batch (a stamp of 0 marks a slot being rewritten).
        i0 = max(0, head_final - g0)
        if desc_kind is not None:
            payloads = np.uint64(self._hid_shifted) | positions.astype(np.uint64)
        kind_word = (kinds.astype(np.uint64) << np.uint64(KIND_SHIFT)) | kind_pos
        columns = (("sensor_id_hash", sensors), ("timestamp_ns", ts), ("arrival_ns", arrival), ("sequence", seqs),
                   ("payload_handle", payloads), ("flags", None), ("reserved", reserved), ("kind_position", kind_word))
        spans = _spans(int(positions[i0]) % cap if i0 < n else 0, i0, n - i0, cap)
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
            if desc_kind is not None:
                self._m.descriptor_views[desc_kind][slot:slot + length] = descriptors[row:row + length]
        if _STORE_FENCE is not None:
            _STORE_FENCE()
        for slot, row, length in spans:
            stamp[slot:slot + length] = positions[row:row + length].astype(np.uint64) + np.uint64(1)
        kind_index = self._m.kind_index
        for k, rows in rows_of_kind.items():
            live = rows[rows >= i0]
            if live.size:
                kind_index[k][(kind_pos[live] % np.uint64(cap)).astype(np.intp)] = positions[live].astype(np.uint64)
            kt[k] += int(rows.size)
            kh[k] += int(new_evicted_counts[k])
        # Suffix minima: the rows extend the last run; then drop everything before the new head.
        if head0 == g0:
            self._last_start = g0
        runs = self._runs
        while runs and runs[0][1] <= head_final:
            runs.popleft()
        if runs:
            runs[0][0] = max(runs[0][0], head_final)
        else:
            self._last_start = max(self._last_start, head_final)
        self._last_ts = int(ts[-1])
        self._tail = g0 + n
        self._head = head_final
        self._edge = int(ts[-1])
        self._ws = max(self._ws, ws_final)
        self._ev_aged += aged_new
        self._ev_dis += dis_new
        self._ev_cap += cap_new
        self._publish_all()  # Phase C
        # Latest per (kind, sensor): the last row of each pair.
        words = self._words
        latest = self._latest_word
        for k, rows in rows_of_kind.items():
            ks = sensors[rows]
            if ks.size and (ks[0] == ks).all():
                words[latest[k][int(ks[0])]] = int(positions[rows[-1]]) + 1
                continue
            uniq, last_rev = np.unique(ks[::-1], return_index=True)
            last_rows = rows[ks.size - 1 - last_rev]
            for s, r in zip(uniq.tolist(), last_rows.tolist()):
                words[latest[k][s]] = int(positions[r]) + 1


def u64_column(name: str, values, n: int | None = None) -> np.ndarray:
    """``values`` as a contiguous u64 array; integers only, none negative, ``n`` long if given."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "ui" and not (arr.dtype.kind == "O" and arr.size == 0):
        raise TypeError(f"{name} must hold integers (u64 nanoseconds / handles), got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0:
        raise ValueError(f"{name} holds negative values (e.g. {int(arr.min())}); u64 fields cannot")
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise ValueError(f"{name} has shape {arr.shape}, expected ({'n' if n is None else n},)")
    return np.ascontiguousarray(arr, dtype=np.uint64)


def _spans(first_slot: int, first_row: int, count: int, cap: int) -> list[tuple[int, int, int]]:
    """Split ``count`` consecutive slots starting at ``first_slot`` at the ring's end: [(slot, row, length)]."""
    if count <= 0:
        return []
    head = min(count, cap - first_slot)
    spans = [(first_slot, first_row, head)]
    if head < count:
        spans.append((0, first_row + head, count - head))
    return spans
