"""The recorder's accounting: per source, every published item is written or skipped with a cause.

Invariant (checked by the tests against the supervisor's own counts)::

    written + sum(skipped) == published

per source, where ``published`` counts the ring items of the recorded span:
from the first item the recording covers to the last one the rig indexed
before the recording ended (every ring incarnation of the source, when its
worker restarted meanwhile). A recording that ends because the rig stopped
covers everything the source's worker published.

Ownership: :attr:`SourceLedger.published` is advanced by the recorder's
reader thread; ``written`` and ``skipped`` by its writer thread. Other
threads (the status board, the progress line) only read them; an int read
is atomic under the GIL, so a reader sees each counter at some recent
value (the three together are exact once the recording is over).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Cause", "CAUSE_TEXT", "CAUSE_KEY", "SkipRun", "SourceLedger"]


class Cause(enum.IntEnum):
    """Why an item the rig published is not in the take."""

    NOT_INDEXED = 0   # the supervisor never indexed it: no canonical time exists for it
    EVICTED = 1       # it left the reservoir before the recorder read its descriptor
    LAPPED = 2        # its ring slot was overwritten (or its ring replaced) before the recorder copied it
    BEHIND = 3        # video only: dropped in a burst so the writer could catch up with the rig
    MEMORY = 4        # the writer was behind and the recorder's memory budget was full
    FAILED = 5        # the take failed (disk full, a write error) before it was written


CAUSE_TEXT = {
    Cause.NOT_INDEXED: "never indexed by the rig (lost in its ring before the supervisor read it)",
    Cause.EVICTED: "left the reservoir before the recorder read it (the recorder was starved for a whole window)",
    Cause.LAPPED: "overwritten in its ring before the recorder copied it",
    Cause.BEHIND: "dropped to catch up: the writer (encoder or disk) was behind the rig",
    Cause.MEMORY: "dropped: the writer was behind and the recorder's memory budget was full",
    Cause.FAILED: "not written: the take failed first",
}
#: Short names (status board columns, JSON keys).
CAUSE_KEY = {c: c.name.lower() for c in Cause}


@dataclass
class SkipRun:
    """Consecutive skipped items of one source with one cause (one ``Skip`` entry of the manifest).

    ``first_ns``/``last_ns``: canonical times of the first and last skipped
    item; where the items' own times are unknown (never indexed, evicted
    before they were read) the span between the neighbouring items' times.
    """

    cause: Cause
    first_ns: int
    last_ns: int
    count: int

    def extend(self, first_ns: int, last_ns: int, count: int) -> None:
        self.first_ns = min(self.first_ns, first_ns)
        self.last_ns = max(self.last_ns, last_ns)
        self.count += count


@dataclass
class SourceLedger:
    """What became of one source's published items (see the module docstring for ownership)."""

    name: str
    is_camera: bool
    published: int = 0
    written: int = 0
    written_samples: int = 0
    written_bytes: int = 0
    skipped: list[int] = field(default_factory=lambda: [0] * len(Cause))
    last_written_ns: int | None = None

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped)

    def by_cause(self) -> dict[str, int]:
        """Skipped items per cause key (only causes that occurred)."""
        return {CAUSE_KEY[Cause(i)]: n for i, n in enumerate(self.skipped) if n}
