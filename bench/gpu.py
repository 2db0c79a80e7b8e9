"""``mimir bench gpu``: ring frames into GPU memory, GPU pixel conversion, torn frames under a live writer.

Needs CuPy and a CUDA device (``mimir.gpu.bench_cli`` exits 2 with one line
where there is none). One run measures, each against a peer measured in the
same run:

* **H2D copies** of VGA YUYV (614,400 B) and 1080p RGB (6,220,800 B) frames
  through :class:`mimir.gpu.GpuFrameCopier` (copy, wait, seqlock re-check),
  one frame per synchronisation, from (a) a real ring's payload arena (a
  ``MAP_SHARED`` mmap of a ``/dev/shm`` object, 64 slots) registered with
  :class:`mimir.gpu.RegisteredArena`, (b) pageable memory (numpy), (c)
  ``cudaMallocHost`` memory: GB/s and per-frame latency p50/p99;
* **six cameras at once**: six registered VGA YUYV rings, six copies started
  then resolved per synchronisation, against six ``cudaMallocHost`` buffers;
* **conversion** per VGA frame for YUYV, GRBG and GREY: the CUDA kernel
  (CUDA events over many launches) against ``cv2.cvtColor`` on the CPU, and
  whether the GPU output equals OpenCV's byte for byte;
* **torn frames**: a writer process renders verifiable synthetic frames
  (``workers.camera.synthetic``) flat out into a 64-slot ring while the
  bench copies the slot the writer claims next; every handed-out frame is
  read back and verified; ``torn_handed_out`` must be 0;
* **publish to RGB on the GPU**: a writer process publishes six VGA YUYV
  rings at 60 fps; the bench waits on the rings, copies, converts and
  synchronises; latency from the writer's ``host_time_ns`` (taken right
  before publish) to the RGB frame complete on the GPU.

The ring arena is the ring's ``arena_bytes``; the writer processes are
started with ``spawn`` and own (and unlink) their rings.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import multiprocessing as mp
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from mimir.descriptors import CameraFrameDescriptor, PixelFormat
from ringbuf import Ring, RingReader
from ringbuf.hashing import fnv1a_64
from ringbuf.segment import SegmentMissing

if TYPE_CHECKING:
    from mimir.gpu import DeviceFrame, RegisteredArena

__all__ = ["RIG", "BenchUnavailable", "run", "document", "goals", "format_table", "correctness_failed", "ring_arena",
           "synthetic_writer", "shm_bytes_needed"]

RIG = "benchgpu"
SLOTS = 64
FRAMES = {"vga_yuyv": (480, 640, 2), "1080p_rgb": (1080, 1920, 3)}
CAMERAS = 6


class BenchUnavailable(RuntimeError):
    """The machine cannot run the bench (e.g. /dev/shm too small for the rings); the message says why."""


def shm_bytes_needed() -> int:
    """The most shared memory the bench holds at once: the 64-slot 1080p RGB ring, or six 64-slot VGA rings."""
    vga, hd = (SLOTS * int(np.prod(FRAMES[f])) for f in ("vga_yuyv", "1080p_rgb"))
    return max(hd, CAMERAS * vga) + CAMERAS * (1 << 20)  # plus headers and descriptor tables


def _check_shm() -> None:
    import shutil

    free = shutil.disk_usage("/dev/shm").free
    need = shm_bytes_needed()
    if free < need:
        raise BenchUnavailable(
            f"/dev/shm has {free / 1e6:.0f} MB free, the bench's rings need {need / 1e6:.0f} MB "
            "(in a container: --shm-size=1g)"
        )


def ring_arena(ring: Ring | RingReader) -> np.ndarray:
    """The uint8 view of a ring's whole payload arena (page aligned)."""
    arena = ring.arena_bytes
    if arena is None:
        raise ValueError(f"ring {ring.name} carries no payload: no arena to register")
    return arena


def _untorn(frame: DeviceFrame | None) -> DeviceFrame:
    """A copy of a slot nothing writes while it is copied (the bench's own host memory): never stale or torn."""
    if frame is None:
        raise RuntimeError("a copy of a slot nothing writes came back stale or torn")
    return frame


def _percentile_us(lat_ns: list[int] | np.ndarray, q: float) -> float | None:
    return float(np.percentile(np.asarray(lat_ns), q)) / 1e3 if len(lat_ns) else None


# ---- writer processes -----------------------------------------------------------------------------------------


def synthetic_writer(rig: str, names: list[str], height: int, width: int, capacity: int, fps: float,
                     duration_s: float, ready, stop, written) -> None:
    """Child process: one ring per name of synthetic YUYV frames, each verifiable by ``verify_frame``.

    ``fps`` > 0 paces each ring at that rate (phases spread over a period);
    ``fps`` == 0 publishes flat out, round robin. The pattern sequence of
    every frame is its ring item sequence. ``written[i]`` counts ring i's
    frames. Owns, and on exit closes (unlinks), its rings.
    """
    from workers.camera.family import CameraMode
    from workers.camera.synthetic import SyntheticPattern

    mode = CameraMode(width, height, fps or 60.0, PixelFormat.YUYV)
    pattern = SyntheticPattern(mode)
    rows_shape = (height, mode.stride_bytes)
    rings = [Ring.create(n, descriptor=CameraFrameDescriptor, capacity=capacity, payload_shape=mode.payload_shape,
                         rig=rig) for n in names]
    sources = [fnv1a_64(f"bench:{n}") or 1 for n in names]
    try:
        ready.set()
        start = time.monotonic_ns()
        end = start + int(duration_s * 1e9)
        period_ns = int(1e9 / fps) if fps > 0 else 0
        due = [start + i * period_ns // len(rings) for i in range(len(rings))]
        i = 0
        while not stop.is_set():
            now = time.monotonic_ns()
            if now >= end:
                break
            if period_ns:
                i = min(range(len(rings)), key=due.__getitem__)
                if due[i] > now:
                    time.sleep(min(due[i] - now, 2_000_000) / 1e9)
                    continue
                deadline = due[i]
                due[i] += period_ns
            else:
                i = (i + 1) % len(rings)
                deadline = now
            ring = rings[i]
            n = ring.published
            pattern.render_into(ring.claim().reshape(rows_shape), n, deadline)
            ring.publish(sources[i], n, deadline, time.monotonic_ns(), width, height, int(PixelFormat.YUYV),
                         mode.stride_bytes, mode.byte_length, ring.handle(n))
            written[i] += 1
    finally:
        for ring in rings:
            ring.close()


def _start_writer(names: list[str], height: int, width: int, capacity: int, fps: float, duration_s: float):
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    written = ctx.Array("Q", len(names), lock=False)
    proc = ctx.Process(target=synthetic_writer, args=(RIG, names, height, width, capacity, fps, duration_s,
                                                      ready, stop, written), daemon=True)
    proc.start()
    if not ready.wait(60):
        proc.kill()
        raise RuntimeError("the bench's writer process did not create its rings within 60 s")
    return proc, stop, written


def _stop_writer(proc, stop) -> None:
    stop.set()
    proc.join(30)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


def _attach(name: str, register: bool) -> RingReader:
    deadline = time.monotonic() + 30
    while True:
        try:
            return RingReader.attach(name, rig=RIG, descriptor=CameraFrameDescriptor, register=register,
                                     start="latest")
        except SegmentMissing:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


# ---- host sources ---------------------------------------------------------------------------------------------


class _HostSource:
    """64 slots of one frame shape in one kind of host memory, with each slot's seqlock check.

    ``ring_registered``: a real ring ``ring_name`` of the bench's rig, written by this process, read through
    an unregistered reader whose arena is registered; ``pageable``: a numpy array; ``malloc_host``:
    ``cudaHostAlloc(..., cudaHostAllocDefault)``, which is what ``cudaMallocHost`` does.
    """

    def __init__(self, kind: str, shape: tuple[int, ...], cp, ring_name: str = "h2d") -> None:
        self.kind = kind
        self.nbytes = int(np.prod(shape))
        self.registration: RegisteredArena | None = None
        self.register_ms: float | None = None
        self._ring: Ring | None = None
        self._reader: RingReader | None = None
        self._host_ptr: int | None = None  # cudaHostAlloc's pointer (malloc_host)
        self._cp = cp
        try:
            self._fill(kind, shape, ring_name)
        except BaseException:
            self.close()
            raise

    def _fill(self, kind: str, shape: tuple[int, ...], ring_name: str) -> None:
        cp = self._cp
        rng = np.random.default_rng(18)
        if kind == "ring_registered":
            from mimir.gpu import RegisteredArena

            ring = self._ring = Ring.create(ring_name, descriptor=CameraFrameDescriptor, capacity=SLOTS,
                                            payload_shape=shape, rig=RIG)
            for _ in range(SLOTS):
                ring.write(rng.integers(0, 256, shape, dtype=np.uint8), *([0] * 10))
            reader = self._reader = RingReader.attach(ring_name, rig=RIG, register=False)
            t0 = time.perf_counter()
            self.registration = RegisteredArena(ring_arena(reader))
            self.register_ms = (time.perf_counter() - t0) * 1e3
            self.slots = [reader.payload_view(n) for n in range(SLOTS)]
            self.valid = [functools.partial(reader.valid, n) for n in range(SLOTS)]
            return
        if kind == "pageable":
            block = np.empty((SLOTS, *shape), np.uint8)
        elif kind == "malloc_host":
            rt = cp.cuda.runtime
            size = SLOTS * self.nbytes
            host_ptr = self._host_ptr = int(rt.hostAlloc(size, rt.hostAllocDefault))
            block = np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(host_ptr)).reshape(SLOTS, *shape)
        else:
            raise ValueError(f"unknown host memory kind {kind!r}")
        block[...] = rng.integers(0, 256, block.shape, dtype=np.uint8)  # touches every page
        self.slots = [block[n] for n in range(SLOTS)]
        self.valid = [functools.partial(bool, True)] * SLOTS  # nothing overwrites these

    def close(self) -> None:
        """Unregister, unmap and free (whatever was made); the slot views must not be used afterwards."""
        self.slots = []
        if self.registration is not None:
            self.registration.close()
        if self._reader is not None:
            self._reader.close()
        if self._ring is not None:
            self._ring.close()
        if self._host_ptr is not None:
            self._cp.cuda.runtime.freeHost(self._host_ptr)
            self._host_ptr = None


def _h2d(cp, frame: str, kind: str, count: int, progress) -> dict:
    from mimir.gpu import GpuFrameCopier

    shape = FRAMES[frame]
    source = _HostSource(kind, shape, cp)
    try:
        copier = GpuFrameCopier(shape, pool_size=2)
        slots, valid = source.slots, source.valid
        for n in range(20):  # warm up: first-touch of the driver's staging path, kernel-mode transitions
            _untorn(copier.copy(slots[n % SLOTS], valid[n % SLOTS])).release()
        lat = np.empty(count, np.int64)
        clock = time.perf_counter_ns
        for n in range(count):
            t0 = clock()
            f = copier.copy(slots[n % SLOTS], valid[n % SLOTS])
            lat[n] = clock() - t0
            _untorn(f).release()
        check = _untorn(copier.copy(slots[7], valid[7]))
        equal = bool(np.array_equal(check.array.get(), slots[7]))
        check.release()
        rec = {
            "metric": "h2d", "frame": frame, "source": kind, "frame_bytes": source.nbytes, "frames": count,
            "gbps": float(source.nbytes * count / lat.sum()), "p50_us": _percentile_us(lat, 50),
            "p99_us": _percentile_us(lat, 99), "bytes_equal": equal, "torn_dropped": copier.torn_dropped,
        }
        if source.registration is not None:
            rec.update(registered=source.registration.registered, fallback_reason=source.registration.fallback_reason,
                       register_ms=source.register_ms, arena_bytes=source.registration.nbytes)
        progress(f"gpu bench: h2d {frame} from {kind}: {rec['gbps']:.1f} GB/s, p50 {rec['p50_us']:.1f} us")
        return rec
    finally:
        source.close()


def _six(cp, kind: str, batches: int, progress) -> dict:
    from mimir.gpu import GpuFrameCopier

    shape = FRAMES["vga_yuyv"]
    sources: list[_HostSource] = []
    try:
        for cam in range(CAMERAS):
            sources.append(_HostSource(kind, shape, cp, ring_name=f"six.{cam}"))
        copiers = [GpuFrameCopier(shape, pool_size=2) for _ in range(CAMERAS)]
        lat = np.empty(batches, np.int64)
        clock = time.perf_counter_ns
        frames: list = [None] * CAMERAS
        warmup = 10
        for n in range(batches + warmup):
            slot = n % SLOTS
            t0 = clock()
            pending = [copiers[c].start(sources[c].slots[slot], sources[c].valid[slot]) for c in range(CAMERAS)]
            for c in range(CAMERAS):
                frames[c] = pending[c].result()
            t1 = clock()
            for f in frames:
                f.release()
            if n >= warmup:
                lat[n - warmup] = t1 - t0
        nbytes = CAMERAS * int(np.prod(shape))
        rec = {"metric": "six_cameras", "frame": "vga_yuyv", "source": kind, "batch_bytes": nbytes, "batches": batches,
               "gbps": float(nbytes * batches / lat.sum()), "p50_us": _percentile_us(lat, 50),
               "p99_us": _percentile_us(lat, 99),
               "torn_dropped": sum(c.torn_dropped for c in copiers)}
        progress(f"gpu bench: six cameras from {kind}: {rec['gbps']:.1f} GB/s, batch p99 {rec['p99_us']:.1f} us")
        return rec
    finally:
        for s in sources:
            s.close()


# ---- conversion -----------------------------------------------------------------------------------------------


def _conversion(cp, fmt: PixelFormat, iterations: int, progress) -> dict:
    import cv2

    from mimir.gpu.convert import GpuRgbConverter, frame_shape, opencv_code

    h, w = 480, 640
    rng = np.random.default_rng(int(fmt) & 0xFFFF)
    host = rng.integers(0, 256, frame_shape(fmt, h, w), dtype=np.uint8)
    conv = GpuRgbConverter(fmt, h, w)
    dev = cp.asarray(host)
    out = conv.empty_output()
    conv.convert(dev, out)
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(iterations):
        conv.convert(dev, out)
    end.record()
    end.synchronize()
    gpu_us = cp.cuda.get_elapsed_time(start, end) * 1e3 / iterations
    code = opencv_code(fmt)
    cpu_out = np.empty((h, w, 3), np.uint8)
    cv2.cvtColor(host, code, dst=cpu_out)
    lat = np.empty(iterations, np.int64)
    for n in range(iterations):
        t0 = time.perf_counter_ns()
        cv2.cvtColor(host, code, dst=cpu_out)
        lat[n] = time.perf_counter_ns() - t0
    equal = bool(np.array_equal(out.get(), cpu_out))
    cpu_us = float(np.median(lat)) / 1e3
    rec = {"metric": "convert", "format": fmt.name, "frame": f"{w}x{h}", "iterations": iterations,
           "gpu_us_per_frame": gpu_us, "opencv_cpu_us_per_frame_p50": cpu_us, "cpu_over_gpu": cpu_us / gpu_us,
           "equal_to_opencv": equal, "opencv_threads": cv2.getNumThreads()}
    progress(f"gpu bench: {fmt.name} to RGB: GPU {gpu_us:.1f} us, OpenCV CPU {cpu_us:.1f} us, equal {equal}")
    return rec


# ---- torn frames under a live writer ----------------------------------------------------------------------------


def _torn(cp, duration_s: float, progress) -> dict:
    from mimir.gpu import GpuFrameCopier, RegisteredArena
    from ringbuf.ring import StaleItem
    from workers.camera.family import CameraMode
    from workers.camera.synthetic import FrameMismatch, verify_frame

    h, w = 480, 640
    mode = CameraMode(w, h, 60.0, PixelFormat.YUYV)
    name = "torn.0"
    attempts = verified = torn_handed_out = stale_views = 0
    with contextlib.ExitStack() as cleanup:  # runs last-in first-out: arena, reader, then the writer
        proc, stop, written = _start_writer([name], h, w, SLOTS, 0.0, duration_s + 30)
        cleanup.callback(_stop_writer, proc, stop)
        reader = _attach(name, register=False)
        cleanup.callback(reader.close)
        arena = RegisteredArena(ring_arena(reader))
        cleanup.callback(arena.close)
        registered, reason = arena.registered, arena.fallback_reason
        copier = GpuFrameCopier(mode.payload_shape, pool_size=2)
        end = time.monotonic() + duration_s
        n = 0
        while time.monotonic() < end:
            published = reader.published
            if published < SLOTS:  # the writer's first lap
                time.sleep(0.001)
                continue
            # alternately the newest item and the oldest (its slot is the one the writer claims next)
            seq = published - 1 if n % 2 else published - SLOTS
            n += 1
            try:
                view = reader.payload_view(seq)
            except StaleItem:
                stale_views += 1
                continue
            attempts += 1
            frame = copier.copy(view, functools.partial(reader.valid, seq))
            if frame is None:
                continue
            host = frame.array.get()
            frame.release()
            try:
                stamped, _ = verify_frame(host, mode)
            except FrameMismatch:
                torn_handed_out += 1
                continue
            verified += int(stamped == seq)
            torn_handed_out += int(stamped != seq)
    rec = {"metric": "torn", "frame": "vga_yuyv", "duration_s": duration_s, "writer_frames": int(written[0]),
           "attempts": attempts, "handed_out": copier.handed_out, "verified_intact": verified,
           "torn_dropped": copier.torn_dropped, "stale_before_copy": copier.stale_before_copy,
           "stale_views": stale_views, "torn_handed_out": torn_handed_out,
           "registered": registered, "fallback_reason": reason}
    progress(f"gpu bench: torn frames: {copier.torn_dropped} dropped of {attempts}, {torn_handed_out} torn handed out")
    return rec


# ---- publish to RGB on the GPU, six cameras at 60 fps ---------------------------------------------------------


def _live(cp, duration_s: float, progress) -> dict:
    from mimir.gpu import GpuFrameCopier, GpuRgbConverter, RegisteredArena

    h, w, fps = 480, 640, 60.0
    names = [f"live.{c}" for c in range(CAMERAS)]
    lat: list[int] = []
    with contextlib.ExitStack() as cleanup:  # last-in first-out: arenas, readers, then the writer
        proc, stop, written = _start_writer(names, h, w, SLOTS, fps, duration_s + 30)
        cleanup.callback(_stop_writer, proc, stop)
        readers = []
        for n in names:
            readers.append(_attach(n, register=True))
            cleanup.callback(readers[-1].close)
        for r in readers:
            cleanup.callback(RegisteredArena(ring_arena(r)).close)
        copiers = [GpuFrameCopier((h, w, 2), pool_size=2) for _ in names]
        conv = GpuRgbConverter(PixelFormat.YUYV, h, w)
        outs = [conv.empty_output() for _ in names]
        stream = cp.cuda.get_current_stream()
        conv.convert(cp.zeros((h, w, 2), cp.uint8), outs[0])  # load the module before timing
        stream.synchronize()
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            for c, reader in enumerate(readers):
                item = reader.view_next()
                if item is None:
                    continue
                seq, desc, view = item
                frame = copiers[c].copy(view, functools.partial(reader.valid, seq))
                if frame is None:
                    continue
                conv.convert(frame.array, outs[c])
                stream.synchronize()
                lat.append(time.monotonic_ns() - desc[3])  # desc[3]: host_time_ns, taken just before publish
                frame.release()
        lost = sum(r.lost for r in readers)
    rec = {"metric": "publish_to_rgb", "frame": "vga_yuyv", "cameras": CAMERAS, "fps": fps, "duration_s": duration_s,
           "frames": len(lat), "writer_frames": int(sum(written)), "reader_lost": lost,
           "torn_dropped": sum(c.torn_dropped for c in copiers),
           "p50_us": _percentile_us(lat, 50), "p99_us": _percentile_us(lat, 99),
           "max_us": max(lat) / 1e3 if lat else None}
    progress(f"gpu bench: publish to RGB on GPU, 6 x VGA@60: p99 {_fmt(rec['p99_us'])} us over {len(lat)} frames")
    return rec


# ---- the run, goals, output ------------------------------------------------------------------------------------


def gpu_info(cp) -> dict:
    """The device the run used: name, compute capability, memory, PCI ids, driver and runtime versions."""
    rt = cp.cuda.runtime
    dev = cp.cuda.Device()
    props = rt.getDeviceProperties(dev.id)
    name = props.get("name", b"")
    return {
        "gpu": name.decode() if isinstance(name, bytes) else str(name),
        "gpu_compute_capability": dev.compute_capability,
        "gpu_memory_bytes": props.get("totalGlobalMem"),
        "gpu_pci_bus_id": props.get("pciBusID"),
        "gpu_async_engines": props.get("asyncEngineCount"),
        "cuda_driver": rt.driverGetVersion(),
        "cuda_runtime": rt.runtimeGetVersion(),
        "cupy": cp.__version__,
    }


def run(quick: bool, progress: Callable[[str], None] = lambda msg: None) -> tuple[list[dict], dict]:
    """Every measurement of the bench: ``(records, gpu_info)``. Needs a CUDA device."""
    from mimir.gpu import require_cupy

    cp = require_cupy()
    _check_shm()
    info = gpu_info(cp)
    records: list[dict] = []
    counts = {"vga_yuyv": 300 if quick else 3000, "1080p_rgb": 60 if quick else 600}
    for frame in FRAMES:
        for kind in ("ring_registered", "pageable", "malloc_host"):
            records.append(_h2d(cp, frame, kind, counts[frame], progress))
    for kind in ("ring_registered", "malloc_host"):
        records.append(_six(cp, kind, 100 if quick else 1000, progress))
    for fmt in (PixelFormat.YUYV, PixelFormat.GRBG, PixelFormat.GREY):
        records.append(_conversion(cp, fmt, 50 if quick else 500, progress))
    records.append(_torn(cp, 2.0 if quick else 10.0, progress))
    records.append(_live(cp, 2.0 if quick else 10.0, progress))
    progress("gpu bench: done")
    return records, info


def _find(records: list[dict], **match) -> dict | None:
    for r in records:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _ratio(a, b) -> float | None:
    return float(a / b) if a is not None and b else None


def goals(records: list[dict]) -> list[dict]:
    """Issue 18's goals, each a ratio against a peer measured in the same run (or an exact count)."""
    out: list[dict] = []

    def goal(name: str, text: str, measured, peer, ratio, target: float, higher_is_better: bool = True) -> None:
        verdict = None if ratio is None else bool(ratio >= target if higher_is_better else ratio <= target)
        out.append({"goal": name, "description": text, "measured": measured, "peer": peer, "ratio": ratio,
                    "target": f"{'>=' if higher_is_better else '<='} {target:g}", "pass": verdict})

    for frame in FRAMES:
        ring = _find(records, metric="h2d", frame=frame, source="ring_registered")
        pinned = _find(records, metric="h2d", frame=frame, source="malloc_host")
        pageable = _find(records, metric="h2d", frame=frame, source="pageable")
        g = lambda r: r.get("gbps") if r else None  # noqa: E731
        goal(f"registered_vs_malloc_host_{frame}", f"{frame}: GB/s from the registered ring arena vs cudaMallocHost",
             g(ring), g(pinned), _ratio(g(ring), g(pinned)), 0.9)
        goal(f"registered_vs_pageable_{frame}", f"{frame}: GB/s from the registered ring arena vs pageable memory",
             g(ring), g(pageable), _ratio(g(ring), g(pageable)), 3.0)
    live = _find(records, metric="publish_to_rgb")
    p99 = live.get("p99_us") if live else None
    goal("publish_to_rgb_p99", "6 x VGA YUYV at 60 fps: publish-to-RGB-on-GPU p99 (us) vs 1000 us",
         p99, 1000.0, _ratio(p99, 1000.0), 1.0, higher_is_better=False)
    torn = sum(r.get("torn_handed_out", 0) for r in records)
    out.append({"goal": "zero_torn_handed_out", "description": "frames handed out that were torn (verified against "
                "the synthetic pattern)", "measured": torn, "peer": None, "ratio": None, "target": "== 0",
                "pass": torn == 0})
    unequal = [f"{r['metric']}/{r.get('frame') or r.get('format')}/{r.get('source', '')}" for r in records
               if r.get("bytes_equal") is False or r.get("equal_to_opencv") is False]
    out.append({"goal": "bytes_equal", "description": "device copies equal the slot; GPU RGB equals OpenCV's",
                "measured": unequal, "peer": None, "ratio": None, "target": "none unequal", "pass": not unequal})
    return out


def document(records: list[dict], machine: dict) -> dict:
    """The ``--json`` document: ``{"bench": "gpu", "machine": ..., "results": [...], "goals": [...]}``."""
    return {"bench": "gpu", "machine": machine, "results": records, "goals": goals(records)}


def correctness_failed(doc: dict) -> bool:
    """True when a torn frame was handed out or a copy or conversion differed (exit status 1)."""
    return any(g["goal"] in ("zero_torn_handed_out", "bytes_equal") and g["pass"] is False for g in doc["goals"])


def _fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def format_table(doc: dict) -> str:
    """A readable text report of a document made by :func:`document`."""
    m = doc.get("machine", {})
    lines = [f"mimir bench gpu  -  {m.get('gpu')} (cc {m.get('gpu_compute_capability')}), {m.get('cpu_model')}, "
             f"CUDA driver {m.get('cuda_driver')}, runtime {m.get('cuda_runtime')}, CuPy {m.get('cupy')}", ""]
    head = f"{'copy':<34} {'GB/s':>7} {'p50 us':>8} {'p99 us':>8} {'equal':>6}"
    lines += [head, "-" * len(head)]
    for r in doc["results"]:
        if r["metric"] in ("h2d", "six_cameras"):
            label = f"{r['metric']} {r['frame']} {r['source']}"
            eq = r.get("bytes_equal")
            lines.append(f"{label:<34} {_fmt(r['gbps']):>7} {_fmt(r['p50_us']):>8} {_fmt(r['p99_us']):>8} "
                         f"{'-' if eq is None else ('yes' if eq else 'NO'):>6}")
    lines.append("")
    for r in doc["results"]:
        if r["metric"] == "convert":
            lines.append(f"convert {r['format']:<5} {r['frame']}: GPU {_fmt(r['gpu_us_per_frame'], '.2f')} us, OpenCV CPU "
                         f"{_fmt(r['opencv_cpu_us_per_frame_p50'])} us ({_fmt(r['cpu_over_gpu'])}x), "
                         f"equal to OpenCV: {'yes' if r['equal_to_opencv'] else 'NO'}")
        elif r["metric"] == "torn":
            lines.append(f"torn: {r['attempts']} copies under a flat-out writer: {r['handed_out']} handed out "
                         f"({r['verified_intact']} verified intact), {r['torn_dropped']} dropped as overwritten during "
                         f"the DMA, {r['stale_before_copy']} stale before it; torn handed out: {r['torn_handed_out']}")
        elif r["metric"] == "publish_to_rgb":
            lines.append(f"publish to RGB on GPU, {r['cameras']} x VGA YUYV @ {r['fps']:g} fps: {r['frames']} frames, "
                         f"p50 {_fmt(r['p50_us'])} us, p99 {_fmt(r['p99_us'])} us, max {_fmt(r['max_us'])} us, "
                         f"dropped torn {r['torn_dropped']}, reader lost {r['reader_lost']}")
    lines.append("")
    for g in doc["goals"]:
        verdict = {True: "PASS", False: "MISS", None: "n/a "}[g["pass"]]
        ratio = f" ratio {g['ratio']:.2f}" if isinstance(g.get("ratio"), float) else ""
        lines.append(f"[{verdict}] {g['goal']}: {g['description']} (target {g['target']}){ratio}")
    return "\n".join(lines)
