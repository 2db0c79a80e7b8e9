"""The witness as an audio output stage (the contract the audio worker loads lazily)."""

from __future__ import annotations

import time

from .codebook import Codebook
from .emitter import WitnessEmitter

__all__ = ["make_witness_output", "DEFAULT_EPOCH_UNIX_S"]

DEFAULT_EPOCH_UNIX_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z: keeps canonical seconds small enough for float64


def make_witness_output(sample_rate_hz: int, out_channels: int, max_frames: int, *,
                        codebook_id: str = "mimir-default", seed: int = 0,
                        epoch_unix_s: float = DEFAULT_EPOCH_UNIX_S, level_dbfs: float = -20.0,
                        start_canonical_seconds: float | None = None):
    """An output stage playing the witness on every output channel.

    Device frame 0 is canonical ``start_canonical_seconds`` (default: the wall
    clock now, in seconds since the epoch), so the rig's canonical time stays
    close to wall-clock time before the first lock.
    """
    from workers.audio.outputs import WitnessOutput  # the stage adapter belongs to the audio worker

    if start_canonical_seconds is None:
        start_canonical_seconds = time.time() - epoch_unix_s
    emitter = WitnessEmitter(Codebook.from_id(codebook_id, seed), float(sample_rate_hz),
                             start_canonical_seconds=start_canonical_seconds, level_dbfs=level_dbfs)
    return WitnessOutput(emitter, max_frames)
