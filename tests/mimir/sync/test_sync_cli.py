"""`mimir codebook render` and `mimir decode` command functions: output, messages, exit codes."""

import json

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
