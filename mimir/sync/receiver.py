"""Streaming witness receiver: local audio in, canonical clock fit out.

Feed it audio of one channel in blocks of any size (:meth:`StreamingReceiver.feed`);
ask for :meth:`~StreamingReceiver.report` at any time; map local samples to
canonical seconds and back with :meth:`~StreamingReceiver.canonical_seconds_at`
and :meth:`~StreamingReceiver.local_sample_at`.

State (the spec's list, all bounded)
    * rolling PCM ring: the last ``pcm_ring_seconds`` of samples;
    * proposal ring: the whitened sub-band frames (:class:`FrameRing`) that
      energy proposals and symbol scores are read from;
    * candidate symbol ring: per acquisition track, the last scored events as
      32 calibrated log-likelihoods (:mod:`acquisition`);
    * code/trellis state: per track, the live schedule hypotheses and scores;
    * clock fit: one :class:`ClockFit` per segment (last 16 segments kept);
    * response/confusion accumulator (:mod:`response`);
    * health counters.

Processing is driven by an absolute grid, never by the caller's blocks: every
``event_period_s`` worth of frames ("a tick") is processed once all its samples
have arrived, and an event is timed once its whole segment is inside the last
processed tick. So the results do not depend on how the audio is chunked, and
the work per second of audio is bounded (64 frame FFTs per tick, a handful of
proposals, at most ``max_tracks x max_hypotheses`` hypothesis updates, or, when
locked, one coherent measurement per event).

Modes
    ``searching``: proposals -> tracks -> hypotheses; when one passes the lock
    test, its events are timed coherently and fitted (:meth:`_try_lock`).
    ``locked``: only the predicted next event is looked at, in a window of
    +-``search_halfwidth_hops`` frames around where the fit says it is. A few
    consistent out-of-gate residuals start a new fit segment (a jump); many
    misses in a row drop back to searching, and the next lock is compared with
    the old fit (same line: resume; different: a discontinuity).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import msgspec
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .acquisition import AcquisitionConfig, Acquirer, LockCandidate
from .calibration import BandLimits, PathCalibration, analysis_band_hz
from .channel import ChannelEstimate
from .clockfit import ClockFit
from .codebook import Codebook
from .frontend import FrameGrid, FrameRing
from .report import (
    AnchorReport, ClockFitReport, DiscontinuityReport, Health, SegmentReport, SyncReport,
)
from .response import ResponseAccumulator
from .room_response import Reverberation, RoomResponse
from .symbols import N_SUBBANDS
from .timing import EventMeasurement, TemplateBank, measure_event, retime

__all__ = ["ReceiverConfig", "StreamingReceiver"]


@dataclass(frozen=True)
class ReceiverConfig:
    """Tunables. Defaults are what the tests and the benchmark use."""

    pcm_ring_seconds: float = 6.5
    frame_ring_seconds: float = 5.0
    search_halfwidth_hops: float = 2.0
    min_anchor_z: float = 6.0
    min_lock_anchors: int = 4
    jump_gate_samples: float = 3.0
    jump_gate_sigmas: float = 8.0
    jump_confirm_events: int = 3
    max_consecutive_misses: int = 6
    fit_max_anchors: int = 600
    report_max_anchors: int = 32
    max_segments: int = 16
    template_update_ppm: float = 1.0
    wide_search_fraction: float = 0.4  # after a miss, look +-0.4 event periods for the expected symbol
    freshness_seconds: float = 5.0
    channel_estimation: bool = True  # False: time the envelope peak of the plain template (the method before issue 13)
    channel_pre_seconds: float = 0.04  # impulse response kept before the timing reference (the look-back window; the reference moves onto an earlier direct path)
    channel_post_seconds: float = 0.06  # and after it (the strongest path)
    channel_memory_events: int = 256
    channel_freeze_events: int = 40  # the rake (timing reference) stops moving after this many events ...
    recenter_seconds: float = 0.005  # ... except by whole samples when the first arrival is this much earlier
    analyse_every_anchors: int = 5  # first-arrival analysis cadence (x5 once the rake is frozen; event-driven)
    bootstrap_min_z: float = 3.0  # first lock: events this clearly the expected symbol seed the room estimate
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)


@dataclass
class _Segment:
    fit: ClockFit
    start_local: float
    end_local: float | None = None


class StreamingReceiver:
    """Decode one channel of local audio against one codebook.

    ``first_sample`` is the local index of the first sample fed.
    ``approx_canonical_seconds`` (optional, coarse, e.g. from network time)
    picks which repetition of the schedule a decoded position belongs to;
    without it the first repetition ``[0, period)`` is assumed.
    ``path`` (optional): the known acoustic path; the reported fit then maps
    canonical time to the emission instead of the arrival.
    ``band`` (optional): band limits; only the witness sub-bands inside are
    searched (ValueError when fewer than two are).

    Timing follows the *direct path*: each event is timed against the
    channel estimate (:mod:`mimir.sync.channel`), and the reported mapping is
    shifted from the timing reference to the first arrival found in it.
    """

    def __init__(
        self,
        codebook: Codebook,
        sample_rate_hz: float,
        source_id: str = "",
        *,
        first_sample: int = 0,
        approx_canonical_seconds: float | None = None,
        config: ReceiverConfig | None = None,
        path: PathCalibration | None = None,
        band: BandLimits | None = None,
    ) -> None:
        if not sample_rate_hz > 0:
            raise ValueError("sample_rate_hz must be positive")
        if path is not None:
            path.validate()
        if band is not None:
            band.validate(codebook.spec, sample_rate_hz)
        self.path = path
        self.band = band
        self.codebook = codebook
        self.spec = codebook.spec
        self.rate_hz = float(sample_rate_hz)
        self.source_id = source_id
        self.config = config or ReceiverConfig()
        self.approx_canonical_seconds = approx_canonical_seconds
        cfg = self.config
        band_hz = None if band is None else (band.low_hz, band.high_hz)
        self.grid = FrameGrid(self.spec, self.rate_hz, band_hz=band_hz)
        self.frames_per_event = self.grid.frames_per_event
        self.ring = FrameRing(int(cfg.frame_ring_seconds / self.spec.event_period_s) * self.frames_per_event, codebook.alphabet)
        self.acquirer = Acquirer(codebook, self.frames_per_event, cfg.acquisition)
        self.halfwidth = int(math.ceil(cfg.search_halfwidth_hops * self.grid.hop))
        self._band_hz = band_hz
        self._pre = int(math.ceil(cfg.channel_pre_seconds * self.rate_hz)) if cfg.channel_estimation else 0
        self._post = int(math.ceil(cfg.channel_post_seconds * self.rate_hz)) if cfg.channel_estimation else 0
        self.bank = self._make_bank(self.rate_hz, self.halfwidth)
        self.wide_halfwidth = int(cfg.wide_search_fraction * self.spec.event_period_s * self.rate_hz)
        self._wide_bank: TemplateBank | None = None  # built when first needed, at the bank's rate (wide_bank)
        self.channel = self._new_channel()
        self._anchors_since_analysis = 0
        # the last events' spectra, to measure how far a new rake moves the timing (ChannelEstimate.register_rake)
        self._recent: deque[tuple[TemplateBank, np.ndarray, int, float]] = deque(maxlen=16)
        self._frame_offsets = np.arange(self.grid.frame_len)[None, :]
        self._hop_samples = int(self.grid.hop) if float(self.grid.hop).is_integer() else 0
        self._tick_samples = int(math.ceil(self.spec.event_period_s * self.rate_hz))
        self._pcm = np.zeros(int(cfg.pcm_ring_seconds * self.rate_hz) + self._tick_samples, dtype=np.float32)
        self.response = ResponseAccumulator(self.spec)
        self.health = Health()
        self.warnings: list[str] = []
        usable = int(self.grid.usable.sum())
        if usable < N_SUBBANDS:
            where = f"sample rate {self.rate_hz:g} Hz" if band is None else \
                f"band limits {band.low_hz:g}-{band.high_hz:g} Hz at {self.rate_hz:g} Hz"
            self.warnings.append(f"{where} carries only {usable} of {N_SUBBANDS} witness sub-bands")
        self._reset_stream(int(first_sample))
        self._segments: list[_Segment] = []
        self._discontinuities: deque[DiscontinuityReport] = deque(maxlen=cfg.max_segments)
        self._anchors: deque[AnchorReport] = deque(maxlen=cfg.report_max_anchors)
        self._lock_score = 0.0
        self._last_anchor_local = -math.inf
        self._room: RoomResponse | None = None  # the room measurement, built at the first lock (channel estimation)
        self._room_segment: _Segment | None = None  # the segment whose fit places the room's blocks
        self._room_next = 0  # local sample where the next room block starts
        self._room_from: int | None = None  # where the rake froze: no block starts before it

    def _make_bank(self, rate_hz: float, halfwidth: int, waves: np.ndarray | None = None) -> TemplateBank:
        return TemplateBank(self.codebook, rate_hz, halfwidth, pre_samples=self._pre, post_samples=self._post,
                            band_hz=self._band_hz, waves=waves)

    def _new_channel(self) -> ChannelEstimate:
        cfg = self.config
        pulse = None if self.path is None else self.path.pulse
        if pulse is not None:
            pulse.check_fits(self.spec, self.rate_hz, self.band)
        return ChannelEstimate(self.rate_hz, self._analysis_band(), self._pre, self._post, cfg.channel_memory_events,
                               enabled=cfg.channel_estimation, freeze_events=cfg.channel_freeze_events,
                               pulse=None if pulse is None else pulse.taps())

    def _analysis_band(self) -> tuple[float, float]:
        """The band the witness really arrives in: the usable sub-bands, within the band limits."""
        return analysis_band_hz(self.spec, self.rate_hz, self.band)

    # ------------------------------------------------------------------ input
    def _reset_stream(self, first_sample: int) -> None:
        """Start the rings afresh at local sample ``first_sample`` (fit history is kept)."""
        self._written = first_sample
        self._pcm_oldest = first_sample
        self._next_frame = self.grid.first_frame_at_or_after(first_sample)
        self.ring.reset(self._next_frame)
        self._proposal_next = self._next_frame
        self._available = first_sample  # samples usable by event timing (a tick boundary)
        self.acquirer.reset()
        self._mode = "searching"
        self._next_event = 0
        self._misses = 0
        # out-of-gate detections that may be a jump: (event, canonical s, local sample, measurement, residual)
        self._pending: list[tuple[int, float, float, EventMeasurement, float]] = []

    def feed(self, block: np.ndarray, start_sample: int | None = None) -> None:
        """Consume the next samples of the stream (1-D, any length, any float dtype).

        ``start_sample`` (optional) is the local index of ``block[0]``. Ahead of
        the expected index: the gap is filled with silence (or, if longer than
        the PCM ring, the rings restart there) and the fit stays valid. Behind
        it: the local clock was reset, which is a discontinuity.
        Non-finite samples are replaced by 0 and counted.
        """
        x = np.asarray(block)
        if x.ndim != 1:
            raise ValueError("feed() takes one channel: a 1-D array")
        if start_sample is not None and int(start_sample) != self._written:
            self._handle_index_jump(int(start_sample))
        x = x.astype(np.float32, copy=False)
        finite = np.isfinite(x)
        if not finite.all():
            self.health.non_finite_samples += int(x.size - finite.sum())
            x = np.where(finite, x, np.float32(0.0))
        self.health.samples_consumed += int(x.size)
        self._ingest(x)

    def _handle_index_jump(self, start: int) -> None:
        gap = start - self._written
        if 0 < gap <= self._pcm.size // 2:
            self.health.gap_samples += gap
            self._ingest(np.zeros(gap, dtype=np.float32))
        elif gap > 0:
            self.health.gap_samples += gap
            self._reset_stream(start)
        else:
            self._end_segment(float(self._written))
            self._discontinuities.append(DiscontinuityReport(local_sample=float(start), kind="clock_reset"))
            self.health.discontinuities += 1
            self._reset_stream(start)

    def _ingest(self, x: np.ndarray) -> None:
        cap = self._pcm.size
        step = self._tick_samples
        for lo in range(0, x.size, step):
            piece = x[lo : lo + step]
            n = piece.size
            pos = self._written % cap
            first = min(n, cap - pos)
            self._pcm[pos : pos + first] = piece[:first]
            self._pcm[: n - first] = piece[first:]
            self._written += n
            self._pcm_oldest = max(self._pcm_oldest, self._written - cap)
            self._run_ticks()

    def _pcm_slice(self, start: int, length: int) -> np.ndarray:
        """Samples [start, start + length) from the ring (a copy only when it wraps)."""
        cap = self._pcm.size
        pos = start % cap
        if pos + length <= cap:
            return self._pcm[pos : pos + length]
        return np.concatenate([self._pcm[pos:], self._pcm[: pos + length - cap]])

    # ------------------------------------------------------------------ ticks
    def _run_ticks(self) -> None:
        fpe = self.frames_per_event
        while True:
            m0 = self._next_frame
            last_start = int(round((m0 + fpe - 1) * self.grid.hop))
            if last_start + self.grid.frame_len > self._written:
                return
            self._tick(m0)
            self._next_frame = m0 + fpe

    def _tick(self, m0: int) -> None:
        fpe = self.frames_per_event
        starts = self.grid.frame_starts(m0, fpe)
        span = self._pcm_slice(int(starts[0]), int(starts[-1] - starts[0]) + self.grid.frame_len)
        if self._hop_samples:  # a whole number of samples: the frames are a strided view, no gather
            frames = sliding_window_view(span, self.grid.frame_len)[:: self._hop_samples]
        else:
            frames = span[(starts - starts[0])[:, None] + self._frame_offsets]
        white = self.grid.whitened(frames)
        self.ring.append(m0, white)
        self._available = int(starts[-1]) + self.grid.frame_len
        if self._mode == "searching":
            r = self.acquirer.config.proposal_refine_frames
            last = self.ring.last_scorable() - r
            first = max(self._proposal_next, self.ring.oldest + r)
            self._proposal_next = last + 1
            candidate = self.acquirer.step(self.ring, first, last)
            self.health.proposals = self.acquirer.proposals
            self.health.candidates_scored = self.acquirer.candidates_scored
            self.health.hypotheses_spawned = self.acquirer.hypotheses_spawned
            if candidate is not None:
                self._try_lock(candidate)
        if self._mode == "locked":
            self._track_events()
            if self._mode == "locked" and self.config.channel_estimation:
                self._measure_room()

    def _measure_room(self) -> None:
        """Hand the room measurement every block of audio the current fit places the witness in.

        Blocks start once the rake has frozen (the timing reference, which
        places the played witness, no longer moves; it also keeps this work out
        of the receiver's busiest seconds, acquisition and the channel's
        bootstrap) and follow each other from there; a new segment (a relock, a
        step) starts them again at its own start, so no block straddles a
        jump. A block that left the PCM ring before it could be taken is skipped
        (the measurement is an average; nothing depends on every block).
        """
        seg = self._current()
        if seg is None or not seg.fit.fitted:
            return
        if not self.channel.frozen:
            self._room_from = None
            return
        if self._room_from is None:
            self._room_from = self._available
        if self._room is None:
            self._room = RoomResponse(self.codebook, self.rate_hz, self._analysis_band())
        room = self._room
        if self._room_segment is not seg:
            self._room_segment = seg
            self._room_next = int(math.ceil(seg.start_local))
        period = self.spec.event_period_s
        fit = seg.fit
        while True:
            start = max(self._room_next, self._pcm_oldest, self._room_from)
            end = start + room.block_samples
            if end > self._available:
                return
            first = math.floor(fit.inverse(start) / period - self.spec.symbol_seconds / period)
            last = math.ceil(fit.inverse(end) / period)
            room.add(self._pcm_slice(start, room.block_samples),
                     [(i, fit.predict(i * period) - start) for i in range(first, last + 1)])
            self._room_next = end

    def reverberation(self) -> Reverberation | None:
        """The room measurement so far (RT60, DRR), or None before the rake first froze."""
        return None if self._room is None else self._room.reverberation()

    # ------------------------------------------------------------------ lock
    def _current(self) -> _Segment | None:
        return self._segments[-1] if self._segments else None

    def _measure_at(
        self, event_index: int, center_local: float, bank: TemplateBank
    ) -> tuple[int, EventMeasurement, float] | None:
        """Coherently time ``event_index`` expected near ``center_local``; None if the audio is gone."""
        seg_start = int(math.floor(center_local)) - bank.halfwidth - bank.pre
        if seg_start < self._pcm_oldest or seg_start + bank.segment_len > self._available:
            return None
        expected = self.codebook.symbol_at(event_index)
        m = measure_event(self._pcm_slice(seg_start, bank.segment_len), bank, expected, with_bands=True,
                          channel=self.channel.spectrum(bank))
        return expected, m, seg_start + m.lag_samples

    def _try_lock(self, cand: LockCandidate) -> None:
        cfg = self.config
        period_s = self.spec.event_period_s
        first_local = float(round(cand.frames[0] * self.grid.hop))
        previous = self._current()
        # the fit of a segment still open (not ended by a reset): a new lock may resume it
        open_fit = previous.fit if previous is not None and previous.fit.fitted and previous.end_local is None else None
        if open_fit is not None:
            near = open_fit.inverse(first_local)
        elif previous is not None and previous.fit.fitted:
            near = previous.fit.last_t  # the local clock was reset; canonical time was not
        elif self.approx_canonical_seconds is not None:
            near = self.approx_canonical_seconds
        else:
            near = (cand.schedule_positions[0] + 0.5) * period_s  # first repetition
        i0 = self.codebook.unwrap_index(cand.schedule_positions[0], near)
        events = [(i0 + j, float(round(f * self.grid.hop))) for j, f in enumerate(cand.frames)]

        def measure_all(bank: TemplateBank, centers: list[tuple[int, float]]):
            out = []
            for i, center in centers:
                got = self._measure_at(i, center, bank)
                if got is None:
                    continue
                expected, m, local = got
                if m.z >= cfg.min_anchor_z and m.top_symbol == expected:
                    out.append((i, local, m))
            return out

        if open_fit is not None:
            events = [(i, c) for i, c in events if c > open_fit.last_n + self.halfwidth]
        candidate_events = events
        fresh_channel = cfg.channel_estimation and self.channel.events == 0
        if fresh_channel:
            events = self._bootstrap_channel(candidate_events)

        def new_fit() -> ClockFit:
            fit = ClockFit(self.rate_hz, cfg.fit_max_anchors)
            if previous is not None and previous.fit.fitted:  # same device: its rate is a good prior
                fit.set_rate_prior(previous.fit.rate, 2e-6 * self.rate_hz)
            return fit

        fit = new_fit()
        good = self._fit_consistent(fit, measure_all(self.bank, events))
        if len(good) < cfg.min_lock_anchors and cfg.channel_estimation and not fresh_channel:
            # the room estimate does not fit this audio (the room changed, or the estimate was poor): start again
            self.channel = self._new_channel()
            fresh_channel = True
            events = self._bootstrap_channel(candidate_events)
            fit = new_fit()
            good = self._fit_consistent(fit, measure_all(self.bank, events))
        if len(good) >= cfg.min_lock_anchors and self._maybe_update_templates(fit):
            # re-time the same events with templates at the fitted rate
            centers = [(i, fit.predict(i * period_s)) for i, _, _ in good]
            fit = new_fit()
            good = self._fit_consistent(fit, measure_all(self.bank, centers))
        if len(good) < cfg.min_lock_anchors:
            if fresh_channel:  # the room estimate came from a lock that did not hold: forget it
                self.channel = self._new_channel()
            self.health.lock_rejections += 1
            self.acquirer.discard(cand)
            return
        # Same line as before (a pause, a burst of noise)? Then resume the old segment.
        resumed = False
        if open_fit is not None:
            jumps = [local - open_fit.predict(i * period_s) for i, local, _ in good]
            jump = float(np.median(jumps))
            gate = max(cfg.jump_gate_samples, cfg.jump_gate_sigmas * open_fit.sigma_at(good[-1][0] * period_s))
            if abs(jump) <= gate:
                resumed = True
                for i, local, m in good:
                    if i * period_s > open_fit.last_t:
                        open_fit.add(i * period_s, local, m.sigma_samples)
                open_fit.refit()
            else:
                boundary = 0.5 * (open_fit.last_n + good[0][1])
                self._end_segment(boundary)
                self._discontinuities.append(DiscontinuityReport(local_sample=boundary, kind="relock", jump_samples=jump))
                self.health.discontinuities += 1
        if not resumed:
            self._start_segment(fit, good[0][1])
        self._mode = "locked"
        self.health.locks += 1
        if self.health.locks > 1:
            self.health.relocks += 1
        self._lock_score = cand.score_nats
        seg = self._current()
        assert seg is not None
        for i, local, m in good:
            self._record_anchor(seg.fit, i, local, m)
        self._analyse_channel()
        self._anchors_since_analysis = 0
        self._next_event = good[-1][0] + 1
        self._misses = 0
        self._pending = []
        self.acquirer.reset()

    def _bootstrap_channel(self, events: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """First lock: estimate the room from the candidate's events, so that they are timed through it.

        The code lock already says which symbol each event is, so every event
        whose plain-template peak shows that symbol (even weakly: in a
        reverberant room the plain template catches only the direct sound)
        adds to the estimate. Returns the events' expected positions in the
        (possibly moved) timing reference.
        """
        boot = []
        for i, center in events:
            got = self._measure_at(i, center, self.bank)
            if got is not None and got[1].top_symbol == got[0] and got[1].z >= self.config.bootstrap_min_z:
                boot.append((got[0], got[1]))
        if len(boot) < self.config.min_lock_anchors:
            return events
        for expected, m in boot:
            self.channel.add(m, self.bank, expected)
            if m.received is not None:
                self._recent.append((self.bank, m.received, expected, m.lag_samples))
        delta = self._analyse_channel()
        return [(i, c + delta) for i, c in events]

    def _analyse_channel(self) -> float:
        """Analyse the channel estimate; move the timing reference onto the first arrival (ChannelEstimate.recenter).

        Returns how far the reference moved (samples).
        """
        rake_version = self.channel.rake_version
        old_rake = self.channel.spectrum(self.bank)
        prof = self.channel.analyse()
        if self.channel.rake_version != rake_version:
            self._register_rake(old_rake)
        if prof is None or prof.first_arrival_offset_samples is None or self.channel.events < 3:
            return 0.0
        # Move the reference (by whole samples) only when the first arrival is well before it: that keeps the
        # look-back window on the direct path. A first arrival after the reference is a lost weak direct path,
        # not a reason to follow the reflections.
        delta = float(round(prof.first_arrival_offset_samples))
        if delta >= -self.config.recenter_seconds * self.rate_hz:
            return 0.0
        self.channel.recenter(delta)
        for seg in self._segments:
            seg.fit.shift(delta)
        self._pending = [(i, t, local + delta, m, r) for i, t, local, m, r in self._pending]
        for a in self._anchors:
            a.local_sample += delta
        self._last_anchor_local += delta
        self.channel.moved(delta)
        return delta

    def _register_rake(self, old_rake: np.ndarray | None) -> None:
        """Keep the timing reference where it was when the rake changes: time the last events with both."""
        new_rake = self.channel.spectrum(self.bank)
        if new_rake is None:
            return
        moves = [retime(x, self.bank, s, new_rake, lag) - retime(x, self.bank, s, old_rake, lag)
                 for bank, x, s, lag in self._recent if bank is self.bank]
        moves = [d for d in moves if abs(d) < 2.0]
        if moves:
            self.channel.register_rake(float(np.median(moves)))

    def _fit_consistent(self, fit: ClockFit, good: list) -> list:
        """Fit the lock anchors on the line of the *newest* ones; drop the rest.

        The track behind a lock can straddle a discontinuity (its history goes
        back several seconds), so the line is found robustly first: Theil-Sen
        rate (median of pairwise slopes), then intercepts around the median of
        the newest five anchors; anchors off that line by more than the gate
        are dropped before the weighted fit.
        """
        period_s = self.spec.event_period_s
        cfg = self.config
        if len(good) < cfg.min_lock_anchors:
            return good
        t = np.array([i * period_s for i, _, _ in good])
        n = np.array([local for _, local, _ in good])
        sig = np.array([m.sigma_samples for _, _, m in good])
        a, b = np.triu_indices(t.size, 1)
        slope = float(np.median((n[b] - n[a]) / (t[b] - t[a])))
        if abs(slope / self.rate_hz - 1.0) > 0.01:
            slope = self.rate_hz
        intercept = n - slope * t
        ref = float(np.median(intercept[-5:]))
        keep = np.abs(intercept - ref) <= np.maximum(cfg.jump_gate_samples, 6.0 * sig)
        kept = [g for g, k in zip(good, keep.tolist()) if k]
        for i, local, m in kept:
            fit.add(i * period_s, local, m.sigma_samples)
        if kept:
            fit.refit()
        return kept

    @property
    def wide_bank(self) -> TemplateBank:
        """The templates for the wide search after a miss, at the same rate as :attr:`bank`.

        Built on first use after each template update (a locked receiver that
        misses nothing never needs it), from the timing bank's rendered
        templates: only their spectra are new.
        """
        wide = self._wide_bank
        if wide is None or wide.rate_hz != self.bank.rate_hz:
            wide = self._wide_bank = self._make_bank(self.bank.rate_hz, self.wide_halfwidth, self.bank.waves)
        return wide

    def _maybe_update_templates(self, fit: ClockFit) -> bool:
        """Re-render templates at the fitted rate when it moved by more than the threshold."""
        if not math.isfinite(fit.var_rate):
            return False
        moved_ppm = abs(fit.rate - self.bank.rate_hz) / self.rate_hz * 1e6
        sigma_ppm = math.sqrt(fit.var_rate) / self.rate_hz * 1e6
        if moved_ppm > self.config.template_update_ppm and sigma_ppm < moved_ppm / 2:
            self.bank = self._make_bank(fit.rate, self.halfwidth)
            self.health.template_rate_updates += 1
            return True
        return False

    def _start_segment(self, fit: ClockFit, start_local: float) -> None:
        self._segments.append(_Segment(fit=fit, start_local=start_local))
        self._anchors.clear()
        if len(self._segments) > self.config.max_segments:
            del self._segments[0]

    def _end_segment(self, boundary_local: float) -> None:
        seg = self._current()
        if seg is not None and seg.end_local is None:
            seg.end_local = boundary_local

    def _record_anchor(self, fit: ClockFit, i: int, local: float, m: EventMeasurement, already_checked: bool = False) -> None:
        t = i * self.spec.event_period_s
        residual = fit.residual(t, local)
        expected = self.codebook.symbol_at(i)
        self.health.anchors_accepted += 1
        if not already_checked:
            self.response.checked(expected, m)
        self.response.anchored(expected, m, residual)
        self._last_anchor_local = max(self._last_anchor_local, local)
        self._anchors.append(
            AnchorReport(
                event_index=i,
                canonical_s=t,
                local_sample=local,
                confidence=float(math.exp(-m.sigma_samples)),
                symbols=[self.codebook.symbol_at(i - 2), self.codebook.symbol_at(i - 1), expected],
                residual_samples=float(residual),
            )
        )

    # ------------------------------------------------------------------ locked tracking
    def _track_events(self) -> None:
        cfg = self.config
        period_s = self.spec.event_period_s
        while self._mode == "locked":
            seg = self._current()
            assert seg is not None
            fit = seg.fit
            i = self._next_event
            t = i * period_s
            predicted = fit.predict(t)
            # after a miss or an out-of-gate detection, look wider: a dropped
            # block shorter than the window is then caught within a few events
            bank = self.wide_bank if (self._misses or self._pending) else self.bank
            seg_start = int(math.floor(predicted)) - bank.halfwidth
            if seg_start + bank.segment_len > self._available:
                return
            self._next_event = i + 1
            got = self._measure_at(i, predicted, bank)
            if got is None:
                continue
            expected, m, local = got
            residual = local - predicted
            detected = m.z >= cfg.min_anchor_z and m.top_symbol == expected
            if not detected:
                self.response.checked(expected, m)
                self.health.events_missed += 1
                self._misses += 1
                if self._misses >= cfg.max_consecutive_misses:
                    self._mode = "searching"
                    self.acquirer.reset()
                    self._pending = []
                continue
            gate = max(cfg.jump_gate_samples, cfg.jump_gate_sigmas * math.hypot(m.sigma_samples, fit.sigma_at(t)))
            if abs(residual) <= gate:
                fit.add(t, local, m.sigma_samples)
                fit.refit()
                self._record_anchor(fit, i, local, m)
                self.channel.add(m, bank, expected)
                if m.received is not None:  # always, from measure(): kept for the rake's registration
                    self._recent.append((bank, m.received, expected, m.lag_samples))
                self._anchors_since_analysis += 1
                every = cfg.analyse_every_anchors * (1 if not self.channel.frozen else 5)
                if self._anchors_since_analysis >= every:
                    self._analyse_channel()
                    self._anchors_since_analysis = 0
                self._misses = 0
                self._pending = []
                self._maybe_update_templates(fit)
                continue
            self.health.anchors_rejected += 1
            self.response.checked(expected, m)
            self._pending.append((i, t, local, m, residual))
            self._pending = [p for p in self._pending if p[0] > i - 2 * cfg.jump_confirm_events]
            if len(self._pending) >= cfg.jump_confirm_events:
                jumps = np.array([p[4] for p in self._pending])
                spread = float(jumps.max() - jumps.min())
                sig = max(p[3].sigma_samples for p in self._pending)
                if spread <= max(2.0, 6.0 * sig):
                    self._split_at_jump(fit, float(np.median(jumps)))

    def _split_at_jump(self, old: ClockFit, jump: float) -> None:
        boundary = 0.5 * (old.last_n + self._pending[0][2])
        self._end_segment(boundary)
        self._discontinuities.append(DiscontinuityReport(local_sample=boundary, kind="jump", jump_samples=jump))
        self.health.discontinuities += 1
        fit = ClockFit(self.rate_hz, self.config.fit_max_anchors)
        fit.set_rate_prior(old.rate, 0.5e-6 * self.rate_hz)
        for _, t, local, m, _ in self._pending:
            fit.add(t, local, m.sigma_samples)
        fit.refit()
        self._start_segment(fit, boundary)
        for i, _, local, m, _ in self._pending:
            self.health.anchors_rejected -= 1  # they were counted as rejected while pending
            self._record_anchor(fit, i, local, m, already_checked=True)
        self._pending = []
        self._misses = 0

    # ------------------------------------------------------------------ output
    @property
    def locked(self) -> bool:
        return self._mode == "locked"

    def _segment_for_local(self, local_sample: float) -> _Segment | None:
        for seg in reversed(self._segments):
            if local_sample >= seg.start_local or seg is self._segments[0]:
                return seg
        return None

    def _shift_samples(self, rate: float) -> float:
        """Timing reference -> reported mapping: to the first arrival, then back to the emission (path calibration)."""
        prof = self.channel.profile
        first = prof.first_arrival_offset_samples if prof is not None and prof.first_arrival_offset_samples is not None else 0.0
        delay = self.path.path_delay_s * rate if self.path is not None else 0.0
        return first - delay

    def canonical_seconds_at(self, local_sample: float) -> float | None:
        """Canonical seconds of a local sample (via the segment that contains it), or None.

        With a path calibration this is when the sample was captured on the
        canonical timeline; without one, when the witness heard in it was emitted.
        """
        seg = self._segment_for_local(float(local_sample))
        if seg is None or not seg.fit.fitted:
            return None
        return seg.fit.inverse(float(local_sample) - self._shift_samples(seg.fit.rate))

    def local_sample_at(self, canonical_seconds: float) -> float | None:
        """Local sample (fractional) of a canonical time under the current segment, or None."""
        seg = self._current()
        if seg is None or not seg.fit.fitted:
            return None
        return seg.fit.predict(float(canonical_seconds)) + self._shift_samples(seg.fit.rate)

    def confidence(self) -> float:
        """``p_lock * exp(-sigma) * freshness * path quality``; sigma includes the first arrival's timing error.

        The path quality (:attr:`PathProfile.quality`) is below 1 when the first
        arrival is ambiguous (buried in reverberation, a weaker candidate
        before it, not a clean single path, too few events): then a late
        answer cannot come with a high confidence.
        """
        seg = self._current()
        if seg is None or not seg.fit.fitted or seg.end_local is not None:
            return 0.0
        fit = seg.fit
        sigma = math.hypot(fit.sigma_at(fit.last_t), min(self.channel.first_sigma_samples, 1e6))
        evidence = self._lock_score + 2.0 * fit.anchor_count
        p_lock = 1.0 - math.exp(-evidence)
        age_s = max(0.0, (self._available - self._last_anchor_local) / self.rate_hz - 2.0 * self.spec.event_period_s)
        freshness = math.exp(-age_s / self.config.freshness_seconds)
        return float(p_lock * math.exp(-sigma) * freshness * self.channel.quality)

    def status(self) -> str:
        if self._mode == "locked":
            return "locked"
        if self._segments:
            return "lost lock; holding the last fit"
        return "searching; no witness found"

    def report(self) -> SyncReport:
        seg = self._current()
        prof = self.channel.profile
        warnings = list(self.warnings)
        if seg is not None and seg.fit.fitted:
            fit = seg.fit
            shift = self._shift_samples(fit.rate)
            first = 0.0 if prof is None or prof.first_arrival_offset_samples is None else prof.first_arrival_offset_samples
            clock = ClockFitReport(
                local_sample_at_epoch=fit.local_sample_at_epoch + shift,
                rate_hz=fit.rate,
                confidence=self.confidence(),
                mae_samples=fit.mean_abs_residual,
                offset_sigma_samples=math.hypot(fit.sigma_at(fit.last_t), min(self.channel.first_sigma_samples, 1e6)),
                rate_sigma_ppm=math.sqrt(fit.var_rate) / self.rate_hz * 1e6 if math.isfinite(fit.var_rate) else None,
                anchor_count=fit.anchor_count,
                first_canonical_s=fit.first_t,
                last_canonical_s=fit.last_t,
                path_delay_s=self.path.path_delay_s if self.path is not None else 0.0,
                reference="direct path" if prof is not None and prof.first_arrival_offset_samples is not None
                else "timing reference",
            )
            if prof is not None:
                room = self.reverberation()
                prof = msgspec.structs.replace(
                    prof,
                    direct_to_reverberant_db=None if room is None else room.drr_db,
                    rt60_s=None if room is None else room.rt60_s,
                    rt60_method=None if room is None else room.method,
                    path_delay_samples=(self.path.path_delay_s * fit.rate) if self.path is not None else None,
                    direct_path_local_sample_at_epoch=fit.local_sample_at_epoch + first,
                    strongest_path_local_sample_at_epoch=None if prof.strongest_arrival_offset_samples is None
                    else fit.local_sample_at_epoch + prof.strongest_arrival_offset_samples,
                )
                if prof.ambiguous and prof.notes:
                    warnings.append("first arrival ambiguous (confidence lowered): " + "; ".join(prof.notes))
        else:
            shift = 0.0
            clock = ClockFitReport()
        response = self.response.profile()
        response.path = prof
        health = Health(**{f: getattr(self.health, f) for f in self.health.__struct_fields__})
        health.state = self._mode
        return SyncReport(
            source_id=self.source_id,
            codebook_id=self.spec.codebook_id,
            seed=int(self.spec.seed),
            nominal_rate_hz=self.rate_hz,
            locked=self._mode == "locked",
            status=self.status(),
            canonical_clock_fit=clock,
            anchors=[msgspec.structs.replace(a, local_sample=a.local_sample + shift) for a in self._anchors],
            response_profile=response,
            health=health,
            segments=[
                SegmentReport(
                    start_local_sample=s.start_local,
                    end_local_sample=s.end_local,
                    local_sample_at_epoch=s.fit.local_sample_at_epoch + self._shift_samples(s.fit.rate),
                    rate_hz=s.fit.rate,
                    anchor_count=s.fit.anchor_count,
                )
                for s in self._segments
                if s.fit.fitted
            ],
            discontinuities=list(self._discontinuities),
            warnings=warnings,
        )
