"""Creating a reservoir segment, reclaiming the one a dead writer left behind.

The same policy as ``ringbuf.ring`` applies to rings (whose helper reads a
ring header, so it cannot be reused here): a segment whose writer process is
gone (pid and start ticks in the header) or that was never finished (no
magic, creator dead) is unlinked and created afresh; a live writer's segment,
or an object that is not a reservoir, is never touched.
"""

from __future__ import annotations

import os

from ringbuf.segment import Segment, SegmentExists, SegmentMissing, pid_alive, unlink_segment

from .layout import MAGIC
from .mapping import header_writer

__all__ = ["create_reclaiming"]


def create_reclaiming(seg_name: str, size: int) -> Segment:
    """Create the segment; reclaim it if its writer is dead; fail with SegmentExists naming a live writer."""
    try:
        return Segment.create(seg_name, size)
    except SegmentExists:
        pass
    try:
        old = Segment.attach(seg_name, readonly=True)
    except SegmentMissing:
        return Segment.create(seg_name, size)
    try:
        magic, pid, ticks, closed = header_writer(old)
    finally:
        old.close()
    me = os.getpid()
    if magic == MAGIC:
        if not closed and pid_alive(pid, ticks):
            raise SegmentExists(
                f"reservoir {seg_name} is already written by live process {pid}"
                + (" (this process: close the other Reservoir first)" if pid == me else "; stop it first")
                + " (one writer per reservoir)"
            )
    elif magic != 0:
        raise SegmentExists(
            f"shared-memory segment {seg_name} exists and is not a reservoir (magic {magic:#x}); "
            "pick another reservoir name or remove that object's owner"
        )
    elif pid and pid != me and pid_alive(pid, ticks):
        raise SegmentExists(f"reservoir {seg_name} is being created by live process {pid}")
    unlink_segment(seg_name)
    return Segment.create(seg_name, size)
