"""Seed 003's optional receiver inputs: path calibration (fit at the emission) and band limits (help, or refusal)."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from mimir.sync import Codebook, StreamingReceiver, WitnessEmitter, impair
from mimir.sync.calibration import (PULSE_POST_SAMPLES, PULSE_PRE_SAMPLES, BandLimits, PathCalibration, PathPulse,
                                    parse_band, parse_channel_paths, path_from_options)
from mimir.sync.codebook import CodebookSpec

RATE = 48000


def test_path_calibration_struct_validates_and_round_trips():
    path = PathCalibration(distance_m=3.43, delay_s=0.00025)
    path.validate()
    assert path.path_delay_s == pytest.approx(0.01 + 0.00025)
    assert msgspec.json.decode(msgspec.json.encode(path), type=PathCalibration) == path
    for bad, words in ((PathCalibration(distance_m=-1.0), "distance"), (PathCalibration(delay_s=20.0), "delay"),
                       (PathCalibration(speed_of_sound_m_s=50.0), "speed of sound")):
        with pytest.raises(ValueError, match=words):
            bad.validate()
    with pytest.raises(msgspec.ValidationError):  # a typo in a config file is an error, not a silent default
        msgspec.json.decode(b'{"distance": 3}', type=PathCalibration)
    assert path_from_options(None, None) is None
    assert path_from_options(None, 1.5).path_delay_s == pytest.approx(0.0015)


def test_a_path_pulse_rides_in_the_calibration_and_is_checked():
    n = PULSE_PRE_SAMPLES + PULSE_POST_SAMPLES
    pulse = PathPulse(rate_hz=48000.0, band_hz=(2000.0, 8000.0), re=[0.5] * n, im=[0.0] * n)
    path = PathCalibration(distance_m=2.0, delay_s=0.0003, pulse=pulse)
    path.validate()
    assert msgspec.json.decode(msgspec.json.encode(path), type=PathCalibration) == path
    assert np.allclose(pulse.taps(), 0.5)
    for bad, words in ((msgspec.structs.replace(pulse, re=[0.5]), "needs 144 taps"),
                       (msgspec.structs.replace(pulse, re=[0.0] * n), "not all zero"),
                       (msgspec.structs.replace(pulse, band_hz=(8000.0, 2000.0)), "band"),
                       (msgspec.structs.replace(pulse, rate_hz=0.0), "rate")):
        with pytest.raises(ValueError, match=words):
            PathCalibration(pulse=bad).validate()
    # a receiver refuses a pulse measured at another rate or band, at construction, in one line
    with pytest.raises(ValueError, match="measure it again at this rate and band"):
        StreamingReceiver(Codebook(), 44100, "m", path=PathCalibration(pulse=pulse))
    with pytest.raises(ValueError, match="measure it again"):
        StreamingReceiver(Codebook(), RATE, "m", path=PathCalibration(pulse=pulse), band=BandLimits(300.0, 5000.0))


def test_band_parsing_and_the_codebook_check():
    assert parse_band("300-3400") == BandLimits(300.0, 3400.0)
    assert parse_band(" 0.3k - 3.4k ") == BandLimits(300.0, 3400.0)
    for text in ("abc", "3400-300", "300", "-5-10"):
        with pytest.raises(ValueError):
            parse_band(text)
    spec = CodebookSpec()
    BandLimits(300.0, 3400.0).validate(spec, RATE)  # 2000-3500 Hz: two sub-bands, enough
    with pytest.raises(ValueError, match="holds 1 of the witness's 8 sub-bands"):
        BandLimits(300.0, 2500.0).validate(spec, RATE)
    with pytest.raises(ValueError, match="holds 0"):
        BandLimits(9000.0, 12000.0).validate(spec, RATE)


def test_a_calibrated_fit_refers_to_the_emission():
    """A pure delay of 3.2 m: uncalibrated the fit is 447.8 samples late; calibrated it is at the emission."""
    t0, delay_samples = 777.25, 3.2 / 343.0 * RATE
    x = WitnessEmitter(Codebook(), RATE, t0, level_dbfs=-10).render(0, 15 * RATE + 600).astype(np.float64)
    spectrum = np.fft.rfft(x)
    y = np.fft.irfft(spectrum * np.exp(-2j * np.pi * np.fft.rfftfreq(x.size) * delay_samples), x.size)[: 15 * RATE]
    y = y.astype(np.float32)
    for path, want in ((None, delay_samples), (PathCalibration(distance_m=3.2), 0.0)):
        rx = StreamingReceiver(Codebook(), RATE, "t", path=path)
        rx.feed(y)
        fit = rx.report().canonical_clock_fit
        at_t0 = fit.local_sample_at_epoch + t0 * fit.rate_hz
        assert at_t0 == pytest.approx(want, abs=0.05)
        assert fit.path_delay_s == (0.0 if path is None else pytest.approx(3.2 / 343.0))
        assert rx.local_sample_at(t0) == pytest.approx(want, abs=0.05)
        assert rx.canonical_seconds_at(want) == pytest.approx(t0, abs=1e-6)


def _telephone(seed: int):
    """A voice path: 300-3400 Hz, in-band noise, and loud noise above 3.6 kHz that the path also carries."""
    rng = np.random.default_rng(seed)
    t0 = float(rng.uniform(10, 1000))
    x = WitnessEmitter(Codebook(), RATE, t0, level_dbfs=-10).render(0, 20 * RATE).astype(np.float64)
    power = float(np.mean(x**2))
    y = impair.add_inband_noise(impair.band_limit(x, RATE, 300.0, 3400.0), RATE, 3.0, (2000.0, 8000.0), power, rng)
    hiss = impair.band_limit(rng.standard_normal(y.size), RATE, 3600.0, 8000.0)
    return (y + hiss * np.sqrt(10 * power / np.mean(hiss**2))).astype(np.float32), t0


@pytest.mark.parametrize("seed", [0, 2])
def test_band_limits_help_a_band_limited_receiver(seed):
    audio, t0 = _telephone(seed)
    results = []
    for band in (None, BandLimits(300.0, 3400.0)):
        rx = StreamingReceiver(Codebook(), RATE, "phone", band=band)
        lock_at = None
        for k in range(0, audio.size, 1024):
            rx.feed(audio[k : k + 1024])
            if lock_at is None and rx.locked:
                lock_at = (k + 1024) / RATE
        fit = rx.report().canonical_clock_fit
        err = abs(fit.local_sample_at_epoch + (t0 + 10) * fit.rate_hz - 10 * RATE)
        results.append((lock_at, rx.report().health.anchors_accepted, err, fit.confidence))
        if err > 48:  # never confidently wrong, with or without band limits
            assert fit.confidence <= 0.5
    (lock_off, anchors_off, err_off, _), (lock_on, anchors_on, err_on, _) = results
    assert lock_on is not None and lock_on <= 3.0 and lock_on < lock_off
    assert anchors_on >= 80 and anchors_on > 2 * anchors_off
    assert err_on <= 1.0 and err_on < err_off
    assert any("band limits 300-3400 Hz" in w for w in rx.report().warnings)


def test_a_band_that_cannot_hold_the_codebook_is_refused():
    with pytest.raises(ValueError, match="decoding needs at least 2"):
        StreamingReceiver(Codebook(), RATE, "t", band=BandLimits(300.0, 2500.0))


def test_worker_channel_paths_parse(tmp_path):
    paths = parse_channel_paths(["1:3.2", "2:5:0.25"])
    assert paths[1] == PathCalibration(distance_m=3.2) and paths[2].delay_s == pytest.approx(0.00025)
    for bad in (["x"], ["1:2:3:4"], ["1:-2"], ["1:2", "1:3"]):
        with pytest.raises(ValueError):
            parse_channel_paths(bad)
    # a channel's pulse joins its path, or makes one; the file name keeps every colon after the channel's
    n = PULSE_PRE_SAMPLES + PULSE_POST_SAMPLES
    pulse = PathPulse(rate_hz=48000.0, band_hz=(2000.0, 8000.0), re=[0.5] * n, im=[0.0] * n)
    file = tmp_path / "dry:1.json"
    file.write_bytes(msgspec.json.encode(pulse))
    paths = parse_channel_paths(["1:3.2"], [f"1:{file}", f"3:{file}"])
    assert paths[1] == PathCalibration(distance_m=3.2, pulse=pulse) and paths[3] == PathCalibration(pulse=pulse)
    for bad, words in ((["x"], "CHANNEL:FILE"), (["1"], "CHANNEL:FILE"), (["1:"], "CHANNEL:FILE"),
                       ([f"1:{file}", f"1:{file}"], "given twice"), ([f"-1:{file}"], "negative"),
                       ([f"1:{tmp_path / 'missing.json'}"], "cannot read the path pulse")):
        with pytest.raises(ValueError, match=words):
            parse_channel_paths([], bad)
