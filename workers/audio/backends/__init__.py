"""Backends: where blocks come from. All of them drive the same :class:`~workers.audio.callback.BlockProcessor`."""

from __future__ import annotations

from ..config import EngineConfig
from .base import Backend, DevicePlan, StreamInfo

__all__ = ["make_backend", "Backend", "DevicePlan", "StreamInfo"]


def make_backend(config: EngineConfig) -> Backend:
    """The backend for ``config.backend`` (imports only that backend's dependencies)."""
    if config.backend == "sounddevice":
        from .portaudio import PortAudioBackend

        return PortAudioBackend(config)
    if config.backend == "synthetic":
        from .synthetic import SyntheticBackend

        return SyntheticBackend(config)
    from .file import FileBackend

    return FileBackend(config)
