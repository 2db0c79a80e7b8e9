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
reader's exact loss count) and publish-to-indexed latency samples.
"""

from __future__ import annotations

import time

import numpy as np

from mimir.descriptors import AudioBlockDescriptor, AudioBlockRecord, CameraFrameDescriptor, SampleKind
from mimir.reservoir import Reservoir
from mimir.supervisor.clock import CanonicalClock
from ringbuf import RingReader, dtype_of

__all__ = ["RingIndexer", "LatencyWindow"]

BATCH = 512
SINGLE_PUSH_MAX = 32  # below this many items one typed push per item is cheaper than the vectorised batch path


class LatencyWindow:
    """The last N publish-to-indexed latencies (ns) in a preallocated array."""

    def __init__(self, size: int = 8192) -> None:
        self.values_ns = np.zeros(size, dtype=np.int64)
        self.count = 0

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

    def percentiles_us(self, *qs: float) -> list[float]:
        filled = self.values_ns[: min(self.count, len(self.values_ns))]
        if not len(filled):
            return [0.0 for _ in qs]
        return [float(v) / 1e3 for v in np.percentile(filled, qs)]


class RingIndexer:
    """Index one source ring (camera frames or audio blocks) into the reservoir."""

    def __init__(self, name: str, reader: RingReader, reservoir: Reservoir, clock: CanonicalClock,
                 latency: LatencyWindow) -> None:
        self.name = name
        self.reader = reader
        self.clock = clock
        self.latency = latency
        layout_name = reader.layout.descriptor.name
        if layout_name == CameraFrameDescriptor.__name__:
            self.kind = SampleKind.CAMERA_FRAME
            self._out = np.zeros(BATCH, dtype_of(CameraFrameDescriptor))
            self._typed = None
        elif layout_name == AudioBlockRecord.__name__:
            self.kind = SampleKind.AUDIO_BLOCK
            self._out = np.zeros(BATCH, dtype_of(AudioBlockRecord))
            self._typed = np.zeros(BATCH, dtype_of(AudioBlockDescriptor))
        else:
            raise ValueError(f"ring {reader.name}: cannot index descriptors of layout {layout_name}")
        self._reservoir = reservoir
        self._producers: dict[int, object] = {}
        self.indexed = 0
        self.first_host_ns = 0  # host time of the first and the newest item indexed
        self.last_host_ns = 0
        self._canonical = np.zeros(BATCH, dtype=np.uint64)

    def _producer(self, sensor_id_hash: int):
        producer = self._producers.get(sensor_id_hash)
        if producer is None:
            producer = self._reservoir.producer(self.kind, sensor_id_hash=sensor_id_hash or 1)
            self._producers[sensor_id_hash] = producer
        return producer

    def poll(self) -> int:
        """Index everything new; return how many descriptors were indexed."""
        total = 0
        while True:
            n = self.reader.read_batch(self._out)
            if n == 0:
                return total
            self._index(n)
            total += n
            if n < BATCH:
                return total

    def _index(self, n: int) -> None:
        out = self._out[:n]
        now_ns = time.monotonic_ns()
        host = out["host_time_ns"]
        canonical = self._canonical[:n]
        if self.kind == SampleKind.CAMERA_FRAME:
            origin_host, origin_canonical, scale = self.clock.host_affine(int(host[-1]))
            np.add(origin_canonical, np.rint((host.astype(np.int64) - origin_host) * scale).astype(np.int64),
                   out=canonical, casting="unsafe")
            sensor = int(out["source_id_hash"][0])
            descriptors = out
            handles = out["payload_handle"]
        else:
            for h, s in zip(host[-4:], out["start_sample"][-4:]):  # a few pairs per batch feed the host fit
                self.clock.observe_audio_block(int(h), int(s))
            for i in range(n):
                canonical[i] = self.clock.from_device_sample(int(out["start_sample"][i]), int(host[i]))
            typed = self._typed[:n]
            for field in typed.dtype.names:
                typed[field] = out[field]
            sensor = int(out["channel_layout_hash"][0])
            descriptors = typed
            handles = out["data_handle"]
        producer = self._producer(sensor)
        if n <= SINGLE_PUSH_MAX:
            push = producer.push_camera_frame if self.kind == SampleKind.CAMERA_FRAME else producer.push_audio_block
            fields = len(descriptors.dtype.names)
            for i, values in enumerate(out.tolist()):
                push(int(canonical[i]), now_ns, values[:fields])
        else:
            producer.push_batch(canonical, np.full(n, now_ns, np.uint64), handles, descriptors)
        self.latency.add(now_ns - host.astype(np.int64))
        self.indexed += n
        if not self.first_host_ns:
            self.first_host_ns = int(host[0])
        self.last_host_ns = int(host[-1])
