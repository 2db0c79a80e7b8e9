"""``mimir bench rings``: the shared-memory ring against the usual ways of moving bytes between processes.

Every transport runs through the same harness: a **writer process** and a
**reader process**, started with ``multiprocessing``'s *fork* method (the
children inherit the already imported numpy and ringbuf, so a pair starts in
milliseconds instead of the ~0.3 s a spawned interpreter needs; that is what
lets ``--quick`` run several interleaved rounds in under a minute on two
cores; iceoryx2 is never imported in the parent, each child builds its own
node). Each transport is a pair of small adapters:

* writer ``send(seq, t_ns)``: puts one payload of ``payload_bytes`` on the
  wire. Every writer pays exactly one copy of the whole payload from a
  prepared source buffer (the frame has to be produced somewhere: ``write()``,
  or ``claim()`` and fill the slot in place, or fill iceoryx2's loaned sample),
  and stamps ``seq`` into the first and last 8 bytes and the send time
  (``time.monotonic_ns()``, one clock for all processes) into bytes 8..16.
* reader ``recv(timeout_s)``: blocks on the transport's own wake-up mechanism
  (ring doorbell ``wait()``, iceoryx2 Event listener, ``Queue.get``,
  ``Connection.poll``, faster-fifo ``get``) and returns ``(seq, t_ns)`` read
  back from the payload, the first and last sequence words checked against
  each other (a torn payload fails the run).

The harness counts items and checks that sequence numbers arrive complete
and in order, so nothing can be skipped or faked. Phases of one pair:

``warmup``          a few items (first touch of slots and buffers)
``throughput``      as fast as the writer can send, for a time or item budget
``throughput-copy`` iceoryx2 only: the same with a reader that copies the
                    sample out (the like-for-like peer of the copying ring)
``latency``         a fixed rate (1 kHz; 100 Hz for 6,220,800 B), reader blocked
``latency-spin``    ringbuf only: the same with ``wait(spin_s=...)``

Every size is measured in ``rounds`` rounds, each running every transport
once in a rotated order, so all transports share the machine's background
load; throughput is the best round, latency pools the samples of all rounds.

The ring is lossy by design (its writer never waits). To measure it as a
lossless channel like the others, the bench writer keeps at most
``capacity - 2`` items in flight (:class:`_Backpressure`: a consumed counter
the reader publishes, a semaphore the blocked writer sleeps on); its cost is
charged to the ring. Queue and faster-fifo are bounded to the same capacity,
iceoryx2 runs without overflow and with ``RetryUntilDelivered``, the pipe
has its kernel buffer.

``memcpy`` is the ceiling: one process copying the same source buffer into
``capacity`` rotating slots of a shared-memory segment (the ring's own arena
geometry, hence the same working set).
"""

from __future__ import annotations

import ctypes
import gc
import mmap
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from typing import Callable

import msgspec
import numpy as np

from bench.common import UnsupportedPlatform
from ringbuf import U64, Ring, RingReader, fence
from ringbuf.platform import PLATFORM
from ringbuf.segment import list_segments

if sys.platform == "win32":
    raise UnsupportedPlatform("the ring bench forks its writer and reader and measures against POSIX shared memory "
                              "(posix_ipc): it runs on Linux and macOS")

import posix_ipc  # noqa: E402  (POSIX only: after the platform check)

__all__ = [
    "SIZES", "TRANSPORTS", "Config", "quick_config", "full_config", "run", "goals", "document",
    "format_table", "measure_fences",
]

SIZES = (64, 2048, 614_400, 6_220_800)
TRANSPORTS = ("ringbuf", "ringbuf-zero-copy", "mp-queue", "mp-pipe", "faster-fifo", "iceoryx2")
END = 0xFFFF_FFFF_FFFF_FFFF  # sequence value of the end-of-phase marker
BATCH_ITEM_BYTES = 64

_CTX = mp.get_context("fork")


# ------------------------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class Config:
    """How much of everything one run does."""

    sizes: tuple[int, ...] = SIZES
    transports: tuple[str, ...] = TRANSPORTS
    throughput_s: float = 0.6            # time budget of one throughput phase (per round)
    throughput_max_items: int = 2_000_000  # item budget of one throughput phase
    warmup_items: int = 200              # small payloads; frames warm up 2 x capacity
    latency_samples: int = 2000          # at 1 kHz, all rounds together
    latency_samples_large: int = 200     # 6,220,800 B at 100 Hz, all rounds together
    latency_rate_hz: float = 1000.0
    latency_rate_large_hz: float = 100.0
    spin_s: float = 0.002                # spin-then-wait: spin longer than the 1 ms period
    memcpy: bool = True
    batch: bool = True
    batch_size: int = 4096
    batch_capacity: int = 65536
    batch_s: float = 0.6
    batch_max_items: int = 100_000_000
    fence_calls: int = 200_000
    rig: str = ""                        # ring rig name; "" = benchrings<pid>
    rounds: int = 5                      # every transport once per round, rotated order
    phase_timeout_s: float = 30.0        # a side waiting longer than this for the other gives up
    iox2_root: str = ""                  # iceoryx2 root dir and /dev/shm prefix (set by run())
    iox2_prefix: str = ""


def full_config() -> Config:
    return Config()


def quick_config() -> Config:
    return Config(
        rounds=3, throughput_s=0.1, throughput_max_items=200_000, warmup_items=100,
        latency_samples=300, latency_samples_large=30,
        batch_s=0.15, fence_calls=50_000,
    )


def _capacity(size: int) -> int:
    return 64 if size <= 4096 else 8


def _latency_plan(cfg: Config, size: int) -> tuple[float, int]:
    """(rate, samples per round) of the latency phases for one payload size."""
    if size > 1_000_000:
        rate, total = cfg.latency_rate_large_hz, cfg.latency_samples_large
    else:
        rate, total = cfg.latency_rate_hz, cfg.latency_samples
    return rate, -(-total // max(1, cfg.rounds)) if total else 0


# ------------------------------------------------------------------------------------------------ shared pieces
class BenchDesc(msgspec.Struct):
    """Descriptor of the payload rings (seq and send time ride in the payload too)."""

    sequence: U64
    t_ns: U64


class BatchItem(msgspec.Struct):
    """A 64-byte descriptor-only item for the batched ring."""

    sequence: U64
    t_ns: U64
    a: U64
    b: U64
    c: U64
    d: U64
    e: U64
    f: U64


class _Shared:
    """What one writer/reader pair shares, made in the parent before the fork."""

    def __init__(self, cfg: Config, transport: str, size: int, index: int) -> None:
        self.cfg = cfg
        self.transport = transport
        self.size = size
        self.index = index
        self.capacity = _capacity(size)
        self.name = f"b{os.getpid()}x{index}"
        # One anonymous MAP_SHARED page: word 0 = items the reader has consumed (ring flow control).
        self.page = mmap.mmap(-1, mmap.PAGESIZE)
        self.objects: dict = {}

    def words(self) -> memoryview:
        return memoryview(self.page).cast("Q")


def _source(size: int) -> np.ndarray:
    src = np.empty(size, dtype=np.uint8)
    src[:] = np.arange(size, dtype=np.uint64).astype(np.uint8)
    return src


def _q(buf) -> memoryview:
    """A u64 memoryview over a byte buffer (ndarray, bytearray, ctypes array, bytes)."""
    return memoryview(buf).cast("B").cast("Q")


class _Mismatch(RuntimeError):
    pass


def _check(q: memoryview) -> tuple[int, int]:
    seq = q[0]
    if q[-1] != seq:
        raise _Mismatch(f"payload head says item {seq}, tail says {q[-1]}: torn or corrupted payload")
    return seq, q[1]


# ------------------------------------------------------------------------------------------------ adapters
# Each adapter: open_writer(shared) -> writer with send(seq, t_ns), close();
#               open_reader(shared) -> reader with recv(timeout_s) -> (seq, t_ns) | None, close().
# open_writer runs first (it creates the transport), then open_reader.


class _Backpressure:
    """Bench-side flow control for the lossy ring: at most ``capacity - 2`` items in flight.

    Words of the pair's shared page: ``[0]`` items the reader consumed, ``[1]``
    the consumed count a sleeping writer waits for (0: writer not waiting). The
    same Dekker handshake as the ring's doorbell (store, ``fence.full_fence``,
    load on both sides), a multiprocessing semaphore to sleep on, and
    hysteresis: a blocked writer sleeps until half of the in-flight items are
    consumed, so a reader-bound pipeline does not pay a wake-up per item.
    """

    def __init__(self, sh: _Shared) -> None:
        self.words = sh.words()
        self.sem = sh.objects["credit"]
        self.limit = sh.capacity - 2
        self.timeout_s = sh.cfg.phase_timeout_s
        self.last_posted = 0

    # writer side
    def wait_for_room(self, sent: int) -> None:
        words = self.words
        target = sent - self.limit // 2
        deadline = time.monotonic() + self.timeout_s
        while words[0] < target:
            words[1] = target
            fence.full_fence()
            if words[0] >= target:
                break
            if not self.sem.acquire(True, 0.05) and time.monotonic() > deadline:
                words[1] = 0
                raise _Mismatch(f"reader consumed nothing for {self.timeout_s} s")
        words[1] = 0

    # reader side
    def consumed(self, count: int) -> None:
        words = self.words
        words[0] = count
        fence.full_fence()
        target = words[1]
        if target and count >= target and target != self.last_posted:
            self.last_posted = target
            self.sem.release()


class _RingWriter:
    """Copying writer: ``write(src, ...)`` (one copy into the next slot and publish)."""

    def __init__(self, sh: _Shared) -> None:
        self.ring = Ring.create(sh.name, rig=sh.cfg.rig, descriptor=BenchDesc, capacity=sh.capacity,
                                payload_shape=(sh.size,), payload_dtype=np.uint8)
        self.cap = sh.capacity
        self.limit = sh.capacity - 2
        self.flow = _Backpressure(sh)
        self.acked = sh.words()
        self.sent = 0
        self.src = _source(sh.size)
        self.srcq = _q(self.src)
        self._write = self.ring.write
        self._claim = self.ring.claim
        self._publish = self.ring.publish
        self.slotq: dict[int, memoryview] = {}

    def _wait_for_room(self) -> None:
        self.flow.wait_for_room(self.sent)

    def send(self, seq: int, t_ns: int) -> None:
        if self.sent - self.acked[0] >= self.limit:
            self._wait_for_room()
        q = self.srcq
        q[0] = seq
        q[1] = t_ns
        q[-1] = seq
        self._write(self.src, seq, t_ns)
        self.sent += 1

    def close(self) -> None:
        self.ring.close()


class _RingZeroCopyWriter(_RingWriter):
    def send(self, seq: int, t_ns: int) -> None:
        if self.sent - self.acked[0] >= self.limit:
            self._wait_for_room()
        view = self._claim()
        view[:] = self.src                      # the one copy: the "device" fills the slot in place
        slot = self.sent % self.cap
        q = self.slotq.get(slot)
        if q is None:
            q = self.slotq[slot] = _q(view)
        q[0] = seq
        q[1] = t_ns
        q[-1] = seq
        self._publish(seq, t_ns)
        self.sent += 1

    def close(self) -> None:
        self.slotq.clear()
        super().close()


class _RingReader:
    """Copying reader: ``read_into`` a private buffer, blocked on the doorbell when the ring is empty."""

    def __init__(self, sh: _Shared) -> None:
        self.rd = RingReader.attach(sh.name, rig=sh.cfg.rig, descriptor=BenchDesc)
        self._consumed = _Backpressure(sh).consumed
        self.count = 0
        self.spin_s = 0.0
        self.desc = np.zeros(16, dtype=np.uint8)
        self.out = np.zeros(sh.size, dtype=np.uint8)
        self.outq = _q(self.out)
        self._read_into = self.rd.read_into
        self._wait = self.rd.wait

    def recv(self, timeout_s: float):
        n = self._read_into(self.desc, self.out)
        if n < 0:
            deadline = time.monotonic() + timeout_s
            while n < 0:
                self._wait(0.2, spin_s=self.spin_s)
                n = self._read_into(self.desc, self.out)
                if n < 0 and time.monotonic() > deadline:
                    return None
        self.count += 1
        self._consumed(self.count)
        return _check(self.outq)

    @property
    def lost(self) -> int:
        return self.rd.lost

    def close(self) -> None:
        self.rd.close()


class _RingZeroCopyReader(_RingReader):
    """Zero-copy reader: ``view_next``, read the sequence words in place, then ``valid(seq)``."""

    def __init__(self, sh: _Shared) -> None:
        super().__init__(sh)
        self.cap = sh.capacity
        self.slotq: dict[int, memoryview] = {}
        self._view_next = self.rd.view_next
        self._valid = self.rd.valid
        self.invalid = 0

    def recv(self, timeout_s: float):
        item = self._view_next()
        if item is None:
            deadline = time.monotonic() + timeout_s
            while item is None:
                self._wait(0.2, spin_s=self.spin_s)
                item = self._view_next()
                if item is None and time.monotonic() > deadline:
                    return None
        n, _desc, view = item
        slot = n % self.cap
        q = self.slotq.get(slot)
        if q is None:
            q = self.slotq[slot] = _q(view)
        result = _check(q)
        if not self._valid(n):
            self.invalid += 1
            raise _Mismatch(f"ring item {n} was overwritten while the reader used it")
        self.count += 1
        self._consumed(self.count)
        return result

    def close(self) -> None:
        self.slotq.clear()
        super().close()


class _QueueWriter:
    """multiprocessing.Queue of bytes (bounded like the ring: maxsize = capacity)."""

    def __init__(self, sh: _Shared) -> None:
        self.q = sh.objects["queue"]
        self.src = bytearray(_source(sh.size).tobytes())
        self.srcq = _q(self.src)
        self._put = self.q.put
        self.timeout_s = sh.cfg.phase_timeout_s

    def send(self, seq: int, t_ns: int) -> None:
        q = self.srcq
        q[0] = seq
        q[1] = t_ns
        q[-1] = seq
        self._put(bytes(self.src), True, self.timeout_s)  # a snapshot: the feeder thread pickles it later

    def close(self) -> None:
        self.q.close()
        self.q.join_thread()


class _QueueReader:
    def __init__(self, sh: _Shared) -> None:
        self._get = sh.objects["queue"].get

    def recv(self, timeout_s: float):
        import queue

        try:
            data = self._get(timeout=timeout_s)
        except queue.Empty:
            return None
        return _check(_q(data))

    def close(self) -> None:
        pass


class _PipeWriter:
    """multiprocessing.Pipe(duplex=False): send_bytes from the source buffer."""

    def __init__(self, sh: _Shared) -> None:
        self.conn = sh.objects["pipe_w"]
        self.src = _source(sh.size)
        self.srcq = _q(self.src)
        self._send = self.conn.send_bytes

    def send(self, seq: int, t_ns: int) -> None:
        q = self.srcq
        q[0] = seq
        q[1] = t_ns
        q[-1] = seq
        self._send(self.src)

    def close(self) -> None:
        self.conn.close()


class _PipeReader:
    def __init__(self, sh: _Shared) -> None:
        self.conn = sh.objects["pipe_r"]
        self.size = sh.size
        self.out = bytearray(sh.size)
        self.outq = _q(self.out)
        self._poll = self.conn.poll
        self._recv_into = self.conn.recv_bytes_into

    def recv(self, timeout_s: float):
        if not self._poll(timeout_s):
            return None
        n = self._recv_into(self.out)
        if n != self.size:
            raise _Mismatch(f"pipe delivered {n} bytes, expected {self.size}")
        return _check(self.outq)

    def close(self) -> None:
        self.conn.close()


def _identity(x):
    return x


class _FifoWriter:
    """faster-fifo with raw bytes (no pickling): put copies the ctypes source buffer into its shared ring."""

    def __init__(self, sh: _Shared) -> None:
        self.q = sh.objects["fifo"]
        self.src = (ctypes.c_ubyte * sh.size)()
        memoryview(self.src).cast("B")[:] = _source(sh.size).tobytes()
        self.srcq = _q(self.src)
        self._put = self.q.put
        self.timeout_s = sh.cfg.phase_timeout_s

    def send(self, seq: int, t_ns: int) -> None:
        q = self.srcq
        q[0] = seq
        q[1] = t_ns
        q[-1] = seq
        self._put(self.src, True, self.timeout_s)

    def close(self) -> None:
        pass


class _FifoReader:
    def __init__(self, sh: _Shared) -> None:
        self.q = sh.objects["fifo"]
        self.size = sh.size
        self._get = self.q.get

    def recv(self, timeout_s: float):
        import queue

        try:
            data = self._get(True, timeout_s)  # a memoryview of faster-fifo's private copy
        except queue.Empty:
            return None
        if len(data) != self.size:
            raise _Mismatch(f"faster-fifo delivered {len(data)} bytes, expected {self.size}")
        return _check(_q(data))

    def close(self) -> None:
        pass


def _iox2_node(sh: _Shared):
    import iceoryx2 as iox2

    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    config = iox2.config.default()
    config.global_cfg.prefix = iox2.FileName.new(sh.cfg.iox2_prefix)
    config.global_cfg.root_path = iox2.Path.new(sh.cfg.iox2_root.rstrip("/") + "/")
    node = (iox2.NodeBuilder.new().config(config)
            .signal_handling_mode(iox2.SignalHandlingMode.Disabled).create(iox2.ServiceType.Ipc))
    return iox2, node


def _iox2_pubsub(iox2, node, sh: _Shared):
    return (node.service_builder(iox2.ServiceName.new(f"mimir/bench/{sh.name}"))
            .publish_subscribe(iox2.Slice[ctypes.c_uint8])
            .enable_safe_overflow(False)            # lossless: the publisher waits for room, like the others
            .subscriber_max_buffer_size(sh.capacity)
            .history_size(0))


class _Iox2Writer:
    """iceoryx2 publish-subscribe: loan a slice sample, fill it in place, send; then notify the Event service."""

    def __init__(self, sh: _Shared) -> None:
        iox2, node = _iox2_node(sh)
        self.node = node
        self.service = _iox2_pubsub(iox2, node, sh).create()
        self.publisher = (self.service.publisher_builder().initial_max_slice_len(sh.size)
                          .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered).create())
        self.event = node.service_builder(iox2.ServiceName.new(f"mimir/bench/{sh.name}")).event().create()
        self.notifier = self.event.notifier_builder().create()
        self.size = sh.size
        self.src = _source(sh.size)
        self.views: dict[int, tuple[np.ndarray, memoryview]] = {}
        self._loan = self.publisher.loan_slice_uninit
        self._notify = self.notifier.notify

    def _view(self, ptr: int):
        hit = self.views.get(ptr)
        if hit is None:
            arr = np.ctypeslib.as_array((ctypes.c_uint8 * self.size).from_address(ptr))
            hit = self.views[ptr] = (arr, _q(arr))
        return hit

    def send(self, seq: int, t_ns: int) -> None:
        sample = self._loan(self.size)
        arr, q = self._view(sample.payload_ptr)
        arr[:] = self.src
        q[0] = seq
        q[1] = t_ns
        q[-1] = seq
        sample.assume_init().send()
        self._notify()

    def close(self) -> None:
        self.views.clear()
        for attr in ("notifier", "event", "publisher", "service", "node"):
            setattr(self, attr, None)
        self._loan = self._notify = None
        gc.collect()


class _Iox2Reader:
    """iceoryx2 subscriber, woken by the Event listener; reads the sample in place (its zero-copy API)."""

    def __init__(self, sh: _Shared) -> None:
        iox2, node = _iox2_node(sh)
        self.node = node
        self.service = _iox2_pubsub(iox2, node, sh).open()
        self.subscriber = self.service.subscriber_builder().buffer_size(sh.capacity).create()
        self.event = node.service_builder(iox2.ServiceName.new(f"mimir/bench/{sh.name}")).event().open()
        self.listener = self.event.listener_builder().create()
        self.size = sh.size
        self.copy = False
        self.out = np.zeros(sh.size, dtype=np.uint8)
        self.outq = _q(self.out)
        self.views: dict[int, tuple[np.ndarray, memoryview]] = {}
        self._receive = self.subscriber.receive
        self._timed_wait = self.listener.timed_wait
        self._tick = iox2.Duration.from_millis(200)

    def recv(self, timeout_s: float):
        sample = self._receive()
        if sample is None:
            deadline = time.monotonic() + timeout_s
            while sample is None:
                self._timed_wait(self._tick)
                sample = self._receive()
                if sample is None and time.monotonic() > deadline:
                    return None
        ptr = sample.payload_ptr
        hit = self.views.get(ptr)
        if hit is None:
            arr = np.ctypeslib.as_array((ctypes.c_uint8 * self.size).from_address(ptr))
            hit = self.views[ptr] = (arr, _q(arr))
        try:
            if self.copy:
                self.out[:] = hit[0]
                return _check(self.outq)
            return _check(hit[1])
        finally:
            sample.delete()

    def close(self) -> None:
        self.views.clear()
        for attr in ("listener", "event", "subscriber", "service", "node"):
            setattr(self, attr, None)
        self._receive = self._timed_wait = None
        gc.collect()


ADAPTERS: dict[str, tuple[type, type]] = {
    "ringbuf": (_RingWriter, _RingReader),
    "ringbuf-zero-copy": (_RingZeroCopyWriter, _RingZeroCopyReader),
    "mp-queue": (_QueueWriter, _QueueReader),
    "mp-pipe": (_PipeWriter, _PipeReader),
    "faster-fifo": (_FifoWriter, _FifoReader),
    "iceoryx2": (_Iox2Writer, _Iox2Reader),
}
SPIN_CAPABLE = ("ringbuf",)
COPY_VARIANT = ("iceoryx2",)


def _make_shared_objects(sh: _Shared) -> None:
    """Parent side, before the fork: the kernel/queue objects both children inherit."""
    if sh.transport.startswith("ringbuf"):
        sh.objects["credit"] = _CTX.Semaphore(0)
    elif sh.transport == "mp-queue":
        sh.objects["queue"] = _CTX.Queue(maxsize=sh.capacity)
    elif sh.transport == "mp-pipe":
        r, w = _CTX.Pipe(duplex=False)
        sh.objects["pipe_r"], sh.objects["pipe_w"] = r, w
    elif sh.transport == "faster-fifo":
        from faster_fifo import Queue as FifoQueue

        sh.objects["fifo"] = FifoQueue(max_size_bytes=max(1 << 20, sh.capacity * (sh.size + 64)),
                                       loads=_identity, dumps=_identity)


# ------------------------------------------------------------------------------------------------ phases
@dataclass
class _Phase:
    name: str
    kind: str            # "bulk" or "paced"
    max_items: int
    duration_s: float = 0.0
    rate_hz: float = 0.0
    spin: bool = False
    copy: bool = False   # readers with an in-place API copy the payload out (iceoryx2's copying variant)


def _phases(cfg: Config, transport: str, size: int) -> list[_Phase]:
    cap = _capacity(size)
    warm = cfg.warmup_items if size <= 4096 else 2 * cap
    rate, samples = _latency_plan(cfg, size)
    phases = [
        _Phase("warmup", "bulk", min(warm, cfg.throughput_max_items)),
        _Phase("throughput", "bulk", cfg.throughput_max_items, duration_s=cfg.throughput_s),
    ]
    if samples:
        phases.append(_Phase("latency", "paced", samples, rate_hz=rate))
    if transport in COPY_VARIANT:
        phases.insert(2, _Phase("throughput-copy", "bulk", cfg.throughput_max_items, duration_s=cfg.throughput_s,
                                copy=True))
    if samples and transport in SPIN_CAPABLE:
        phases.append(_Phase("latency-spin", "paced", samples, rate_hz=rate, spin=True))
    return phases


def _writer_phase(w, phase: _Phase, seq: int, size: int) -> tuple[int, dict]:
    send = w.send
    cpu0 = time.process_time()
    start = time.monotonic_ns()
    sent = 0
    if phase.kind == "bulk":
        deadline = start + int(phase.duration_s * 1e9) if phase.duration_s else None
        check_every = 64 if size <= 4096 else 1
        mono = time.monotonic_ns
        while sent < phase.max_items:
            send(seq, 0)
            seq += 1
            sent += 1
            if deadline is not None and sent % check_every == 0 and mono() >= deadline:
                break
    else:
        period = 1.0 / phase.rate_hz
        t0 = time.monotonic() + period
        for i in range(phase.max_items):
            due = t0 + i * period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            send(seq, time.monotonic_ns())
            seq += 1
            sent += 1
    send(END, 0)
    return seq, {"sent": sent, "writer_s": (time.monotonic_ns() - start) / 1e9,
                 "writer_cpu_s": time.process_time() - cpu0}


def _reader_phase(r, phase: _Phase, expected: int, timeout_s: float) -> tuple[int, dict]:
    recv = r.recv
    mono = time.monotonic_ns
    lat: list[int] = []
    got = 0
    out_of_order = 0
    error = None
    cpu0 = time.process_time()
    start = mono()
    last = start
    paced = phase.kind == "paced"
    while True:
        try:
            item = recv(timeout_s)
        except _Mismatch as exc:
            error = str(exc)
            break
        if item is None:
            error = f"no item for {timeout_s} s (got {got})"
            break
        seq, t_ns = item
        if seq == END:
            break
        if paced:
            lat.append(mono() - t_ns)
        if seq != expected:
            out_of_order += 1
            expected = seq
        expected += 1
        got += 1
        last = mono()
    end = mono()
    cpu = time.process_time() - cpu0
    wall = max(end - start, 1) / 1e9
    return expected, {
        "received": got, "out_of_order": out_of_order, "error": error,
        "reader_s": (last - start) / 1e9, "reader_cpu_pct": 100.0 * cpu / wall, "reader_cpu_s": cpu,
        "latency_ns": lat,
    }


def _child(role: str, sh: _Shared, barrier, conn) -> None:
    """Body of the writer or the reader process of one pair."""
    endpoint = None
    try:
        writer_cls, reader_cls = ADAPTERS[sh.transport]
        if role == "writer":
            endpoint = writer_cls(sh)
            barrier.wait(60)        # transport exists
            barrier.wait(60)        # reader attached
        else:
            barrier.wait(60)
            endpoint = reader_cls(sh)
            barrier.wait(60)
        seq = 0
        out = []
        for phase in _phases(sh.cfg, sh.transport, sh.size):
            if role == "reader":
                endpoint.spin_s = sh.cfg.spin_s if phase.spin else 0.0
                endpoint.copy = phase.copy
            barrier.wait(sh.cfg.phase_timeout_s + 30)
            if role == "writer":
                seq, stats = _writer_phase(endpoint, phase, seq, sh.size)
            else:
                seq, stats = _reader_phase(endpoint, phase, seq, sh.cfg.phase_timeout_s)
                if stats["error"]:
                    out.append((phase.name, stats))
                    raise _Mismatch(stats["error"])
            out.append((phase.name, stats))
        lost = getattr(endpoint, "lost", 0) if role == "reader" else 0
        barrier.wait(60)            # both done before anything is torn down
        conn.send(("ok", out, lost))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        try:
            barrier.abort()
        except Exception:
            pass
        try:
            conn.send(("error", f"{role}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}", 0))
        except Exception:
            pass
    finally:
        if endpoint is not None:
            try:
                endpoint.close()
            except Exception:
                pass
        conn.close()


def _percentiles(lat_ns: list[int]) -> tuple[float | None, float | None, float | None]:
    if not lat_ns:
        return None, None, None
    arr = np.asarray(lat_ns, dtype=np.float64) / 1e3
    p50, p99, p999 = np.percentile(arr, [50, 99, 99.9])
    return float(p50), float(p99), float(p999)


def _empty_record(transport: str, size: int | None) -> dict:
    return {
        "transport": transport, "payload_bytes": size, "items_per_s": None, "mb_per_s": None,
        "latency_us_p50": None, "latency_us_p99": None, "latency_us_p999": None,
    }


def _collect(procs: dict, conns: dict, budget_s: float, grace_s: float = 5.0) -> dict:
    """Wait for every child's report; once one fails, give the others ``grace_s`` and kill what is left.

    Only the processes started by the caller are ever killed, through their own handles.
    """
    from multiprocessing.connection import wait as wait_conns

    replies: dict = {}
    deadline = time.monotonic() + budget_s
    pending = dict(conns)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for conn in wait_conns(list(pending.values()), timeout=remaining):
            role = next(r for r, c in pending.items() if c is conn)
            try:
                replies[role] = pending[role].recv()
            except (EOFError, OSError):
                replies[role] = ("error", f"{role} exited without a report", 0)
            del pending[role]
            if replies[role][0] != "ok":
                deadline = min(deadline, time.monotonic() + grace_s)
    for role in pending:
        replies[role] = ("error", f"{role} gave no report in time (killed)", 0)
    for role, p in procs.items():
        p.join(grace_s if role not in pending else 0.1)
        if p.is_alive():
            p.kill()
            p.join(5)
        conns[role].close()
    return replies


def _start(target, args_of_role: dict, name: str) -> tuple[dict, dict]:
    procs, conns = {}, {}
    for role, args in args_of_role.items():
        parent_end, child_end = _CTX.Pipe(duplex=False)
        p = _CTX.Process(target=target, args=(*args, child_end), name=f"{name}-{role}", daemon=True)
        p.start()
        child_end.close()
        procs[role], conns[role] = p, parent_end
    return procs, conns


def _run_pair(cfg: Config, transport: str, size: int, index: int) -> dict:
    """One writer/reader pair through all phases; returns the raw replies of both children."""
    sh = _Shared(cfg, transport, size, index)
    _make_shared_objects(sh)
    barrier = _CTX.Barrier(2)
    try:
        procs, conns = _start(_child, {"writer": ("writer", sh, barrier), "reader": ("reader", sh, barrier)},
                              f"bench-{transport}")
        budget = 60 + 3 * cfg.phase_timeout_s + cfg.throughput_s
        return _collect(procs, conns, budget)
    finally:
        sh.page.close()
        _close_shared_objects(sh)


def _close_shared_objects(sh: _Shared) -> None:
    q = sh.objects.get("queue")
    if q is not None:
        q.close()
        q.cancel_join_thread()
    for key in ("pipe_r", "pipe_w"):
        if key in sh.objects:
            sh.objects[key].close()
    sh.objects.clear()


def _first_error(errors: list[str]) -> str:
    # the failing side's message is the cause; the other side's is usually a broken barrier
    return sorted(errors, key=lambda m: ("BrokenBarrier" in m, "no report" in m))[0].strip().splitlines()[0]


def _pair_record(cfg: Config, transport: str, size: int, rounds: list[dict]) -> dict:
    """Merge the rounds of one transport and size: best throughput, pooled latency samples."""
    rec = _empty_record(transport, size)
    rec.update({"capacity": _capacity(size), "items_sent": 0, "items_received": 0, "lost": 0,
                "out_of_order": 0, "complete": True, "error": None, "rounds": len(rounds)})
    rec["reader_wait"] = "doorbell" if transport.startswith("ringbuf") else {
        "mp-queue": "queue.get", "mp-pipe": "poll", "faster-fifo": "get", "iceoryx2": "event listener",
    }[transport]
    rates, cpus, lat_cpus, spin_cpus, cpu_per_item, copy_rates = [], [], [], [], [], []
    lat: list[int] = []
    spin_lat: list[int] = []
    errors = []
    for replies in rounds:
        bad = [msg for status, msg, _ in replies.values() if status != "ok"]
        if bad:
            errors.append(_first_error(bad))
            errors_detail = rec.setdefault("error_detail", "")
            rec["error_detail"] = errors_detail + "\n".join(bad)
            continue
        w_phases = dict(replies["writer"][1])
        r_phases = dict(replies["reader"][1])
        rec["items_sent"] += sum(ph["sent"] for ph in w_phases.values())
        rec["items_received"] += sum(ph["received"] for ph in r_phases.values())
        rec["out_of_order"] += sum(ph["out_of_order"] for ph in r_phases.values())
        rec["lost"] += replies["reader"][2]
        tp = r_phases["throughput"]
        if tp["received"] and tp["reader_s"] > 0:
            rates.append(tp["received"] / tp["reader_s"])
            cpu_per_item.append(1e6 * (tp["reader_cpu_s"] + w_phases["throughput"]["writer_cpu_s"]) / tp["received"])
        cpus.append(tp["reader_cpu_pct"])
        tpc = r_phases.get("throughput-copy")
        if tpc is not None and tpc["received"] and tpc["reader_s"] > 0:
            copy_rates.append(tpc["received"] / tpc["reader_s"])
        if "latency" in r_phases:
            lat.extend(r_phases["latency"]["latency_ns"])
            lat_cpus.append(r_phases["latency"]["reader_cpu_pct"])
        if "latency-spin" in r_phases:
            spin_lat.extend(r_phases["latency-spin"]["latency_ns"])
            spin_cpus.append(r_phases["latency-spin"]["reader_cpu_pct"])
    if errors:
        rec["error"] = errors[0]
    rec["complete"] = (not errors and rec["items_sent"] == rec["items_received"]
                       and rec["out_of_order"] == 0 and rec["lost"] == 0)
    if rates:
        rec["items_per_s"] = max(rates)
        rec["mb_per_s"] = rec["items_per_s"] * size / 1e6
        rec["items_per_s_median"] = float(np.median(rates))
    rec["reader_cpu_pct"] = float(np.mean(cpus)) if cpus else None
    rec["cpu_us_per_item"] = float(np.median(cpu_per_item)) if cpu_per_item else None
    if copy_rates:
        rec["items_per_s_copying_reader"] = max(copy_rates)
        rec["mb_per_s_copying_reader"] = max(copy_rates) * size / 1e6
    rate, _ = _latency_plan(cfg, size)
    if lat:
        rec["latency_us_p50"], rec["latency_us_p99"], rec["latency_us_p999"] = _percentiles(lat)
        rec["latency_rate_hz"] = rate
        rec["latency_samples"] = len(lat)
        rec["latency_reader_cpu_pct"] = float(np.mean(lat_cpus))
    if spin_lat:
        (rec["latency_spin_us_p50"], rec["latency_spin_us_p99"],
         rec["latency_spin_us_p999"]) = _percentiles(spin_lat)
        rec["latency_spin_reader_cpu_pct"] = float(np.mean(spin_cpus))
        rec["spin_s"] = cfg.spin_s
    return rec


# ------------------------------------------------------------------------------------------------ batched ring
def _batch_child(role: str, cfg: Config, name: str, page: mmap.mmap, barrier, conn) -> None:
    ring: Ring | None = None
    reader: RingReader | None = None
    try:
        acked = memoryview(page).cast("Q")
        n_batch = cfg.batch_size
        if role == "writer":
            ring = Ring.create(name, rig=cfg.rig, descriptor=BatchItem, capacity=cfg.batch_capacity)
            barrier.wait(60)
            barrier.wait(60)
        else:
            barrier.wait(60)
            reader = RingReader.attach(name, rig=cfg.rig, descriptor=BatchItem)
            barrier.wait(60)
        from ringbuf import dtype_of

        dtype = dtype_of(BatchItem)
        base = np.arange(n_batch, dtype=np.uint64)
        barrier.wait(60)
        result: dict[str, float]
        if role == "writer":
            assert ring is not None  # made above, by the writer
            records = np.zeros(n_batch, dtype=dtype)
            seqs = records["sequence"]
            limit = cfg.batch_capacity - n_batch
            publish_batch = ring.publish_batch
            sent = 0
            start = time.monotonic_ns()
            deadline = start + int(cfg.batch_s * 1e9)
            give_up = time.monotonic() + cfg.phase_timeout_s
            while sent < cfg.batch_max_items:
                count = min(n_batch, cfg.batch_max_items - sent)
                while sent - acked[0] > limit:   # the reader is a whole ring behind: let it run
                    os.sched_yield()
                    if time.monotonic() > give_up:
                        raise _Mismatch(f"reader consumed nothing for {cfg.phase_timeout_s} s")
                give_up = time.monotonic() + cfg.phase_timeout_s
                np.add(base, sent, out=seqs)
                publish_batch(records[:count])
                sent += count
                if time.monotonic_ns() >= deadline:
                    break
            end_rec = np.zeros(1, dtype=dtype)
            end_rec["sequence"] = END
            while sent + 1 - acked[0] > limit:
                os.sched_yield()
                if time.monotonic() > give_up:
                    raise _Mismatch(f"reader consumed nothing for {cfg.phase_timeout_s} s")
            publish_batch(end_rec)
            result = {"sent": sent}
        else:
            assert reader is not None  # attached above, by the reader
            out = np.zeros(n_batch, dtype=dtype)
            want = np.empty(n_batch, dtype=np.uint64)
            read_batch = reader.read_batch
            got = 0
            consumed = 0
            bad = 0
            done = False
            cpu0 = time.process_time()
            start = time.monotonic_ns()
            last = start
            timeout_deadline = time.monotonic() + cfg.phase_timeout_s
            while not done:
                n = read_batch(out)
                if n == 0:
                    reader.wait(0.2)
                    if time.monotonic() > timeout_deadline:
                        raise _Mismatch(f"no batch for {cfg.phase_timeout_s} s (got {got})")
                    continue
                timeout_deadline = time.monotonic() + cfg.phase_timeout_s
                consumed += n
                acked[0] = consumed
                seqs = out["sequence"][:n]
                if seqs[n - 1] == END:
                    done = True
                    n -= 1
                    seqs = seqs[:n]
                np.add(base[:n], got, out=want[:n])
                if not np.array_equal(seqs, want[:n]):
                    bad += int(np.count_nonzero(seqs != want[:n]))
                got += n
                last = time.monotonic_ns()
            wall = (time.monotonic_ns() - start) / 1e9
            result = {"received": got, "bad": bad, "reader_s": (last - start) / 1e9,
                      "reader_cpu_pct": 100.0 * (time.process_time() - cpu0) / max(wall, 1e-9),
                      "lost": reader.lost}
        barrier.wait(60)
        conn.send(("ok", result, 0))
    except BaseException as exc:  # noqa: BLE001
        try:
            barrier.abort()
        except Exception:
            pass
        try:
            conn.send(("error", f"{role}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}", 0))
        except Exception:
            pass
    finally:
        if reader is not None:
            reader.close()
        if ring is not None:
            ring.close()
        conn.close()


def _run_batch_round(cfg: Config, index: int) -> dict:
    name = f"b{os.getpid()}batch{index}"
    page = mmap.mmap(-1, mmap.PAGESIZE)
    barrier = _CTX.Barrier(2)
    try:
        procs, conns = _start(_batch_child, {"writer": ("writer", cfg, name, page, barrier),
                                             "reader": ("reader", cfg, name, page, barrier)}, "bench-batch")
        return _collect(procs, conns, 60 + cfg.phase_timeout_s + cfg.batch_s)
    finally:
        page.close()


def _batch_record(cfg: Config, rounds: list[dict]) -> dict:
    rec = _empty_record("ringbuf-batch", BATCH_ITEM_BYTES)
    rec.update({"mode": "batch", "batch_items": cfg.batch_size, "capacity": cfg.batch_capacity,
                "items_sent": 0, "items_received": 0, "lost": 0, "out_of_order": 0, "complete": True,
                "error": None, "rounds": len(rounds), "reader_wait": "doorbell"})
    rates, cpus = [], []
    for replies in rounds:
        bad = [m for st, m, _ in replies.values() if st != "ok"]
        if bad:
            rec["error"] = rec["error"] or _first_error(bad)
            rec["error_detail"] = rec.get("error_detail", "") + "\n".join(bad)
            continue
        w, r = replies["writer"][1], replies["reader"][1]
        rec["items_sent"] += w["sent"]
        rec["items_received"] += r["received"]
        rec["lost"] += r["lost"]
        rec["out_of_order"] += r["bad"]
        if r["received"] and r["reader_s"] > 0:
            rates.append(r["received"] / r["reader_s"])
        cpus.append(r["reader_cpu_pct"])
    rec["complete"] = (rec["error"] is None and rec["items_sent"] == rec["items_received"]
                       and rec["out_of_order"] == 0 and rec["lost"] == 0)
    if rates:
        rec["items_per_s"] = max(rates)
        rec["items_per_s_median"] = float(np.median(rates))
        rec["mb_per_s"] = rec["items_per_s"] * BATCH_ITEM_BYTES / 1e6
    rec["reader_cpu_pct"] = float(np.mean(cpus)) if cpus else None
    return rec


# ------------------------------------------------------------------------------------------------ memcpy ceiling
def _memcpy_child(cfg: Config, size: int, conn) -> None:
    try:
        cap = _capacity(size)
        slot = -(-size // 64) * 64
        total = cap * slot
        name = f"/mimir-benchcpy-{os.getpid()}"
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=total)
        try:
            buf = mmap.mmap(shm.fd, total)
        finally:
            shm.close_fd()
            shm.unlink()             # mapped; the name is not needed any more
        arena = np.frombuffer(buf, dtype=np.uint8)
        slots = [arena[i * slot:i * slot + size] for i in range(cap)]
        src = _source(size)
        srcq = _q(src)
        n_max = cfg.throughput_max_items
        warm = cfg.warmup_items if size <= 4096 else 2 * cap
        for i in range(warm):
            np.copyto(slots[i % cap], src)
        copyto = np.copyto
        n = 0
        start = time.monotonic_ns()
        deadline = start + int(cfg.throughput_s * 1e9)
        mono = time.monotonic_ns
        while n < n_max:
            srcq[0] = n
            srcq[-1] = n
            copyto(slots[n % cap], src)
            n += 1
            if mono() >= deadline:
                break
        elapsed = (mono() - start) / 1e9
        ok = int(_q(slots[(n - 1) % cap])[0]) == n - 1 if n else True
        del slots, arena
        buf.close()
        conn.send(("ok", {"items": n, "seconds": elapsed, "verified": ok}, 0))
    except BaseException as exc:  # noqa: BLE001
        conn.send(("error", f"memcpy: {type(exc).__name__}: {exc}\n{traceback.format_exc()}", 0))
    finally:
        conn.close()


def _run_memcpy_round(cfg: Config, size: int) -> dict:
    procs, conns = _start(_memcpy_child, {"memcpy": (cfg, size)}, "bench-memcpy")
    return _collect(procs, conns, 60 + cfg.throughput_s)


def _memcpy_record(cfg: Config, size: int, rounds: list[dict]) -> dict:
    rec = _empty_record("memcpy", size)
    rec.update({"mode": "single process, numpy copy into shared memory", "capacity": _capacity(size),
                "error": None, "complete": True, "items_sent": 0, "items_received": 0, "rounds": len(rounds)})
    rates = []
    for replies in rounds:
        status, r, _ = replies["memcpy"]
        if status != "ok":
            rec["error"] = rec["error"] or r.strip().splitlines()[0]
            rec["error_detail"] = r
            rec["complete"] = False
            continue
        if r["seconds"] > 0 and r["items"]:
            rates.append(r["items"] / r["seconds"])
        rec["items_sent"] += r["items"]
        rec["items_received"] += r["items"]
        rec["complete"] = rec["complete"] and bool(r["verified"])
    if rates:
        rec["items_per_s"] = max(rates)
        rec["items_per_s_median"] = float(np.median(rates))
        rec["mb_per_s"] = rec["items_per_s"] * size / 1e6
    return rec


# ------------------------------------------------------------------------------------------------ fences
def measure_fences(calls: int) -> list[dict]:
    """ns per call of each fence in ringbuf.fence (a Python call of a no-op is given as the floor)."""

    def noop() -> None:
        return None

    out = []
    candidates = [
        ("noop-call", noop, calls),
        ("lock", fence.lock_fence, calls),
        ("yield", fence.yield_fence, max(1000, calls // 10)),
        ("full", fence.full_fence, calls),
        ("store", fence.store_fence, calls),
    ]
    for label, fn, n in candidates:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter_ns()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter_ns() - t) / n)
        rec = _empty_record("fence", None)
        rec.update({"fence": label, "ns_per_call": best, "calls": n})
        if label == "full":
            rec["is"] = fence.full_fence.__name__
        if label == "store":
            rec["is"] = fence.store_fence.__name__
        out.append(rec)
    return out


# ------------------------------------------------------------------------------------------------ driver
def _iox2_cleanup(root: str, prefix: str) -> None:
    shutil.rmtree(root, ignore_errors=True)
    try:
        for entry in os.listdir("/dev/shm"):
            if entry.startswith(prefix):
                try:
                    os.unlink(os.path.join("/dev/shm", entry))
                except OSError:
                    pass
    except OSError:
        pass


def _ring_cleanup(rig: str) -> list[str]:
    """Remove anything a crashed bench writer left under its rig; return what was removed."""
    left = list_segments(rig)
    for entry in left:
        PLATFORM.remove_object(entry)
    return left


_OPTIONAL_PEERS = {"faster-fifo": "faster_fifo", "iceoryx2": "iceoryx2"}


def _missing_peers(transports: tuple[str, ...]) -> dict[str, str]:
    """Optional peers (the ``bench`` extra) that are not installed: transport -> reason."""
    import importlib.util

    out = {}
    for transport in transports:
        module = _OPTIONAL_PEERS.get(transport)
        if module and importlib.util.find_spec(module) is None:
            out[transport] = f"{module} is not installed (pip install 'mimir-rig[bench]')"
    return out


def _summary(rec: dict) -> str:
    rate = f"{rec['items_per_s']:,.0f} items/s" if rec.get("items_per_s") else "-"
    p99 = f", p99 {rec['latency_us_p99']:,.0f} us" if rec.get("latency_us_p99") else ""
    status = "" if rec.get("complete") else f"  INCOMPLETE: {rec.get('error')}"
    return f"{rate}{p99}{status}"


def run(quick: bool, *, config: Config | None = None,
        progress: Callable[[str], None] | None = None) -> list[dict]:
    """Run the ring benchmark; return flat records (transports, memcpy, batch, fences).

    Each size is measured in ``rounds`` rounds; every round runs every transport
    once, in a rotated order, so all of them see the same background load.
    Throughput is the best round, latency pools the samples of all rounds.
    """
    cfg = config or (quick_config() if quick else full_config())
    if not cfg.rig:
        cfg = replace(cfg, rig=f"benchrings{os.getpid()}")
    root = tempfile.mkdtemp(prefix="mimir-bench-iox2-")
    cfg = replace(cfg, iox2_root=root, iox2_prefix=f"mimirbench{os.getpid()}_")
    say = progress or (lambda msg: None)
    records: list[dict] = []
    t_start = time.monotonic()
    try:
        say("fences ...")
        fences = measure_fences(cfg.fence_calls)
        records.extend(fences)
        say("fences (ns/call): " + ", ".join(f"{r['fence']} {r['ns_per_call']:.0f}" for r in fences))
        index = 0
        missing = _missing_peers(cfg.transports)
        for transport, why in missing.items():
            say(f"{transport}: skipped, {why}")
        for size in cfg.sizes:
            for transport, why in missing.items():
                rec = _empty_record(transport, size)
                rec.update({"complete": None, "error": f"skipped: {why}"})
                records.append(rec)
            jobs = (["memcpy"] if cfg.memcpy else []) + [t for t in cfg.transports if t not in missing]
            raw: dict[str, list] = {job: [] for job in jobs}
            for rnd in range(cfg.rounds):
                shift = rnd % len(jobs)
                for job in jobs[shift:] + jobs[:shift]:
                    index += 1
                    t = time.monotonic()
                    if job == "memcpy":
                        raw[job].append(_run_memcpy_round(cfg, size))
                        partial = _memcpy_record(cfg, size, raw[job][-1:])
                    else:
                        raw[job].append(_run_pair(cfg, job, size, index))
                        partial = _pair_record(cfg, job, size, raw[job][-1:])
                    say(f"{size:>9,} B  round {rnd + 1}/{cfg.rounds}  {job:<18} {_summary(partial)}"
                        f"  ({time.monotonic() - t:.1f} s)")
            for job in jobs:
                if job == "memcpy":
                    records.append(_memcpy_record(cfg, size, raw[job]))
                else:
                    records.append(_pair_record(cfg, job, size, raw[job]))
        if cfg.batch:
            raw_batch = []
            for rnd in range(cfg.rounds):
                t = time.monotonic()
                raw_batch.append(_run_batch_round(cfg, rnd))
                say(f"{BATCH_ITEM_BYTES:>9,} B  round {rnd + 1}/{cfg.rounds}  {'ringbuf-batch':<18} "
                    f"{_summary(_batch_record(cfg, raw_batch[-1:]))}  ({time.monotonic() - t:.1f} s)")
            records.append(_batch_record(cfg, raw_batch))
    finally:
        _iox2_cleanup(root, cfg.iox2_prefix)
        leftovers = _ring_cleanup(cfg.rig)
        if leftovers:
            say(f"removed shared memory left by a failed pair: {leftovers}")
    say(f"done in {time.monotonic() - t_start:.1f} s")
    return records


# ------------------------------------------------------------------------------------------------ goals and output
def _find(records: list[dict], transport: str, size: int | None) -> dict | None:
    for rec in records:
        if rec.get("transport") == transport and rec.get("payload_bytes") == size:
            return rec
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def goals(records: list[dict]) -> list[dict]:
    """The issue's goals as ratios against peers measured in the same run."""
    out: list[dict] = []

    def goal(name: str, text: str, measured, peer, ratio, target: float, higher_is_better: bool = True,
             **extra) -> None:
        if ratio is None:
            verdict = None
        else:
            verdict = ratio >= target if higher_is_better else ratio <= target
        out.append({"goal": name, "description": text, "measured": measured, "peer": peer,
                     "ratio": ratio, "target": f"{'>=' if higher_is_better else '<='} {target:g}",
                     "pass": verdict, **extra})

    frame = 614_400
    ring = _find(records, "ringbuf", frame)
    zc = _find(records, "ringbuf-zero-copy", frame)
    iox = _find(records, "iceoryx2", frame)
    cpy = _find(records, "memcpy", frame)
    g = lambda rec, key="items_per_s": rec.get(key) if rec else None  # noqa: E731
    cpu = "cpu_us_per_item"
    goal("frames_vs_iceoryx2", "614,400 B: ringbuf (copying reader) items/s vs iceoryx2 with a copying reader",
         g(ring), g(iox, "items_per_s_copying_reader"), _ratio(g(ring), g(iox, "items_per_s_copying_reader")), 1.0)
    goal("frames_zero_copy_vs_iceoryx2", "614,400 B: ringbuf-zero-copy items/s vs iceoryx2 (both readers "
         "view in place)", g(zc), g(iox), _ratio(g(zc), g(iox)), 1.0,
         cpu_us_per_item=g(zc, cpu), peer_cpu_us_per_item=g(iox, cpu))
    goal("frames_vs_memcpy", "614,400 B: ringbuf (copying reader) items/s vs the memcpy-into-shared-memory "
         "ceiling", g(ring), g(cpy), _ratio(g(ring), g(cpy)), 0.6)
    goal("frames_zero_copy_vs_memcpy", "614,400 B: ringbuf-zero-copy items/s vs the memcpy ceiling",
         g(zc), g(cpy), _ratio(g(zc), g(cpy)), 0.6)
    small_ring = _find(records, "ringbuf", 64)
    pipe = _find(records, "mp-pipe", 64)
    goal("small_vs_pipe", "64 B one at a time: ringbuf items/s vs multiprocessing Pipe",
         g(small_ring), g(pipe), _ratio(g(small_ring), g(pipe)), 1.5,
         cpu_us_per_item=g(small_ring, cpu), peer_cpu_us_per_item=g(pipe, cpu))
    batch = _find(records, "ringbuf-batch", BATCH_ITEM_BYTES)
    goal("batch_rate", "64 B batched (publish_batch/read_batch): items/s vs 5,000,000",
         g(batch), 5_000_000, _ratio(g(batch), 5_000_000), 1.0)
    for size in (64, 2048):
        r = _find(records, "ringbuf", size)
        q = _find(records, "mp-queue", size)
        i = _find(records, "iceoryx2", size)
        key = "latency_us_p99"
        goal(f"latency_p99_vs_queue_{size}", f"{size} B at 1 kHz, reader blocked on the doorbell: ringbuf p99 "
             "vs multiprocessing.Queue p99", g(r, key), g(q, key), _ratio(g(r, key), g(q, key)), 0.5,
             higher_is_better=False, spin_p99_us=g(r, "latency_spin_us_p99"))
        goal(f"latency_p99_vs_iceoryx2_{size}", f"{size} B at 1 kHz, reader blocked: ringbuf p99 vs iceoryx2 "
             "(Event listener) p99", g(r, key), g(i, key), _ratio(g(r, key), g(i, key)), 1.0,
             higher_is_better=False, spin_p99_us=g(r, "latency_spin_us_p99"))
    incomplete = [f"{r['transport']}/{r['payload_bytes']}" for r in records
                  if r.get("transport") not in ("fence",) and r.get("complete") is False]
    out.append({"goal": "every_item_delivered", "description": "every transport delivered every item it sent, "
                "in order, untorn", "measured": None, "peer": None, "ratio": None, "target": "all",
                "pass": not incomplete, "incomplete": incomplete})
    return out


def document(records: list[dict], machine: dict) -> dict:
    """The ``--json`` document: ``{"bench": "rings", "machine": ..., "results": [...], "goals": [...]}``."""
    return {"bench": "rings", "machine": machine, "results": records, "goals": goals(records)}


def _fmt(v, spec: str = ",.0f") -> str:
    if v is None:
        return "-"
    return format(v, spec)


def format_table(doc: dict) -> str:
    """A readable text table of a document made by :func:`document`."""
    lines = []
    m = doc.get("machine", {})
    lines.append(f"mimir bench rings  -  {m.get('cpu_model')}, {m.get('cpu_cores')} cores, Python {m.get('python')}, "
                 f"numpy {m.get('numpy')}, kernel {m.get('kernel')}")
    lines.append("")
    head = (f"{'transport':<18} {'payload B':>10} {'items/s':>12} {'MB/s':>9} {'rd cpu%':>7} {'cpu us/it':>9} "
            f"{'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} {'rate Hz':>7} {'ok':>3}")
    lines.append(head)
    lines.append("-" * len(head))
    recs = [r for r in doc["results"] if r["transport"] != "fence"]
    order = {t: i for i, t in enumerate(("memcpy", *TRANSPORTS, "ringbuf-batch"))}
    recs.sort(key=lambda r: (r["payload_bytes"] or 0, order.get(r["transport"], 99)))
    last_size = None
    for r in recs:
        if last_size is not None and r["payload_bytes"] != last_size:
            lines.append("")
        last_size = r["payload_bytes"]
        ok = "yes" if r.get("complete") else "NO"
        lines.append(
            f"{r['transport']:<18} {r['payload_bytes']:>10,} {_fmt(r['items_per_s']):>12} {_fmt(r['mb_per_s']):>9} "
            f"{_fmt(r.get('reader_cpu_pct'), '.0f'):>7} {_fmt(r.get('cpu_us_per_item'), ',.1f'):>9} "
            f"{_fmt(r['latency_us_p50'], ',.1f'):>8} "
            f"{_fmt(r['latency_us_p99'], ',.1f'):>8} {_fmt(r['latency_us_p999'], ',.1f'):>9} "
            f"{_fmt(r.get('latency_rate_hz'), '.0f'):>7} {ok:>3}"
        )
        if r.get("items_per_s_copying_reader") is not None:
            lines.append(
                f"{'  copying reader':<18} {'':>10} {_fmt(r['items_per_s_copying_reader']):>12} "
                f"{_fmt(r.get('mb_per_s_copying_reader')):>9}"
            )
        if r.get("latency_spin_us_p99") is not None:
            lines.append(
                f"{'  spin-then-wait':<18} {'':>10} {'':>12} {'':>9} {'':>9} "
                f"{_fmt(r.get('latency_spin_reader_cpu_pct'), '.0f'):>7} {_fmt(r['latency_spin_us_p50'], ',.1f'):>8} "
                f"{_fmt(r['latency_spin_us_p99'], ',.1f'):>8} {_fmt(r['latency_spin_us_p999'], ',.1f'):>9}"
            )
        if r.get("error"):
            lines.append(f"{'':<18} error: {r['error']}")
    lines.append("")
    lines.append("items/s: best of the rounds; latency: samples of all rounds pooled, writer stamps "
                 "time.monotonic_ns() before send, reader reads the clock after receiving")
    lines.append("rd cpu%: reader CPU time / wall time in the throughput phase (spin-then-wait row: in its "
                 "latency phase); cpu us/it: writer + reader CPU per item (median round)")
    lines.append("")
    lines.append("fences (ns per call, Python call included):  " + ",  ".join(
        f"{r['fence']} {r['ns_per_call']:.0f}" + (f" (={r['is']})" if r.get("is") else "")
        for r in doc["results"] if r["transport"] == "fence"))
    lines.append("")
    lines.append("goals (ratios measured in this run):")
    for g in doc.get("goals", []):
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[g["pass"]]
        ratio = f"{g['ratio']:.2f}" if g["ratio"] is not None else "-"
        extra = ""
        if g.get("spin_p99_us") is not None:
            extra = f"  (spin-then-wait p99 {g['spin_p99_us']:.0f} us)"
        if g.get("cpu_us_per_item") is not None and g.get("peer_cpu_us_per_item") is not None:
            extra = (f"  (CPU per item {g['cpu_us_per_item']:.1f} us vs peer's {g['peer_cpu_us_per_item']:.1f} us)")
        if g.get("incomplete"):
            extra = f"  incomplete: {', '.join(g['incomplete'])}"
        lines.append(f"  {verdict}  {g['goal']:<30} ratio {ratio:>6} (target {g['target']}){extra}")
        lines.append(f"        {g['description']}: {_fmt(g['measured'], ',.1f')} vs {_fmt(g['peer'], ',.1f')}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - `python -m bench.rings [--quick] [--json]`
    import json

    from bench.common import machine_info

    quick_flag = "--quick" in sys.argv
    recs = run(quick_flag, progress=lambda s: print(s, file=sys.stderr, flush=True))
    doc = document(recs, machine_info())
    if "--json" in sys.argv:
        print(json.dumps(doc))
    else:
        print(format_table(doc))
