"""Creating a reservoir segment, reclaiming the one a dead writer left behind.

The policy is :func:`ringbuf.segment.create_reclaiming`'s, as for rings; only
the header differs: a segment whose writer process is gone (pid and start
ticks in the header) or that was never finished (no magic, creator dead) is
unlinked and created afresh; a live writer's segment, or an object that is
not a reservoir, is never touched.
"""

from __future__ import annotations

import os

from ringbuf.segment import Segment, create_reclaiming as _create_reclaiming, pid_alive

from .layout import MAGIC
from .mapping import header_writer

__all__ = ["create_reclaiming"]


def create_reclaiming(seg_name: str, size: int) -> Segment:
    """Create the segment; reclaim it if its writer is dead; fail with SegmentExists naming a live writer."""
    return _create_reclaiming(seg_name, size, _refusal)


def _refusal(old: Segment) -> str | None:
    magic, pid, ticks, closed = header_writer(old)
    me = os.getpid()
    if magic == MAGIC:
        if not closed and pid_alive(pid, ticks):
            return (
                f"reservoir {old.name} is already written by live process {pid}"
                + (" (this process: close the other Reservoir first)" if pid == me else "; stop it first")
                + " (one writer per reservoir)"
            )
    elif magic != 0:
        return (
            f"shared-memory segment {old.name} exists and is not a reservoir (magic {magic:#x}); "
            "pick another reservoir name or remove that object's owner"
        )
    elif pid and pid != me and pid_alive(pid, ticks):
        return f"reservoir {old.name} is being created by live process {pid}"
    return None
