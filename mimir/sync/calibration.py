"""Optional receiver inputs from seed 003: path calibration and expected band limits.

Both are msgspec Structs so the rig config can embed them as they are (one
declaration; the config, the CLI and the receiver all use it).

:class:`PathCalibration`
    The known acoustic path from the witness speaker to one receiver (or one
    rig channel): a distance in metres, a delay measured once (speaker and
    microphone group delay, converter latency), or both. The receiver times
    the witness's *arrival*; with a calibration it subtracts the path, so the
    reported fit maps canonical time to the *emission*: the local sample the
    receiver captured at canonical time ``t`` is
    ``localSampleAtEpoch + t * effectiveSampleRate``, whatever the distance.
    Without one (the default) the fit places each sample ``distance / c``
    late, which is what a rig that reports per-microphone path delays wants.

:class:`BandLimits`
    The band the witness can reach this receiver in (a phone's voice path, a
    laptop speaker). The receiver then searches only the witness sub-bands
    inside it; a band that cannot hold the codebook (fewer than
    :data:`MIN_SUBBANDS` of its sub-bands) is refused.
"""

from __future__ import annotations

import math
import re

import msgspec
import numpy as np

from .codebook import CodebookSpec
from .symbols import N_SUBBANDS, usable_subbands

__all__ = ["PathCalibration", "PathPulse", "PULSE_PRE_SAMPLES", "PULSE_POST_SAMPLES", "BandLimits", "MIN_SUBBANDS",
           "parse_band", "path_from_options", "parse_channel_paths", "read_pulse", "analysis_band_hz",
           "SPEED_OF_SOUND_M_S"]

SPEED_OF_SOUND_M_S = 343.0  # dry air at 20 degrees C
MIN_SUBBANDS = 2  # with one sub-band, 32 symbols would share 16 cells: identity is lost


PULSE_PRE_SAMPLES = 48  # a pulse's taps: lags -48 .. +95 around its first arrival (lag 0)
PULSE_POST_SAMPLES = 96


class PathPulse(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One arrival's shape through the speaker and microphone, measured once (with the path's delay).

    The channel estimate's band view (Hann window over ``band_hz``, analytic)
    of a single path, sampled at ``rate_hz`` on lags ``-PULSE_PRE_SAMPLES``
    to ``PULSE_POST_SAMPLES - 1`` with its first arrival exactly at lag 0:
    ``re[i] + 1j * im[i]`` is lag ``i - PULSE_PRE_SAMPLES``. Measured by
    :func:`mimir.sync.path_measure.measure_pulse` on a recording of the
    witness with little room in it (the microphone at the speaker). With it,
    the first-arrival fit models every path as this pulse delayed (a
    dispersive speaker rings, a plain band pulse does not), so the
    transducers' ringing is not taken for reflections, nor reflections for
    ringing, and a delay measured with the pulse in place carries over into
    any room.
    """

    rate_hz: float
    band_hz: tuple[float, float]
    re: list[float]
    im: list[float]

    def validate(self) -> None:
        """Raise ValueError with one line saying what is wrong."""
        n = PULSE_PRE_SAMPLES + PULSE_POST_SAMPLES
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(f"path pulse: rate must be positive, got {self.rate_hz!r}")
        lo, hi = self.band_hz
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi <= self.rate_hz / 2):
            raise ValueError(f"path pulse: band must be 0 <= LO < HI <= rate / 2, got {lo:g}-{hi:g} Hz")
        if len(self.re) != n or len(self.im) != n:
            raise ValueError(f"path pulse: needs {n} taps (re and im), got {len(self.re)} and {len(self.im)}")
        taps = self.taps()
        if not np.all(np.isfinite(taps)) or not np.abs(taps).max() > 0:
            raise ValueError("path pulse: taps must be finite and not all zero")

    def taps(self) -> np.ndarray:
        """The complex taps (lag ``i - PULSE_PRE_SAMPLES`` at index ``i``)."""
        return np.asarray(self.re, dtype=np.float64) + 1j * np.asarray(self.im, dtype=np.float64)

    def check_fits(self, spec: CodebookSpec, rate_hz: float, band: BandLimits | None = None) -> None:
        """ValueError (one line) unless a receiver at ``rate_hz`` with ``band`` analyses what this was measured on."""
        lo, hi = analysis_band_hz(spec, rate_hz, band)
        off_band = max(abs(self.band_hz[0] - lo), abs(self.band_hz[1] - hi)) > 1.0
        if abs(self.rate_hz - rate_hz) > 1e-6 * rate_hz or off_band:
            raise ValueError(f"the path pulse was measured at {self.rate_hz:g} Hz over {self.band_hz[0]:g}-"
                             f"{self.band_hz[1]:g} Hz; this receiver analyses {lo:g}-{hi:g} Hz at {rate_hz:g} Hz: "
                             "measure it again at this rate and band")


def analysis_band_hz(spec: CodebookSpec, rate_hz: float, band: BandLimits | None = None) -> tuple[float, float]:
    """The band a receiver analyses arrivals in: its usable sub-bands (renderable, at least half inside ``band``),
    clipped to ``band``. A :class:`PathPulse` is valid for the band it was measured over."""
    limits = None if band is None else (band.low_hz, band.high_hz)
    used = np.nonzero(usable_subbands(spec.band_low_hz, spec.band_high_hz, rate_hz, band_hz=limits))[0]
    if used.size == 0:
        raise ValueError(f"no witness sub-band is usable at {rate_hz:g} Hz"
                         + ("" if band is None else f" within {band.low_hz:g}-{band.high_hz:g} Hz"))
    sub = (spec.band_high_hz - spec.band_low_hz) / N_SUBBANDS
    lo = spec.band_low_hz + sub * int(used[0])
    hi = spec.band_low_hz + sub * (int(used[-1]) + 1)
    if limits is not None:
        lo, hi = max(lo, limits[0]), min(hi, limits[1])
    return lo, hi


def read_pulse(path: str) -> PathPulse:
    """A :class:`PathPulse` from its JSON file (``mimir decode --measure-pulse``); ValueError with one line."""
    try:
        with open(path, "rb") as f:
            pulse = msgspec.json.decode(f.read(), type=PathPulse)
    except OSError as exc:
        raise ValueError(f"cannot read the path pulse {path}: {exc.strerror or exc}") from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path} is not a path pulse: {exc}") from None
    pulse.validate()
    return pulse


class PathCalibration(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A known path from the witness speaker to a receiver: ``delay = distance_m / speed + delay_s``.

    ``distance_m``: speaker to microphone, metres (>= 0). ``delay_s``: any
    further fixed delay measured once, seconds (may be negative, e.g. to
    take out a measured latency that the distance overstates).
    ``speed_of_sound_m_s``: 343 at 20 C; 331.3 + 0.606 x temperature in C.
    ``pulse`` (optional): the transducers' arrival shape, measured once
    (:class:`PathPulse`); ``delay_s`` must then have been measured with it.
    """

    distance_m: float = 0.0
    delay_s: float = 0.0
    speed_of_sound_m_s: float = SPEED_OF_SOUND_M_S
    pulse: PathPulse | None = None

    def validate(self) -> None:
        """Raise ValueError with one line saying what is wrong."""
        if self.pulse is not None:
            self.pulse.validate()
        if not (math.isfinite(self.distance_m) and 0.0 <= self.distance_m <= 1000.0):
            raise ValueError(f"path distance must be 0-1000 m, got {self.distance_m!r}")
        if not (math.isfinite(self.delay_s) and abs(self.delay_s) <= 10.0):
            raise ValueError(f"path delay must be within +-10 s, got {self.delay_s!r}")
        if not (math.isfinite(self.speed_of_sound_m_s) and 200.0 <= self.speed_of_sound_m_s <= 2000.0):
            raise ValueError(f"speed of sound must be 200-2000 m/s, got {self.speed_of_sound_m_s!r}")

    @property
    def path_delay_s(self) -> float:
        """The whole path's delay: the distance's plus ``delay_s``."""
        return self.distance_m / self.speed_of_sound_m_s + self.delay_s


class BandLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The band (Hz) the witness can arrive in at this receiver."""

    low_hz: float
    high_hz: float

    def usable_subbands(self, spec: CodebookSpec, rate_hz: float) -> np.ndarray:
        """Mask of the codebook's sub-bands this band carries (at least half of each inside, and renderable)."""
        return usable_subbands(spec.band_low_hz, spec.band_high_hz, rate_hz, band_hz=(self.low_hz, self.high_hz))

    def validate(self, spec: CodebookSpec | None = None, rate_hz: float | None = None) -> None:
        """Raise ValueError (one line) when the band is malformed or cannot hold the codebook."""
        if not (math.isfinite(self.low_hz) and math.isfinite(self.high_hz) and 0.0 <= self.low_hz < self.high_hz):
            raise ValueError(f"band must be LO-HI with 0 <= LO < HI (Hz), got {self.low_hz:g}-{self.high_hz:g}")
        if spec is None:
            return
        rate = rate_hz if rate_hz is not None else 4.0 * spec.band_high_hz
        n = int(self.usable_subbands(spec, rate).sum())
        if n < MIN_SUBBANDS:
            sub = (spec.band_high_hz - spec.band_low_hz) / N_SUBBANDS
            raise ValueError(
                f"band {self.low_hz:g}-{self.high_hz:g} Hz holds {n} of the witness's {N_SUBBANDS} sub-bands "
                f"({spec.band_low_hz:g}-{spec.band_high_hz:g} Hz in steps of {sub:g} Hz)"
                f"{'' if rate_hz is None else f' at {rate:g} Hz'}; "
                f"decoding needs at least {MIN_SUBBANDS}"
            )


_BAND = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(k?)\s*-\s*(\d+(?:\.\d*)?)\s*(k?)\s*$", re.IGNORECASE)


def parse_band(text: str) -> BandLimits:
    """``"300-3400"`` or ``"0.3k-3.4k"`` -> :class:`BandLimits` (ValueError with one line otherwise)."""
    m = _BAND.match(text)
    if m is None:
        raise ValueError(f"band must look like LO-HI in Hz (e.g. 300-3400), got {text!r}")
    lo = float(m.group(1)) * (1000.0 if m.group(2) else 1.0)
    hi = float(m.group(3)) * (1000.0 if m.group(4) else 1.0)
    band = BandLimits(lo, hi)
    band.validate()
    return band


def path_from_options(distance_m: float | None, delay_ms: float | None,
                      speed_of_sound_m_s: float = SPEED_OF_SOUND_M_S,
                      pulse_file: str | None = None) -> PathCalibration | None:
    """The CLI's ``--path-distance-m`` / ``--path-delay-ms`` / ``--speed-of-sound`` / ``--path-pulse`` -> a
    validated calibration or None."""
    if distance_m is None and delay_ms is None and pulse_file is None:
        return None
    path = PathCalibration(distance_m=0.0 if distance_m is None else float(distance_m),
                           delay_s=0.0 if delay_ms is None else float(delay_ms) / 1e3,
                           speed_of_sound_m_s=float(speed_of_sound_m_s),
                           pulse=None if pulse_file is None else read_pulse(pulse_file))
    path.validate()
    return path


def parse_channel_paths(items: list[str], pulses: list[str] | None = None) -> dict[int, PathCalibration]:
    """``["1:3.2", "2:5.0:0.25"]`` (channel:metres[:extra ms]) and ``["1:dry.json"]`` (channel:pulse file, the JSON
    ``mimir decode --measure-pulse`` writes) -> {channel: PathCalibration} (ValueError with one line)."""
    out: dict[int, PathCalibration] = {}
    for item in items:
        parts = item.split(":")
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            channel = int(parts[0])
            path = PathCalibration(distance_m=float(parts[1]), delay_s=float(parts[2]) / 1e3 if len(parts) == 3 else 0.0)
        except ValueError:
            raise ValueError(f"--channel-path must look like CHANNEL:METRES[:MS], got {item!r}") from None
        path.validate()
        if channel < 0 or channel in out:
            raise ValueError(f"--channel-path: channel {channel} is negative or given twice")
        out[channel] = path
    seen: set[int] = set()
    for item in pulses or []:
        head, sep, file = item.partition(":")  # the first colon only: 1:C:\dry.json names a Windows file
        try:
            if not sep or not file:
                raise ValueError
            channel = int(head)
        except ValueError:
            raise ValueError(f"--channel-pulse must look like CHANNEL:FILE, got {item!r}") from None
        if channel < 0 or channel in seen:
            raise ValueError(f"--channel-pulse: channel {channel} is negative or given twice")
        seen.add(channel)
        path = out.get(channel, PathCalibration())
        out[channel] = msgspec.structs.replace(path, pulse=read_pulse(file))
    return out
