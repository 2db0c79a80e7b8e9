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

__all__ = ["FrameStager", "slot_array", "copy_blocks", "copy_of"]


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


def copy_of(reader: RingReader, sequence: int) -> np.ndarray | None:
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
        self.cursor = -1  # the item the writer took last: it and everything before it are done
        self._scratch: list[np.ndarray | None] = [None] * len(readers)
        self._free: list[list[np.ndarray]] = [[] for _ in readers]  # copies the writer is done with, for reuse
        self._handed: list[np.ndarray | None] = [None] * len(readers)  # the copy the writer holds, per camera
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
        """Copy every pending frame that came within the margin of being overwritten, oldest first.

        Items are in time order and each camera's sequences grow with time, so
        a camera is done for this sweep at its first item outside the margin;
        the sweep ends when every camera is.
        """
        limits = [r.published - r.capacity + m for r, m in zip(self._readers, self._margin, strict=True)]
        pending = len(limits)
        done = [False] * pending
        items, copies, lost = self._items, self.copies, self.lost
        for i in range(self.cursor + 1, len(items)):
            cam, seq = items[i]
            if done[cam]:
                continue
            if seq >= limits[cam]:
                done[cam] = True
                pending -= 1
                if not pending:
                    return
                continue
            if copies[i] is None and not lost[i]:
                copy = self._copy(cam, seq)
                if copy is not None:
                    copies[i] = copy
                    self.staged += 1
                else:
                    lost[i] = True

    def _copy(self, cam: int, seq: int) -> np.ndarray | None:
        """A copy of item ``seq`` of camera ``cam`` (into a reused buffer), or None if it was overwritten."""
        reader = self._readers[cam]
        try:
            view = reader.payload_view(seq)
        except StaleItem:
            return None
        free = self._free[cam]
        buffer = free.pop() if free else np.empty_like(view)
        np.copyto(buffer, view)
        if reader.valid(seq):
            return buffer
        free.append(buffer)
        return None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    # ---- the writer's side --------------------------------------------------------------------------------------
    def take(self, i: int) -> np.ndarray | None:
        """Frame ``i`` (a copy, valid until the next ``take`` of the same camera), or None if it was lost."""
        self.cursor = i
        cam, seq = self._items[i]
        held = self._handed[cam]
        if held is not None:  # the writer has written the previous frame of this camera: its buffer is free again
            self._free[cam].append(held)
            self._handed[cam] = None
        copy = self.copies[i]
        if copy is None and not self.lost[i]:
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
        if copy is None:
            self.lost[i] = True
            return None
        self.copies[i] = None
        self._handed[cam] = copy
        return copy

    def __enter__(self) -> "FrameStager":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
