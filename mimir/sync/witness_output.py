"""The witness epoch default (the emitter lives in :mod:`mimir.sync.emitter`; the audio worker adapts it to its
output stage in ``workers.audio.outputs``)."""

from __future__ import annotations

DEFAULT_EPOCH_UNIX_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z: keeps canonical seconds small enough for float64

__all__ = ["DEFAULT_EPOCH_UNIX_S"]
