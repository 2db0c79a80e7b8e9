"""`mimir codebook render` and `mimir decode` command functions: output, messages, exit codes."""

import json

import msgspec
import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from mimir.sync import Codebook, WitnessEmitter
from mimir.sync.cli import codebook_app, decode

app = typer.Typer()
app.add_typer(codebook_app, name="codebook")
app.command("decode")(decode)

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_render_then_decode_json_recovers_the_start(tmp_path):
    out = tmp_path / "w.wav"
    r = _run("codebook", "render", out, "--seconds", 8, "--rate", 44100, "--start", 1234.5678, "--seed", 4)
    assert r.exit_code == 0, r.output
    data, rate = sf.read(out)
    assert rate == 44100 and data.ndim == 1 and data.size == 8 * 44100
    r = _run("decode", out, "--seed", 4, "--json", "--source-id", "rig-a")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)  # stdout is only the JSON document
    fit = doc["canonicalClockFit"]
    assert doc["sourceId"] == "rig-a" and doc["locked"]
    assert fit["localSampleAtEpoch"] == pytest.approx(-1234.5678 * 44100, abs=0.05)
    assert fit["effectiveSampleRate"] == pytest.approx(44100, abs=0.01)
    assert fit["confidence"] > 0.9


def test_rendered_file_matches_the_emitter(tmp_path):
    out = tmp_path / "w.wav"
    assert _run("codebook", "render", out, "--seconds", 2.5, "--rate", 48000, "--start", 7.25).exit_code == 0
    data, _ = sf.read(out, dtype="float32")
    want = WitnessEmitter(Codebook(), 48000, 7.25, level_dbfs=-20.0).render(0, data.size)
    assert np.array_equal(data, want)


def test_wrong_codebook_is_a_clean_no_lock(tmp_path):
    out = tmp_path / "w.wav"
    _run("codebook", "render", out, "--seconds", 10, "--rate", 48000, "--codebook-id", "room-b")
    r = _run("decode", out, "--json")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert not doc["locked"] and doc["anchors"] == [] and doc["canonicalClockFit"]["confidence"] == 0.0
    assert any("no witness" in w for w in doc["warnings"])
    assert "no witness" in r.stderr


def test_channel_choice(tmp_path):
    rate = 48000
    witness = WitnessEmitter(Codebook(), rate, 2.0, level_dbfs=-10.0).render(0, 8 * rate)
    noise = np.random.default_rng(0).standard_normal(witness.size).astype(np.float32) * 0.01
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([noise, witness], axis=1), rate, subtype="FLOAT")
    assert json.loads(_run("decode", path, "--channel", 1, "--json").stdout)["locked"]
    assert not json.loads(_run("decode", path, "--channel", 0, "--json").stdout)["locked"]
    r = _run("decode", path, "--channel", 2)
    assert r.exit_code == 2 and "channel 2" in r.stderr


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("empty", lambda rate: np.zeros(0, dtype=np.float32), "no samples"),
        ("short", lambda rate: WitnessEmitter(Codebook(), rate, 0.0).render(0, rate // 2), "only 0.50 s"),
        ("silent", lambda rate: np.zeros(5 * rate, dtype=np.float32), "digital silence"),
        ("clipped", lambda rate: np.clip(WitnessEmitter(Codebook(), rate, 0.0, level_dbfs=6.0).render(0, 5 * rate), -1, 1), "clipped"),
        ("nan", lambda rate: np.where(np.arange(5 * rate) % 997 == 0, np.nan, WitnessEmitter(Codebook(), rate, 0.0).render(0, 5 * rate)).astype(np.float32), "NaN or infinite"),
    ],
)
def test_odd_but_readable_input_exits_zero_with_a_message(tmp_path, name, make, message):
    rate = 48000
    path = tmp_path / f"{name}.wav"
    sf.write(path, make(rate), rate, subtype="FLOAT")
    r = _run("decode", path, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert any(message in w for w in doc["warnings"]), doc["warnings"]
    assert message in r.stderr
    if name in ("clipped", "nan"):
        assert doc["locked"]  # still decodable
    else:
        assert not doc["locked"] and doc["canonicalClockFit"]["confidence"] == 0.0


def test_unreadable_input_exits_non_zero(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio at all")
    for path in (bad, tmp_path / "missing.wav", tmp_path):
        r = _run("decode", path, "--json")
        assert r.exit_code == 2
        assert r.stdout == "" and "cannot read" in r.stderr


def test_render_rejects_bad_arguments(tmp_path):
    assert _run("codebook", "render", tmp_path / "x.wav", "--seconds", 0, "--rate", 48000).exit_code == 2
    assert _run("codebook", "render", tmp_path / "x.wav", "--seconds", 1, "--rate", 0).exit_code == 2


def test_a_pulse_measured_once_calibrates_later_decodes(tmp_path):
    """`--measure-pulse` on a dry recording (speaker + microphone, no room) writes the pulse; `--path-pulse` with
    the delay measured with it in place maps the same recording to the emission."""
    from mimir.sync import impair
    from mimir.sync.calibration import read_pulse
    from mimir.sync.rooms import MICROPHONE, SPEAKER, transducer_filter

    rate, t0 = 48000, 50.0
    x = WitnessEmitter(Codebook(), rate, t0, level_dbfs=-10).render(0, 20 * rate).astype(np.float64)
    dry = transducer_filter(transducer_filter(x, rate, SPEAKER), rate, MICROPHONE)
    dry = impair.add_inband_noise(dry, rate, 30.0, (2000.0, 8000.0), float(np.mean(dry**2)), np.random.default_rng(1))
    sf.write(tmp_path / "dry.wav", dry.astype(np.float32), rate, subtype="FLOAT")
    r = _run("decode", tmp_path / "dry.wav", "--measure-pulse", tmp_path / "pulse.json")
    assert r.exit_code == 0, r.output
    pulse = read_pulse(str(tmp_path / "pulse.json"))
    assert pulse.rate_hz == rate and pulse.band_hz == (2000.0, 8000.0)
    r = _run("decode", tmp_path / "dry.wav", "--path-pulse", tmp_path / "pulse.json", "--json")
    fit = json.loads(r.stdout)["canonicalClockFit"]
    delay_samples = fit["localSampleAtEpoch"] + t0 * fit["effectiveSampleRate"]
    assert 10 < delay_samples < 25  # the transducers' delay in the witness band
    r = _run("decode", tmp_path / "dry.wav", "--path-pulse", tmp_path / "pulse.json", "--path-delay-ms",
             delay_samples / rate * 1e3, "--json")
    fit = json.loads(r.stdout)["canonicalClockFit"]
    assert abs(fit["localSampleAtEpoch"] + t0 * fit["effectiveSampleRate"]) < 0.01  # at the emission


def test_a_bad_path_pulse_is_one_line_and_exit_2(tmp_path):
    from mimir.sync.calibration import PULSE_POST_SAMPLES, PULSE_PRE_SAMPLES, PathPulse

    wav = tmp_path / "w.wav"
    sf.write(wav, WitnessEmitter(Codebook(), 44100, 10.0).render(0, 3 * 44100), 44100, subtype="FLOAT")
    n = PULSE_PRE_SAMPLES + PULSE_POST_SAMPLES
    good = PathPulse(rate_hz=48000.0, band_hz=(2000.0, 8000.0), re=[1.0] + [0.0] * (n - 1), im=[0.0] * n)
    cases = {
        "missing.json": (None, "cannot read the path pulse"),
        "garbage.json": (b"{not json", "is not a path pulse"),
        "short.json": (msgspec.json.encode(msgspec.structs.replace(good, re=[1.0], im=[0.0])), "needs 144 taps"),
        "zero.json": (msgspec.json.encode(msgspec.structs.replace(good, re=[0.0] * n)), "not all zero"),
        "rate.json": (msgspec.json.encode(good), "measure it again at this rate and band"),  # 48 kHz pulse, 44.1k file
    }
    for name, (content, message) in cases.items():
        f = tmp_path / name
        if content is not None:
            f.write_bytes(content)
        r = _run("decode", wav, "--path-pulse", f)
        assert r.exit_code == 2, (name, r.output)
        assert message in r.output and "Traceback" not in r.output, (name, r.output)
        assert len([line for line in r.output.splitlines() if line.startswith("error:")]) == 1


def test_measure_pulse_without_a_witness_is_one_line_and_exit_2(tmp_path):
    wav = tmp_path / "noise.wav"
    sf.write(wav, np.random.default_rng(0).standard_normal(5 * 48000).astype(np.float32) * 0.1, 48000)
    r = _run("decode", wav, "--measure-pulse", tmp_path / "p.json")
    assert r.exit_code == 2 and "no witness arrival" in r.output and not (tmp_path / "p.json").exists()
