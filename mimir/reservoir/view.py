"""Read-only attachment to a reservoir from any process of the rig.

A view maps the segment read-only (it cannot store into it), never unlinks
it, and answers every query of :class:`ReservoirQueries` with the same
seqlock checks the writer's own queries use. Close it (or use ``with``) to
unmap; the writer may have closed and unlinked the segment meanwhile, in
which case the mapping stays valid until this view closes.
"""

from __future__ import annotations

from .layout import DEFAULT_NAME
from .mapping import Mapped, attach_object
from .queries import ReservoirQueries, _ClosedWords

__all__ = ["ReservoirView"]


class ReservoirView(ReservoirQueries):
    """A read-only view of reservoir ``name`` of ``rig``."""

    def __init__(self, mapped: Mapped) -> None:
        self._bind(mapped)
        self._closed = False

    @classmethod
    def attach(cls, rig: str, name: str = DEFAULT_NAME) -> "ReservoirView":
        """Map ``mimir-<rig>-<name>`` read-only. Raises SegmentMissing if no reservoir runs, and
        ReservoirLayoutMismatch if it was written by an incompatible Mimir."""
        obj = attach_object(rig, name, readonly=True)
        try:
            mapped = Mapped(obj)
        except BaseException:
            obj.unmap()
            raise
        return cls(mapped)

    def close(self) -> None:
        """Unmap (never unlinks). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._words = _ClosedWords()
        self._buf = None
        self._m.release()

    def __enter__(self) -> "ReservoirView":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
