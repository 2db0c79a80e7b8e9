"""The published rig contract: the supervisor's :class:`~mimir.topology.RigPlan`, in shared memory.

Ownership: the supervisor creates the ``plan`` object (a
:class:`~ringbuf.shared.SharedObject` of kind ``plan`` whose layout document
*is* the plan, msgspec JSON) once at start, never changes it, and unlinks it
at stop. `mimir status`, `mimir rings` and the consumer read it to learn the
rig's sources and ring names; nothing reads it on a hot path.
"""

from __future__ import annotations

import msgspec

from ringbuf.segment import PAGE_BYTES, SegmentMissing
from ringbuf.shared import KIND_HEADER_OFFSET, ObjectMismatch, SharedObject

from .topology import PLAN, RigPlan

__all__ = ["publish_plan", "read_plan", "RigNotRunning"]

KIND = "plan"
VERSION = 1


class RigNotRunning(SegmentMissing):
    """No supervisor runs that rig (no plan object)."""


def publish_plan(plan: RigPlan) -> SharedObject:
    """Create the rig's plan object (the supervisor only); close() it at stop."""
    doc = msgspec.json.encode(plan)
    size = KIND_HEADER_OFFSET + len(doc) + PAGE_BYTES
    obj = SharedObject.create(plan.rig, PLAN, kind=KIND, version=VERSION, doc=doc, size=size,
                              doc_offset=KIND_HEADER_OFFSET, label=f"{plan.rig}/plan")
    obj.publish()
    return obj


def read_plan(rig: str) -> RigPlan:
    """The plan of running rig ``rig``; :class:`RigNotRunning` when there is none."""
    try:
        obj = SharedObject.attach(rig, PLAN, kind=KIND, version=VERSION, readonly=True)
    except SegmentMissing:  # none, or not finished yet (ObjectNotReady)
        raise RigNotRunning(f"rig {rig!r} is not running: start it with `mimir-supervisor start`") from None
    except (ObjectMismatch, PermissionError) as exc:
        raise RigNotRunning(f"rig {rig!r}: {exc}") from None
    try:
        return msgspec.json.decode(obj.doc, type=RigPlan)
    finally:
        obj.unmap()
