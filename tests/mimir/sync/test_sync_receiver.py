"""Streaming receiver against known truth: render, impair with known offset/ppm, decode, compare.

Every trial draws a random canonical start (so a random sub-sample phase) and
compares the final fit with the exact truth of the impairment. Bounds are the
issue's goals where one applies.
"""


import msgspec
import numpy as np
import pytest

from mimir.sync import Codebook, ReceiverConfig, StreamingReceiver, WitnessEmitter
from mimir.sync import impair
from mimir.sync.trials import Condition, make_trial_audio, truth_local_sample


def _decode(audio, rate, block=1024, codebook=None, config=None):
    rx = StreamingReceiver(codebook or Codebook(), rate, "test", config=config)
    lock_at = None
    for k in range(0, audio.size, block):
        rx.feed(audio[k : k + block])
        if lock_at is None and rx.locked:
            lock_at = (k + block) / rate
    return rx, lock_at


def _span_errors(rx, truth, n_samples):
    t0, true_rate, drops = truth
    removed = sum(d[1] for d in drops)
    fit = rx.report().canonical_clock_fit
    first_local = float(drops[-1][0]) if drops else 0.0
    out = []
    for local in (first_local, float(n_samples)):
        t = t0 + (local + removed) / true_rate
        est = fit.local_sample_at_epoch + t * fit.rate_hz
        out.append(est - truth_local_sample(t, t0, true_rate, removed))
    return max(abs(e) for e in out), (fit.rate_hz / true_rate - 1) * 1e6


@pytest.mark.parametrize("ppm", [300.0, -300.0])
def test_headline_accuracy_at_0db_with_resampling(ppm):
    cond = Condition("t", "", ppm=ppm, snr_db=0.0)
    audio, truth = make_trial_audio(cond, np.random.default_rng(11 if ppm > 0 else 12))
    rx, lock_at = _decode(audio, 48000)
    assert rx.locked
    offset_err, rate_err_ppm = _span_errors(rx, truth, audio.size)
    assert offset_err <= 0.25, offset_err
    assert abs(rate_err_ppm) <= 0.2, rate_err_ppm
    assert lock_at is not None and lock_at <= 3.0
    rep = rx.report()
    assert rep.canonical_clock_fit.confidence > 0.8
    assert rep.health.anchors_accepted >= 130  # 30 s at 5 events/s, minus the lock time
    assert rep.health.discontinuities == 0


def test_locks_at_minus_10_db_at_44k1():
    cond = Condition("t", "", rate_hz=44100, ppm=-173.0, snr_db=-10.0, seconds=20.0)
    audio, truth = make_trial_audio(cond, np.random.default_rng(13))
    rx, _ = _decode(audio, 44100)
    assert rx.locked
    offset_err, rate_err_ppm = _span_errors(rx, truth, audio.size)
    assert offset_err <= 0.5 and abs(rate_err_ppm) <= 0.5


def test_results_do_not_depend_on_chunking():
    cond = Condition("t", "", ppm=120.0, snr_db=0.0, seconds=12.0)
    audio, _ = make_trial_audio(cond, np.random.default_rng(14))
    whole, _ = _decode(audio, 48000, block=audio.size)
    rng = np.random.default_rng(15)
    rx = StreamingReceiver(Codebook(), 48000, "test")
    at = 0
    while at < audio.size:
        n = int(rng.choice([1, 7, 64, 333, 1024, 4800, 30000]))
        rx.feed(audio[at : at + n])
        at += n
    a, b = whole.report(), rx.report()
    assert a.anchors and [x.local_sample for x in a.anchors] == [x.local_sample for x in b.anchors]
    assert a.canonical_clock_fit == b.canonical_clock_fit
    assert a.health == b.health


def test_strided_frames_decode_as_gathered_ones():
    """Invariant: at a whole-sample hop the frames are a strided view of the PCM, and decode exactly as gathered."""
    cond = Condition("t", "", ppm=80.0, snr_db=0.0, seconds=8.0)
    audio, _ = make_trial_audio(cond, np.random.default_rng(16))
    strided, _ = _decode(audio, 48000)
    assert strided._hop_samples == 150
    gathered = StreamingReceiver(Codebook(), 48000, "test")
    gathered._hop_samples = 0  # the general path (a hop of 137.8125 samples at 44.1 kHz)
    for k in range(0, audio.size, 1024):
        gathered.feed(audio[k : k + 1024])
    a, b = strided.report(), gathered.report()
    assert a.anchors and a.anchors == b.anchors and a.canonical_clock_fit == b.canonical_clock_fit


def test_no_witness_means_no_lock_and_no_anchors():
    rate = 48000
    rng = np.random.default_rng(16)
    n = 60 * rate
    power = 0.01 * 0.23
    y = impair.mix_at_sir(np.zeros(n), impair.music_like(n, rate, rng), -6.0, power)
    y = impair.mix_at_sir(y, impair.speech_like(n, rate, rng), -6.0, power)
    y = impair.add_inband_noise(y, rate, 0.0, (2000.0, 8000.0), power, rng).astype(np.float32)
    rx, lock_at = _decode(y, rate, block=4096)
    rep = rx.report()
    assert lock_at is None and not rep.locked
    assert rep.anchors == [] and rep.canonical_clock_fit.confidence == 0.0
    assert rep.health.locks == 0 and rep.health.proposals > 0
    assert rx.canonical_seconds_at(1000) is None


def test_wrong_codebook_does_not_lock():
    cond = Condition("t", "", ppm=60.0, snr_db=20.0, witness="wrong")
    audio, _ = make_trial_audio(cond, np.random.default_rng(17))
    rx, lock_at = _decode(audio, 48000)
    assert lock_at is None and rx.report().health.anchors_accepted == 0
    # and the right codebook does lock on the same audio
    right, _ = _decode(audio, 48000, codebook=Codebook.from_id("someone-else", seed=99))
    assert right.locked


def test_dropped_blocks_are_found_and_the_fit_recovers():
    cond = Condition("t", "", ppm=150.0, snr_db=10.0, drops=3)
    audio, truth = make_trial_audio(cond, np.random.default_rng(18))
    rx, _ = _decode(audio, 48000)
    rep = rx.report()
    drops = truth[2]
    assert rep.health.discontinuities == len(drops)
    for found, (where, size) in zip(rep.discontinuities, drops):
        assert found.jump_samples == pytest.approx(-size, abs=0.5)
        assert abs(found.local_sample - where) < 0.3 * 48000
    offset_err, rate_err_ppm = _span_errors(rx, truth, audio.size)
    assert offset_err <= 0.25 and abs(rate_err_ppm) <= 0.5


def test_clock_reset_and_gap_via_start_sample():
    rate = 48000
    em = WitnessEmitter(Codebook(), rate, 50.0, level_dbfs=-10.0)
    rx = StreamingReceiver(Codebook(), rate, "test")
    x = em.render(0, 8 * rate)
    rx.feed(x)
    assert rx.locked
    at_epoch = rx.report().canonical_clock_fit.local_sample_at_epoch
    # a forward gap the caller knows about: the local clock is still the same line
    rx.feed(em.render(9 * rate, 6 * rate), start_sample=9 * rate)
    rep = rx.report()
    assert rep.health.gap_samples == rate and rep.health.discontinuities == 0
    assert rep.canonical_clock_fit.local_sample_at_epoch == pytest.approx(at_epoch, abs=0.05)
    # the local counter restarts at 0 while canonical time goes on: a new segment
    rx.feed(em.render(20 * rate, 8 * rate), start_sample=0)
    rep = rx.report()
    assert rep.discontinuities[-1].kind == "clock_reset"
    assert rx.locked
    assert rep.canonical_clock_fit.local_sample_at_epoch == pytest.approx(-70.0 * rate, abs=0.05)
    assert len(rep.segments) == 2


def test_non_finite_samples_are_counted_and_survived():
    cond = Condition("t", "", ppm=-40.0, snr_db=10.0, seconds=15.0)
    audio, truth = make_trial_audio(cond, np.random.default_rng(19))
    audio[1000:1100] = np.nan
    audio[200000:200010] = np.inf
    rx, _ = _decode(audio, 48000)
    assert rx.report().health.non_finite_samples == 110
    assert rx.locked and _span_errors(rx, truth, audio.size)[0] < 0.25


def test_mapping_both_ways_matches_truth():
    cond = Condition("t", "", ppm=210.0, snr_db=5.0, seconds=15.0)
    audio, (t0, true_rate, _) = make_trial_audio(cond, np.random.default_rng(20))
    rx, _ = _decode(audio, 48000)
    for local in (0.0, 333333.25, float(audio.size)):
        t = rx.canonical_seconds_at(local)
        assert abs((t - t0) * true_rate - local) < 0.25
        assert rx.local_sample_at(t) == pytest.approx(local, abs=1e-6)


def test_confidence_tracks_error():
    """Higher confidence must mean smaller error: compare a clean and a -15 dB trial."""
    results = []
    for snr, seed in ((30.0, 21), (-15.0, 22)):
        cond = Condition("t", "", ppm=-90.0, snr_db=snr, seconds=20.0)
        audio, truth = make_trial_audio(cond, np.random.default_rng(seed))
        rx, _ = _decode(audio, 48000)
        assert rx.locked
        rep = rx.report().canonical_clock_fit
        err = _span_errors(rx, truth, audio.size)[0]
        results.append((rep.confidence, err, rep.offset_sigma_samples))
    (c_hi, e_hi, s_hi), (c_lo, e_lo, s_lo) = results
    assert c_hi > c_lo > 0.3 and e_hi < e_lo
    # the predicted sigma is honest: the error is within 4 sigma
    assert e_hi <= 4 * s_hi + 0.01 and e_lo <= 4 * s_lo + 0.01


def test_state_is_bounded():
    cfg = ReceiverConfig(fit_max_anchors=40, report_max_anchors=8)
    cond = Condition("t", "", ppm=30.0, snr_db=10.0, seconds=25.0)
    audio, truth = make_trial_audio(cond, np.random.default_rng(23))
    rx, _ = _decode(audio, 48000, config=cfg)
    rep = rx.report()
    assert rep.canonical_clock_fit.anchor_count == 40 and len(rep.anchors) == 8
    assert rep.health.anchors_accepted > 100
    assert rx._pcm.size <= 7 * 48000 and rx.ring.capacity <= 5 * 5 * 64
    assert _span_errors(rx, truth, audio.size)[0] < 0.5


def test_report_json_uses_the_spec_field_names():
    em = WitnessEmitter(Codebook(), 48000, 3.0)
    rx = StreamingReceiver(Codebook(), 48000, "phone-left")
    rx.feed(em.render(0, 6 * 48000))
    doc = msgspec.json.decode(msgspec.json.encode(rx.report()))
    assert doc["sourceId"] == "phone-left" and doc["codebookId"] == "mimir-default"
    assert set(doc["canonicalClockFit"]) >= {"localSampleAtEpoch", "effectiveSampleRate", "confidence", "meanAbsErrorSamples"}
    assert doc["canonicalClockFit"]["localSampleAtEpoch"] == pytest.approx(-3.0 * 48000, abs=0.05)
    anchor = doc["anchors"][0]
    assert set(anchor) >= {"eventIndex", "canonicalSeconds", "localSample", "confidence", "symbols"}
    assert len(anchor["symbols"]) == 3
    assert set(doc["health"]) >= {"samplesConsumed", "proposals", "candidatesScored", "anchorsAccepted",
                                  "anchorsRejected", "locks", "relocks", "discontinuities"}
    bands = doc["responseProfile"]["bands"]
    assert len(bands) == 8 and all(abs(b["gainDb"]) < 0.5 for b in bands)
    assert len(doc["responseProfile"]["symbols"]) == 32


def test_response_profile_sees_a_band_limit():
    cond = Condition("t", "", ppm=0.0, snr_db=30.0, band_hz=(None, 6000.0), seconds=10.0)
    audio, _ = make_trial_audio(cond, np.random.default_rng(24))
    rx, _ = _decode(audio, 48000)
    gains = [b.gain_db for b in rx.report().response_profile.bands]
    assert gains[-1] < gains[0] - 6.0  # 7.25-8 kHz is well above a 6 kHz low-pass


@pytest.mark.skipif(not impair.codec_available("opus"), reason="ffmpeg with libopus is not installed")
def test_opus_64k_within_one_sample():
    cond = Condition("t", "", ppm=200.0, snr_db=20.0, codec=("opus", 64), seconds=15.0)
    audio, truth = make_trial_audio(cond, np.random.default_rng(25))
    rx, _ = _decode(audio, 48000)
    assert rx.locked and _span_errors(rx, truth, audio.size)[0] <= 1.0


@pytest.mark.parametrize("rate, usable", [(8000, 2), (16000, 6), (96000, 8)])
def test_other_rates_lock_and_say_what_they_lose(rate, usable):
    cond = Condition("t", "", rate_hz=rate, ppm=150.0, snr_db=10.0, seconds=15.0)
    audio, truth = make_trial_audio(cond, np.random.default_rng(26))
    rx, _ = _decode(audio, rate)
    assert rx.locked and _span_errors(rx, truth, audio.size)[0] < 0.25
    warned = any(f"only {usable} of 8" in w for w in rx.report().warnings)
    assert warned == (usable < 8)
