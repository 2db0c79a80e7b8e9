"""Clock-fit snapshots the sync worker publishes for the supervisor (ring ``sync.fits``).

One snapshot = a :class:`FitsHeader` descriptor plus :data:`MAX_SOURCES`
:class:`FitRow` records (one per audio channel), read with
``RingReader.latest()``: never torn, no JSON.
"""

from __future__ import annotations

import msgspec

from ringbuf import F32, F64, U32, U64

__all__ = ["FITS_RING", "MAX_SOURCES", "FitsHeader", "FitRow"]

FITS_RING = "fit"  # the rig contract's object id (mimir.topology.FITS)
MAX_SOURCES = 32


class FitsHeader(msgspec.Struct):
    sources: U32
    sample_rate_hz: U32
    published_host_ns: U64
    blocks_read: U64
    blocks_lost: U64            # audio blocks the sync worker could not read in time (ring overrun)
    stream_pid: U64             # writer pid of the audio ring these fits were measured on (its stream)


class FitRow(msgspec.Struct):
    channel: U32
    locked: U32
    local_sample_at_epoch: F64  # device sample at canonical second 0
    rate_hz: F64              # effective sample rate of the device clock
    confidence: F32
    mae_samples: F32
    anchors_accepted: U64
    anchors_rejected: U64
    samples_consumed: U64
    locks: U32
    relocks: U32
    discontinuities: U32
