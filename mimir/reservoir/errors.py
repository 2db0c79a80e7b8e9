"""Exceptions of the reservoir. Each message says what was wrong and what to do."""

from __future__ import annotations

from ringbuf.ring import StaleItem

__all__ = [
    "ReservoirError", "UnknownKind", "EmptySourceId", "RejectedSample", "WrongProducerKind",
    "MissingDescriptor", "SensorTableFull", "ReservoirLayoutMismatch", "ReservoirBusy",
    "Evicted", "StaleHandle", "UnknownHandle", "HandleIdCollision", "ReservoirClosed",
]


class ReservoirError(RuntimeError):
    """Base class of reservoir errors."""


class UnknownKind(ReservoirError, ValueError):
    """A sample kind id outside ``SampleKind`` (0..8)."""


class EmptySourceId(ReservoirError, ValueError):
    """A producer was asked for with an empty source id (or the sensor hash 0, which only an empty id hashes to)."""


class RejectedSample(ReservoirError, ValueError):
    """The live reservoir refused a sample (non-zero flags); the refusal is counted in ``status().rejected``."""


class WrongProducerKind(ReservoirError, TypeError):
    """A typed push (audio block, render packet, camera frame) through a producer of another kind."""


class MissingDescriptor(ReservoirError, TypeError):
    """A typed push without a descriptor (upstream: a null descriptor pointer)."""


class SensorTableFull(ReservoirError):
    """More distinct (kind, sensor) pairs than the latest-for-sensor table was sized for."""


class ReservoirLayoutMismatch(ReservoirError):
    """The segment is not a reservoir, or was written by an incompatible Mimir version."""


class ReservoirBusy(ReservoirError):
    """A read never saw a settled record: the writer is stuck or died in the middle of an update."""


class ReservoirClosed(ReservoirError):
    """The reservoir (or this view of it) has been closed."""


class Evicted(ReservoirError, LookupError):
    """The sample at that position has left the window (aged out or evicted early)."""


class StaleHandle(StaleItem):
    """A payload or descriptor handle whose item has been overwritten or evicted.

    Subclass of :class:`ringbuf.StaleItem`, so ``except StaleItem`` catches both.
    """


class HandleIdCollision(ReservoirError):
    """Two rings (or a ring and the reservoir) of one rig hash to the same 16-bit handle id: rename one."""


class UnknownHandle(ReservoirError, LookupError):
    """A handle whose id names no ring (or reservoir) attached to this resolver."""
