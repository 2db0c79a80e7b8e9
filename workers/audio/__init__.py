"""The audio worker: a duplex stream converted once into a shared-memory ring, with driver-clock timing.

Python API: :class:`AudioEngine` (init/start/stop/shutdown) and
:class:`EngineConfig`. CLI: ``mimir-worker audio``, ``mimir latency``,
``mimir soak``, ``mimir bench audio`` (command functions in
:mod:`workers.audio.cli`). See docs/audio.md.

Names are imported on first use, so importing :mod:`workers.audio.cli` (for
the CLI wiring) does not load numpy, the rings or PortAudio.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AudioEngine": "engine", "channel_layout_hash": "engine",
    "EngineConfig": "config", "ChannelSpec": "config", "parse_channels": "config",
    "AudioError": "errors", "AudioConfigError": "errors", "BackendUnavailable": "errors",
    "OutputUnavailable": "errors", "EngineStateError": "errors",
    "AudioStatus": "records", "CallbackMetric": "records", "EngineState": "records", "Health": "records",
    "metrics_ring_name": "records",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workers.audio' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
