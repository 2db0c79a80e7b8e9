"""Channel estimation from the known witness: the room's impulse response, its first arrival, its decay.

The receiver knows exactly what was played, so every timed event is also a
measurement of the path from the speaker to this microphone (the witness
doubles as a room measurement). For each anchor the received spectrum on
the witness band is deconvolved, shifted so that lag 0 is the event's
*timing reference* (where the rake put it), and added to an exponentially
weighted mean over the last ``memory_events`` events: the band-limited,
analytic impulse response ``g(j)`` for lags ``j`` in ``[-pre, +post)``.
Every view is normalised so that one path of gain ``a`` peaks at ``|g| = a``.

Views kept
    * *rake* (Hann window across the band, the exact per-symbol inverse
      ``conj(T)/(|T|^2 + lambda)``): no self-noise, so the rake built from it
      never wanders; it does pick up earlier events' reverberation through
      the alphabet's common mean waveform, a small bias that only matters
      for the rake's shape;
    * *analysed* (Hann window, zero-mean filters
      :attr:`TemplateBank.deconv_filters`, their known mean self-error over
      the events held divided out): unbiased; fine timing of the first
      arrival and the strongest path (DRR and RT60 come from the longer
      room measurement, :mod:`mimir.sync.room_response`);
    * *floor* (Blackman-Harris window, sidelobes under -90 dB, same filters)
      with the per-lag scatter of single events: the pre-arrival floor the
      first arrival must rise out of. A strong later path's sidelobes cannot
      pass for an earlier arrival in this view.

Why the first arrival: beyond the critical distance of a room (1-3 m in
ordinary rooms) most of the energy arrives by reflections, and a cluster of
them can beat the direct path. Sound cannot arrive before the direct path,
so the earliest arrival that rises significantly above the floor is the
direct path, unless the direct path itself is buried; the quality factor
(which multiplies the receiver's confidence) says how far that is excluded.

Cost per event: the mean views are linear in the events, so events are
summed on the band's bins (a few products of ``len(bins)`` values) and
turned into lags by one inverse FFT when they are read (an analysis, a
recenter), not one per event. The floor's per-event power is not linear:
it takes an inverse FFT of the event, on every event until the rake
freezes and on every :data:`POWER_EVERY`-th one after (64 of the 256 held;
the floor is a per-lag variance smoothed over 33 lags, so fewer samples
cost it little precision).

State (bounded): nine arrays of ``pre + post`` values, two of ``len(bins)``,
a per-symbol self-error table and a few scalars.
:meth:`ChannelEstimate.analyse` costs a few FFTs and a small least-squares
fit; the receiver calls it at lock and then every few anchors (a function
of the event sequence only, so results do not depend on chunking).
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
from scipy import fft as sfft

from .calibration import PULSE_POST_SAMPLES, PULSE_PRE_SAMPLES
from .report import PathProfile
from .timing import EventMeasurement, TemplateBank, _newton_peak, phasors
from .two_paths import fit_two_real_paths

__all__ = ["ChannelEstimate", "band_window"]

_DETECT_SNR = 25.0  # first arrival: |g|^2 at least 14 dB above the pre-arrival floor
_DETERMINISTIC_FLOOR_DB = -50.0  # the floor also holds the deconvolution's own sidelobes (< -55 dB of the peak)
_HINT_SNR = 10.0  # an earlier bump 10 dB above the floor (but under the threshold) makes the answer ambiguous
_RAKE_SNR = 25.0  # rake taps: lags of the analysed view 14 dB above the floor (noise taps would cost SNR)
_KERNEL_SPAN = 96  # samples: the path fit's kernel table covers +-96 samples ...
_KERNEL_STEPS = 64  # ... every 1/64 sample
_MAX_PATHS = 4  # paths fitted jointly around the first arrival
_MERGE_RESOLUTIONS = 1.25  # a path in phase with the arrival before it and 1.25 half-Rayleigh spacings after it ...
_IN_PHASE_RAD = math.radians(30.0)  # ... (within 30 degrees) is a reflection of its own (see _resolve_first)
_TWO_PATHS_NOISE = 10.0  # a close pair is two real paths when they fit within 10 noise powers of the free fit ...
_TWO_PATHS_MISFIT = 1.5  # ... and within 1.5x its misfit (see _resolve_first and mimir.sync.two_paths)
_REAL_PHASE_RAD = math.radians(20.0)  # a path's gain this far from real (0 or 180 degrees) is not a pure delay
_REAL_RETRY_EVERY = 4  # a refused real-gain refit is asked again every 4th analysis of the same decomposition
_FIT_TOL = 1e-6  # the path fit's relative tolerances (see fit in _resolve_first)
_GAIN_RIDGE = 0.0003  # the path fit's ridge on the gains, relative to one path's energy through the kernel
_SENSITIVITY_DB = 25.0  # full confidence only when a direct path 25 dB under the strongest would be seen
_SHADOW_WINDOW_S = 0.002  # a first lobe 18 dB under a path within 2 ms after it is not the direct path ...
_SHADOW_LOBE_DB = 18.0
_SHADOW_SURE_DB = 30.0  # ... and confidence falls when it was less than 30 dB under (it may be the direct path)
_SHADOW_DB = 10.0  # ... nor one 10 dB under a path within two main lobes after it
_LOBE_DB = -25.0  # within one lobe, a Hann-view peak must be within 25 dB of the lobe's top (Hann sidelobes: -31 dB)
_EDGE_SAMPLES = 48  # lags this close to the ends of the window are not trusted (wrap-around leakage)
POWER_EVERY = 4  # once the rake is frozen, the floor's per-event power is sampled on every 4th event (64 of 256)


def band_window(freqs_hz: np.ndarray, band_hz: tuple[float, float], kind: str) -> np.ndarray:
    """A window over ``band_hz`` evaluated at ``freqs_hz`` (zero outside): ``hann`` or ``blackmanharris``."""
    lo, hi = band_hz
    u = (np.asarray(freqs_hz, dtype=np.float64) - lo) / (hi - lo)
    inside = (u >= 0.0) & (u <= 1.0)
    u = np.clip(u, 0.0, 1.0)
    if kind == "hann":
        w = 0.5 - 0.5 * np.cos(2.0 * np.pi * u)
    elif kind == "blackmanharris":
        a = (0.35875, 0.48829, 0.14128, 0.01168)
        w = a[0] - a[1] * np.cos(2 * np.pi * u) + a[2] * np.cos(4 * np.pi * u) - a[3] * np.cos(6 * np.pi * u)
    else:
        raise ValueError(f"unknown window {kind!r}")
    return np.where(inside, w, 0.0)


class ChannelEstimate:
    """Accumulated impulse response of one receiver's path, relative to its timing reference.

    ``band_hz`` is the band the witness can arrive in (the codebook's band,
    narrowed by the sample rate and by band limits). ``pre``/``post`` are the
    lags kept before and after the reference (:class:`TemplateBank` segments
    must be built with at least these).
    """

    def __init__(self, rate_hz: float, band_hz: tuple[float, float], pre_samples: int, post_samples: int,
                 memory_events: int = 256, *, enabled: bool = True, freeze_events: int = 40,
                 pulse: np.ndarray | None = None) -> None:
        self.rate_hz = float(rate_hz)
        self.band_hz = (float(band_hz[0]), float(band_hz[1]))
        self.pre = int(pre_samples)
        self.post = int(post_samples)
        self.length = self.pre + self.post
        self.memory_events = int(memory_events)
        self.freeze_events = int(freeze_events)
        self._rebuild_at = 0  # the rake is rebuilt at the first analysis, then each time the events have doubled
        self.enabled = bool(enabled)  # disabled: add() and analyse() do nothing, quality stays 1
        self.events = 0
        self.version = 0
        # Lag-domain views (each a weighted sum; divide by _w for the mean), brought up to date by _flush().
        self._g_rake = np.zeros(self.length, dtype=np.complex128)  # Hann view, exact per-symbol inverse
        self._g_hann = np.zeros(self.length, dtype=np.complex128)
        self._g_bh = np.zeros(self.length, dtype=np.complex128)
        # Per-lag sums of the events' weights and squared weights: lags that entered the window at a recenter
        # hold fewer events, and their mean and floor must say so (variance of the mean = w2 / w^2 x per event).
        self._w = np.zeros(self.length)
        self._w2 = np.zeros(self.length)
        # Events since the last flush, summed on their spectrum (the mean views are linear in the events, so one
        # inverse FFT per flush gives what one per event gave): the grid they are on, the sums, and the decay
        # and weights the flush applies to the lag-domain arrays.
        self._pending_bank: TemplateBank | None = None
        self._pending_h0 = np.zeros(0, dtype=np.complex128)
        self._pending_rake = np.zeros(0, dtype=np.complex128)
        self._pending_decay = 1.0
        self._pending_w = 0.0
        self._pending_w2 = 0.0
        # The per-event power behind the pre-arrival floor is not linear in the events: it is summed in lags,
        # from every event until the rake freezes and from every POWER_EVERY-th one after, with its own weights.
        self._p_bh = np.zeros(self.length)  # weighted sum of |g_bh|^2 per sampled event
        self._p_hann = np.zeros(self.length)
        self._wp = np.zeros(self.length)
        self._wp2 = np.zeros(self.length)
        self._power_events = 0
        self._grid: tuple[int, np.ndarray, np.ndarray] | None = None  # (n_fft, bins, per-symbol self-error)
        self._self_error = np.zeros(0, dtype=np.complex128)  # weighted mean self-error of the events held
        self._idx_cache: dict[int, np.ndarray] = {}
        self._window_cache: dict[tuple[int, int, int], tuple[np.ndarray | None, np.ndarray | None]] = {}
        self._spectrum_cache: dict[tuple[int, int, int], tuple[int, np.ndarray]] = {}
        self._view = self._g_hann  # the corrected Hann view of the last analysis
        # One path's shape in the Hann view: the band's own pulse, or one measured through the transducers
        # (PathPulse taps: lags -PULSE_PRE_SAMPLES.., first arrival at 0, measured at this rate and band).
        self._pulse = None if pulse is None else np.asarray(pulse, dtype=np.complex128)
        if self._pulse is not None and self._pulse.shape != (PULSE_PRE_SAMPLES + PULSE_POST_SAMPLES,):
            raise ValueError(f"a path pulse has {PULSE_PRE_SAMPLES + PULSE_POST_SAMPLES} taps")
        self._kernels: tuple[np.ndarray, np.ndarray] | None = None  # (k, dk/dx) tables: _kernel_table()
        # The paths the last analysis fitted (lags in the views' frame, moved by recenter; complex gains), and
        # whether the rake was frozen then: the next analysis starts from them. Also read by tests and plots.
        self._last_paths: tuple[np.ndarray, np.ndarray] | None = None
        self._paths_frozen = False
        self._real_skips = 0  # analyses left before a refused real-gain refit is asked again (_resolve_first)
        self._rake: np.ndarray | None = None  # significant taps of the Hann view, set by analyse()
        self._rake_shift = 0.0  # the rake is these taps delayed by -shift samples (applied as a phase, exactly)
        self._rake_version = 0
        self.profile: PathProfile | None = None
        self.quality = 0.0 if self.enabled else 1.0
        self.first_sigma_samples = math.inf if self.enabled else 0.0

    # ------------------------------------------------------------------ accumulate
    def _lag_index(self, n_fft: int) -> np.ndarray:
        idx = self._idx_cache.get(n_fft)
        if idx is None:
            idx = np.arange(-self.pre, self.post) % n_fft
            self._idx_cache[n_fft] = idx
        return idx

    def add(self, measured: EventMeasurement, bank: TemplateBank, expected_symbol: int) -> None:
        """Add one timed event (``measured.received`` and its lag) to the estimate.

        The event's deconvolved spectrum is added to the pending spectrum sums
        (no transform); its per-lag power, for the floor, only on sampled
        events (every event until the rake freezes, then every
        :data:`POWER_EVERY`-th).
        """
        if not self.enabled:
            return
        if measured.received is None or bank.pre < self.pre or bank.post < self.post:
            raise ValueError("the event was measured without the channel window (TemplateBank pre/post)")
        w_h, w_b = self._windows(bank)
        if w_h is None or w_b is None:
            return
        if self._pending_bank is not bank:
            self._flush()
            self._pending_bank = bank
            self._pending_h0 = np.zeros(bank.bins.size, dtype=np.complex128)
            self._pending_rake = np.zeros(bank.bins.size, dtype=np.complex128)
        frozen = self.frozen  # a frozen rake needs no more of the exact view
        x = measured.received * phasors(bank.omega, measured.lag_samples)
        h0 = x * bank.deconv_filters[expected_symbol]  # unbiased over symbols: what is analysed
        alpha = max(1.0 / (self.events + 1), 1.0 / self.memory_events)
        keep = 1.0 - alpha
        self._pending_h0 *= keep
        self._pending_h0 += alpha * h0
        if not frozen:
            self._pending_rake *= keep
            self._pending_rake += alpha * (x * bank.inverse_filters[expected_symbol])  # exact per symbol: the rake
        self._pending_decay *= keep
        self._pending_w = self._pending_w * keep + alpha
        self._pending_w2 = self._pending_w2 * keep * keep + alpha * alpha
        if self._grid is None:  # the self-error's mean is kept on the first bank's bins (a property of the symbols)
            self._grid = (bank.n_fft, bank.bins.copy(), bank.self_error)
            self._self_error = np.zeros(bank.bins.size, dtype=np.complex128)
        self._self_error *= keep
        self._self_error += alpha * self._grid[2][expected_symbol]
        if not frozen or self.events % POWER_EVERY == 0:
            self._add_power(h0, bank, w_h, w_b)
        self.events += 1
        self.version += 1

    def _add_power(self, h0: np.ndarray, bank: TemplateBank, w_h: np.ndarray, w_b: np.ndarray) -> None:
        """One sampled event's per-lag power in both views (its own weights: the last ``memory / POWER_EVERY``)."""
        full = np.zeros((2, bank.n_fft), dtype=np.complex64)  # single precision: 2x faster, floor < -100 dB
        full[0, bank.bins] = h0 * w_h
        full[1, bank.bins] = h0 * w_b
        lags = sfft.ifft(full, axis=1, overwrite_x=True)[:, self._lag_index(bank.n_fft)] * bank.n_fft
        alpha = max(1.0 / (self._power_events + 1), POWER_EVERY / self.memory_events)
        keep = 1.0 - alpha
        self._p_hann *= keep
        self._p_hann += alpha * (lags[0].real ** 2 + lags[0].imag ** 2)
        self._p_bh *= keep
        self._p_bh += alpha * (lags[1].real ** 2 + lags[1].imag ** 2)
        self._wp *= keep
        self._wp += alpha
        self._wp2 *= keep * keep
        self._wp2 += alpha * alpha
        self._power_events += 1

    def _flush(self) -> None:
        """Bring the lag-domain views up to date: one inverse FFT of the pending spectrum sums."""
        bank = self._pending_bank
        if bank is None or self._pending_w == 0.0:
            return
        w_h, w_b = self._windows(bank)
        assert w_h is not None and w_b is not None  # add() only keeps events on grids with windows
        full = np.zeros((3, bank.n_fft), dtype=np.complex128)
        full[0, bank.bins] = self._pending_h0 * w_h
        full[1, bank.bins] = self._pending_h0 * w_b
        full[2, bank.bins] = self._pending_rake * w_h
        lags = sfft.ifft(full, axis=1, overwrite_x=True)[:, self._lag_index(bank.n_fft)] * bank.n_fft
        decay = self._pending_decay
        for view, fresh in ((self._g_hann, lags[0]), (self._g_bh, lags[1]), (self._g_rake, lags[2])):
            view *= decay
            view += fresh
        self._w *= decay
        self._w += self._pending_w
        self._w2 *= decay * decay
        self._w2 += self._pending_w2
        self._pending_h0[:] = 0.0
        self._pending_rake[:] = 0.0
        self._pending_decay = 1.0
        self._pending_w = self._pending_w2 = 0.0

    def _windows(self, bank: TemplateBank) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The Hann and Blackman-Harris band windows on ``bank.bins``, each scaled so one path peaks at 1 (cached)."""
        key = (bank.n_fft, int(bank.bins[0]), int(bank.bins.size))
        got = self._window_cache.get(key)
        if got is None:
            freqs = bank.bins * (bank.rate_hz / bank.n_fft)
            w_h = band_window(freqs, self.band_hz, "hann")
            w_b = band_window(freqs, self.band_hz, "blackmanharris")
            s_h, s_b = float(w_h.sum()), float(w_b.sum())
            got = (w_h / s_h, w_b / s_b) if s_h > 0 and s_b > 0 else (None, None)
            if len(self._window_cache) > 4:
                self._window_cache.clear()
            self._window_cache[key] = got
        return got

    @property
    def frozen(self) -> bool:
        """True once the rake (and with it the timing reference) is fixed: after ``freeze_events`` events.

        Every event is aligned to the rake it then updates, so a rake that
        kept changing would let the timing reference wander with the
        estimate's noise, which a clock fit reads as a rate error (0.1 ppm
        measured on a clean loopback). So the rake is rebuilt only a few
        times (each time the events held have doubled, each rebuild
        registered by the receiver), then frozen: the reference is fixed,
        the estimate converges in a fixed frame, and the first arrival is
        reported as an offset from it.
        """
        return self.events >= self.freeze_events

    def recenter(self, delta_samples: float) -> None:
        """Move the timing reference ``delta_samples`` later (negative: earlier); lag ``j`` becomes ``j - delta``.

        The receiver keeps its reference on the first arrival: after every
        analysis it moves the reference there (and its fits with it). That
        pins the frame to a physical feature of the room: without it the
        frame would random-walk (every event is aligned to the estimate it
        then updates) and the walk would show up as a false clock rate. It
        also keeps the look-back window on the ``pre`` samples before the
        direct path, so a lock on a reflection 70 ms late finds the direct
        path within a few analyses. Lags that enter the window start empty.
        """
        self._flush()
        whole = int(math.floor(delta_samples + 0.5))
        frac = float(delta_samples) - whole
        for name in ("_g_rake", "_g_hann", "_g_bh", "_p_bh", "_p_hann", "_w", "_w2", "_wp", "_wp2"):
            old = getattr(self, name)
            new = np.zeros_like(old)
            if whole >= 0:
                new[: self.length - whole] = old[whole:]
            else:
                new[-whole:] = old[: self.length + whole]
            if frac and np.iscomplexobj(new):  # band-limited sub-sample shift (the power arrays only smooth the floor)
                n = sfft.next_fast_len(self.length + 64)
                spec = sfft.fft(new, n)
                spec *= np.exp(2j * np.pi * np.fft.fftfreq(n) * frac)
                new = sfft.ifft(spec)[: self.length]
            setattr(self, name, new)
        if self._last_paths is not None:
            self._last_paths = (self._last_paths[0] - float(delta_samples), self._last_paths[1])
        if self._rake is not None:
            # The rake moves as a whole, by a phase ramp: it is the same filter in the new frame. (Moving its taps
            # in the window cut off those that left it, late reflections after a move of ~1500 samples earlier;
            # the rake's timing then stepped by up to half a sample, unregistered, and the clock fit read the
            # step as a rate error: 0.3 ppm, 0.3 sample at the start of a 30 s trial.)
            self._rake_shift += float(delta_samples)
            self._rake_version += 1
        self.version += 1

    def register_rake(self, shift_samples: float) -> None:
        """Delay the rake by ``shift_samples`` (the receiver measures how far a new rake moved its timing).

        Cutting taps off the estimate changes the rake's phase a little, and
        with it where events are timed; the receiver times its last events
        with the old and the new rake and takes the difference out here, so
        a new rake never moves the reference (a moving reference would read
        as a clock rate error).
        """
        self._rake_shift -= float(shift_samples)
        self._rake_version += 1

    @property
    def rake_version(self) -> int:
        return self._rake_version

    def moved(self, delta_samples: float) -> None:
        """Re-express the last profile after :meth:`recenter` (offsets are relative to the reference)."""
        p = self.profile
        if p is None or p.first_arrival_offset_samples is None:
            return
        self.profile = msgspec.structs.replace(
            p,
            first_arrival_offset_samples=p.first_arrival_offset_samples - delta_samples,
            strongest_arrival_offset_samples=None if p.strongest_arrival_offset_samples is None
            else p.strongest_arrival_offset_samples - delta_samples,
        )

    def spectrum(self, bank: TemplateBank) -> np.ndarray | None:
        """The rake: the significant taps' frequency response on ``bank.bins`` (mean power 1), or None.

        Taps are the lags of the Hann view more than 8 dB above the floor at
        the last :meth:`analyse`; where the estimate is mostly noise (low
        SNR, few events) only the main path survives and the rake is the
        plain template again. None until the first analysis.
        """
        if self._rake is None:
            return None
        key = (bank.n_fft, int(bank.bins[0]), int(bank.bins.size))  # all the response on the bins depends on
        got = self._spectrum_cache.get(key)
        if got is not None and got[0] == self._rake_version:
            return got[1]
        full = np.zeros(bank.n_fft, dtype=np.complex128)
        full[self._lag_index(bank.n_fft)] = self._rake
        g = sfft.fft(full, overwrite_x=True)[bank.bins] * phasors(bank.omega, self._rake_shift)
        scale = math.sqrt(float(np.mean(g.real**2 + g.imag**2)))
        g = g / scale if scale > 0 else g
        if len(self._spectrum_cache) > 4:
            self._spectrum_cache.clear()
        self._spectrum_cache[key] = (self._rake_version, g)
        return g

    # ------------------------------------------------------------------ analyse
    def _mean(self, g: np.ndarray) -> np.ndarray:
        """A view's weighted sum -> mean per lag (0 where no event has contributed)."""
        return np.divide(g, self._w, out=np.zeros_like(g), where=self._w > 0)

    def _noise(self, hann: bool = False) -> np.ndarray:
        """Per-lag variance of a view's mean (for the Blackman-Harris view: the pre-arrival floor), smoothed.

        The per-event scatter comes from the sampled events' power, the
        variance of the mean from all events' weights. Lags with fewer than
        three events' worth of weight (or of power samples) have no floor yet (infinite).
        """
        g, p = (self._g_hann, self._p_hann) if hann else (self._g_bh, self._p_bh)
        w, w2, wp, wp2 = self._w, self._w2, self._wp, self._wp2
        valid = w > 0
        q = np.divide(w2, w * w, out=np.ones_like(w), where=valid)
        q_power = np.divide(wp2, wp * wp, out=np.ones_like(wp), where=wp > 0)
        mean = self._mean(g)
        power = np.divide(p, wp, out=np.zeros_like(p), where=wp > 0)
        per_event = np.divide(np.maximum(power - (mean.real**2 + mean.imag**2), 0.0), 1.0 - q,
                              out=np.zeros_like(p), where=q < 1.0)
        k = 33
        smooth = np.convolve(np.pad(per_event, k // 2, mode="edge"), np.ones(k) / k, mode="valid")
        return np.where((q <= 1.0 / 3.0) & (q_power <= 1.0 / 3.0), smooth * q + 1e-300, np.inf)

    def _corrected(self, g: np.ndarray) -> np.ndarray:
        """A zero-mean-template view with the known mean self-error of its events divided out.

        Each event's estimate is the true response times ``1 + E_s`` (E_s known
        per symbol: the zero-mean filters are exact only on average over the
        alphabet); the mean of ``E_s`` over the events held is tracked, so the
        estimate is corrected exactly, up to noise and the events' alignment.
        """
        if self._grid is None:
            return g
        n_fft, bins, _ = self._grid
        idx = self._lag_index(n_fft)
        full = np.zeros(n_fft, dtype=np.complex128)
        full[idx] = g
        spec = sfft.fft(full, overwrite_x=True)
        gain = 1.0 + self._self_error
        ok = np.abs(gain) > 0.2
        spec[bins[ok]] /= gain[ok]
        return sfft.ifft(spec, overwrite_x=True)[idx]

    def _interpolant(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Band bins of the Hann view for band-limited evaluation at fractional lags: (coeffs, omega, n)."""
        n = sfft.next_fast_len(self.length + 64)
        spec = sfft.fft(self._view, n)
        freqs = np.fft.fftfreq(n, d=1.0 / self.rate_hz)
        keep = (freqs >= self.band_hz[0] - 50.0) & (freqs <= self.band_hz[1] + 50.0)
        omega = 2.0 * np.pi * np.nonzero(keep)[0] / n
        return spec[keep] / n, omega, n

    def analyse(self) -> PathProfile | None:
        """First arrival, strongest path and how sure we are; stores and returns the profile."""
        reasons: list[str] = []
        if not self.enabled:
            return self.profile
        if self.events < 3:
            self.profile = PathProfile(events=self.events, notes=["too few events for a channel estimate"])
            self.quality = 0.5
            self.first_sigma_samples = math.inf
            return self.profile
        self._flush()
        rate = self.rate_hz
        g_bh = self._corrected(self._mean(self._g_bh))
        g_h = self._corrected(self._mean(self._g_hann))
        self._view = g_h
        e_b = g_bh.real**2 + g_bh.imag**2
        e_h = g_h.real**2 + g_h.imag**2
        lo, hi = _EDGE_SAMPLES, self.length - _EDGE_SAMPLES
        j_peak_b = lo + int(np.argmax(e_b[lo:hi]))
        noise = self._noise()
        noise_b = noise + e_b[j_peak_b] * 10.0 ** (_DETERMINISTIC_FLOOR_DB / 10.0)
        noise_h = self._noise(hann=True) + float(e_h[lo:hi].max()) * 10.0 ** (_DETERMINISTIC_FLOOR_DB / 10.0)
        thr = _DETECT_SNR * noise_b
        above = e_b > thr
        # The first lobe rising over the floor, unless a path 18 dB stronger follows within 2 ms: a reflection
        # at most ~70 cm longer than the direct path is rarely that much stronger, but the pre-echo of block
        # processing (noise suppressors, codecs: 29 dB under in the matrix) is. Rarely, not never: a floor
        # reflection a few samples behind the direct path cancels it in the band (two paths 4.8 samples apart
        # are in opposite phase at 5 kHz) while two walls add up 1 ms later; 12.0 dB under was measured in one
        # simulated room. So a lobe passed over within 30 dB of the later path costs confidence.
        shadow = int(_SHADOW_WINDOW_S * rate)
        j0 = j1 = j_peak_b
        above_at = lo + np.flatnonzero(above[lo : j_peak_b + 1])  # where a lobe may start, in order
        k = lo
        dismissed: tuple[float, float] | None = None  # (dB under the later path, ms before it) of the closest call
        while True:
            i = int(np.searchsorted(above_at, k))  # on to the next lag above the floor
            if i == above_at.size:
                break
            k = int(above_at[i])
            top = k
            while top + 1 < hi and e_b[top + 1] >= e_b[top]:
                top += 1
            later = e_b[top + 1 : min(hi, top + 1 + shadow)]
            if later.size and later.max() > e_b[top] * 10.0 ** (_SHADOW_LOBE_DB / 10.0):
                under_db = 10.0 * math.log10(float(later.max()) / float(e_b[top]))
                if dismissed is None or under_db < dismissed[0]:
                    dismissed = (under_db, (int(np.argmax(later)) + 1) / rate * 1e3)
                k = top + 1
                while k <= j_peak_b and e_b[k] <= e_b[k - 1]:  # down the far side of this lobe
                    k += 1
                continue
            j0, j1 = k, top
            break
        # the earliest significant local maximum of the Hann view around that lobe
        a, b = max(lo, j0 - 8), min(hi - 1, j1 + 8)
        seg = e_h[a : b + 1]
        local_max = [a + i for i in range(1, seg.size - 1) if seg[i] >= seg[i - 1] and seg[i] >= seg[i + 1]]
        lobe_top = float(seg.max()) * 10.0 ** (_LOBE_DB / 10.0)
        significant = [j for j in local_max if e_h[j] > _DETECT_SNR * noise_h[j] and e_h[j] > lobe_top]
        j_first = significant[0] if significant else (local_max[0] if local_max else j1)
        coeffs, omega, _ = self._interpolant()
        first, mismatch, close_gap = self._resolve_first(omega, j_first, noise_h)
        j_strong = lo + int(np.argmax(e_h[lo:hi]))
        strongest = _newton_peak(coeffs, omega, float(j_strong))
        if abs(strongest - j_strong) > 1.0:
            strongest = float(j_strong)
        snr_first = float(e_h[j_first] / noise_h[j_first])
        snr_first_db = 10.0 * math.log10(max(snr_first, 1e-30))
        # timing scatter of the first arrival's peak (Hann-view rms bandwidth, white floor)
        bw = self.band_hz[1] - self.band_hz[0]
        b_rms_cycles_per_sample = 0.1808 * bw / rate
        self.first_sigma_samples = 1.0 / (2.0 * math.pi * b_rms_cycles_per_sample * math.sqrt(max(2.0 * snr_first, 1e-12)))
        quality = 1.0
        if snr_first_db < 26.0:
            quality *= float(np.clip((snr_first_db - 14.0) / 12.0, 0.1, 1.0))
            reasons.append(f"the first arrival is only {snr_first_db:.0f} dB above the pre-arrival floor")
        # how weak a direct path could be and still have been seen: the strongest path over the floor before
        # the first arrival, less the detection threshold. Under 25 dB, a buried direct path is plausible.
        before = noise_b[lo : max(lo + 1, j0 - 16)]
        before = before[np.isfinite(before)]
        floor_before = float(np.median(before)) if before.size else math.inf
        sensitivity_db = 10.0 * math.log10(max(e_b[j_peak_b] / floor_before, 1e-30)) - 10.0 * math.log10(_DETECT_SNR)
        if sensitivity_db < _SENSITIVITY_DB:
            quality *= float(np.clip((sensitivity_db - 5.0) / (_SENSITIVITY_DB - 5.0), 0.1, 1.0))
            reasons.append(f"a direct path more than {sensitivity_db:.0f} dB under the strongest path would not be "
                           "seen yet: it may be buried")
        # an earlier bump under the threshold: a direct path that may be buried
        guard = int(0.0005 * rate) + 16
        pre_region = slice(lo, max(lo, j0 - guard))
        if pre_region.stop > pre_region.start:
            ratio = e_b[pre_region] / noise_b[pre_region]
            k = int(np.argmax(ratio))
            at = pre_region.start + k
            later = e_b[at + 1 : min(hi, at + 1 + shadow)]
            shadowed = later.size and later.max() > e_b[at] * 10.0 ** (_SHADOW_LOBE_DB / 10.0)
            if ratio[k] > _HINT_SNR and not shadowed:
                quality *= 0.3
                ms = (j0 - (pre_region.start + k)) / rate * 1e3
                reasons.append(f"a weaker candidate arrival {ms:.1f} ms earlier, {10 * math.log10(ratio[k]):.0f} dB "
                               "above the floor (under the detection threshold): the direct path may be buried")
        # do the paths found explain the first arrival's lobe? (else: a dispersive path, or unresolved ones)
        if mismatch > 0.1:
            quality *= float(np.clip(1.0 - 2.0 * (mismatch - 0.1), 0.3, 1.0))
            reasons.append(f"the first arrival is not explained by discrete paths (residual {mismatch:.0%}): "
                           "a dispersive transducer or a diffuse early arrival may bias it")
        if close_gap is not None:
            quality *= 0.5
            reasons.append(f"a second path {close_gap:.1f} samples after the first arrival, closer than the band "
                           "resolves: the two may be confused")
        if dismissed is not None and dismissed[0] < _SHADOW_SURE_DB:
            quality *= float(np.clip((dismissed[0] - _SHADOW_LOBE_DB) / (_SHADOW_SURE_DB - _SHADOW_LOBE_DB), 0.3, 1.0))
            reasons.append(f"an earlier arrival {dismissed[0]:.0f} dB under a path {dismissed[1]:.1f} ms after it "
                           "was taken for a pre-echo: if it is the direct path, this answer is that much late")
        if self.events < 8:
            quality = min(quality, 0.5)
            reasons.append(f"only {self.events} events in the channel estimate")
        if not self.frozen and self.events >= self._rebuild_at:
            self._rebuild_at = 2 * self.events
            taps = e_h > _RAKE_SNR * noise_h
            taps[:lo] = taps[hi:] = False
            self._rake = np.where(taps, self._mean(self._g_rake), 0.0) if taps.any() else None
            self._rake_shift = 0.0
            self._rake_version += 1
        to_ms = 1e3 / rate
        self.quality = quality
        self.profile = PathProfile(
            events=self.events,
            first_arrival_offset_samples=first - self.pre,
            strongest_arrival_offset_samples=strongest - self.pre,
            strongest_minus_direct_samples=strongest - first,
            strongest_minus_direct_ms=(strongest - first) * to_ms,
            direct_to_strongest_db=10.0 * math.log10(max(e_h[j_first], 1e-300) / max(e_h[j_strong], 1e-300)),
            first_arrival_snr_db=snr_first_db,
            first_arrival_sigma_samples=self.first_sigma_samples,
            quality=quality,
            ambiguous=quality < 0.75,
            notes=reasons,
        )
        return self.profile

    def _kernel_table(self) -> tuple[np.ndarray, np.ndarray]:
        """One path seen through the Hann view, ``k(x)`` and ``dk/dx`` for ``x`` in ``[-span, span]`` every 1/64 sample.

        One inverse FFT each of the window (times ``2 pi i f`` for the
        derivative) zero-padded 64-fold, cached; linear interpolation in the
        table is then within 1e-4 of the band-limited kernel. The window is
        sampled on 1024 bins (the kernel periodic in 1024 samples, five times
        the table's width): within 1.3e-5 of 4096 bins on a telephone band
        and 2.5e-7 on the witness band, under the interpolation's own error,
        at a third of the cost (a new estimate's first analysis). With a measured
        pulse, its spectrum (tapered at both ends, kept on the band) stands
        for the window, scaled so its peak is 1 like the band's own pulse.
        """
        if self._kernels is None:
            n = 1024
            window = band_window(np.arange(n) * self.rate_hz / n, self.band_hz, "hann")
            if self._pulse is None:
                spec = window / max(float(window.sum()), 1e-30)
            else:
                lags = np.arange(-PULSE_PRE_SAMPLES, PULSE_POST_SAMPLES)
                taper = np.ones(lags.size)
                ramp = 16  # raised-cosine ends: the taps' truncation would ring across the band
                taper[:ramp] = taper[-ramp:][::-1] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
                full = np.zeros(n, dtype=np.complex128)
                full[lags % n] = self._pulse * taper
                spec = np.where(window > 0, sfft.fft(full), 0.0)
            half = _KERNEL_SPAN * _KERNEL_STEPS
            tables = []
            for s in (spec, spec * (2j * np.pi * np.arange(n) / n)):  # k(j / steps), periodic in n samples
                fine = sfft.ifft(s, n * _KERNEL_STEPS) * (n * _KERNEL_STEPS)
                tables.append(np.concatenate([fine[-half:], fine[: half + 1]]))
            peak = 1.0 if self._pulse is None else float(np.abs(tables[0]).max())
            self._kernels = (tables[0] / peak, tables[1] / peak)
        return self._kernels

    def measured_pulse(self) -> np.ndarray | None:
        """The Hann view around the first arrival, moved so the arrival is exactly at lag 0 (PathPulse taps).

        None before an analysis has found a first arrival. Meaningful on a
        recording with little room in it (the microphone at the speaker):
        whatever follows the arrival within 2 ms becomes part of the pulse.
        """
        p = self.profile
        if p is None or p.first_arrival_offset_samples is None:
            return None
        first = self.pre + float(p.first_arrival_offset_samples)
        self._flush()
        view = self._corrected(self._mean(self._g_hann))  # not _view: a recenter since the analysis moved the frame
        n = sfft.next_fast_len(self.length + 64)
        spec = sfft.fft(view, n) * np.exp(2j * np.pi * np.fft.fftfreq(n) * (first - math.floor(first)))
        shifted = sfft.ifft(spec)  # lag j of the result is lag j + frac of the view
        j0 = int(math.floor(first))
        if j0 - PULSE_PRE_SAMPLES < 0 or j0 + PULSE_POST_SAMPLES > self.length:
            return None
        return shifted[j0 - PULSE_PRE_SAMPLES : j0 + PULSE_POST_SAMPLES].copy()

    def _resolve_first(self, omega: np.ndarray, j_first: int, noise_h: np.ndarray) -> tuple[float, float, float | None]:
        """Fit discrete paths to the Hann view around the first arrival; return (first, residual, close gap).

        A reflection a few samples after the direct path (a floor, a nearby
        wall) shifts the direct path's peak towards it. Here up to
        :data:`_MAX_PATHS` paths (the known Hann kernel at a fractional delay
        with a complex gain each) are fitted jointly (nonlinear least squares,
        from the last analysis's paths while they explain the lobe, else added
        greedily) over ``[-16, +48]`` lags around the first lobe, and the
        first arrival is the earliest significant one, merged with the
        components a colouration of the band splits off it (not with a
        reflection: see the merge rule below; once the rake is frozen, a
        pair the rule would merge is first tried as two real paths,
        :mod:`mimir.sync.two_paths`). ``residual`` is the
        fraction of the lobe's energy the paths leave unexplained; ``close
        gap`` the spacing to the next path when it is under the band's
        resolution (else None).
        """
        from scipy.optimize import least_squares

        lags = np.arange(max(0, j_first - 16), min(self.length, j_first + 49))
        observed = self._view[lags]
        kernel, slope = self._kernel_table()

        def columns(taus: np.ndarray, table: np.ndarray = kernel) -> np.ndarray:  # k(j - tau) per tau, by look-up
            x = (lags[:, None] - np.asarray(taus)[None, :] + _KERNEL_SPAN) * _KERNEL_STEPS
            i = np.clip(x.astype(np.int64), 0, table.size - 2)
            f = x - i
            return table[i] * (1.0 - f) + table[i + 1] * f

        noise = float(np.median(noise_h[lags]))
        fine = np.linspace(-1.0, 1.0, 21)
        # A small ridge on the gains (they shrink by 0.03 %): without it two paths a fraction of a sample apart with
        # large opposite gains (a dipole: the kernel's derivative) can fit a lobe's shape better than the paths
        # that made it, and the fit wanders along that valley until it runs out of evaluations.
        ridge = math.sqrt(_GAIN_RIDGE * float(np.sum(np.abs(kernel[::_KERNEL_STEPS]) ** 2)))

        def fit(taus0: np.ndarray):
            k = taus0.size
            ridge_rows = np.hstack([np.zeros((2 * k, k)), ridge * np.eye(2 * k)])
            last: dict[str, object] = {}  # the kernel's columns at the last delays: MINPACK asks jac where it just
            # evaluated resid, so the look-up is done once per iteration

            def kernel_columns(taus: np.ndarray) -> np.ndarray:
                key = taus.tobytes()
                if last.get("key") != key:
                    last["key"], last["cols"] = key, columns(taus)
                return last["cols"]  # type: ignore[return-value]

            def resid(params: np.ndarray) -> np.ndarray:  # the lobe's misfit (real, imaginary), then the ridge
                r = observed - kernel_columns(params[:k]) @ (params[k : 2 * k] + 1j * params[2 * k :])
                return np.concatenate([r.real, r.imag, ridge * params[k:]])

            def jac(params: np.ndarray) -> np.ndarray:  # exact: d r / d tau_i = k'(j - tau_i) g_i, linear in gains
                cols = kernel_columns(params[:k])
                d = np.concatenate([columns(params[:k], slope) * (params[k : 2 * k] + 1j * params[2 * k :]),
                                    -cols, -1j * cols], axis=1)
                return np.concatenate([d.real, d.imag, ridge_rows])

            gains0 = np.linalg.lstsq(columns(taus0), observed, rcond=None)[0]
            x0 = np.concatenate([taus0, gains0.real, gains0.imag])
            bounds = (np.concatenate([taus0 - 12.0, np.full(2 * k, -np.inf)]),
                      np.concatenate([taus0 + 12.0, np.full(2 * k, np.inf)]))
            # MINPACK's Levenberg-Marquardt first (its iterations run in compiled code: the bounded trust-region
            # method's Python per iteration was most of an analysis); a path that wandered more than 12 samples
            # from where it was seeded is refitted within those bounds.
            # Tolerances 1e-6 (SciPy's default is 1e-8): the delays are ~2000 samples, so that stops within ~0.002
            # sample, under the estimate's own noise; every room and matrix trial moved by under 0.01 sample
            # (A/B, same audio), and a telephone-band decode ran 7 % faster (fewer iterations per fit).
            sol = least_squares(resid, x0, jac=jac, method="lm", max_nfev=100, x_scale="jac", xtol=_FIT_TOL,
                                ftol=_FIT_TOL)
            if np.any(np.abs(sol.x[:k] - taus0) > 12.0):
                sol = least_squares(resid, x0, jac=jac, bounds=bounds, max_nfev=100, x_scale="jac", xtol=_FIT_TOL,
                                    ftol=_FIT_TOL)
            return sol, resid

        def misfit(sol, resid) -> tuple[np.ndarray, np.ndarray]:  # (complex residual over the lobe, complex gains)
            k = sol.x.size // 3
            r = resid(sol.x)
            return r[: lags.size] + 1j * r[lags.size : 2 * lags.size], sol.x[k : 2 * k] + 1j * sol.x[2 * k :]

        def grown(taus: np.ndarray, residual: np.ndarray):  # one path more, where the residual peaks; refit all
            cand = lags[int(np.argmax(np.abs(residual)))] + fine
            cols = columns(cand)
            score = np.abs(cols.conj().T @ residual) ** 2 / np.sum(np.abs(cols) ** 2, axis=0)
            return fit(np.append(taus, cand[int(np.argmax(score))]))

        def explained(residual: np.ndarray, gains: np.ndarray) -> bool:  # nothing left worth another path
            left = float(np.max(np.abs(residual))) ** 2
            return left < _DETECT_SNR * noise or left < 0.003 * float(np.max(np.abs(gains))) ** 2

        # Warm start: the paths of the last analysis (moved with the reference), refitted jointly once. The
        # estimate changes little between analyses, and one fit from there costs a fraction of the greedy
        # sequence below (on a telephone band, 15 evaluations against 3 fits of 50-70). The greedy sequence
        # runs when they no longer explain the lobe, and at the first analysis after the rake froze, so the
        # paths the frozen estimate converges on never inherit a decomposition of the early, moving one.
        sol, resid = None, None
        if self._last_paths is not None and self._paths_frozen == self.frozen:
            warm = self._last_paths[0]
            warm = warm[(warm >= lags[0]) & (warm <= lags[-1])]
            if warm.size:
                sol, resid = fit(np.sort(warm))
                if not explained(*misfit(sol, resid)):
                    sol, resid = None, None
        warm_held = sol is not None
        if sol is None:
            self._real_skips = 0  # a new decomposition: the real-gain refit is asked again
            # Add paths one at a time (each new one where the residual peaks), refitting all of them jointly,
            # until what is left is under the floor or 25 dB under the strongest path.
            residual = observed.copy()
            taus = np.zeros(0)
            while taus.size < _MAX_PATHS:
                if float(np.max(np.abs(residual))) ** 2 < _DETECT_SNR * noise:
                    break
                sol, resid = grown(taus, residual)
                taus = sol.x[: sol.x.size // 3].copy()
                residual, gains = misfit(sol, resid)
                if explained(residual, gains):
                    break
        if sol is None or resid is None:  # set together: no path was found
            return float(j_first), 1.0, None
        k = sol.x.size // 3
        taus_fit = sol.x[:k]
        gains = sol.x[k : 2 * k] + 1j * sol.x[2 * k :]
        self._last_paths = (taus_fit.copy(), gains.copy())
        self._paths_frozen = self.frozen
        power = np.abs(gains) ** 2
        strong = float(power.max())
        significant = (power > _DETECT_SNR * noise) & (power > strong * 10.0 ** (_LOBE_DB / 10.0))
        # A path a few samples before a much stronger one is a fitting artefact of two overlapping paths, not a
        # direct path: a reflection only centimetres longer than the direct path cannot be 10 dB stronger.
        close = 4.0 * 0.5 * self.rate_hz / (self.band_hz[1] - self.band_hz[0])
        for i in range(k):
            later = (taus_fit > taus_fit[i]) & (taus_fit - taus_fit[i] < close)
            if np.any(power[later] > power[i] * 10.0 ** (_SHADOW_DB / 10.0)):
                significant[i] = False
        order = np.argsort(taus_fit)
        chosen = [int(i) for i in order if significant[i]]
        r = resid(sol.x)[: 2 * lags.size]
        total = float(np.sum(np.abs(observed) ** 2))
        unexplained = float(np.sum(r**2)) / total if total > 0 else 1.0
        resolution = 0.5 * self.rate_hz / (self.band_hz[1] - self.band_hz[0])  # half the Rayleigh spacing
        free = float(np.sum(r**2))
        # the most misfit a physical reading of the lobe may leave: within the noise of the free fit's, and
        # within half again of it (the two-real-paths test and the real-gain refit below)
        acceptable = min(free + _TWO_PATHS_NOISE * noise, _TWO_PATHS_MISFIT * free)
        if not chosen:
            return float(taus_fit[int(np.argmax(power))]), unexplained, None
        stray = [i for i in chosen if abs(math.remainder(float(np.angle(gains[i])), math.pi)) > _REAL_PHASE_RAD]
        skip = self.frozen and stray and warm_held and self._real_skips > 0
        if skip:
            self._real_skips -= 1
        if self.frozen and stray and not skip:
            # The view's phase is physical: a pure-delay path has a real gain in any frame of the reference (the
            # kernel carries the carrier; measured: under 2 degrees at the true delays). Paths that are not real
            # are a colouration, or several reflections the free fit explained with fewer, wrong ones (reflections
            # 6.2, 15.2 and 21.2 samples behind the direct path taken as one anti-phase path at 10.6: the direct
            # path 0.31 samples late). So the lobe is refitted with real gains from the greedy sequence's next step,
            # and taken when every gain is positive, the first is the strongest within two resolutions (a band
            # edge's real-phased spread is weaker before its centre), and it fits as well as the free fit.
            start = taus_fit
            if k < _MAX_PATHS:
                more, _ = grown(taus_fit, r[: lags.size] + 1j * r[lags.size :])
                start = more.x[: more.x.size // 3]
            y = np.concatenate([observed.real, observed.imag])

            def real_resid(taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                a = columns(taus)
                design = np.concatenate([a.real, a.imag])
                amps = np.linalg.lstsq(design, y, rcond=None)[0]
                return y - design @ amps, amps

            def real_misfit(taus: np.ndarray) -> np.ndarray:
                return real_resid(taus)[0]

            real = least_squares(real_misfit, np.sort(start), method="lm", diff_step=np.full(start.size, 1e-5),
                                 xtol=_FIT_TOL, ftol=_FIT_TOL, max_nfev=200)
            left_real, amps = real_resid(real.x)
            order_r = np.argsort(real.x)
            taus_r, amps_r = real.x[order_r], amps[order_r]
            seen = np.nonzero(amps_r**2 > _DETECT_SNR * noise)[0]
            if seen.size and float(np.sum(left_real**2)) <= acceptable:
                f = int(seen[0])
                near = (taus_r > taus_r[f]) & (taus_r - taus_r[f] < 2.0 * resolution)
                if np.all(amps_r[seen] > 0.0) and not np.any(amps_r[near] > amps_r[f]):
                    after = [int(i) for i in seen if taus_r[i] > taus_r[f]]
                    gap = float(taus_r[after[0]] - taus_r[f]) if after else math.inf
                    return float(taus_r[f]), unexplained, gap if gap < 2.0 * resolution else None
            # Refused (a colouration: on a band edge, at every analysis, ~3 ms each). While the warm start keeps
            # this decomposition it is asked again at every fourth analysis only: a verdict can turn as the events
            # add up (a 0 dB room: refused at the freeze, taken later, -2.10 -> +0.08 samples).
            self._real_skips = _REAL_RETRY_EVERY - 1
        # A colouration of the band the kernel does not model (a band edge inside it, a transducer) splits one
        # arrival into components whose phase turns from one to the next (the colouration moves the arrival's
        # centre frequency). A reflection off a nearby surface is a pure delay: in phase with the direct path.
        # So within two resolutions, a component is merged into the arrival before it (timed at their
        # power-weighted delay) unless it is both in phase and at least _MERGE_RESOLUTIONS after it: then it is
        # a path of its own, and the first arrival is not pulled towards it.
        cluster = [chosen[0]]
        for i in chosen[1:]:
            prev = cluster[-1]
            gap = float(taus_fit[i] - taus_fit[prev])
            in_phase = abs(float(np.angle(gains[i] / gains[prev]))) < _IN_PHASE_RAD
            if gap < 2.0 * resolution and not (in_phase and gap >= _MERGE_RESOLUTIONS * resolution):
                cluster.append(i)
            else:
                break
        if len(cluster) > 1 and self.frozen:
            # The free fit split the lobe in a way the merge rule took for one coloured arrival. If two real paths
            # (in phase, the later no stronger: a direct path and a reflection centimetres longer) explain the lobe
            # as well, within the noise and within half again of the free fit's own misfit, they are what it is
            # (mimir.sync.two_paths). Asked once the rake is frozen: the answer that lasts, at the frozen cadence
            # (0.4-1.4 ms a call; asked at every analysis it cost 2.4 % of a telephone-band decode).
            near = (taus_fit >= taus_fit[cluster[0]] - resolution) & \
                (taus_fit <= taus_fit[cluster[0]] + 2.25 * resolution)
            pair = fit_two_real_paths(observed, columns, float(taus_fit[cluster[0]]), resolution, taus_fit[~near],
                                      ridge, acceptable)
            if pair.physical and pair.residual <= acceptable:
                return pair.first, unexplained, pair.second - pair.first
        first = float(np.sum(taus_fit[cluster] * power[cluster]) / np.sum(power[cluster]))
        close_gap = None
        following = [i for i in chosen if i not in cluster]
        if following:
            gap = float(taus_fit[following[0]] - first)
            if gap < 2.0 * resolution:
                close_gap = gap
        return first, unexplained, close_gap

    # ------------------------------------------------------------------ views for tests and plots
    def impulse_response(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lags, Hann view, Blackman-Harris view) of the current estimate (copies)."""
        self._flush()
        return np.arange(-self.pre, self.post), self._g_hann.copy(), self._g_bh.copy()
