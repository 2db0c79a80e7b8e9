"""Memory fences reachable from CPython, which has no atomics.

Two orderings matter to the ring:

``store_fence()`` - *publication order*: payload and descriptor stores must be
    visible before the slot's sequence word and the published counter. On
    x86-64 (TSO) stores are seen in program order and each numpy/memoryview
    store is an opaque C call the compiler cannot reorder, so this is a no-op.
    On weakly ordered CPUs (Arm, POWER) it is a full barrier (below).

``full_fence()`` - *store then load* (the doorbell's Dekker handshake: the
    writer stores ``published`` then loads the readers' waiting flags; a reader
    stores its flag then loads ``published``). Even x86 reorders a later load
    before an earlier store, so this is needed on every CPU.

How the full barrier is made:

* x86/x86-64: an uncontended ``threading.Lock`` acquire + release. CPython
  implements it with glibc semaphores whose fast path is a ``lock cmpxchg`` /
  ``lock xadd``; any locked instruction is a full barrier on x86.
* elsewhere: the operating system's barrier call (:meth:`Platform.full_barrier
  <ringbuf.platform.base.Platform.full_barrier>`). On Arm glibc's semaphore
  fast paths are only acquire/release atomics, which do not order a store
  before a later load, so a lock is not enough. Linux: ``os.sched_yield()``,
  which enters the scheduler, and that executes ``smp_mb()``
  (``smp_mb__after_spinlock``) on every call. macOS: ``OSMemoryBarrier``
  (``dmb ish``). Windows: ``FlushProcessWriteBuffers``. Only the Linux one
  has ever run (and only on x86 here, where it is not used).

``mimir bench rings`` reports what each costs on the machine it runs on.
"""

from __future__ import annotations

import platform
import threading

from .platform import PLATFORM

__all__ = ["TSO", "store_fence", "full_fence", "lock_fence", "yield_fence"]

TSO = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686", "x86"}

_fence_lock = threading.Lock()
_acquire = _fence_lock.acquire
_release = _fence_lock.release


def lock_fence() -> None:
    """Full barrier on x86 (a locked read-modify-write); acquire+release only on Arm."""
    _acquire()
    _release()


yield_fence = PLATFORM.full_barrier()
"""The OS's full barrier on every CPU (Linux: ``sched_yield``, the scheduler's ``smp_mb``); costs a system call."""


def _no_fence() -> None:
    return None


full_fence = lock_fence if TSO else yield_fence
store_fence = _no_fence if TSO else yield_fence
