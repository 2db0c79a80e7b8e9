"""Active-witness acoustic sync: codebook, emitter, streaming receiver, reports.

Typical use::

    from mimir.sync import Codebook, WitnessEmitter, StreamingReceiver
    cb = Codebook.from_id("main-room", seed=7)
    emitter = WitnessEmitter(cb, 48000.0)           # emitter.fill(buf, start_sample)
    rx = StreamingReceiver(cb, 48000.0, "phone-left")  # path=PathCalibration(distance_m=3.2), band=BandLimits(300, 3400)
    rx.feed(block)                                  # any block size
    report = rx.report()                            # msgspec Struct, camelCase JSON
    t = rx.canonical_seconds_at(local_sample)

Names are imported on first use: the rig config imports
:mod:`mimir.sync.calibration` alone, without loading the receiver (scipy).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .calibration import BandLimits, PathCalibration
    from .codebook import Codebook, CodebookSpec
    from .emitter import WitnessEmitter
    from .receiver import ReceiverConfig, StreamingReceiver
    from .report import SyncReport, encode_report
    from .witness_output import DEFAULT_EPOCH_UNIX_S

_EXPORTS = {
    "BandLimits": "calibration", "PathCalibration": "calibration",
    "Codebook": "codebook", "CodebookSpec": "codebook",
    "WitnessEmitter": "emitter",
    "ReceiverConfig": "receiver", "StreamingReceiver": "receiver",
    "SyncReport": "report", "encode_report": "report",
    "DEFAULT_EPOCH_UNIX_S": "witness_output",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mimir.sync' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
