"""The receiver's bounded backlog: every message from encoding until the listener acknowledges it.

Shared by two threads: the decode thread adds (:meth:`Backlog.add`), the
sender thread sends, retransmits and acknowledges. A single lock guards it;
no method does I/O or waits, so the decode thread never blocks on the network.

Bounds: at most ``max_messages`` and ``max_bytes``. When a new message does
not fit, the oldest messages (lowest sequence numbers, sent or not) are
evicted and counted in ``dropped_messages`` / ``dropped_bytes``.

Messages are kept as encoders ``encode(seq, low_water) -> bytes`` and encoded
again at every (re)transmission, so each copy on the wire carries the
backlog's *current* low-water mark (its lowest held sequence number): the
listener learns which gaps will never be filled, and a listener that starts
mid-session (after a restart) begins exactly where the sender's holdings do.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backlog", "BacklogStats"]


@dataclass
class _Entry:
    encode: Callable[[int, int], bytes]
    size: int
    sent_ns: int = 0     # 0: due now
    sends: int = 0


@dataclass
class BacklogStats:
    messages: int
    bytes: int
    next_seq: int
    acked_through: int
    dropped_messages: int
    dropped_bytes: int
    retransmits: int


class Backlog:
    def __init__(self, max_messages: int = 1024, max_bytes: int = 4 * 1024 * 1024) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("backlog bounds must be positive")
        self.max_messages = int(max_messages)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._bytes = 0
        self._next_seq = 0
        self._acked_through = -1
        self.dropped_messages = 0
        self.dropped_bytes = 0
        self.retransmits = 0

    def _evict_oldest(self) -> None:
        _, entry = self._entries.popitem(last=False)
        self._bytes -= entry.size
        self.dropped_messages += 1
        self.dropped_bytes += entry.size

    def add(self, encode: Callable[[int, int], bytes]) -> int:
        """Assign the next sequence number and keep ``encode`` (called now once, to size it); return the seq.

        A message larger than ``max_bytes`` on its own is counted as dropped at once.
        """
        seq_hint = self._next_seq
        size = len(encode(seq_hint, seq_hint))  # outside the lock: encoding is the slow part
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            if size > self.max_bytes:
                self.dropped_messages += 1
                self.dropped_bytes += size
                return seq
            while self._entries and (len(self._entries) >= self.max_messages or self._bytes + size > self.max_bytes):
                self._evict_oldest()
            self._entries[seq] = _Entry(encode, size)
            self._bytes += size
            return seq

    def due(self, now_ns: int, retransmit_after_ns: int, limit: int) -> list[tuple[int, bytes, bool]]:
        """Up to ``limit`` messages to (re)send now, oldest first: (seq, bytes with the current low-water
        mark, is_retransmission). Encoding happens outside the lock."""
        picked = []
        with self._lock:
            low = next(iter(self._entries), self._next_seq)
            for seq, e in self._entries.items():
                if e.sent_ns == 0 or now_ns - e.sent_ns >= retransmit_after_ns:
                    picked.append((seq, e.encode, e.sends > 0))
                    if len(picked) >= limit:
                        break
        return [(seq, encode(seq, low), again) for seq, encode, again in picked]

    def mark_sent(self, seq: int, now_ns: int) -> None:
        with self._lock:
            e = self._entries.get(seq)
            if e is not None:
                if e.sends:
                    self.retransmits += 1
                e.sends += 1
                e.sent_ns = now_ns

    def mark_all_due(self) -> None:
        """After a (re)connection: whatever was sent on the old connection may be lost; send it all again."""
        with self._lock:
            for e in self._entries.values():
                e.sent_ns = 0

    def ack(self, through: int) -> int:
        """Forget everything up to ``through``; return how many messages that released."""
        released = 0
        with self._lock:
            self._acked_through = max(self._acked_through, through)
            while self._entries:
                seq = next(iter(self._entries))
                if seq > through:
                    break
                entry = self._entries.pop(seq)
                self._bytes -= entry.size
                released += 1
        return released

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def stats(self) -> BacklogStats:
        with self._lock:
            return BacklogStats(messages=len(self._entries), bytes=self._bytes, next_seq=self._next_seq,
                                acked_through=self._acked_through, dropped_messages=self.dropped_messages,
                                dropped_bytes=self.dropped_bytes, retransmits=self.retransmits)
