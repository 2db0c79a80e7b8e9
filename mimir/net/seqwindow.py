"""Per-session receive window over sequence numbers: duplicates, reordering and declared losses.

Invariant: every sequence number ``<= through`` was either received or is known
lost (below the sender's low-water mark without having arrived); ``above`` holds
the received numbers greater than ``through`` (at most ``window`` of them, since
anything farther ahead than ``window`` is refused).

The sender's ``low_water`` says it no longer holds anything below it, so a gap
below ``low_water`` can never be filled: it is counted in ``lost`` and closed.
On the first message of a session seen by this listener (``joined``), numbers
below the low-water mark are not counted as lost: an earlier listener (before a
restart) may have received them, and the sender counts its own drops.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["SeqWindow", "Verdict"]

Verdict = Literal["new", "duplicate", "out_of_window"]


class SeqWindow:
    def __init__(self, window: int = 8192) -> None:
        self.window = int(window)
        self.through = -1
        self.above: set[int] = set()
        self.highest = -1
        self.lost = 0
        self.reordered = 0
        self.joined = False

    def _advance_to(self, low_water: int) -> None:
        """Close everything below ``low_water``: what never arrived is lost."""
        if low_water - 1 <= self.through:
            return
        received = [s for s in self.above if s < low_water]
        if self.joined:
            self.lost += (low_water - 1 - self.through) - len(received)
        for s in received:
            self.above.discard(s)
        self.through = low_water - 1
        self._compact()

    def _compact(self) -> None:
        while self.through + 1 in self.above:
            self.through += 1
            self.above.discard(self.through)

    def offer(self, seq: int, low_water: int) -> Verdict:
        """Classify message ``seq`` (sender low-water mark ``low_water <= seq``) and record it if new."""
        if not self.joined:
            self.through = low_water - 1
            self.joined = True
        else:
            self._advance_to(low_water)
        if seq <= self.through or seq in self.above:
            return "duplicate"
        if seq - self.through > self.window:
            return "out_of_window"
        if seq < self.highest:
            self.reordered += 1
        self.highest = max(self.highest, seq)
        self.above.add(seq)
        self._compact()
        return "new"
