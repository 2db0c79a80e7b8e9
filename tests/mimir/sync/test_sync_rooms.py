"""Timing truth in simulated rooms: the fit follows the direct path (geometry), and confidence is honest.

Two room models (image source, and a stochastic tail with first-order
reflections), speakers and microphones anywhere including near walls and in
corners, fractional distances, a clock error, white in-band noise. A few
representative seeded rooms here; the wide sweep is ``mimir bench sync``
(rooms section). Goals (issue 13): within 0.25 sample of the direct path and
0.5 ppm up to 10 m at RT60 <= 0.6 s and >= 10 dB SNR; within 1 sample up to
20 m at RT60 1.5 s; never a confidence above 0.5 on an answer more than 1 ms
(48 samples) off.
"""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from mimir.sync.room_trials import WRONG_SAMPLES_AT_48K, measure_transducer_path, random_room, room_trial
from mimir.sync.rooms import MICROPHONE, SPEAKER, Room, direct_delays_samples, reverberation_truth, \
    room_impulse_responses

pytestmark = pytest.mark.slow


def _assert_honest(trial) -> None:
    """No confident wrong answer: more than 1 ms off must come with confidence <= 0.5."""
    if trial.error_samples is not None and abs(trial.error_samples) > WRONG_SAMPLES_AT_48K:
        assert trial.confidence <= 0.5, (trial.distance_m, trial.error_samples, trial.confidence)


def _studio_trials(model: str, seed: int):
    rng = np.random.default_rng(seed)
    room = random_room(rng, model=model, rt60_s=0.6, dims_m=(9.5, 7.0, 3.1), n_mics=3, name=f"{model}-0.6")
    for mic in range(3):
        trial = room_trial(room, mic, snr_db=10.0, ppm=120.0, seed=seed * 10 + mic, baseline=False)
        assert trial.distance_m < 10.0
        yield trial


def test_direct_path_within_a_quarter_sample_up_to_10_m_at_rt60_0_6_image_source():
    for trial in _studio_trials("image", 11):
        assert trial.error_samples is not None and abs(trial.error_samples) <= 0.25, trial
        assert abs(trial.rate_error_ppm) <= 0.5, trial
        _assert_honest(trial)


def test_direct_path_within_a_quarter_sample_up_to_10_m_at_rt60_0_6_stochastic_tail():
    """The second room model: a diffuse tail from the mixing time on, first-order reflections.

    (The benchmark's wider sweep of this model does not meet 0.25 everywhere: see docs/sync.md.)
    """
    for trial in _studio_trials("stochastic", 12):
        assert trial.error_samples is not None and abs(trial.error_samples) <= 0.25, trial
        assert abs(trial.rate_error_ppm) <= 0.5, trial
        _assert_honest(trial)


def test_a_hall_within_one_sample_up_to_20_m_at_rt60_1_5():
    room = Room((26.0, 18.0, 9.0), 1.5, (2.2, 3.1, 1.6), ((9.6, 7.4, 1.5), (19.1, 14.2, 1.2)), model="image",
                name="hall")
    for mic in range(2):
        trial = room_trial(room, mic, snr_db=10.0, ppm=-60.0, seed=30 + mic, baseline=False)
        assert trial.error_samples is not None and abs(trial.error_samples) <= 1.0, trial
        _assert_honest(trial)


def test_the_envelope_peak_lands_on_a_reflection_where_the_direct_path_does_not():
    """The failure of issue 13, reproduced in the same run: a cluster of reflections beats the direct path."""
    room = Room((9.0, 7.0, 3.2), 0.6, (1.3, 1.1, 1.4), ((8.6, 6.6, 2.9),), model="image", name="studio")
    trial = room_trial(room, 0, snr_db=10.0, ppm=120.0, seed=3)
    assert abs(trial.baseline_error_samples) > WRONG_SAMPLES_AT_48K  # 218 samples late before issue 13
    assert abs(trial.error_samples) <= 0.25
    path = trial.profile
    assert path.strongest_minus_direct_samples > WRONG_SAMPLES_AT_48K  # reported: the strongest path is later
    assert path.direct_to_strongest_db < 0 and not path.ambiguous


def test_the_path_profile_measures_the_room():
    """DRR within 1.5 dB and RT60 (T20) within 10 % of the simulated response's own; the strongest path never before
    the direct."""
    room = Room((8.0, 6.0, 3.0), 0.6, (1.4, 4.2, 1.3), ((4.3, 2.1, 1.6), (6.9, 1.2, 1.1)), model="image")
    responses = room_impulse_responses(room, 48000)
    sos = butter(6, [2000, 8000], "band", fs=48000, output="sos")
    for mic, delay in enumerate(direct_delays_samples(room, 48000)):
        h = sosfiltfilt(sos, responses[mic])
        j, w = int(round(delay)), 120
        drr_db = 10 * np.log10(np.sum(h[j - w : j + w + 1] ** 2) / np.sum(h[j + w + 1 :] ** 2))
        t20_s, _ = reverberation_truth(responses[mic], 48000, (2000.0, 8000.0))
        path = room_trial(room, mic, snr_db=20.0, seed=40 + mic, baseline=False).profile
        assert path.direct_to_reverberant_db == pytest.approx(drr_db, abs=1.5)
        assert path.rt60_method == "T20" and path.rt60_s == pytest.approx(t20_s, rel=0.1)
        assert path.strongest_minus_direct_samples >= -0.5
        assert path.events >= 100 and path.first_arrival_snr_db > 20


_ROOM_WITH_TRANSDUCERS = Room((7.5, 6.0, 3.0), 0.45, (1.0, 3.0, 1.2), ((4.1, 1.7, 1.5), (6.6, 4.9, 2.2)), model="image")


def test_path_calibration_removes_the_transducers_and_the_distance():
    """Speaker and microphone (band limits, minimum-phase roll-off, group delay) in the path; calibrated to emission.

    Their pulse and delay are measured once without a room, then hold through a pure delay and in rooms.
    """
    from mimir.sync.codebook import Codebook
    from mimir.sync.receiver import StreamingReceiver
    from mimir.sync.room_trials import render_through
    from mimir.sync.rooms import fractional_delay

    transducers = (SPEAKER, MICROPHONE)
    measured = measure_transducer_path(48000, transducers)  # "measured once", no room: the pulse, then the delay
    assert 0.0002 < measured.delay_s < 0.0006 and measured.pulse is not None  # the transducers' group delay
    distance = 4.37
    delay = distance / 343.0 * 48000
    t0 = 200.0
    audio, ratio = render_through(_ROOM_WITH_TRANSDUCERS, 0, 48000, 20.0, t0, snr_db=20.0, ppm=0.0,
                                  rng=np.random.default_rng(5), transducers=transducers,
                                  impulse=fractional_delay(delay, int(delay) + 200))
    rx = StreamingReceiver(Codebook(), 48000, "m", path=msgspec.structs.replace(measured, distance_m=distance))
    rx.feed(audio)
    fit = rx.report().canonical_clock_fit
    assert abs(fit.local_sample_at_epoch + t0 * fit.rate_hz) <= 0.05  # at the emission
    for mic in range(2):
        trial = room_trial(_ROOM_WITH_TRANSDUCERS, mic, snr_db=15.0, ppm=40.0, seed=50 + mic,
                           transducers=transducers, calibration=measured, baseline=False)
        assert abs(trial.error_samples) <= 0.25, trial
        _assert_honest(trial)


def test_the_measured_pulse_carries_the_calibration_into_a_room_where_the_delay_alone_does_not():
    """Invariant: with the transducers' pulse, a delay measured without the room holds in a room whose first
    reflection is 27 samples behind the direct path (the sweep's worst calibrated room: 1.17 samples early with
    the delay alone, as the band's own pulse reads the speaker's ringing)."""
    room = Room((9.5, 7.0, 3.1), 0.6, (5.942441248969515, 0.8017197926930577, 2.8),
                ((0.8702198459810524, 6.7, 1.3125038222121912), (7.158088471860018, 0.3, 0.7807346362261434)),
                model="stochastic", seed=219049197)  # microphone 1 (the draws for microphone 0 come first)
    errors = {}
    for pulse in (False, True):
        measured = measure_transducer_path(48000, (SPEAKER, MICROPHONE), pulse=pulse)
        trial = room_trial(room, 1, snr_db=20.0, ppm=-205.0, seed=88438758, transducers=(SPEAKER, MICROPHONE),
                           calibration=measured, baseline=False)
        errors[pulse] = trial.error_samples
    assert abs(errors[True]) <= 0.1, errors
    assert abs(errors[False]) > 0.5, errors  # what the pulse fixes (delete this line when the band pulse gets it)


def test_confidence_is_low_while_the_direct_path_is_not_yet_found():
    """A lock on a late reflection cluster is reported with low confidence until the direct path is found."""
    from mimir.sync.codebook import Codebook
    from mimir.sync.receiver import StreamingReceiver
    from mimir.sync.room_trials import render_through

    room = Room((9.0, 7.0, 3.2), 0.6, (1.3, 1.1, 1.4), ((6.5, 5.4, 1.3),), model="stochastic", seed=3)
    rng = np.random.default_rng(1)
    t0 = 500.0
    audio, ratio = render_through(room, 0, 48000, 30.0, t0, snr_db=10.0, ppm=0.0, rng=rng)
    truth = direct_delays_samples(room, 48000)[0]
    rx = StreamingReceiver(Codebook(), 48000, "m")
    checked = 0
    for k in range(0, audio.size, 4800):
        rx.feed(audio[k : k + 4800])
        fit = rx.report().canonical_clock_fit
        if fit.rate_hz is None:
            continue
        checked += 1
        t = t0 + (k + 4800) / 48000
        err = fit.local_sample_at_epoch + t * fit.rate_hz - ((t - t0) * 48000 + truth)
        if abs(err) > WRONG_SAMPLES_AT_48K:
            assert fit.confidence <= 0.5, (k / 48000, err, fit.confidence)
    assert checked > 200 and abs(err) <= 0.5 and fit.confidence > 0.5


def _decode_paths(paths: tuple[tuple[float, float], ...], seconds: float = 30.0):
    """Decode the witness through discrete paths ((delay samples, gain), ...), 20 dB SNR, no clock error:
    (the fit's error against the first path, its confidence, the path profile)."""
    from mimir.sync.codebook import Codebook
    from mimir.sync.receiver import StreamingReceiver
    from mimir.sync.room_trials import render_through
    from mimir.sync.rooms import fractional_delay

    impulse = sum(g * fractional_delay(d, 1024) for d, g in paths)
    t0 = 700.0
    room = Room((5.0, 4.0, 3.0), 0.3, (1.0, 1.0, 1.0), ((2.0, 2.0, 1.0),))  # not used: the impulse is given
    audio, _ = render_through(room, 0, 48000, seconds, t0, snr_db=20.0, ppm=0.0, rng=np.random.default_rng(5),
                              impulse=impulse)
    rx = StreamingReceiver(Codebook(), 48000, "m")
    rx.feed(audio)
    rep = rx.report()
    fit = rep.canonical_clock_fit
    t = t0 + 20.0
    err = fit.local_sample_at_epoch + t * fit.rate_hz - ((t - t0) * 48000 + paths[0][0])
    return err, fit.confidence, rep.response_profile.path


def test_a_direct_path_cancelled_by_a_floor_reflection_is_still_the_first_arrival():
    """Invariant: an early lobe 12-18 dB under a reflection cluster 1 ms later is the direct path, not a pre-echo.
    A floor reflection 4.8 samples behind the direct path cancels it in the band (opposite phase at 5 kHz) and two
    walls 40.6 samples behind add up (a speaker in a corner, from a stochastic-tail room of the sweep): the fit
    used to stay on the walls, 39 samples late, at confidence 0.67. (The floor reflection is closer than the band
    resolves, so the arrival is timed between the two: within 4.8 samples, not 40.)"""
    err, confidence, path = _decode_paths(((250.3, 1.0), (255.1, 0.97), (290.9, 0.93), (290.9, 0.93),
                                           (326.6, 0.9), (326.6, 0.9)))
    assert 0.0 <= err < 4.8, (err, confidence, path.notes)


def test_a_floor_reflection_a_resolution_behind_the_direct_path_is_a_path_of_its_own():
    """Invariant: a reflection in phase with the direct path, 4.07 samples (one half-Rayleigh spacing) behind it
    and 0.78 of it (the floor under a microphone 6.2 m from the speaker, from a stochastic-tail room of the sweep),
    is timed as two paths: the answer is the direct path within 0.25 sample, and the note says the two are close.
    The free path fit split that lobe with its phases 75 degrees apart, the merge rule took it for one coloured
    arrival, and the answer was 1.33 samples late."""
    err, confidence, path = _decode_paths(((250.3, 1.0), (254.37, 0.78)))
    assert abs(err) < 0.25, (err, path.notes)
    assert any("closer than the band resolves" in note for note in path.notes) and confidence < 0.75


def test_a_lock_on_the_tail_that_walks_back_to_the_direct_path_keeps_the_clock():
    """Invariant: moving the timing reference never moves the timing. The sweep's stochastic RT60 0.6 s room,
    microphone 5.0 m from the speaker at 10 dB (DRR -11 dB): the lock lands 78 ms late in the diffuse tail and the
    reference walks back to the direct path in six moves of 350-1500 samples. Each move used to cut the rake's
    late taps off the window; the timing stepped by 0.3 sample, unregistered, the clock fit read the step as
    0.29 ppm, and the answer was 0.31 sample off at the start of the 30 s (0.08 and 0.03 ppm since)."""
    from bench.sync_rooms import sweep_cases

    case = next(c for c in sweep_cases() if c.room.model == "stochastic" and c.room.rt60_s == 0.6
                and c.snr_db == 10.0 and abs(float(c.room.distances_m()[c.mic]) - 4.99) < 0.01)
    trial = room_trial(case.room, case.mic, snr_db=case.snr_db, ppm=case.ppm, seed=case.seed, baseline=False)
    assert trial.error_samples is not None and trial.rate_error_ppm is not None
    assert abs(trial.error_samples) < 0.2 and abs(trial.rate_error_ppm) < 0.1, (trial.error_samples,
                                                                                trial.rate_error_ppm)


def test_a_pre_echo_is_passed_over_and_costs_confidence():
    """Invariant: a lobe 22 dB under a path 1.25 ms after it (a noise suppressor's pre-echo) is not the first
    arrival; the answer is the later path, and confidence says that the earlier one might have been."""
    err, confidence, path = _decode_paths(((310.7, 1.0), (250.7, 10.0 ** (-22.0 / 20.0))))  # truth: the first
    assert abs(err) < 0.25, (err, path.notes)
    assert any("pre-echo" in note for note in path.notes) and confidence < 0.8, (confidence, path.notes)
