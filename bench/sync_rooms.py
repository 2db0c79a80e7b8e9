"""The rooms section of ``mimir bench sync``: a sweep of simulated rooms, both timing methods, against geometry.

60 rooms (12 with ``--quick``): both room models, five RT60 classes, several
rooms per class and microphones per room, SNR 0/10/20 dB in turn, +-250
ppm, every fourth trial through a speaker and microphone model calibrated
with a delay measured once without a room. Each case is one
:func:`mimir.sync.room_trials.room_trial`; this module groups the errors by
issue 13's goals, formats them and plots error against distance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mimir.sync.room_trials import WRONG_SAMPLES_AT_48K, measure_transducer_path, random_room, room_trial
from mimir.sync.rooms import MICROPHONE, SPEAKER, Room

__all__ = ["sweep_cases", "run_rooms", "summarise_rooms", "summarise_reverberation", "format_rooms", "plot_rooms"]

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
    cases: list[_Case] = []
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


def run_rooms(quick: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    """Decode every case with both methods; errors against geometry truth, grouped by the issue's goals."""
    say = progress or (lambda s: None)
    cases = sweep_cases(quick)
    transducer_path = measure_transducer_path(48000)
    trials: list[dict] = []
    for n, case in enumerate(cases):
        tr = room_trial(case.room, case.mic, snr_db=case.snr_db, ppm=case.ppm, seed=case.seed,
                        transducers=(SPEAKER, MICROPHONE) if case.calibrated else None,
                        calibration=transducer_path if case.calibrated else None)
        rec = {
            "room": tr.room, "model": tr.model, "rt60_s": tr.rt60_s, "distance_m": tr.distance_m,
            "snr_db": tr.snr_db, "ppm": case.ppm, "calibrated": case.calibrated,
            "error_samples": tr.error_samples, "rate_error_ppm": tr.rate_error_ppm, "confidence": tr.confidence,
            "baseline_error_samples": tr.baseline_error_samples, "baseline_confidence": tr.baseline_confidence,
            "x_realtime": tr.x_realtime, "baseline_x_realtime": tr.baseline_x_realtime,
            "x_realtime_sustained": tr.x_realtime_sustained,
            "baseline_x_realtime_sustained": tr.baseline_x_realtime_sustained,
            "strongest_minus_direct_ms": None if tr.profile is None else tr.profile.strongest_minus_direct_ms,
            "drr_db": None if tr.profile is None else tr.profile.direct_to_reverberant_db,
            "rt60_estimate_s": None if tr.profile is None else tr.profile.rt60_s,
            "rt60_method": None if tr.profile is None else tr.profile.rt60_method,
            "rt60_truth_s": tr.rt60_truth_s, "drr_truth_db": tr.drr_truth_db,
            "ambiguous": None if tr.profile is None else tr.profile.ambiguous,
        }
        rec["goal_group"] = _goal_group(rec)
        trials.append(rec)
        err = "-" if tr.error_samples is None else f"{tr.error_samples:+.3f}"
        base = "-" if tr.baseline_error_samples is None else f"{tr.baseline_error_samples:+.2f}"
        say(f"[rooms {n + 1}/{len(cases)}] {tr.room}, {tr.distance_m:.1f} m, {tr.snr_db:g} dB"
            f"{' (speaker+mic, calibrated)' if case.calibrated else ''}: direct-path err {err} smp "
            f"(conf {tr.confidence:.2f}), envelope peak {base} smp (conf {tr.baseline_confidence:.2f})")

    return {"transducer_delay_measured_s": transducer_path.delay_s, "trials": trials, "groups": summarise_rooms(trials),
            "reverberation": summarise_reverberation(trials)}


def summarise_reverberation(trials: list[dict]) -> dict:
    """The room measurement against the simulated responses' own figures, at >= 10 dB and at 0 dB SNR."""
    out = {}
    for name, keep in ((">=10 dB", lambda r: r["snr_db"] >= 10.0), ("0 dB", lambda r: r["snr_db"] < 10.0)):
        rows = [r for r in trials if keep(r) and r["error_samples"] is not None]
        rated = [r for r in rows if r["rt60_estimate_s"] is not None and r["rt60_truth_s"]]
        ratios = np.array([r["rt60_estimate_s"] / r["rt60_truth_s"] for r in rated])
        drr = np.array([r["drr_db"] - r["drr_truth_db"] for r in rows
                        if r["drr_db"] is not None and r["drr_truth_db"] is not None])
        out[name] = {
            "trials": len(rows), "t20": sum(1 for r in rated if r["rt60_method"] == "T20"),
            "edt": sum(1 for r in rated if r["rt60_method"] == "EDT"), "none": len(rows) - len(rated),
            "rt60_ratio_median": float(np.median(ratios)) if ratios.size else None,
            "rt60_ratio_worst": float(ratios[np.argmax(np.abs(np.log(ratios)))]) if ratios.size else None,
            "rt60_within_10_percent": int(np.sum(np.abs(ratios - 1.0) <= 0.1)),
            "drr_error_db_median": float(np.median(np.abs(drr))) if drr.size else None,
            "drr_error_db_worst": float(drr[np.argmax(np.abs(drr))]) if drr.size else None,
        }
    return out


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
            "x_realtime_sustained_p50": float(np.median([r["x_realtime_sustained"] for r in rows])),
            "baseline_x_realtime_sustained_p50": float(np.median([r["baseline_x_realtime_sustained"] for r in rows])),
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
        "| worst rate err (ppm) | confident wrong: direct / envelope | x realtime p50: direct / envelope | x realtime p50, 2nd half: direct / envelope | goal | met |",
        "|" + "---|" * 10,
    ]
    for name, g in doc["groups"].items():
        d, e = g["direct_path"], g["envelope_peak"]
        lines.append(
            f"| {name} | {d['n']} | {f(d['median'])} / {f(d['p95'])} / {f(d['worst'])} "
            f"| {f(e['median'])} / {f(e['p95'])} / {f(e['worst'], '.1f')} | {f(g['rate_error_ppm_worst'])} "
            f"| {g['confident_wrong']} / {g['envelope_peak_confident_wrong']} "
            f"| {g['x_realtime_p50']:.0f} / {g['baseline_x_realtime_p50']:.0f} "
            f"| {g['x_realtime_sustained_p50']:.0f} / {g['baseline_x_realtime_sustained_p50']:.0f} | {g['goal']} "
            f"| {'yes' if g['goal_met'] else 'NO'} |"
        )
    if "reverberation" in doc:
        lines += ["", "| room measurement | trials | RT60 from T20 / EDT / none | RT60 / the response's own: median, "
                      "worst | within 10 % | DRR error (dB): median, worst |", "|" + "---|" * 6]
        for name, r in doc["reverberation"].items():
            lines.append(f"| {name} | {r['trials']} | {r['t20']} / {r['edt']} / {r['none']} "
                         f"| {f(r['rt60_ratio_median'], '.2f')}, {f(r['rt60_ratio_worst'], '.2f')} "
                         f"| {r['rt60_within_10_percent']} | {f(r['drr_error_db_median'], '.1f')}, "
                         f"{f(r['drr_error_db_worst'], '+.1f')} |")
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
