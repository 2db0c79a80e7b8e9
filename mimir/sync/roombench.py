"""Rooms with geometry truth: one microphone's witness, decoded, against the direct path.

The rooms section of ``mimir bench sync`` and the room tests share
:func:`room_trial`: render the witness from a random canonical start, play it
through a simulated room (:mod:`mimir.sync.rooms`; optionally through a
speaker and a microphone), resample it by a clock error, add white noise at
an in-band SNR measured at the microphone, and decode it twice in the same
run: with the receiver as it is (direct path, :mod:`mimir.sync.channel`) and
with channel estimation off (the envelope-peak method before issue 13).

Truth: the local sample the direct path of canonical time ``t`` arrives at is
``((t - t0) * rate + distance / c * rate) * ratio`` (``ratio`` the exact
resampling factor); with a path calibration the receiver reports the
emission instead, ``(t - t0) * rate * ratio``. Errors are the worst over the
first and last second of the audio.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from . import impair
from .calibration import PathCalibration
from .codebook import Codebook
from .emitter import WitnessEmitter
from .receiver import ReceiverConfig, StreamingReceiver
from .report import PathProfile
from .rooms import MICROPHONE, SPEAKER, Room, Transducer, direct_delays_samples, room_impulse_responses, \
    transducer_filter

__all__ = ["RoomTrial", "room_trial", "render_through", "measure_transducer_delay_s", "WRONG_SAMPLES_AT_48K"]

_LEVEL_DBFS = -10.0
WRONG_SAMPLES_AT_48K = 48.0  # "confidently wrong": more than 1 ms off (with a confidence above 0.5)


@dataclass
class RoomTrial:
    room: str
    model: str
    rt60_s: float
    distance_m: float
    snr_db: float
    error_samples: float | None  # direct path (or emission, when calibrated) vs truth; None: no fit
    rate_error_ppm: float | None
    confidence: float
    baseline_error_samples: float | None  # channel estimation off (envelope peak), same audio
    baseline_confidence: float
    x_realtime: float
    baseline_x_realtime: float
    profile: PathProfile | None


def render_through(room: Room, mic: int, rate_hz: int, seconds: float, t0: float, *, snr_db: float, ppm: float,
                   rng: np.random.Generator, transducers: tuple[Transducer, Transducer] | None = None,
                   impulse: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The witness from canonical ``t0`` as microphone ``mic`` records it; returns (float32 audio, resampling ratio)."""
    n = int(seconds * rate_hz)
    h = impulse if impulse is not None else room_impulse_responses(room, rate_hz)[mic]
    x = WitnessEmitter(Codebook(), rate_hz, t0, level_dbfs=_LEVEL_DBFS).render(0, n + h.size // 2 + 4096)
    x = x.astype(np.float64)
    if transducers is not None:
        x = transducer_filter(x, rate_hz, transducers[0])
    y = fftconvolve(x, h)[: x.size]
    if transducers is not None:
        y = transducer_filter(y, rate_hz, transducers[1])
    y, ratio = impair.resample_ppm(y, ppm)
    y = y[:n]
    power = float(np.mean(y**2))
    y = impair.add_inband_noise(y, rate_hz, snr_db, (2000.0, 8000.0), power, rng)
    peak = float(np.max(np.abs(y)))
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32), float(ratio)


def _decode(audio: np.ndarray, rate_hz: int, config: ReceiverConfig | None,
            path: PathCalibration | None) -> tuple[StreamingReceiver, float]:
    rx = StreamingReceiver(Codebook(), rate_hz, "room", config=config, path=path)
    block = 1024 * rate_hz // 48000
    cpu = time.process_time()
    for k in range(0, audio.size, block):
        rx.feed(audio[k : k + block])
    return rx, audio.size / rate_hz / max(time.process_time() - cpu, 1e-9)


def _error(rx: StreamingReceiver, truth_at) -> tuple[float | None, float | None]:
    fit = rx.report().canonical_clock_fit
    if fit.effective_sample_rate is None:
        return None, None
    errs = [fit.local_sample_at_epoch + t * fit.effective_sample_rate - want for t, want in truth_at]
    return max(errs, key=abs), None


def room_trial(room: Room, mic: int, *, rate_hz: int = 48000, seconds: float = 30.0, snr_db: float = 10.0,
               ppm: float = 80.0, seed: int = 0, transducers: tuple[Transducer, Transducer] | None = None,
               calibration_s: float | None = None, baseline: bool = True) -> RoomTrial:
    """Decode microphone ``mic`` of ``room``; with ``calibration_s`` (transducers' measured delay) calibrated to emission."""
    rng = np.random.default_rng(seed)
    t0 = float(rng.uniform(20.0, 3000.0))
    audio, ratio = render_through(room, mic, rate_hz, seconds, t0, snr_db=snr_db, ppm=ppm, rng=rng,
                                  transducers=transducers)
    distance = float(room.distances_m()[mic])
    direct = float(direct_delays_samples(room, rate_hz)[mic])
    path = None
    if calibration_s is not None:
        path = PathCalibration(distance_m=distance, delay_s=calibration_s)
        direct = 0.0  # the receiver reports the emission
    truth_at = []
    for local in (float(rate_hz), float(audio.size - 1)):
        t = t0 + local / (rate_hz * ratio)
        truth_at.append((t, ((t - t0) * rate_hz + direct) * ratio))
    rx, speed = _decode(audio, rate_hz, None, path)
    err, _ = _error(rx, truth_at)
    rep = rx.report()
    fit = rep.canonical_clock_fit
    rate_err = None if fit.effective_sample_rate is None else (fit.effective_sample_rate / (rate_hz * ratio) - 1) * 1e6
    base_err, base_conf, base_speed = None, 0.0, math.nan
    if baseline:
        brx, base_speed = _decode(audio, rate_hz, ReceiverConfig(channel_estimation=False), path)
        base_err, _ = _error(brx, truth_at)
        base_conf = brx.confidence()
    return RoomTrial(room=room.name, model=room.model, rt60_s=room.rt60_s, distance_m=distance, snr_db=snr_db,
                     error_samples=err, rate_error_ppm=rate_err, confidence=fit.confidence,
                     baseline_error_samples=base_err, baseline_confidence=base_conf, x_realtime=speed,
                     baseline_x_realtime=base_speed, profile=rep.response_profile.path)


def measure_transducer_delay_s(rate_hz: int = 48000, transducers: tuple[Transducer, Transducer] = (SPEAKER, MICROPHONE),
                               seed: int = 99) -> float:
    """The speaker + microphone delay "measured once": decode them with no room (30 dB SNR) against the emission."""
    rng = np.random.default_rng(seed)
    t0 = 50.0
    x = WitnessEmitter(Codebook(), rate_hz, t0, level_dbfs=_LEVEL_DBFS).render(0, 20 * rate_hz).astype(np.float64)
    y = transducer_filter(transducer_filter(x, rate_hz, transducers[0]), rate_hz, transducers[1])
    y = impair.add_inband_noise(y, rate_hz, 30.0, (2000.0, 8000.0), float(np.mean(y**2)), rng).astype(np.float32)
    rx, _ = _decode(y, rate_hz, None, None)
    fit = rx.report().canonical_clock_fit
    if fit.local_sample_at_epoch is None:
        raise RuntimeError("the dry transducer chain did not lock")
    return float(fit.local_sample_at_epoch + t0 * fit.effective_sample_rate) / rate_hz


def random_room(rng: np.random.Generator, *, model: str, rt60_s: float, dims_m: tuple[float, float, float],
                n_mics: int, wall_m: float = 0.3, name: str = "") -> Room:
    """A shoebox with the speaker and microphones anywhere inside (some near walls or in corners), fractional distances.

    A third of the positions are ``wall_m`` from one wall, a sixth in a corner
    (``wall_m`` from two walls and the floor or ceiling); the rest uniform at
    least ``wall_m`` from every wall.
    """
    dims = np.asarray(dims_m)

    def position() -> tuple[float, float, float]:
        p = rng.uniform(wall_m, dims - wall_m)
        kind = rng.random()
        if kind < 1 / 3:
            axis = int(rng.integers(0, 3))
            p[axis] = wall_m if rng.random() < 0.5 else dims[axis] - wall_m
        elif kind < 0.5:
            for axis in (0, 1, 2):
                p[axis] = wall_m if rng.random() < 0.5 else dims[axis] - wall_m
        return tuple(float(v) for v in p)

    source = position()
    mics = []
    while len(mics) < n_mics:  # 0.5 m at least from the speaker (the issue's range starts there)
        p = position()
        if np.linalg.norm(np.asarray(p) - np.asarray(source)) >= 0.5:
            mics.append(p)
    mics = tuple(mics)
    return Room(tuple(float(d) for d in dims), rt60_s, source, mics, model=model, seed=int(rng.integers(1 << 31)),
                name=name)


# ---------------------------------------------------------------------------------------------------- the sweep
_CLASSES = (  # (rt60 s, room dimensions m): a small studio to a hall
    (0.2, (4.6, 3.7, 2.6)),
    (0.4, (7.2, 5.3, 2.9)),
    (0.6, (9.5, 7.0, 3.1)),
    (1.0, (16.0, 11.0, 5.0)),
    (1.5, (26.0, 18.0, 9.0)),
)
_SNRS_DB = (0.0, 10.0, 20.0)


@dataclass(frozen=True)
class _Case:
    room: Room
    mic: int
    snr_db: float
    ppm: float
    seed: int
    calibrated: bool


def sweep_cases(quick: bool = False, seed: int = 13) -> list[_Case]:
    """The rooms of the sweep: both models, every RT60 class, rooms x microphones, SNR 0/10/20 dB, some calibrated."""
    rng = np.random.default_rng(seed)
    rooms_per_class = 1 if quick else 2
    mics = 2 if quick else 3
    cases = []
    for model in ("image", "stochastic"):
        for rt60, dims in (_CLASSES[1], _CLASSES[2], _CLASSES[4]) if quick else _CLASSES:
            for r in range(rooms_per_class):
                room = random_room(rng, model=model, rt60_s=rt60, dims_m=dims, n_mics=mics,
                                   name=f"{model} RT60 {rt60:g} s #{r + 1}")
                for m in range(mics):
                    snr = float(_SNRS_DB[(len(cases) + m) % len(_SNRS_DB)])
                    cases.append(_Case(room, m, snr, float(rng.uniform(-250.0, 250.0)), int(rng.integers(1 << 30)),
                                       calibrated=(len(cases) % 4 == 3)))
    return cases


_G1 = "RT60<=0.6 s, <=10 m, >=10 dB"
_G2 = "RT60 1.5 s, <=20 m"


def _goal_group(rec: dict) -> str | None:
    """The issue's goal a trial falls under (calibrated speaker+mic trials are their own group)."""
    if rec["rt60_s"] <= 0.6 and rec["distance_m"] <= 10.0 and rec["snr_db"] >= 10.0:
        return f"{_G1}, speaker+mic calibrated" if rec["calibrated"] else f"{_G1}, {rec['model']}"
    if rec["rt60_s"] >= 1.5 and rec["distance_m"] <= 20.0 and not rec["calibrated"]:
        return _G2
    return None


def _stats(values: list[float | None]) -> dict:
    v = np.array([abs(x) if x is not None else np.inf for x in values])
    finite = v[np.isfinite(v)]
    return {
        "n": int(v.size), "no_fit": int((~np.isfinite(v)).sum()),
        "median": float(np.median(finite)) if finite.size else None,
        "p95": float(np.percentile(finite, 95)) if finite.size else None,
        "worst": float(v.max()) if v.size else None,
    }


def run_rooms(quick: bool = False, progress=None) -> dict:
    """Decode every case with both methods; errors against geometry truth, grouped by the issue's goals."""
    say = progress or (lambda s: None)
    cases = sweep_cases(quick)
    transducer_delay_s = measure_transducer_delay_s(48000)
    trials: list[dict] = []
    for n, case in enumerate(cases):
        tr = room_trial(case.room, case.mic, snr_db=case.snr_db, ppm=case.ppm, seed=case.seed,
                        transducers=(SPEAKER, MICROPHONE) if case.calibrated else None,
                        calibration_s=transducer_delay_s if case.calibrated else None)
        rec = {
            "room": tr.room, "model": tr.model, "rt60_s": tr.rt60_s, "distance_m": tr.distance_m,
            "snr_db": tr.snr_db, "ppm": case.ppm, "calibrated": case.calibrated,
            "error_samples": tr.error_samples, "rate_error_ppm": tr.rate_error_ppm, "confidence": tr.confidence,
            "baseline_error_samples": tr.baseline_error_samples, "baseline_confidence": tr.baseline_confidence,
            "x_realtime": tr.x_realtime, "baseline_x_realtime": tr.baseline_x_realtime,
            "strongest_minus_direct_ms": None if tr.profile is None else tr.profile.strongest_minus_direct_ms,
            "drr_db": None if tr.profile is None else tr.profile.direct_to_reverberant_db,
            "rt60_estimate_s": None if tr.profile is None else tr.profile.rt60_seconds,
            "ambiguous": None if tr.profile is None else tr.profile.ambiguous,
        }
        rec["goal_group"] = _goal_group(rec)
        trials.append(rec)
        err = "-" if tr.error_samples is None else f"{tr.error_samples:+.3f}"
        base = "-" if tr.baseline_error_samples is None else f"{tr.baseline_error_samples:+.2f}"
        say(f"[rooms {n + 1}/{len(cases)}] {tr.room}, {tr.distance_m:.1f} m, {tr.snr_db:g} dB"
            f"{' (speaker+mic, calibrated)' if case.calibrated else ''}: direct-path err {err} smp "
            f"(conf {tr.confidence:.2f}), envelope peak {base} smp (conf {tr.baseline_confidence:.2f})")

    return {"transducer_delay_measured_s": transducer_delay_s, "trials": trials, "groups": summarise_rooms(trials)}


def summarise_rooms(trials: list[dict]) -> dict:
    """Per goal group and over all trials: error distribution of both methods, confident-wrong counts, speed."""
    def confident_wrong(key_err: str, key_conf: str, rows: list[dict]) -> int:
        return sum(1 for r in rows if (r[key_err] is None or abs(r[key_err]) > WRONG_SAMPLES_AT_48K)
                   and r[key_conf] > 0.5)

    groups = {}
    names = [f"{_G1}, image", f"{_G1}, stochastic", f"{_G1}, speaker+mic calibrated", _G2, "all"]
    for name in names:
        rows = [r for r in trials if name == "all" or r["goal_group"] == name]
        if not rows:
            continue
        g = {
            "direct_path": _stats([r["error_samples"] for r in rows]),
            "envelope_peak": _stats([r["baseline_error_samples"] for r in rows]),
            "rate_error_ppm_worst": max((abs(r["rate_error_ppm"]) for r in rows if r["rate_error_ppm"] is not None),
                                        default=None),
            "confident_wrong": confident_wrong("error_samples", "confidence", rows),
            "envelope_peak_confident_wrong": confident_wrong("baseline_error_samples", "baseline_confidence", rows),
            "x_realtime_min": min(r["x_realtime"] for r in rows),
            "x_realtime_p50": float(np.median([r["x_realtime"] for r in rows])),
            "baseline_x_realtime_p50": float(np.median([r["baseline_x_realtime"] for r in rows])),
        }
        if name.startswith(_G1):
            g["goal"] = "<=0.25 smp and <=0.5 ppm, no confident wrong"
            g["goal_met"] = (g["direct_path"]["worst"] <= 0.25 and (g["rate_error_ppm_worst"] or 0) <= 0.5
                             and g["confident_wrong"] == 0)
        elif name == _G2:
            g["goal"] = "<=1 smp, no confident wrong"
            g["goal_met"] = g["direct_path"]["worst"] <= 1.0 and g["confident_wrong"] == 0
        else:
            g["goal"] = "no confident wrong (>1 ms off with confidence >0.5)"
            g["goal_met"] = g["confident_wrong"] == 0
        groups[name] = g
    return groups



def format_rooms(doc: dict) -> str:
    """Markdown tables: the goal groups, then every trial."""
    def f(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    lines = [
        "| group | trials | direct path: median / p95 / worst (smp) | envelope peak: median / p95 / worst (smp) "
        "| worst rate err (ppm) | confident wrong: direct / envelope | x realtime p50: direct / envelope | goal | met |",
        "|" + "---|" * 9,
    ]
    for name, g in doc["groups"].items():
        d, e = g["direct_path"], g["envelope_peak"]
        lines.append(
            f"| {name} | {d['n']} | {f(d['median'])} / {f(d['p95'])} / {f(d['worst'])} "
            f"| {f(e['median'])} / {f(e['p95'])} / {f(e['worst'], '.1f')} | {f(g['rate_error_ppm_worst'])} "
            f"| {g['confident_wrong']} / {g['envelope_peak_confident_wrong']} "
            f"| {g['x_realtime_p50']:.0f} / {g['baseline_x_realtime_p50']:.0f} | {g['goal']} "
            f"| {'yes' if g['goal_met'] else 'NO'} |"
        )
    return "\n".join(lines)


def plot_rooms(doc: dict, path: str) -> None:
    """Error against distance, both methods, log scale (docs/img/sync_rooms_error_vs_distance.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["trials"]
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    for key, conf_key, label, marker in (("baseline_error_samples", "baseline_confidence", "envelope peak (before)", "x"),
                                         ("error_samples", "confidence", "direct path (first arrival)", "o")):
        d = np.array([r["distance_m"] for r in rows])
        e = np.array([abs(r[key]) if r[key] is not None else np.nan for r in rows])
        c = np.array([r[conf_key] for r in rows])
        sc = ax.scatter(d, np.maximum(e, 1e-3), c=c, cmap="viridis", vmin=0, vmax=1, marker=marker, label=label,
                        s=28)
    ax.set_yscale("log")
    ax.axhline(0.25, color="tab:green", lw=1, ls="--", label="0.25 sample")
    ax.axhline(WRONG_SAMPLES_AT_48K, color="tab:red", lw=1, ls=":", label="1 ms")
    ax.set_xlabel("speaker to microphone (m)")
    ax.set_ylabel("|error| vs geometry truth (samples at 48 kHz)")
    ax.set_title("Simulated rooms (image source + stochastic, RT60 0.2-1.5 s, SNR 0-20 dB)")
    fig.colorbar(sc, ax=ax, label="reported confidence")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
