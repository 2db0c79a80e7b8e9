"""The witness epoch default (the emitter lives in :mod:`mimir.sync.emitter`; the audio worker adapts it to its
output stage in ``workers.audio.outputs``)."""

from __future__ import annotations

from mimir.config import DEFAULT_EPOCH_UNIX_S

__all__ = ["DEFAULT_EPOCH_UNIX_S"]
