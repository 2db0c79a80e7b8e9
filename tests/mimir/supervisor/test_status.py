"""`mimir status` text from a board snapshot: what each audio channel's row says about its room."""

from __future__ import annotations

import math

import numpy as np

from mimir.supervisor.status import SourceRow, StatusSnapshot, text
from ringbuf.layout import dtype_of


def source(name: str, **values) -> dict:
    """One source row as `read_status` gives it: every SourceRow field, zero unless given."""
    row = np.zeros((), dtype_of(SourceRow))
    out = {k: (row[k].item().decode() if isinstance(row[k].item(), bytes) else row[k].item())
           for k in row.dtype.names}
    out.update(name=name, **values)
    return out


def test_each_locked_audio_channel_shows_its_room_and_nothing_it_has_not_measured():
    """Invariant: a figure is shown only where the sync worker published one (NaN: not measured yet)."""
    clock = dict(clock_locked=1, clock_rate_hz=48000.0, clock_confidence=0.95, clock_mae_samples=0.05)
    rows = [
        source("audio.ch0", **clock, path_strongest_minus_direct_ms=-0.0001, path_drr_db=32.0, path_rt60_s=0.006),
        source("audio.ch1", **clock, path_strongest_minus_direct_ms=1.25, path_drr_db=-4.4, path_rt60_s=0.479),
        source("audio.ch2", **clock, path_strongest_minus_direct_ms=0.3, path_drr_db=math.nan, path_rt60_s=math.nan),
        source("audio.ch3", path_drr_db=math.nan, path_rt60_s=math.nan),  # not locked
    ]
    shown = text(StatusSnapshot("r", True, {"clock_reference": 0}, [], rows)).splitlines()
    ch = {name: next(line for line in shown if line.startswith(name)) for name in ("audio.ch0", "audio.ch1",
                                                                                    "audio.ch2", "audio.ch3")}
    assert "strongest path +0.00 ms, DRR 32.0 dB, RT60 0.01 s" in ch["audio.ch0"]  # never "-0.00"
    assert "strongest path +1.25 ms, DRR -4.4 dB, RT60 0.48 s" in ch["audio.ch1"]
    assert "strongest path +0.30 ms" in ch["audio.ch2"] and "DRR" not in ch["audio.ch2"] \
        and "RT60" not in ch["audio.ch2"]
    assert "DRR" not in ch["audio.ch3"] and "strongest" not in ch["audio.ch3"]
