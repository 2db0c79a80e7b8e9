"""Measure a path's pulse once: the arrival's shape through a speaker and a microphone.

A dispersive speaker rings: its arrival is not the band's own pulse, and a
first-arrival fit that assumes it is reads the ringing as reflections (or a
reflection as ringing), so a path delay measured without the room does not
carry over into one (up to 1.2 samples in the simulated rooms). Recorded
once with little room in it (the microphone at the speaker, 20 s of the
witness), the channel estimate's view of that arrival is the pulse every
path through these transducers has: :class:`~mimir.sync.calibration.PathPulse`.
With it in :class:`~mimir.sync.calibration.PathCalibration`, the receiver
fits every path as the pulse delayed. Measure the path's delay with the
pulse in place (the pulse defines where an arrival's lag 0 is).
"""

from __future__ import annotations

import numpy as np

from .calibration import BandLimits, PathPulse
from .codebook import Codebook
from .receiver import StreamingReceiver

__all__ = ["measure_pulse", "pulse_of"]


def measure_pulse(audio: np.ndarray, rate_hz: float, codebook: Codebook | None = None,
                  band: BandLimits | None = None) -> PathPulse:
    """The pulse of the one path in ``audio`` (a dry recording of the witness); ValueError when there is none.

    ``band`` must be the band limits the receivers that use the pulse are
    given (the pulse is measured on, and only valid for, their analysis band).
    """
    rx = StreamingReceiver(codebook or Codebook(), rate_hz, "pulse", band=band)
    rx.feed(np.asarray(audio, dtype=np.float32))
    return pulse_of(rx)


def pulse_of(rx: StreamingReceiver) -> PathPulse:
    """The pulse of the path a receiver has decoded (a dry recording); ValueError with one line when it has none."""
    taps = rx.channel.measured_pulse() if rx.locked else None
    if taps is None:
        raise ValueError("no witness arrival to measure a pulse from (not locked, or no first arrival yet)")
    profile = rx.channel.profile
    if profile is not None and profile.quality < 0.75:
        raise ValueError("the recording's first arrival is ambiguous (" + "; ".join(profile.notes)
                         + "): record with the microphone closer to the speaker, away from walls")
    return PathPulse(rate_hz=rx.rate_hz, band_hz=rx.channel.band_hz,
                     re=[float(v) for v in taps.real], im=[float(v) for v in taps.imag])

