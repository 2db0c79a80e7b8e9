"""The room's impulse response measured with the witness, and the reverberation it shows (RT60, DRR).

The receiver knows what was played, so once it is locked the witness doubles
as a room measurement, the way a dual-channel analyser measures a room with
a known excitation. :class:`RoomResponse` accumulates the cross-spectrum of
*played* against *heard* in blocks of about 4 s and reads the decay from the
response they give:

* **Played.** The 32 symbols are rendered once at the reduced rate
  (:func:`decimation_for`: the receiver's rate divided down to at least
  2.4x the band's top) at four sub-sample phases; a block's played signal is
  those tables placed where the receiver's clock fit puts each event. The
  quarter-sample placement and the fit's ppm inside one 0.1 s symbol cost
  some coherence at the band's top, the same in every block: a constant
  factor on the response's spectrum, which leaves its decay alone.
* **Heard.** The block of audio at the receiver's rate, reduced by summing
  each ``decimation`` consecutive samples (a box filter: at 48 kHz it costs
  1.2 dB at 8 kHz, the same in every block, and folds the 16-22 kHz noise
  into the band 6-20 dB down), then one real FFT at the reduced rate.
* **Estimate.** Both under the same Hann window (as one continuous
  function of time), ``H = S_xy / S_xx`` on the analysis band (tapered over
  200 Hz at each edge). A window on both sides weights lag ``tau`` of the
  response by the window's normalised autocorrelation ``rho(tau)``, which is
  divided out up to 0.6 of the block. The noise floor is measured at negative
  lags (nothing arrives before the direct path) and carries the same
  ``1/rho**2``.
* **Decay.** From the strongest arrival within the first 0.1 s of lags:
  the energy above the floor, integrated backwards (Schroeder) up to the last
  10 ms block more than twice the floor, plus the energy the decay would
  still have carried past that point (the slope of the blocks after the
  energy's peak, continued; Lundeby's correction, one pass). RT60 is 60 dB
  over the least-squares slope of the integral from -5 to -25 dB (T20), or
  from 0 to -10 dB (EDT) when the floor cuts the integral before -26 dB, or
  None when it cuts it before -11 dB. DRR: the energy within +-2.5 ms of the
  arrival against the rest up to the cut.

The spectra forget exponentially (memory 8 blocks, 32 s): a microphone
moved, a door opened: the old room weighs 1 % after 36 blocks (2.5 min).

Bounded state: two spectra over the band's bins; the symbol tables and windows are
shared by every receiver of the process (read-only). Work: one block each ``block_s`` of audio
(two real FFTs, table copies): about 0.5 ms a second of 48 kHz audio here,
measured in ``mimir bench sync`` with the rest of the decoding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft as sfft

from .codebook import Codebook, CodebookSpec
from .symbols import N_SYMBOLS, render_symbols

__all__ = ["RoomResponse", "Reverberation", "decimation_for"]

_TOP_FRACTION = 0.42         # of the reduced rate: where the reduced FFT's bins stop being used
_EDGE_TAPER_HZ = 200.0
_PHASES = 4                  # sub-sample placements of the played symbols
_VALID_FRACTION = 0.6        # lags up to this fraction of the block: rho is not yet too small to divide by
_ARRIVAL_SEARCH_S = 0.1      # the direct path is the strongest lag within this of lag 0 (either side)
_FLOOR_LAGS_S = (0.05, 0.4)  # negative lags the noise floor is measured on (before any arrival)
_SMOOTH_S = 0.010
_CUT_OVER_FLOOR = 2.0
_DRR_WINDOW_S = 0.0025       # direct sound: +-2.5 ms around the arrival (the usual definition)


def decimation_for(rate_hz: float, band_high_hz: float) -> int:
    """The whole factor that divides ``rate_hz`` down to no less than ``band_high_hz / 0.42`` (1: no reduction)."""
    return max(1, int(rate_hz * _TOP_FRACTION // band_high_hz))


@dataclass(frozen=True)
class Reverberation:
    """What the accumulated response says about the room; ``None`` where the response does not show it."""

    rt60_s: float | None
    method: str | None               # "T20" or "EDT": the slope of the decay RT60 was read from
    drr_db: float | None             # direct (+-2.5 ms) against later energy, in ``band_hz``
    dynamic_range_db: float | None   # the arrival's 10 ms energy over the noise floor at that lag
    blocks: int
    band_hz: tuple[float, float]


class RoomResponse:
    """Played-against-heard spectra of one channel, accumulated block by block; :meth:`reverberation` reads them.

    Owned by one :class:`~mimir.sync.receiver.StreamingReceiver` (single
    thread). The receiver hands over each block of heard audio with the local
    sample positions of the events it holds (:meth:`add`).
    """

    def __init__(self, codebook: Codebook, rate_hz: float, band_hz: tuple[float, float], *,
                 block_s: float = 4.0, memory_blocks: int = 8) -> None:
        spec = codebook.spec
        self.codebook = codebook
        self.rate_hz = float(rate_hz)
        self.decimation = decimation_for(rate_hz, spec.band_high_hz)
        self.reduced_hz = self.rate_hz / self.decimation
        self.block = sfft.next_fast_len(int(round(block_s * self.reduced_hz)), real=True)  # reduced-rate samples
        self.block_samples = self.block * self.decimation                                  # receiver-rate samples
        freqs = np.fft.rfftfreq(self.block, 1.0 / self.reduced_hz)
        top = min(float(band_hz[1]), _TOP_FRACTION * self.reduced_hz)
        self.band_hz = (float(band_hz[0]), top)
        self._bins = np.flatnonzero((freqs >= self.band_hz[0]) & (freqs <= top))
        edge = np.clip(np.minimum(freqs[self._bins] - self.band_hz[0], top - freqs[self._bins]) / _EDGE_TAPER_HZ,
                       0.0, 1.0)
        self._taper = np.sin(0.5 * np.pi * edge) ** 2
        self._window_reduced = _hann(self.block)
        self._symbol_len = int(math.ceil(spec.symbol_seconds * self.reduced_hz)) + 2
        self._tables = _symbol_tables(spec, self.reduced_hz, self._symbol_len)
        self._played = np.zeros(self.block, np.float32)
        self._heard = np.zeros(self.block, np.float32)
        self._s_xy = np.zeros(self._bins.size, np.complex128)
        self._s_xx = np.zeros(self._bins.size)
        self.blocks = 0
        self._reverberation: Reverberation | None = None  # what the spectra say, read once per new block
        self._keep = 1.0 - 1.0 / memory_blocks  # exponential forgetting: a moved microphone shows within minutes

    def add(self, heard: np.ndarray, events: Iterable[tuple[int, float]]) -> None:
        """One block: ``heard`` (``block_samples`` at the receiver's rate) and ``(event index, local sample of the
        event's start relative to the block's first sample)`` for every event that overlaps the block."""
        if heard.size != self.block_samples:
            raise ValueError(f"a block is {self.block_samples} samples, not {heard.size}")
        played = self._played
        played[:] = 0.0
        length = self._symbol_len
        centre = 0.5 * (self.decimation - 1)  # a reduced heard sample is the mean of D: it sits at their centre
        for index, start in events:
            at_reduced = (start - centre) / self.decimation
            whole = math.floor(at_reduced)
            phase = int(round((at_reduced - whole) * _PHASES))
            if phase == _PHASES:
                whole, phase = whole + 1, 0
            a, b = max(whole, 0), min(whole + length, self.block)
            if a < b:
                played[a:b] += self._tables[phase, self.codebook.symbol_at(index), a - whole : b - whole]
        played *= self._window_reduced
        reduced = self._heard  # the box filter: the sum of each D consecutive samples (strided adds, no reduction)
        np.copyto(reduced, heard[0 :: self.decimation])
        for k in range(1, self.decimation):
            reduced += heard[k :: self.decimation]
        reduced *= self._window_reduced
        x_spec = sfft.rfft(played, overwrite_x=True)[self._bins]
        y_spec = sfft.rfft(reduced, overwrite_x=True)[self._bins]
        self._s_xy *= self._keep
        self._s_xx *= self._keep
        self._s_xy += np.conj(x_spec) * y_spec
        self._s_xx += x_spec.real**2 + x_spec.imag**2
        self.blocks += 1
        self._reverberation = None

    def response(self) -> np.ndarray:
        """The band's impulse response at the reduced rate over every lag of a block, before the window's
        ``rho`` is divided out (index ``k``: lag ``k``; negative lags at the end)."""
        spec = np.zeros(self.block // 2 + 1, np.complex128)
        if self.blocks:
            floor = 1e-3 * float(self._s_xx.max())
            spec[self._bins] = self._s_xy / np.maximum(self._s_xx, floor) * self._taper
        return sfft.irfft(spec, self.block)

    def reverberation(self) -> Reverberation:
        """RT60 (T20, else EDT), DRR and the dynamic range of the response accumulated so far (computed once per
        new block)."""
        if self._reverberation is None:
            self._reverberation = self._read_decay()
        return self._reverberation

    def _read_decay(self) -> Reverberation:
        none = Reverberation(None, None, None, None, self.blocks, self.band_hz)
        if self.blocks == 0:
            return none
        rate = self.reduced_hz
        raw = self.response()
        search = int(_ARRIVAL_SEARCH_S * rate)
        near = np.concatenate([raw[-search:], raw[: search + 1]]) ** 2
        arrival = int(np.argmax(near)) - search                    # lag of the direct path
        floor_raw = float(np.mean(raw[self.block - int(_FLOOR_LAGS_S[1] * rate) : self.block
                                      - int(_FLOOR_LAGS_S[0] * rate)] ** 2))
        valid = int(_VALID_FRACTION * self.block) - max(arrival, 0)
        lags = np.arange(arrival, arrival + valid)
        rho2 = _rho_squared(self.block)[np.abs(lags)]
        energy = raw[lags % self.block] ** 2 / rho2
        floor = floor_raw / rho2
        smooth = max(1, int(_SMOOTH_S * rate))
        if valid < smooth or floor_raw <= 0.0:
            return none
        e_blocks, f_blocks = _block_means(energy, smooth), _block_means(floor, smooth)
        dynamic_db = 10.0 * math.log10(float(e_blocks[0]) / float(f_blocks[0]))
        above = np.flatnonzero(e_blocks > _CUT_OVER_FLOOR * f_blocks)
        cut = int(above[-1] + 1) * smooth if above.size else smooth
        excess = np.maximum(energy[:cut] - floor[:cut], 0.0)
        half = int(round(_DRR_WINDOW_S * rate))
        before = np.maximum(raw[np.arange(arrival - half, arrival) % self.block] ** 2 - floor_raw, 0.0)
        direct = float(before.sum() + excess[: half + 1].sum())
        late = float(excess[half + 1 :].sum())
        drr_db = 10.0 * math.log10(direct / late) if direct > 0.0 and late > 0.0 else None
        tail = _energy_past(excess, smooth, rate)
        schroeder = np.cumsum(excess[::-1])[::-1] + tail
        if not schroeder[0] > 0.0:
            return Reverberation(None, None, drr_db, dynamic_db, self.blocks, self.band_hz)
        edc_db = 10.0 * np.log10(np.maximum(schroeder / schroeder[0], 1e-30))
        t = np.arange(cut) / rate
        for method, hi, lo in (("T20", -5.0, -25.0), ("EDT", 0.0, -10.0)):
            if float(edc_db[-1]) > lo - 1.0:
                continue  # the integral does not pass the range before the floor cuts it
            use = (edc_db <= hi) & (edc_db >= lo)
            if use.sum() >= 8:
                slope = float(np.polyfit(t[use], edc_db[use], 1)[0])
                if slope < 0.0:
                    return Reverberation(-60.0 / slope, method, drr_db, dynamic_db, self.blocks, self.band_hz)
        return Reverberation(None, None, drr_db, dynamic_db, self.blocks, self.band_hz)


def _block_means(x: np.ndarray, smooth: int) -> np.ndarray:
    """Means of ``x`` over whole blocks of ``smooth`` samples (a partial last block is left out)."""
    n = x.size // smooth
    return x[: n * smooth].reshape(n, smooth).mean(axis=1)


@lru_cache(maxsize=4)
def _hann(n: int) -> np.ndarray:
    """The Hann window of ``n`` samples, float32, shared and read-only."""
    window = np.hanning(n).astype(np.float32)
    window.flags.writeable = False
    return window


@lru_cache(maxsize=4)
def _rho_squared(n: int) -> np.ndarray:
    """``rho(tau)**2``, the squared normalised autocorrelation of :func:`_hann` ``(n)`` at lags ``0..n-1``."""
    auto = sfft.irfft(np.abs(sfft.rfft(_hann(n).astype(np.float64), 2 * n)) ** 2, 2 * n)[:n]
    rho2 = (auto / auto[0]) ** 2
    rho2.flags.writeable = False
    return rho2


@lru_cache(maxsize=4)
def _symbol_tables(spec: CodebookSpec, rate_hz: float, length: int) -> np.ndarray:
    """The 32 symbols at ``rate_hz`` at each of :data:`_PHASES` sub-sample delays: ``(phase, symbol, sample)``,
    float32, shared by every receiver of the process (read-only)."""
    tables = np.stack([render_symbols(range(N_SYMBOLS), band_low_hz=spec.band_low_hz,
                                      band_high_hz=spec.band_high_hz, symbol_seconds=spec.symbol_seconds,
                                      taper_seconds=spec.taper_seconds, sample_rate_hz=rate_hz,
                                      delay_samples=p / _PHASES, n_samples=length)
                       for p in range(_PHASES)]).astype(np.float32)
    tables.flags.writeable = False
    return tables


def _energy_past(excess: np.ndarray, smooth: int, rate: float) -> float:
    """The energy a decay cut at ``excess.size`` still carries: its late slope (10 ms blocks after the peak,
    5 dB under it or more) continued to infinity. Zero when no decay is seen there."""
    blocks = _block_means(excess, smooth)
    n = blocks.size
    if n < 4:
        return 0.0
    db = 10.0 * np.log10(np.maximum(blocks, 1e-300))
    late = (np.arange(n) > int(np.argmax(blocks))) & (db < float(db.max()) - 5.0) & (blocks > 0.0)
    if late.sum() < 3:
        return 0.0
    t = (np.arange(n) + 0.5) * smooth / rate
    slope_db_s, at0_db = np.polyfit(t[late], db[late], 1)
    if not slope_db_s < 0.0:
        return 0.0
    at_cut = 10.0 ** ((slope_db_s * excess.size / rate + at0_db) / 10.0)   # energy per sample where the cut is
    return float(at_cut * 10.0 / (-slope_db_s * math.log(10.0)) * rate)
