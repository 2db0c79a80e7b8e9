"""Named shared-memory segments with explicit ownership, on top of the platform seam.

* the **creator** (:meth:`Segment.create`) owns the segment and is the only
  process that unlinks it (:meth:`Segment.unlink`);
* an **attacher** (:meth:`Segment.attach`) maps it and only ever closes its
  own mapping.

Every Mimir name is ``mimir-<rig>-<object>`` (:func:`segment_name`): rig and
object names use letters, digits, ``_`` and ``.``; the whole name must fit
the platform (macOS: 31 characters with the leading slash, so rig names are
at most :data:`MAX_RIG_CHARS` characters). What differs between operating
systems lives in :mod:`ringbuf.platform`.
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass

from .platform import (
    PLATFORM, NameTooLong, OutOfSharedMemory, SegmentError, SegmentExists, SegmentMissing,
)

__all__ = [
    "PREFIX", "MAX_RIG_CHARS", "SegmentError", "SegmentExists", "SegmentMissing", "OutOfSharedMemory",
    "NameTooLong", "Segment", "segment_name", "check_rig_name", "list_segments", "unlink_segment", "PAGE_BYTES",
]

PREFIX = "mimir-"
MAX_RIG_CHARS = 16  # with "/mimir-" and a 6-character object id, names fit macOS's 31
NAME_RE = re.compile(r"^[A-Za-z0-9_.]+$")
PAGE_BYTES = 4096


def check_rig_name(rig: str) -> str:
    """Return ``rig`` or raise ValueError saying what a rig name may be."""
    if not rig or not NAME_RE.match(rig) or len(rig) > MAX_RIG_CHARS:
        raise ValueError(
            f"rig name {rig!r} is not allowed: use 1-{MAX_RIG_CHARS} letters, digits, '_' and '.' "
            "(every shared-memory name must fit 31 characters on macOS)"
        )
    return rig


def segment_name(rig: str, obj: str) -> str:
    """The shared-memory name of object ``obj`` of rig ``rig`` (without the leading slash)."""
    for label, value in (("rig", rig), ("object", obj)):
        if not value or not NAME_RE.match(value):
            raise ValueError(f"{label} name {value!r} is not allowed: use letters, digits, '_' and '.' only")
    name = f"{PREFIX}{rig}-{obj}"
    PLATFORM.check_name(name)
    return name


@dataclass
class Segment:
    """One mapped shared-memory segment. ``owner`` is True only in the creating process."""

    name: str
    size: int
    buf: mmap.mmap
    owner: bool

    @classmethod
    def create(cls, name: str, size: int) -> "Segment":
        """Create and map a new zero-filled segment with its memory reserved.

        Raises :class:`SegmentExists` if the name is taken and
        :class:`OutOfSharedMemory` (naming the bytes needed and available)
        if the OS cannot back it.
        """
        if size <= 0:
            raise ValueError(f"segment {name}: size must be positive, got {size}")
        size = -(-size // PAGE_BYTES) * PAGE_BYTES
        return cls(name, size, PLATFORM.shm_create(name, size), owner=True)

    @classmethod
    def attach(cls, name: str, *, readonly: bool = False) -> "Segment":
        """Map an existing segment. The attacher never unlinks it."""
        buf = PLATFORM.shm_attach(name, readonly=readonly)
        return cls(name, len(buf), buf, owner=False)

    def close(self) -> None:
        """Unmap this process's view. Raises BufferError if numpy views still export the buffer."""
        if not self.buf.closed:
            self.buf.close()

    def unlink(self) -> None:
        """Remove the name (owner only). Existing mappings stay valid until closed."""
        if not self.owner:
            raise SegmentError(f"segment {self.name}: only its creator may unlink it")
        PLATFORM.shm_unlink(self.name)


def unlink_segment(name: str) -> bool:
    """Unlink a segment by name; return False if it did not exist."""
    return PLATFORM.shm_unlink(name)


def list_segments(rig: str | None = None) -> list[str]:
    """Names of this machine's Mimir objects (segments and their companion files), of ``rig`` or all."""
    return PLATFORM.list_objects(PREFIX if rig is None else f"{PREFIX}{rig}-")
