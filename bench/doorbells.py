"""Doorbell wake-up latency: the old POSIX-semaphore doorbell against the FIFO and UDP doorbells, same run.

``python -m bench.doorbells [--quick] [--json]``

Two processes ping-pong at a fixed rate (1 kHz), each blocked on its own
doorbell between rings: A stamps ``time.monotonic_ns()`` into shared memory
and rings B; B wakes, records ``now - stamp`` (the one-way wake-up latency of
a blocked reader, what the ring's 1 kHz latency measures minus the ring) and
rings A back, which A waits for before the next tick. Transports:

``semaphore``  a named POSIX semaphore per side (posix_ipc), waited on with a
               timeout: the ring's doorbell before the platform seam (commit
               038535d); macOS cannot wait on one with a timeout, Windows has none
``fifo``       :class:`ringbuf.platform.posix.FifoListener`: the Linux and
               macOS doorbell now
``udp``        :class:`ringbuf.platform.udp.UdpListener`: the Windows doorbell,
               measured here on Linux

Rounds interleave the transports so they share the machine's load; samples
of all rounds are pooled. Each figure is reported with its ratio to the
semaphore in the same run.
"""

from __future__ import annotations

import sys

assert sys.platform != "win32", "bench.doorbells compares POSIX doorbells (semaphores and FIFOs)"

import argparse  # noqa: E402
import json  # noqa: E402
import mmap  # noqa: E402
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import struct  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

TRANSPORTS = ("semaphore", "fifo", "udp")
_STAMP = struct.Struct("<Q")


class _Semaphore:
    """Listener and sender of one named semaphore (the pre-seam ring doorbell)."""

    def __init__(self, name: str) -> None:
        import posix_ipc

        self._busy = posix_ipc.BusyError
        self._sem = posix_ipc.Semaphore(name, posix_ipc.O_CREAT, mode=0o600, initial_value=0)
        self.bell_id = name

    def wait(self, timeout_s: float) -> bool:
        try:
            self._sem.acquire(timeout_s)
            return True
        except self._busy:
            return False

    def ring(self, bell_id: object) -> None:
        self._sem.release()

    def close(self) -> None:
        self._sem.close()


def _pair(transport: str, directory: Path, tag: str) -> tuple[Any, Any, Any]:
    """(A's listener, B's listener, ring(listener_of_peer) factory) for ``transport``."""
    a: Any
    b: Any
    if transport == "semaphore":
        a, b = _Semaphore(f"/mimir-bell-{tag}-a"), _Semaphore(f"/mimir-bell-{tag}-b")
        return a, b, lambda peer: (lambda: peer.ring(None))
    if transport == "fifo":
        from ringbuf.platform.posix import FifoListener, FifoSender

        a, b = FifoListener(directory, tag), FifoListener(directory, tag)
        return a, b, lambda peer: _ringer(FifoSender(directory, tag), peer.bell_id)
    from ringbuf.platform.udp import UdpListener, UdpSender

    a, b = UdpListener(), UdpListener()
    return a, b, lambda peer: _ringer(UdpSender(), peer.bell_id)


def _ringer(sender: Any, bell_id: int) -> Any:
    return lambda: sender.ring(bell_id)


def _side(role: str, transport: str, mine, ring_peer, stamp: mmap.mmap, count: int, period_s: float, conn) -> None:
    lat = np.zeros(count, np.int64)
    missed = 0
    if role == "a":
        next_t = time.monotonic() + 0.05
        for _ in range(count):
            while (now := time.monotonic()) < next_t:
                time.sleep(max(0.0, next_t - now - 0.0002))
            _STAMP.pack_into(stamp, 0, time.monotonic_ns())
            ring_peer()
            if not mine.wait(1.0):
                missed += 1
            next_t += period_s
    else:
        for i in range(count):
            if not mine.wait(2.0):
                missed += 1
                if missed >= 3:
                    break  # the other side is gone
                continue
            lat[i] = time.monotonic_ns() - _STAMP.unpack_from(stamp, 0)[0]
            ring_peer()
    conn.send((lat.tolist() if role == "b" else [], missed))
    conn.close()


def _round(transport: str, count: int, period_s: float, directory: Path, tag: str) -> tuple[list[int], int]:
    ctx = mp.get_context("fork")
    a, b, ringer = _pair(transport, directory, tag)
    stamp = mmap.mmap(-1, 4096)
    ends = {}
    procs = []
    for role, mine, peer in (("a", a, b), ("b", b, a)):
        parent_end, child_end = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_side, args=(role, transport, mine, ringer(peer), stamp, count, period_s, child_end))
        p.start()
        child_end.close()
        ends[role] = parent_end
        procs.append(p)
    results = {role: end.recv() for role, end in ends.items()}
    for p in procs:
        p.join(30)
    for listener in (a, b):
        listener.close()
    if transport == "semaphore":
        import posix_ipc

        for name in (a.bell_id, b.bell_id):
            posix_ipc.unlink_semaphore(name)
    lat = [v for v in results["b"][0] if v > 0]
    return lat, results["a"][1] + results["b"][1]


def run(quick: bool, progress=lambda message: None) -> list[dict[str, Any]]:
    rounds, count = (3, 1000) if quick else (5, 3000)
    pooled: dict[str, list[int]] = {t: [] for t in TRANSPORTS}
    missed = dict.fromkeys(TRANSPORTS, 0)
    with tempfile.TemporaryDirectory(prefix="mimir-bells-") as d:
        for r in range(rounds):
            order = TRANSPORTS[r % len(TRANSPORTS):] + TRANSPORTS[:r % len(TRANSPORTS)]
            for transport in order:
                progress(f"round {r + 1}/{rounds}: {transport}")
                lat, miss = _round(transport, count, 0.001, Path(d), f"b{os.getpid()}r{r}")
                pooled[transport].extend(lat)
                missed[transport] += miss
    out: list[dict[str, Any]] = []
    base: dict[str, Any] = {}
    for t in TRANSPORTS:
        arr = np.asarray(pooled[t], np.float64) / 1000.0
        p50, p99, p999 = (float(np.percentile(arr, q)) for q in (50, 99, 99.9))
        rec: dict[str, Any] = {"transport": t, "samples": int(arr.size), "missed": missed[t], "p50_us": p50,
                               "p99_us": p99, "p99_9_us": p999}
        if t == "semaphore":
            base = rec
        else:
            rec["p50_vs_semaphore"] = p50 / base["p50_us"]
            rec["p99_vs_semaphore"] = p99 / base["p99_us"]
        out.append(rec)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    records = run(args.quick, progress=lambda m: print(m, file=sys.stderr, flush=True))
    load = os.getloadavg()
    if args.json:
        print(json.dumps({"bench": "doorbells", "loadavg": load, "results": records}))
        return
    print(f"doorbell wake-up, blocked reader at 1 kHz (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    print(f"{'transport':<10} {'samples':>7} {'missed':>6} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} "
          f"{'p50/sem':>8} {'p99/sem':>8}")
    for r in records:
        print(f"{r['transport']:<10} {r['samples']:>7} {r['missed']:>6} {r['p50_us']:>8.1f} {r['p99_us']:>8.1f} "
              f"{r['p99_9_us']:>9.1f} {r.get('p50_vs_semaphore', 1.0):>8.2f} {r.get('p99_vs_semaphore', 1.0):>8.2f}")


if __name__ == "__main__":
    main()
