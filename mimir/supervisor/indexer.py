"""Descriptors from worker rings into the reservoir, with canonical time. The supervisor's hot path.

One :class:`RingIndexer` per source ring. Each :meth:`RingIndexer.poll`
batch-reads every new descriptor into a preallocated structured array (one
vectorised copy per contiguous span, seqlock-checked), converts host or device
times to canonical nanoseconds with one affine map per batch, and pushes the
batch into the reservoir through the source's producer. Payloads are never
touched: the reservoir stores the descriptor and its payload handle, which
resolves to the ring slot.

Counters per source: ``published`` (what the ring says was written),
``indexed``, ``lost_overrun`` (overwritten before we read them: the ring
reader's exact loss count), ``refused`` (read, but the reservoir refused
them: a timestamp it cannot hold) and publish-to-indexed latency samples.
"""

from __future__ import annotations

import time

import numpy as np

from mimir.descriptors import AudioBlockDescriptor, AudioBlockRecord, CameraFrameDescriptor, SampleKind
from mimir.reservoir import Reservoir
from mimir.supervisor.clock import CanonicalClock
from mimir.timebase import DeviceTimeToHost, StreamToHost
from ringbuf import RingReader, dtype_of

__all__ = ["RingIndexer", "LatencyWindow"]

BATCH = 512
FRAMES_REMEMBERED = 512  # per camera: the canonical time of its newest frames, for producers (mimir.supervisor.features)
SINGLE_PUSH_MAX = 32  # below this many items one typed push per item is cheaper than the vectorised batch path
# Positions of the fields the row path reads, derived from the declared Structs.
_CAM_HOST = CameraFrameDescriptor.__struct_fields__.index("host_time_ns")
_CAM_DEVICE = CameraFrameDescriptor.__struct_fields__.index("device_time_ns")
_CAM_SEQUENCE = CameraFrameDescriptor.__struct_fields__.index("sequence")
_AUDIO_START = AudioBlockRecord.__struct_fields__.index("start_sample")
_AUDIO_HOST = AudioBlockRecord.__struct_fields__.index("host_time_ns")
_AUDIO_ADC = AudioBlockRecord.__struct_fields__.index("adc_time_ns")
_AUDIO_STREAM = AudioBlockRecord.__struct_fields__.index("stream_time_ns")
_AUDIO_DESCRIPTOR_FIELDS = len(AudioBlockDescriptor.__struct_fields__)  # the record extends the descriptor


class LatencyWindow:
    """The last N publish-to-indexed latencies (ns) in a preallocated array."""

    def __init__(self, size: int = 8192) -> None:
        self.values_ns = np.zeros(size, dtype=np.int64)
        self.count = 0
        self._scratch = np.zeros(size, dtype=np.int64)  # percentiles partition a copy, never the window
        self._answered: tuple[int, tuple[float, ...], list[float]] = (-1, (), [])  # (count, qs, result)

    def reset(self) -> None:
        """Forget every latency (a benchmark's measured span starts here)."""
        self.count = 0
        self._answered = (-1, (), [])

    def add(self, latencies_ns: np.ndarray) -> None:
        n = len(latencies_ns)
        if n >= len(self.values_ns):
            self.values_ns[:] = latencies_ns[-len(self.values_ns):]
            self.count += n
            return
        start = self.count % len(self.values_ns)
        head = min(n, len(self.values_ns) - start)
        self.values_ns[start:start + head] = latencies_ns[:head]
        self.values_ns[: n - head] = latencies_ns[head:]
        self.count += n

    def add_one(self, latency_ns: int) -> None:
        self.values_ns[self.count % len(self.values_ns)] = latency_ns
        self.count += 1

    def percentiles_us(self, *qs: float) -> list[float]:
        """Nearest-rank percentiles of the window, in us (0.0 while empty); unchanged windows are not recomputed."""
        count, asked, result = self._answered
        if count == self.count and asked == qs:
            return result
        n = min(self.count, len(self.values_ns))
        if n == 0:
            result = [0.0 for _ in qs]
        else:
            ranks = [min(n - 1, int(q / 100.0 * (n - 1) + 0.5)) for q in qs]
            scratch = self._scratch[:n]
            scratch[:] = self.values_ns[:n]
            scratch.partition(sorted(set(ranks)))
            result = [float(scratch[r]) / 1e3 for r in ranks]
        self._answered = (self.count, qs, result)
        return result


class RingIndexer:
    """Index one source ring (camera frames or audio blocks) into the reservoir."""

    def __init__(self, name: str, reader: RingReader, reservoir: Reservoir, clock: CanonicalClock,
                 latency: LatencyWindow, *, source_hash: int) -> None:
        """``source_hash`` is the reservoir sensor id of the ring's source (the rig contract's)."""
        self.name = name
        self.reader = reader
        self.clock = clock
        self.latency = latency
        layout_name = reader.layout.descriptor.name
        if layout_name == CameraFrameDescriptor.__name__:
            self.kind = SampleKind.CAMERA_FRAME
            self._out = np.zeros(BATCH, dtype_of(CameraFrameDescriptor))
            self._typed: np.ndarray | None = None  # audio only: AudioBlockDescriptor records
        elif layout_name == AudioBlockRecord.__name__:
            self.kind = SampleKind.AUDIO_BLOCK
            self._out = np.zeros(BATCH, dtype_of(AudioBlockRecord))
            self._typed = np.zeros(BATCH, dtype_of(AudioBlockDescriptor))
        else:
            raise ValueError(f"ring {reader.name}: cannot index descriptors of layout {layout_name}")
        self._producer = reservoir.producer(self.kind, sensor_id_hash=source_hash)
        self.stream_to_host = StreamToHost()  # audio: the driver's ADC times on the host clock
        self.device_to_host = DeviceTimeToHost()  # cameras: the driver's frame timestamps on the host clock
        self.indexed = 0
        self.refused = 0          # read from the ring but refused by the reservoir (counted, never silent)
        self.last_error = ""
        self.first_host_ns = 0  # host time of the first and the newest item indexed
        self.last_host_ns = 0
        self._canonical = np.zeros(BATCH, dtype=np.uint64)
        # cameras: frame sequence -> the canonical time it was indexed at, for the newest FRAMES_REMEMBERED frames
        self._recent_sequence = [-1] * FRAMES_REMEMBERED
        self._recent_canonical = [0] * FRAMES_REMEMBERED

    def canonical_of(self, sequence: int) -> int | None:
        """The canonical ns this camera's frame ``sequence`` was indexed at, if it is among the newest indexed."""
        i = sequence % FRAMES_REMEMBERED
        return self._recent_canonical[i] if self._recent_sequence[i] == sequence else None

    @property
    def time_source(self) -> int:
        """Which clock places this ring's samples (:class:`mimir.timebase.TimeSource`)."""
        mapper = self.device_to_host if self.kind == SampleKind.CAMERA_FRAME else self.stream_to_host
        return int(mapper.source)

    def poll(self) -> int:
        """Index everything new; return how many descriptors were read (indexed or refused).

        Never raises for what a worker published: a batch the reservoir
        refuses (a timestamp it cannot hold) is counted in ``refused`` with
        the reason in ``last_error``, and indexing goes on.
        """
        if self.reader.available() <= 0:  # the common case: one shared-memory word read
            return 0
        total = 0
        while True:
            n = self.reader.read_batch(self._out)
            if n == 0:
                return total
            try:
                self._index(n)
            except (ValueError, TypeError, OverflowError) as exc:
                self.refused += n
                self.last_error = f"{n} descriptors refused by the reservoir: {exc}"
            total += n
            if n < BATCH:
                return total

    def _index(self, n: int) -> None:
        now_ns = time.monotonic_ns()
        if n <= SINGLE_PUSH_MAX:
            self._index_rows(n, now_ns)
        else:
            self._index_batch(n, now_ns)
        self.indexed += n

    def _index_rows(self, n: int, now_ns: int) -> None:
        """Few items (the steady state): one typed push per row, no numpy temporaries."""
        rows = self._out[:n].tolist()
        clock = self.clock
        record = self.latency.add_one
        if self.kind == SampleKind.CAMERA_FRAME:
            host_at = _CAM_HOST
            producer = self._producer
            frame_host = self.device_to_host.host_of
            recent_sequence, recent_canonical = self._recent_sequence, self._recent_canonical
            for values in rows:
                receipt = values[_CAM_HOST]
                canonical = clock.from_host_ns(frame_host(values[_CAM_DEVICE], receipt))
                producer.push_camera_frame(canonical, now_ns, values)
                record(now_ns - receipt)
                sequence = values[_CAM_SEQUENCE]
                recent_sequence[sequence % FRAMES_REMEMBERED] = sequence
                recent_canonical[sequence % FRAMES_REMEMBERED] = canonical
        else:
            host_at = _AUDIO_HOST
            producer = self._producer
            adc_host = self.stream_to_host.host_of
            for values in rows:
                start, entry = values[_AUDIO_START], values[_AUDIO_HOST]
                host = adc_host(values[_AUDIO_ADC], entry, values[_AUDIO_STREAM])
                clock.observe_audio_block(host, start)
                producer.push_audio_block(clock.from_device_sample(start, host), now_ns, values[:_AUDIO_DESCRIPTOR_FIELDS])
                record(now_ns - entry)
        if not self.first_host_ns:
            self.first_host_ns = rows[0][host_at]
        self.last_host_ns = rows[-1][host_at]

    def _index_batch(self, n: int, now_ns: int) -> None:
        """A backlog (after a stall or at start): one vectorised reservoir push."""
        out = self._out[:n]
        host = out["host_time_ns"]
        canonical = self._canonical[:n]
        if self.kind == SampleKind.CAMERA_FRAME:
            frame_host = self.device_to_host.host_of
            placed = np.fromiter((frame_host(int(d), int(h)) for d, h in zip(out["device_time_ns"], host)),
                                 dtype=np.int64, count=n)
            origin_host, origin_canonical, scale = self.clock.host_affine(int(placed[-1]))
            np.add(origin_canonical, np.rint((placed - origin_host) * scale).astype(np.int64),
                   out=canonical, casting="unsafe")
            descriptors = out
            handles = out["payload_handle"]
            for sequence, at in zip(out["sequence"].tolist(), canonical.tolist()):
                self._recent_sequence[sequence % FRAMES_REMEMBERED] = sequence
                self._recent_canonical[sequence % FRAMES_REMEMBERED] = at
        else:
            adc_host = self.stream_to_host.host_of
            hosts = [adc_host(int(a), int(h), int(t))
                     for a, h, t in zip(out["adc_time_ns"], host, out["stream_time_ns"])]
            for h, s in zip(hosts[-4:], out["start_sample"][-4:]):  # a few pairs per batch feed the host fit
                self.clock.observe_audio_block(h, int(s))
            for i in range(n):
                canonical[i] = self.clock.from_device_sample(int(out["start_sample"][i]), hosts[i])
            assert self._typed is not None and self._typed.dtype.names is not None  # audio rings: made in __init__
            typed = self._typed[:n]
            for field in self._typed.dtype.names:
                typed[field] = out[field]
            descriptors = typed
            handles = out["data_handle"]
        self._producer.push_batch(canonical, np.full(n, now_ns, np.uint64), handles, descriptors)
        self.latency.add(now_ns - host.astype(np.int64))
        if not self.first_host_ns:
            self.first_host_ns = int(host[0])
        self.last_host_ns = int(host[-1])
