"""The supervisor's status board: consistent snapshots in shared memory for `mimir status`.

The board is two snapshot rings (see :meth:`ringbuf.RingReader.latest`),
named by the rig contract (:mod:`mimir.topology`):

* ``sw`` (``supervisor.workers``) - descriptor :class:`SupervisorHeader`,
  payload :data:`MAX_WORKERS` :class:`WorkerRow` records;
* ``ss`` (``supervisor.sources``) - descriptor :class:`SourcesHeader`, payload
  :data:`MAX_SOURCES` :class:`SourceRow` records.

The supervisor publishes a fresh snapshot a few times a second; readers copy
the newest one under the ring's seqlock, so a snapshot is never torn. No
files, no JSON on this path. Creating ``supervisor.workers`` is also the rig
lock: a second supervisor of the same rig fails to create it while the
first is alive (and reclaims it when the first was killed).
"""

from __future__ import annotations

import enum
import math
from typing import Annotated

import msgspec
import numpy as np

from mimir.record.status import RecorderStatus, read_recorders, recorder_lines
from mimir.topology import BOARD_SOURCES, BOARD_WORKERS
from ringbuf import F32, F64, I32, I64, U32, U64, Ring, RingReader

__all__ = [
    "MAX_WORKERS", "MAX_SOURCES", "WorkerState", "Health", "SupervisorHeader", "WorkerRow",
    "SourcesHeader", "SourceRow", "StatusBoard", "StatusSnapshot", "read_status", "text",
]

MAX_WORKERS = 16
MAX_SOURCES = 64
WORKERS_RING = BOARD_WORKERS
SOURCES_RING = BOARD_SOURCES

# Fixed-size byte strings (NUL padded): ringbuf.layout.Bytes(n), spelled as aliases a type checker reads.
Bytes24 = Annotated[bytes, msgspec.Meta(max_length=24, extra={"dtype": "|S24"})]
Bytes32 = Annotated[bytes, msgspec.Meta(max_length=32, extra={"dtype": "|S32"})]
Bytes48 = Annotated[bytes, msgspec.Meta(max_length=48, extra={"dtype": "|S48"})]
Bytes80 = Annotated[bytes, msgspec.Meta(max_length=80, extra={"dtype": "|S80"})]
Bytes96 = Annotated[bytes, msgspec.Meta(max_length=96, extra={"dtype": "|S96"})]
Bytes120 = Annotated[bytes, msgspec.Meta(max_length=120, extra={"dtype": "|S120"})]


class WorkerState(enum.IntEnum):
    STARTING = 0
    RUNNING = 1
    BACKOFF = 2       # crashed; waiting to restart
    FAILED = 3        # crashed too often; not retried
    STOPPED = 4


class Health(enum.IntEnum):
    UNKNOWN = 0
    GREEN = 1
    RED = 2


class SupervisorHeader(msgspec.Struct):
    pid: U32
    state: U32                 # WorkerState of the supervisor itself (RUNNING / STOPPED)
    started_unix_ns: U64
    uptime_ns: U64
    workers: U32
    sources: U32
    indexed_total: U64
    lost_total: U64
    cpu_pct: F32               # supervisor process CPU, % of one core, over the last second
    index_latency_p50_us: F32  # publish (host time in the descriptor) to indexed
    index_latency_p99_us: F32
    reservoir_edge_ns: U64
    reservoir_window_start_ns: U64
    reservoir_samples: U64
    clock_state: U32           # mimir.supervisor.clock.ClockState: provisional, locked, holdover
    clock_stream: U32          # audio stream incarnation the clock follows
    clock_segment: U64         # index of the present clock segment (every lock, step, restart starts one)
    clock_last_step_ns: I64    # how far the last lock or step moved canonical time
    clock_relocks: U32
    clock_reference: I32       # the audio channel that defines canonical time, -1 none (see supervisor/reference.py)
    clock_reference_why: Bytes80
    clock_authority: U32       # what defines canonical time now: 0 the reference channel, k network.sources[k - 1]
    clock_authority_why: Bytes96
    clock_authority_uncertainty_ns: U64  # a remote authority's time-transfer uncertainty (0: local)
    net_listening: U32               # 1 when network.listen is set
    net_handshakes_unknown_key: U64  # CURVE handshakes refused: a key not in the config
    net_handshakes_refused: U64      # CURVE handshakes refused: a listed key with trust = reject
    net_connections_dropped: U64     # connections lost: frames over 1 MiB, protocol errors, or closed by the peer
    net_claims_dropped: U64          # claims lost to the listener's full queue (cannot happen at the claim rates)


class WorkerRow(msgspec.Struct):
    name: Bytes24
    pid: U32
    state: U32
    restarts: U32
    last_exit_code: I32
    started_unix_ns: U64
    error: Bytes120


class SourcesHeader(msgspec.Struct):
    sources: U32


class SourceRow(msgspec.Struct):
    name: Bytes32
    label: Bytes48           # audio channels: the input's name, role and device index from the channel map
    kind: U32                  # mimir.descriptors.SampleKind
    worker: U32                # index into the worker rows
    configured_hz: F64         # frames/s or blocks/s asked for
    delivered_hz: F64          # measured over the last second
    published: U64             # items the worker published (all incarnations)
    indexed: U64               # descriptors indexed into the reservoir
    lost_overrun: U64          # overwritten before the supervisor read them
    lost_restart_gap: U64      # expected items missing across worker restarts
    device_dropped: U64
    corrupt: U64
    ring_fill: F32             # reader lag / capacity
    reader_lag: U64
    health: U32                # Health
    clock_locked: U32
    clock_local_sample_at_epoch: F64
    clock_rate_hz: F64
    clock_confidence: F32
    clock_mae_samples: F32
    # audio channels: the path profile from the sync worker's fit (FitRow); NaN where it has none yet
    path_strongest_minus_direct_ms: F32
    path_drr_db: F32
    path_rt60_s: F32
    trust_level: U32           # remote sources: 1 + rank in mimir.net.trust.TRUST_LEVELS; 0 for local sources
    influences_canonical: U32  # remote sources at or above network.influence_at
    rejected: U64              # local: descriptors the reservoir refused; remote: reports rejected, all causes
    time_source: U32           # mimir.timebase.TimeSource: adc, callback entry, device timestamp, receipt
    # remote sources (mimir.net): what became of their reports and claims, by cause
    rate_limited: U64          # reports over network.max_messages_per_s (not read; the receiver sends them again)
    connections: U32           # connections its reports came over (1 + reconnections)
    claims_stored: U64         # claims in the observed store (``obs``)
    claims_refused_future: U64  # claims of a time after the rig's now
    claims_refused_past: U64   # claims of a time before the window (or the epoch)
    claims_refused_rate: U64   # claims over network.max_claims_per_s
    claims_refused_cap: U64    # claims over the source's cap inside the window
    transfer_ready: U32        # remote: its time transfer has a line (mimir.net.timetransfer)
    transfer_uncertainty_us: F32  # remote: the line's bound at its newest echo
    transfer_round_trip_us: F32   # remote: probe round trip, p50


class StatusBoard:
    """The writer side (supervisor only). Creating it takes the rig lock."""

    def __init__(self, rig: str) -> None:
        self.workers_ring = Ring.create(
            WORKERS_RING, rig=rig, descriptor=SupervisorHeader, capacity=4, label=f"{rig}/supervisor.workers",
            payload_shape=(MAX_WORKERS,), payload_dtype=WorkerRow,
        )
        try:
            self.sources_ring = Ring.create(
                SOURCES_RING, rig=rig, descriptor=SourcesHeader, capacity=4, label=f"{rig}/supervisor.sources",
                payload_shape=(MAX_SOURCES,), payload_dtype=SourceRow,
            )
        except BaseException:
            self.workers_ring.close()
            raise

    def publish(self, header: SupervisorHeader, workers: np.ndarray, sources: np.ndarray) -> None:
        """Publish one snapshot. ``workers``/``sources`` are structured arrays of the row dtypes."""
        rows = self.workers_ring.claim()
        rows[:] = np.zeros((), rows.dtype)
        rows[: len(workers)] = workers
        self.workers_ring.publish(*msgspec.structs.astuple(header))
        rows = self.sources_ring.claim()
        rows[:] = np.zeros((), rows.dtype)
        rows[: len(sources)] = sources
        self.sources_ring.publish(len(sources))

    def close(self) -> None:
        self.sources_ring.close()
        self.workers_ring.close()


class StatusSnapshot(msgspec.Struct):
    rig: str
    supervisor_alive: bool
    header: dict
    workers: list[dict]
    sources: list[dict]
    reservoir: dict = {}   # the reservoir's own status record: edge, window, per-kind counts, counters
    recorders: list[RecorderStatus] = []  # running `mimir record`s of this rig (mimir.record.status)


def _rows(array: np.ndarray | None, count: int) -> list[dict]:
    """The first ``count`` records of a board ring's payload as dicts (bytes decoded)."""
    assert array is not None, "both board rings are created with a payload of records"
    names = array.dtype.names
    assert names is not None, "board payloads are structured arrays (WorkerRow, SourceRow)"
    out = []
    for row in array[:count]:
        record = {}
        for name in names:
            value = row[name]
            record[name] = value.decode(errors="replace") if isinstance(value, bytes) else value.item()
        out.append(record)
    return out


def read_status(rig: str) -> StatusSnapshot:
    """The newest snapshot of ``rig`` (raises ringbuf.SegmentMissing when no supervisor runs it)."""
    workers = RingReader.attach(WORKERS_RING, rig=rig, descriptor=SupervisorHeader, register=False)
    try:
        sources = RingReader.attach(SOURCES_RING, rig=rig, descriptor=SourcesHeader, register=False)
    except BaseException:
        workers.close()
        raise
    try:
        alive = workers.writer_alive()
        w_item, s_item = workers.latest(), sources.latest()
        header = dict(zip(SupervisorHeader.__struct_fields__, w_item.descriptor)) if w_item else {}
        header = {k: v.rstrip(b"\0").decode(errors="replace") if isinstance(v, bytes) else v for k, v in header.items()}
        worker_rows = _rows(w_item.payload, header.get("workers", 0)) if w_item else []
        source_rows = _rows(s_item.payload, s_item.descriptor[0]) if s_item else []
        return StatusSnapshot(rig, alive, header, worker_rows, source_rows, _reservoir_status(rig),
                              read_recorders(rig))
    finally:
        sources.close()
        workers.close()


def _reservoir_status(rig: str) -> dict:
    from mimir.reservoir import ReservoirView  # the reservoir imports ringbuf only; keep status light to import
    from mimir.topology import RESERVOIR

    try:
        view = ReservoirView.attach(rig, RESERVOIR)
    except FileNotFoundError:
        return {}
    try:
        return msgspec.structs.asdict(view.status())
    finally:
        view.close()


_TRUST_NAMES = {0: "", 1: "reject", 2: "observe-only", 3: "candidate-evidence", 4: "trusted-evidence",
                5: "canonical-authority"}
_STATE_NAMES = {s.value: s.name.lower() for s in WorkerState}
_CLOCK_NAMES = {0: "provisional", 1: "locked", 2: "HOLDOVER"}
_TIME_SOURCES = {0: "", 1: "timed by callback entry", 2: "timed by the driver's ADC clock",
                 3: "timed by the device's frame clock", 4: "timed at receipt (latency estimated)"}
_HEALTH_NAMES = {h.value: h.name.lower() for h in Health}


def text(snapshot: StatusSnapshot) -> str:
    """A terminal rendering of one snapshot (what `mimir status` prints)."""
    h = snapshot.header
    lines = []
    alive = "running" if snapshot.supervisor_alive else "NOT RUNNING (stale status)"
    lines.append(
        f"rig {snapshot.rig}: supervisor pid {h.get('pid', '?')} {alive}, up {h.get('uptime_ns', 0) / 1e9:.1f} s, "
        f"cpu {h.get('cpu_pct', 0):.1f} %"
    )
    clock_state = _CLOCK_NAMES.get(h.get("clock_state", 0), "?")
    lines.append(
        f"canonical clock: {clock_state}, segment {h.get('clock_segment', 0)} (audio stream {h.get('clock_stream', 0)}), "
        f"{h.get('clock_relocks', 0)} locks, last step {h.get('clock_last_step_ns', 0) / 1e6:+.3f} ms"
        + ("" if clock_state == "locked" else "  (timestamps are not from a current witness fit)")
    )
    ref_channel = h.get("clock_reference", -1)
    why = h.get("clock_reference_why", "")
    lines.append(f"clock authority: {h.get('clock_authority_why', '')}")
    ref_label = next((s["label"] for s in snapshot.sources if s["name"] == f"audio.ch{ref_channel}"), "")
    lines.append("reference channel: " + (f"ch{ref_channel} {ref_label}: {why}".replace("  ", " ")
                                          if ref_channel >= 0 else f"none ({why})"))
    if h.get("net_listening"):
        lines.append(
            f"network: handshakes refused: unknown key {h.get('net_handshakes_unknown_key', 0):,}, trust = reject "
            f"{h.get('net_handshakes_refused', 0):,}; connections dropped {h.get('net_connections_dropped', 0):,} "
            f"(frames over 1 MiB, protocol errors, or closed by the peer); claims lost to a full queue "
            f"{h.get('net_claims_dropped', 0):,}"
        )
    lines.append(
        f"reservoir: {h.get('reservoir_samples', 0):,} samples, window "
        f"{h.get('reservoir_window_start_ns', 0) / 1e9:.3f} .. {h.get('reservoir_edge_ns', 0) / 1e9:.3f} s; "
        f"indexed {h.get('indexed_total', 0):,}, lost {h.get('lost_total', 0):,}; "
        f"publish->indexed p50 {h.get('index_latency_p50_us', 0):.0f} us, p99 {h.get('index_latency_p99_us', 0):.0f} us"
    )
    r = snapshot.reservoir
    if r:
        kinds = ", ".join(f"{name.removesuffix('_count')} {r[name]:,}" for name in r
                          if name.endswith("_count") and name != "total_sample_count" and r[name])
        lines.append(
            f"reservoir by kind: {kinds or 'empty'}; late {r.get('late', 0):,}, rejected {r.get('rejected', 0):,}, "
            f"evicted early for capacity {r.get('evicted_capacity', 0):,}"
        )
    lines.append("")
    lines.append(f"{'worker':24s} {'pid':>7s} {'state':>8s} {'restarts':>8s} {'exit':>5s}  error")
    for w in snapshot.workers:
        lines.append(
            f"{w['name']:24s} {w['pid']:>7d} {_STATE_NAMES.get(w['state'], '?'):>8s} {w['restarts']:>8d} "
            f"{w['last_exit_code']:>5d}  {w['error']}"
        )
    lines.append("")
    lines.append(
        f"{'source':24s} {'rate/s':>9s} {'of':>7s} {'indexed':>10s} {'overrun':>8s} {'gap':>6s} {'dev.drop':>8s} "
        f"{'corrupt':>7s} {'fill':>5s} {'health':>7s}  clock fit"
    )
    ref_channel = h.get("clock_reference", -1)
    reference = next((s for s in snapshot.sources if s["name"] == f"audio.ch{ref_channel}" and s["clock_locked"]),
                     None)
    for s in snapshot.sources:
        clock = (
            f"{s['clock_rate_hz']:.3f} Hz, conf {s['clock_confidence']:.2f}, mae {s['clock_mae_samples']:.2f} smp"
            if s["clock_locked"] else "-"
        )
        if reference is not None and s["name"].startswith("audio.ch") and s["clock_locked"]:
            # Compare the fits now, where they were measured: extrapolated to the epoch (months away) a
            # rate difference far below the fits' uncertainty would swamp the path delay.
            now_s = h.get("reservoir_edge_ns", 0) / 1e9
            path = (s["clock_local_sample_at_epoch"] - reference["clock_local_sample_at_epoch"]
                    + now_s * (s["clock_rate_hz"] - reference["clock_rate_hz"]))
            path_ms = path / s["clock_rate_hz"] * 1e3 if s["clock_rate_hz"] > 0 else 0.0
            clock += (f", path {path:+.2f} smp ({path_ms:+.3f} ms) vs ch{ref_channel}" if s is not reference
                      else ", REFERENCE")
        if s["name"].startswith("audio.ch") and s["clock_locked"]:
            room = []
            for form, value in (("strongest path {:+.2f} ms", s.get("path_strongest_minus_direct_ms")),
                                ("DRR {:.1f} dB", s.get("path_drr_db")), ("RT60 {:.2f} s", s.get("path_rt60_s"))):
                if value is not None and math.isfinite(value):  # NaN: not measured yet
                    room.append(form.format(round(value, 2) + 0.0))  # + 0.0: never "-0.00"
            if room:
                clock += "; " + ", ".join(room)
        if s.get("label"):
            clock = f"{s['label']}: {clock}"
        trust = _TRUST_NAMES.get(s.get("trust_level", 0), "?")
        if trust:
            clock += f"; trust {trust}" + (", influences canonical time" if s["influences_canonical"] else "") \
                + f"; rejected {s['rejected']:,} (over the rate {s['rate_limited']:,}); {s['connections']} connections"
            clock += (f"; time transfer " + (f"+-{s['transfer_uncertainty_us']:.0f} us (round trip "
                                             f"{s['transfer_round_trip_us']:.0f} us)" if s["transfer_ready"]
                                             else "not ready"))
            clock += (f"; claims stored {s['claims_stored']:,}, refused: future {s['claims_refused_future']:,}, "
                      f"past {s['claims_refused_past']:,}, over the rate {s['claims_refused_rate']:,}, "
                      f"over the cap {s['claims_refused_cap']:,}")
        elif s["kind"] == 1:  # SampleKind.CAMERA_FEATURE: a local producer, bounded like a remote source
            clock += (f"; records indexed {s['claims_stored']:,}, refused: unknown or past frame "
                      f"{s['claims_refused_past']:,}, over the rate {s['claims_refused_rate']:,}, window full "
                      f"{s['claims_refused_cap']:,}, unknown camera or invalid {s['corrupt']:,}")
        elif s["rejected"]:
            clock += f"; REFUSED by the reservoir {s['rejected']:,} (see the worker's error)"
        timed = _TIME_SOURCES.get(s.get("time_source", 0), "")
        if timed:
            clock += f"; {timed}"
        lines.append(
            f"{s['name']:24s} {s['delivered_hz']:>9.1f} {s['configured_hz']:>7.1f} {s['indexed']:>10,d} "
            f"{s['lost_overrun']:>8,d} {s['lost_restart_gap']:>6,d} {s['device_dropped']:>8,d} {s['corrupt']:>7,d} "
            f"{s['ring_fill'] * 100:>4.0f}% {_HEALTH_NAMES.get(s['health'], '?'):>7s}  {clock}"
        )
    if snapshot.recorders:
        lines.append("")
        lines.extend(recorder_lines(snapshot.recorders))
    return "\n".join(lines)
