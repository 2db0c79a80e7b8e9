"""``mimir bench sync``: the receiver against a matrix of impairments made in the run, and simulated rooms.

Each trial renders 30 s of witness from a random canonical start (random
sub-sample phase), impairs it with known truth (:mod:`mimir.sync.trials`),
streams it through a fresh :class:`StreamingReceiver` in realtime-sized
blocks on one core, and compares the final clock fit with the truth. The same
audio goes through the GCC-PHAT whole-file baseline (offset only). The rooms
section is :mod:`bench.sync_rooms`.

Errors
    ``offset_error_samples``: worst |fitted - true local sample| over the
    audio's span (at its first and last canonical second; for the dropped-block
    condition, over the last piece, which is what the final fit describes).
    ``rate_error_ppm``: |fitted rate / true rate - 1| x 1e6.
    A trial "locks" when the final fit is within 5 samples of the truth; a lock
    that is further off (or any lock without our witness) is a false lock.
Speed
    ``x_realtime``: audio seconds / CPU seconds spent in ``feed`` (process time,
    BLAS-free code path, one core).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.common import machine_info as common_machine_info
from bench.gcc_phat import gcc_phat_lag
from bench.sync_rooms import format_rooms, plot_rooms, run_rooms
from mimir.sync import impair
from mimir.sync.calibration import BandLimits
from mimir.sync.codebook import Codebook
from mimir.sync.emitter import WitnessEmitter
from mimir.sync.receiver import StreamingReceiver
from mimir.sync.trials import LEVEL_DBFS, WITNESS_BAND_HZ, Condition, make_trial_audio, truth_local_sample

__all__ = ["Case", "cases", "names", "run_trial", "run_bench", "format_table", "machine_info"]

_CORRECT_LOCK_SAMPLES = 5.0


@dataclass(frozen=True)
class Case:
    """One row of the matrix: a trial condition, how many trials of it, and the issue's goal for it (if any)."""

    condition: Condition
    trials: int
    goal: str = ""
    goal_check: Callable[[dict], bool] | None = None


def _g_accuracy(r: dict) -> bool:
    return (
        r["lock_rate"] == 1.0
        and r["offset_error_samples_max"] <= 0.25
        and r["rate_error_ppm_max"] <= 0.2
        and r["time_to_lock_s_max"] <= 3.0
    )


_ACCURACY = "offset<=0.25 smp, rate<=0.2 ppm, lock<=3 s"


def cases(quick: bool = False) -> list[Case]:
    """The documented impairment matrix (``quick``: fewer trials, shorter no-witness run)."""
    t = 2 if quick else 5
    return [
        Case(Condition("nodrift", "no clock error, 0 dB in-band SNR (where whole-file GCC-PHAT works)", ppm=0,
                       snr_db=0), t),
        Case(Condition("clean", "resampled +97 ppm, 30 dB in-band SNR", ppm=97, snr_db=30), t),
        Case(Condition("snr0_p300", "resampled +300 ppm, 0 dB in-band SNR", ppm=300, snr_db=0), t,
             _ACCURACY, _g_accuracy),
        Case(Condition("snr0_m300", "resampled -300 ppm, 0 dB in-band SNR", ppm=-300, snr_db=0), t,
             _ACCURACY, _g_accuracy),
        Case(Condition("snr-10", "resampled +173 ppm, -10 dB in-band SNR", ppm=173, snr_db=-10), 2 * t,
             "lock rate>=90%", lambda r: r["lock_rate"] >= 0.9),
        Case(Condition("snr-15", "resampled -211 ppm, -15 dB in-band SNR", ppm=-211, snr_db=-15), t),
        Case(Condition("snr-20", "resampled +50 ppm, -20 dB in-band SNR", ppm=50, snr_db=-20), t),
        Case(Condition("band_phone", "laptop speaker -> phone mic: 400-7000 Hz band-pass, +10 dB, +200 ppm",
                       ppm=200, snr_db=10, band_hz=(400.0, 7000.0)), t),
        Case(Condition("band_tel", "telephone band 300-3400 Hz (keeps 1.4 of the 6 kHz witness band), +20 dB, "
                       "-150 ppm", ppm=-150, snr_db=20, band_hz=(300.0, 3400.0)), t),
        Case(Condition("band_phone+band", "band_phone, the receiver told --band 400-7000", ppm=200, snr_db=10,
                       band_hz=(400.0, 7000.0), rx_band=(400.0, 7000.0)), t),
        Case(Condition("band_tel+band", "band_tel, the receiver told --band 300-3400", ppm=-150, snr_db=20,
                       band_hz=(300.0, 3400.0), rx_band=(300.0, 3400.0)), t),
        Case(Condition("agc", "0 dB in-band noise then AGC (10 ms attack, 400 ms release), -120 ppm",
                       ppm=-120, snr_db=0, agc=True), t),
        Case(Condition("agc_ns", "0 dB noise, AGC, spectral-subtraction noise suppression, +80 ppm",
                       ppm=80, snr_db=0, agc=True, noise_suppression=True), t),
        Case(Condition("reverb", "room RT60 0.6 s, DRR 0 dB, +10 dB SNR, +250 ppm", ppm=250, snr_db=10,
                       reverb=(0.6, 0.0)), t),
        Case(Condition("speech", "speech-like talker 10 dB louder than the witness, +20 dB SNR, -90 ppm",
                       ppm=-90, snr_db=20, interferer=("speech", -10.0)), t),
        Case(Condition("music", "music-like (chords, drums, hats) 10 dB louder, +20 dB SNR, +140 ppm",
                       ppm=140, snr_db=20, interferer=("music", -10.0)), t),
        Case(Condition("drops", "3 dropped blocks of 256-2048 samples, +10 dB, +150 ppm", ppm=150, snr_db=10,
                       drops=3), t),
        Case(Condition("opus64", "Opus 64 kbps (Ogg), +20 dB, +200 ppm", ppm=200, snr_db=20, codec=("opus", 64)),
             t, "offset<=1 smp", lambda r: r["offset_error_samples_max"] <= 1.0),
        Case(Condition("aac64", "AAC-LC 64 kbps (MP4), +20 dB, -200 ppm", ppm=-200, snr_db=20, codec=("aac", 64)),
             t, "offset<=1 smp", lambda r: r["offset_error_samples_max"] <= 1.0),
        Case(Condition("rate44k1", "44.1 kHz, +300 ppm, 0 dB", rate_hz=44100, ppm=300, snr_db=0), t,
             _ACCURACY, _g_accuracy),
        Case(Condition("rate192k", "192 kHz, -250 ppm, 0 dB", rate_hz=192000, ppm=-250, snr_db=0), max(2, t - 2),
             "offset<=0.25 smp, rate<=0.2 ppm, >=25x realtime",
             lambda r: _g_accuracy(r) and r["x_realtime_min"] >= 25),
        Case(Condition("no_witness", "no witness: noise + speech + music", snr_db=0, interferer=("mix", -6.0),
                       witness="none", seconds=120.0 if quick else 600.0), 1,
             "zero false locks", lambda r: r["false_locks"] == 0),
        Case(Condition("wrong_codebook", "another codebook's witness at +10 dB", snr_db=10, witness="wrong", ppm=60),
             t, "zero false locks", lambda r: r["false_locks"] == 0),
    ]


def names() -> list[str]:
    """What ``--only`` accepts: every condition's name, and ``rooms``."""
    return [c.condition.name for c in cases()] + ["rooms"]


@dataclass
class _Trial:
    locked: bool
    correct: bool
    false_lock: bool
    confident_false_lock: bool  # ... and still reported with a confidence above 0.5 at the end
    time_to_lock_s: float | None
    offset_error_samples: float | None
    rate_error_ppm: float | None
    x_realtime: float
    confidence: float
    baseline_offset_error_samples: float | None
    discontinuities_found: int
    discontinuities_true: int


def run_trial(cond: Condition, seed: int) -> _Trial:
    """One trial of ``cond``: render, decode block by block (timing ``feed``), score against the truth."""
    rng = np.random.default_rng(seed)
    audio, (t0, true_rate, drops) = make_trial_audio(cond, rng)
    rate = cond.rate_hz
    band = None if cond.rx_band is None else BandLimits(*cond.rx_band)
    rx = StreamingReceiver(Codebook(), rate, cond.name, band=band)
    block = max(256, int(1024 * rate / 48000))
    lock_at: float | None = None
    cpu = time.process_time()
    for k in range(0, audio.size, block):
        rx.feed(audio[k : k + block])
        if lock_at is None and rx.locked:
            lock_at = (k + block) / rate
    cpu = time.process_time() - cpu
    rep = rx.report()
    fit = rep.canonical_clock_fit
    removed = sum(d[1] for d in drops)
    first_local = float(drops[-1][0]) if drops else 0.0
    t_first = t0 + (first_local + removed) / true_rate
    t_last = t0 + (audio.size + removed) / true_rate
    offset_err = rate_err = None
    correct = False
    if fit.rate_hz is not None and fit.local_sample_at_epoch is not None:
        errs = [
            abs(fit.local_sample_at_epoch + t * fit.rate_hz - truth_local_sample(t, t0, true_rate, removed))
            for t in (t_first, t_last)
        ]
        offset_err = max(errs)
        rate_err = abs(fit.rate_hz / true_rate - 1.0) * 1e6
        correct = cond.witness == "own" and offset_err <= _CORRECT_LOCK_SAMPLES
    ever = rep.health.locks > 0
    false_lock = ever and not correct
    confident_false_lock = false_lock and fit.confidence > 0.5
    baseline_err = None
    if cond.witness == "own":
        ref_start = t0 - 1.0
        ref = WitnessEmitter(Codebook(), rate, ref_start, level_dbfs=LEVEL_DBFS).render(0, audio.size + removed + 2 * rate)
        lag = gcc_phat_lag(audio, ref, rate, WITNESS_BAND_HZ)
        # baseline mapping: local n <-> reference sample n + lag, nominal rate
        baseline_err = max(abs((t - ref_start) * rate - lag - truth_local_sample(t, t0, true_rate, removed))
                           for t in (t_first, t_last))
    return _Trial(
        locked=rx.locked,
        correct=correct,
        false_lock=false_lock,
        confident_false_lock=confident_false_lock,
        time_to_lock_s=lock_at if correct else None,
        offset_error_samples=offset_err if correct else None,
        rate_error_ppm=rate_err if correct else None,
        x_realtime=cond.seconds / max(cpu, 1e-9),
        confidence=fit.confidence,
        baseline_offset_error_samples=baseline_err,
        discontinuities_found=rep.health.discontinuities,
        discontinuities_true=len(drops),
    )


def _stat(values: list[float | None], q: float) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.percentile(v, q)) if v else None


def _summarise(case: Case, trials: list[_Trial]) -> dict:
    cond = case.condition
    n = len(trials)
    own = cond.witness == "own"
    rec: dict = {
        "condition": cond.name,
        "description": cond.description,
        "sample_rate_hz": cond.rate_hz,
        "audio_seconds": cond.seconds,
        "trials": n,
        "ppm_applied": cond.ppm,
        "snr_db_in_band": cond.snr_db,
        "lock_rate": (sum(t.correct for t in trials) / n) if own else None,
        "false_locks": sum(t.false_lock for t in trials),
        "confident_false_locks": sum(t.confident_false_lock for t in trials),
        "offset_error_samples_p50": _stat([t.offset_error_samples for t in trials], 50),
        "offset_error_samples_max": _stat([t.offset_error_samples for t in trials], 100),
        "rate_error_ppm_p50": _stat([t.rate_error_ppm for t in trials], 50),
        "rate_error_ppm_max": _stat([t.rate_error_ppm for t in trials], 100),
        "time_to_lock_s_p50": _stat([t.time_to_lock_s for t in trials], 50),
        "time_to_lock_s_max": _stat([t.time_to_lock_s for t in trials], 100),
        "confidence_p50": _stat([t.confidence for t in trials], 50),
        "x_realtime_p50": _stat([t.x_realtime for t in trials], 50),
        "x_realtime_min": _stat([t.x_realtime for t in trials], 0),
        "baseline_offset_error_samples_p50": _stat([t.baseline_offset_error_samples for t in trials], 50),
        "baseline_offset_error_samples_max": _stat([t.baseline_offset_error_samples for t in trials], 100),
        "discontinuities_true": sum(t.discontinuities_true for t in trials),
        "discontinuities_found": sum(t.discontinuities_found for t in trials),
        "goal": case.goal or None,
    }
    if own and rec["offset_error_samples_max"] is not None and rec["baseline_offset_error_samples_p50"] is not None:
        rec["beats_baseline"] = rec["offset_error_samples_p50"] < rec["baseline_offset_error_samples_p50"]
    else:
        rec["beats_baseline"] = None
    rec["goal_met"] = None
    if case.goal_check is not None:
        try:
            rec["goal_met"] = bool(case.goal_check(rec))
        except TypeError:  # a needed figure is missing (no lock at all)
            rec["goal_met"] = False
    return rec


def machine_info() -> dict:
    """The project's shared machine description (:mod:`bench.common`) plus what this bench depends on."""
    import scipy

    info = common_machine_info()
    info["scipy"] = scipy.__version__
    info["ffmpeg_opus"] = impair.codec_available("opus")
    info["ffmpeg_aac"] = impair.codec_available("aac")
    return info


def run_bench(quick: bool = False, progress: Callable[[str], None] | None = None, only: list[str] | None = None,
              plot: str | None = None) -> dict:
    """Run the matrix and the rooms section; ``progress(str)`` gets one line per trial.

    ``only``: condition names (and/or ``rooms``; see :func:`names`). ``plot``: write the rooms' error-vs-distance
    figure there.
    """
    say = progress or (lambda s: None)
    info = machine_info()
    results = []
    matrix = [c for c in cases(quick) if not only or c.condition.name in only]
    for ci, case in enumerate(matrix):
        cond = case.condition
        if cond.codec and not info[f"ffmpeg_{cond.codec[0]}"]:
            say(f"[{ci + 1}/{len(matrix)}] {cond.name}: skipped (ffmpeg {cond.codec[0]} encoder not available)")
            results.append({"condition": cond.name, "description": cond.description, "skipped": "codec unavailable"})
            continue
        trials = []
        for k in range(case.trials):
            tr = run_trial(cond, seed=1000 * (ci + 1) + k)
            trials.append(tr)
            err = "-" if tr.offset_error_samples is None else f"{tr.offset_error_samples:.3f}"
            say(
                f"[{ci + 1}/{len(matrix)}] {cond.name} trial {k + 1}/{case.trials}: "
                f"{'lock' if tr.correct else ('FALSE LOCK' if tr.false_lock else 'no lock')} "
                f"offset_err={err} smp, {tr.x_realtime:.0f}x realtime"
            )
        results.append(_summarise(case, trials))
    doc: dict = {"bench": "sync", "machine": info, "results": results}
    if not only or "rooms" in only:
        rooms = run_rooms(quick=quick, progress=say)
        doc["rooms"] = rooms
        if plot:
            plot_rooms(rooms, plot)
    return doc


def _fmt(v, spec: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return format(v, spec)


def format_table(doc: dict) -> str:
    """Markdown table of the results (what docs/sync.md shows)."""
    head = (
        "| condition | rate | trials | lock rate | false locks (confident) | offset err p50/max (smp) | rate err p50/max (ppm) "
        "| lock time p50/max (s) | x realtime min/p50 | GCC-PHAT offset err p50 (smp) | beats GCC-PHAT | goal | met |"
    )
    lines = [head, "|" + "---|" * 13] if doc["results"] else []
    for r in doc["results"]:
        if "skipped" in r:
            lines.append(f"| {r['condition']} | skipped: {r['skipped']} |" + " |" * 11)
            continue
        lines.append(
            "| {c} | {rate} | {n} | {lr} | {fl} | {o50} / {omax} | {r50} / {rmax} | {t50} / {tmax} | {x} / {x50} | {b} | {bb} | {g} | {m} |".format(
                c=r["condition"],
                rate=f"{r['sample_rate_hz'] / 1000:g}k",
                n=r["trials"],
                lr=_fmt(r["lock_rate"], ".0%"),
                fl=f"{r['false_locks']} ({r.get('confident_false_locks', 0)})",
                o50=_fmt(r["offset_error_samples_p50"], ".3f"),
                omax=_fmt(r["offset_error_samples_max"], ".3f"),
                r50=_fmt(r["rate_error_ppm_p50"], ".3f"),
                rmax=_fmt(r["rate_error_ppm_max"], ".3f"),
                t50=_fmt(r["time_to_lock_s_p50"], ".2f"),
                tmax=_fmt(r["time_to_lock_s_max"], ".2f"),
                x=_fmt(r["x_realtime_min"], ".0f"),
                x50=_fmt(r["x_realtime_p50"], ".0f"),
                b=_fmt(r["baseline_offset_error_samples_p50"],
                       ".3f" if (r["baseline_offset_error_samples_p50"] or 0) < 10 else ".0f"),
                bb=_fmt(r["beats_baseline"], ""),
                g=r["goal"] or "",
                m=_fmt(r["goal_met"], ""),
            )
        )
    if "rooms" in doc:
        lines += ["", "Rooms (geometry truth; direct path vs envelope peak on the same audio):", "",
                  format_rooms(doc["rooms"])]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - `python -m bench.sync`: the options of `mimir bench sync`
    import typer

    from bench.cli import bench_sync

    typer.run(bench_sync)
