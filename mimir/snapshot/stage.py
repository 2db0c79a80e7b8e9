"""Copying payloads out of live rings before the writers lap them, without ever making a writer wait.

A snapshot reads the oldest frames of the window first, and those are the
ones a camera ring overwrites next: with a window-sized ring the oldest
frame of a full-window snapshot has (ring headroom / rate) left, tens of
milliseconds. Writing a frame to disk takes longer than copying it, so the
snapshot must never depend on the disk keeping ahead of the cameras.

:class:`FrameStager` keeps a promise instead: *every frame not yet written
is either more than* ``margin_s`` *of capture away from being overwritten in
its ring, or already copied into memory.* A thread sweeps every
``period_s``, reads each ring's ``published`` counter (one shared-memory
word), and copies the frames that came within the margin, oldest first;
the writer takes a frame from that copy, or copies it itself (into a reused
buffer) when the stager never had to. Every copy is checked with the ring's
seqlock after it is made (``RingReader.valid``): a frame overwritten before
or during its copy is reported lost, never written torn. Memory: what the
writer has not reached within the margin (about ``margin_s`` of frames when
the writer keeps up with the cameras, the whole span when it does not).

:func:`slot_array` and :func:`copy_blocks` serve the audio ring, whose
whole span is copied at once with one vectorised gather (audio is small:
8 channels x 48 kHz float32 is 1.5 MB/s).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np

from ringbuf import RingReader, StaleItem
from ringbuf.ring import payload_dtype_of

__all__ = ["FrameStager", "slot_array", "copy_blocks"]


def slot_array(reader: RingReader) -> np.ndarray:
    """A zero-copy ``(capacity, *payload_shape)`` view of every payload slot of ``reader``'s ring."""
    flat = reader.arena_bytes
    if flat is None:
        raise ValueError(f"ring {reader.name} carries no payload")
    shape = tuple(reader.layout.payload_shape)
    dtype = payload_dtype_of(reader.layout)
    strides = [dtype.itemsize]
    for d in reversed(shape[1:]):
        strides.insert(0, strides[0] * d)
    return np.ndarray((reader.capacity, *shape), dtype, buffer=flat,
                      strides=(flat.size // reader.capacity, *strides))


def copy_blocks(reader: RingReader, sequences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Copy the payloads of items ``sequences`` (oldest first) in one gather; ``(copies, valid)``.

    ``valid[i]`` is False where item ``sequences[i]`` was overwritten before
    or while it was copied (its copy must not be used).
    """
    slots = slot_array(reader)
    copies = slots[(sequences % np.uint64(reader.capacity)).astype(np.intp)]
    valid = np.fromiter((reader.valid(int(s)) for s in sequences), bool, len(sequences))
    return copies, valid


def _copy_of(reader: RingReader, sequence: int) -> np.ndarray | None:
    """A copy of item ``sequence``'s payload, or None when it was overwritten before or during the copy."""
    try:
        copy = reader.payload_view(sequence).copy()
    except StaleItem:
        return None
    return copy if reader.valid(sequence) else None


class FrameStager:
    """See the module docstring. ``items[i] = (camera index, ring sequence)`` in the order they will be written."""

    def __init__(self, readers: Sequence[RingReader], rates_hz: Sequence[float], items: Sequence[tuple[int, int]], *,
                 margin_s: float = 1.0, period_s: float = 0.02) -> None:
        self._readers = list(readers)
        self._items = list(items)
        self._margin = [max(1, math.ceil(margin_s * r)) for r in rates_hz]
        self._period_s = period_s
        self.copies: list[np.ndarray | None] = [None] * len(self._items)
        self.lost = [False] * len(self._items)
        self.staged = 0  # frames the stager copied (the rest the writer copied itself)
        self.cursor = 0  # the writer's position: items below it are done
        self._queues = [[i for i, (c, _) in enumerate(self._items) if c == cam] for cam in range(len(readers))]
        self._heads = [0] * len(readers)
        self._scratch = [None] * len(readers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapshot-stager", daemon=True)

    # ---- the stager thread --------------------------------------------------------------------------------------
    def start(self) -> "FrameStager":
        self.sweep()  # the oldest frames are at risk right now: no thread start-up delay for them
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            self.sweep()

    def sweep(self) -> None:
        """Copy every pending frame that came within the margin of being overwritten."""
        for cam, queue in enumerate(self._queues):
            reader = self._readers[cam]
            limit = reader.published - reader.capacity + self._margin[cam]  # sequences below it are at risk
            k = self._heads[cam]
            while k < len(queue):
                i = queue[k]
                _, seq = self._items[i]
                if seq >= limit:
                    break
                if i >= self.cursor and self.copies[i] is None and not self.lost[i]:
                    copy = _copy_of(reader, seq)
                    if copy is not None:
                        self.copies[i] = copy
                        self.staged += 1
                    else:
                        self.lost[i] = True
                k += 1
            self._heads[cam] = k

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    # ---- the writer's side --------------------------------------------------------------------------------------
    def take(self, i: int) -> np.ndarray | None:
        """Frame ``i`` (a copy, valid until the next ``take`` of the same camera), or None if it was lost."""
        self.cursor = i
        copy = self.copies[i]
        if copy is not None:
            self.copies[i] = None  # the writer is done with it after this call's frame: free it then
            return copy
        if self.lost[i]:
            return None
        cam, seq = self._items[i]
        reader = self._readers[cam]
        try:
            view = reader.payload_view(seq)
        except StaleItem:
            view = None
        if view is not None:
            scratch = self._scratch[cam]
            if scratch is None:
                scratch = self._scratch[cam] = np.empty_like(view)
            np.copyto(scratch, view)
            if reader.valid(seq):
                return scratch
        copy = self.copies[i]  # the stager may have rescued it while we looked
        if copy is not None:
            self.copies[i] = None
            return copy
        self.lost[i] = True
        return None

    def __enter__(self) -> "FrameStager":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
