"""Acquisition: energy proposals -> symbol likelihoods -> code-valid tuple search.

State (bounded): at most ``max_tracks`` tracks; each keeps the last
``history_events`` scored events and at most ``max_hypotheses`` hypotheses.

Track
    A candidate grid phase: events expected every ``frames_per_event`` frames
    from a base frame. Each event is scored at the base position +-1 frame (the
    one with the strongest symbol evidence, chosen without looking at any
    hypothesis) and stored as a vector of 32 calibrated log-likelihood ratios.

Symbol likelihood (calibrated, bounded)
    For each symbol the time-frequency score is standardised against the other
    31 (median / MAD), turned into a posterior ``p = softmax(A z)`` with
    ``A`` the evidence strength, and mixed with an erasure floor:
    ``p' = (1 - eps) p + eps / 32``. The stored value is ``log(32 p')``.
    For any ``p'``, ``E[32 p'(S)] = 1`` when ``S`` is a symbol that has nothing
    to do with the audio (no witness, wrong codebook), so the summed score of a
    hypothesis is the log of a likelihood ratio whose expectation under "no
    witness" is 1, and by Ville's inequality it exceeds ``L`` nats with
    probability at most ``exp(-L)``, however long we watch. That is what makes
    the lock threshold a false-lock rate.

Hypothesis
    "event k of this track is schedule position (h + k) mod N". Spawned from the
    top-K symbols of the newest three events (K**3 code-valid triples, each
    looked up in the de Bruijn index). Its score sums ``log(32 p')`` of the
    symbol it predicts over every event of the track *except* the three that
    spawned it (they were selected for agreeing, so they would bias the test).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .codebook import Codebook
from .frontend import FrameRing
from .stats import median_along
from .symbols import N_SYMBOLS

__all__ = ["AcquisitionConfig", "Acquirer", "LockCandidate", "symbol_log_likelihoods"]


@dataclass(frozen=True)
class AcquisitionConfig:
    proposals_per_event: int = 3
    top_k: int = 3
    max_tracks: int = 6
    max_hypotheses: int = 48
    history_events: int = 24
    max_track_age_events: int = 45
    new_tracks_per_event: int = 1
    spawn_min_nats: float = 6.0
    lock_llr_nats: float = 20.0
    lock_margin_nats: float = 8.0
    erasure_floor: float = 0.25
    proposal_refine_frames: int = 4
    dedupe_frames: int = 2


def symbol_log_likelihoods(scores: np.ndarray, erasure_floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(M, 32) raw symbol scores -> ((M, 32) log(32 p'), (M,) strongest z)."""
    median = median_along(scores)
    mad = median_along(np.abs(scores - median)) * 1.4826 + 1e-12
    z = (scores - median) / mad
    z_max = z.max(axis=1)
    strength = np.clip(z_max - 2.0, 0.3, 8.0)[:, None]
    logits = strength * z
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    p = (1.0 - erasure_floor) * p + erasure_floor / N_SYMBOLS
    return np.log(N_SYMBOLS * p), z_max


@dataclass
class Track:
    base_frame: int  # nominal frame of event k = 0
    next_k: int = 0
    ks: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)  # chosen frame per stored event
    llr: list[np.ndarray] = field(default_factory=list)  # (32,) per stored event
    hyp_h: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    hyp_score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    events_seen: int = 0
    hyp_set: set[int] = field(default_factory=set)  # the h values in hyp_h

    def best(self) -> tuple[float, float, int]:
        """(best score, second best score, best h)."""
        if self.hyp_score.size == 0:
            return -np.inf, -np.inf, -1
        order = np.argsort(self.hyp_score)[::-1]
        best = float(self.hyp_score[order[0]])
        second = float(self.hyp_score[order[1]]) if order.size > 1 else -np.inf
        return best, second, int(self.hyp_h[order[0]])


@dataclass
class LockCandidate:
    """A hypothesis that passed the lock test: events of ``track`` with schedule positions."""

    frames: list[int]  # chosen frame of each stored event
    schedule_positions: list[int]  # (h + k) mod N for each stored event
    score_nats: float
    margin_nats: float


class Acquirer:
    """Tracks + hypotheses. Drive it with :meth:`step` once per event period."""

    def __init__(self, codebook: Codebook, frames_per_event: int, config: AcquisitionConfig | None = None) -> None:
        self.codebook = codebook
        self.frames_per_event = int(frames_per_event)
        self.config = config or AcquisitionConfig()
        self.tracks: list[Track] = []
        self.proposals = 0
        self.candidates_scored = 0
        self.hypotheses_spawned = 0

    def reset(self) -> None:
        self.tracks.clear()

    # -- scoring -------------------------------------------------------------
    def _score_events(self, ring: FrameRing, nominals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score events at nominal frames (+-1 each). Returns chosen frames, (E, 32) llr, (E,) strength.

        The frame of each event is the one of the three with the strongest
        evidence for *any* symbol, so the choice does not favour any hypothesis.
        """
        frames = (np.asarray(nominals, dtype=np.int64)[:, None] + np.array([-1, 0, 1])[None, :]).ravel()
        llr, z_max = symbol_log_likelihoods(ring.symbol_scores(frames), self.config.erasure_floor)
        self.candidates_scored += int(frames.size)
        e = len(nominals)
        pick = np.argmax(z_max.reshape(e, 3), axis=1) + 3 * np.arange(e)
        return frames[pick], llr[pick], z_max[pick]

    def _extend(self, tracks: list[Track], ring: FrameRing) -> None:
        """Score every newly scorable event of ``tracks`` (one batched call); update and spawn hypotheses."""
        fpe = self.frames_per_event
        todo = []
        for track in tracks:
            last_k = (ring.last_scorable() - 1 - track.base_frame) // fpe
            if last_k >= track.next_k:
                todo.append((track, np.arange(track.next_k, last_k + 1)))
        if not todo:
            return
        nominals = np.concatenate([t.base_frame + ks * fpe for t, ks in todo])
        frames, llr, _ = self._score_events(ring, nominals)
        at = 0
        for track, ks in todo:
            for k in ks.tolist():
                if track.hyp_h.size:
                    track.hyp_score = track.hyp_score + llr[at][self.codebook.symbols_at(track.hyp_h + k)]
                track.ks.append(k)
                track.frames.append(int(frames[at]))
                track.llr.append(llr[at])
                at += 1
            track.next_k = int(ks[-1]) + 1
            track.events_seen += int(ks.size)
            excess = len(track.ks) - self.config.history_events
            if excess > 0:
                del track.ks[:excess], track.frames[:excess], track.llr[:excess]
            if len(track.ks) >= 3:
                self._spawn(track)

    def _spawn(self, track: Track) -> None:
        cfg = self.config
        newest = track.llr[-3:]
        if float(newest[0].max()) + float(newest[1].max()) + float(newest[2].max()) < cfg.spawn_min_nats:
            return  # nothing here looks like three witness symbols
        k0 = track.ks[-3]
        tops = [np.argpartition(v, -cfg.top_k)[-cfg.top_k :] for v in newest]
        codes = ((tops[0][:, None, None] * N_SYMBOLS + tops[1][None, :, None]) * N_SYMBOLS + tops[2][None, None, :]).ravel()
        n = self.codebook.period_events
        known = track.hyp_set
        fresh = [h for h in set(((self.codebook.triple_lookup[codes] - k0) % n).tolist()) if h not in known]
        if not fresh:
            return
        h = np.array(sorted(fresh), dtype=np.int64)
        ks = np.array(track.ks, dtype=np.int64)
        llr = np.stack(track.llr)  # (E, 32)
        sym = self.codebook.symbols_at(h[:, None] + ks[None, :])  # (H, E)
        contrib = llr[np.arange(ks.size)[None, :], sym]
        contrib[:, -3:] = 0.0  # the spawning triple does not count
        self.hypotheses_spawned += int(h.size)
        track.hyp_h = np.concatenate([track.hyp_h, h])
        track.hyp_score = np.concatenate([track.hyp_score, contrib.sum(axis=1)])
        if track.hyp_h.size > cfg.max_hypotheses:
            keep = np.argsort(track.hyp_score)[::-1][: cfg.max_hypotheses]
            track.hyp_h, track.hyp_score = track.hyp_h[keep], track.hyp_score[keep]
        track.hyp_set = set(track.hyp_h.tolist())

    # -- proposals ------------------------------------------------------------
    def _propose(self, ring: FrameRing, first: int, last: int) -> list[int]:
        """Up to ``proposals_per_event`` local maxima of the event energy in [first, last]."""
        if last < first:
            return []
        r = self.config.proposal_refine_frames
        lo = max(first - r, ring.oldest)
        frames = np.arange(lo, last + r + 1)
        frames = frames[frames <= ring.last_scorable()]
        if frames.size == 0:
            return []
        energy = ring.event_energy(frames)
        picks: list[int] = []
        order = np.argsort(energy)[::-1]
        for i in order:
            f = int(frames[i])
            if f < first or f > last:
                continue
            if any(abs(f - p) <= 2 * r for p in picks):
                continue
            neighbourhood = energy[max(0, i - r) : i + r + 1]
            if energy[i] < neighbourhood.max():
                continue
            picks.append(f)
            if len(picks) >= self.config.proposals_per_event:
                break
        self.proposals += len(picks)
        return picks

    def _phase_taken(self, frame: int) -> bool:
        fpe = self.frames_per_event
        for t in self.tracks:
            d = (frame - t.base_frame) % fpe
            if min(d, fpe - d) <= self.config.dedupe_frames:
                return True
        return False

    def _new_track(self, ring: FrameRing, proposal: int) -> int:
        cfg = self.config
        r = cfg.proposal_refine_frames
        candidates = np.arange(proposal - r, proposal + r + 1)
        candidates = candidates[(candidates >= ring.oldest) & (candidates <= ring.last_scorable())]
        if candidates.size == 0:
            return 0
        _, z_max = symbol_log_likelihoods(ring.symbol_scores(candidates), cfg.erasure_floor)
        self.candidates_scored += int(candidates.size)
        start = int(candidates[int(np.argmax(z_max))])
        if self._phase_taken(start):
            return 0
        if len(self.tracks) >= cfg.max_tracks:
            # evict the weakest track that has had a fair chance
            ranked = sorted(self.tracks, key=lambda t: t.best()[0])
            victim = next((t for t in ranked if t.events_seen >= 4), None)
            if victim is None:
                return 0
            self.tracks.remove(victim)
        fpe = self.frames_per_event
        back = 0
        while back < cfg.history_events - 1 and start - (back + 1) * fpe - 1 >= ring.oldest:
            back += 1
        track = Track(base_frame=start - back * fpe)
        self.tracks.append(track)
        self._extend([track], ring)
        return 1

    # -- per event period --------------------------------------------------------
    def step(self, ring: FrameRing, new_first: int, new_last: int) -> LockCandidate | None:
        """Advance with the frames whose proposals became computable: [new_first, new_last]."""
        cfg = self.config
        # extend existing tracks with every event that is now scorable
        self._extend(self.tracks, ring)
        # retire old tracks that never got anywhere
        self.tracks = [
            t
            for t in self.tracks
            if t.events_seen <= cfg.max_track_age_events
            or (t.best()[0] > 0.0 and t.events_seen <= 2 * cfg.max_track_age_events)
        ]
        created = 0
        for proposal in self._propose(ring, new_first, new_last):
            if created >= cfg.new_tracks_per_event:
                break
            if not self._phase_taken(proposal):
                created += self._new_track(ring, proposal)
        best: LockCandidate | None = None
        for track in self.tracks:
            score, second, h = track.best()
            if score >= cfg.lock_llr_nats and score - second >= cfg.lock_margin_nats:
                if best is None or score > best.score_nats:
                    n = self.codebook.period_events
                    best = LockCandidate(
                        frames=list(track.frames),
                        schedule_positions=[(h + k) % n for k in track.ks],
                        score_nats=score,
                        margin_nats=score - second,
                    )
        return best

    def discard(self, candidate: LockCandidate) -> None:
        """Forget the hypothesis behind a candidate that failed verification."""
        for track in self.tracks:
            if track.frames == candidate.frames:
                n = self.codebook.period_events
                h = (candidate.schedule_positions[0] - track.ks[0]) % n
                keep = track.hyp_h != h
                track.hyp_h, track.hyp_score = track.hyp_h[keep], track.hyp_score[keep]
                track.hyp_set.discard(int(h))
