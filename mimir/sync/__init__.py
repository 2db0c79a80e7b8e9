"""Active-witness acoustic sync: codebook, emitter, streaming receiver, reports.

Typical use::

    from mimir.sync import Codebook, WitnessEmitter, StreamingReceiver
    cb = Codebook.from_id("main-room", seed=7)
    emitter = WitnessEmitter(cb, 48000.0)           # emitter.fill(buf, start_sample)
    rx = StreamingReceiver(cb, 48000.0, "phone-left")  # path=PathCalibration(distance_m=3.2), band=BandLimits(300, 3400)
    rx.feed(block)                                  # any block size
    report = rx.report()                            # msgspec Struct, camelCase JSON
    t = rx.canonical_seconds_at(local_sample)
"""

from .calibration import BandLimits, PathCalibration
from .codebook import Codebook, CodebookSpec
from .emitter import WitnessEmitter
from .receiver import ReceiverConfig, StreamingReceiver
from .report import SyncReport, encode_report
from .witness_output import DEFAULT_EPOCH_UNIX_S

__all__ = [
    "Codebook", "CodebookSpec", "WitnessEmitter", "ReceiverConfig", "StreamingReceiver",
    "SyncReport", "encode_report", "DEFAULT_EPOCH_UNIX_S", "PathCalibration", "BandLimits",
]
