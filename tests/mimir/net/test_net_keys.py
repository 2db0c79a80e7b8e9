"""`mimir keys generate|trust`: safe permissions, no silent overwrite, config entries that parse."""

from __future__ import annotations

import os
import stat

import pytest
import zmq.auth
from typer.testing import CliRunner

from mimir.config import load_config
from mimir.net.__main__ import app
from mimir.net.keys import KeyFileError, load_public_key, load_secret_key

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_generate_writes_a_private_secret_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "phone-left"
    r = _run("keys", "generate", "--out", out)
    assert r.exit_code == 0, r.output
    secret, public = tmp_path / "phone-left.key_secret", tmp_path / "phone-left.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    pair = load_secret_key(secret)
    assert load_public_key(public) == pair.public
    assert pair.public in r.stdout
    # ZeroMQ's own loader reads the same files
    assert zmq.auth.load_certificate(str(secret)) == (pair.public_bytes, pair.secret_bytes)
    r = _run("keys", "generate", "--out", out)
    assert r.exit_code == 2 and "already exists" in r.output
    assert load_secret_key(secret).secret == pair.secret
    assert _run("keys", "generate", "--out", out, "--force").exit_code == 0
    assert load_secret_key(secret).secret != pair.secret
    assert _run("keys", "generate", "--out", tmp_path / "nope" / "x").exit_code == 2


def test_loading_refuses_unsafe_or_broken_secret_files(tmp_path):
    _run("keys", "generate", "--out", tmp_path / "k")
    secret = tmp_path / "k.key_secret"
    os.chmod(secret, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_secret_key(secret)
    os.chmod(secret, 0o600)
    text = secret.read_text()
    other = tmp_path / "other.key_secret"
    _run("keys", "generate", "--out", tmp_path / "other")
    mixed = text.replace(load_public_key(secret), load_public_key(other))
    secret.write_text(mixed)
    with pytest.raises(KeyFileError, match="does not belong"):
        load_secret_key(secret)
    with pytest.raises(KeyFileError, match="no such"):
        load_public_key(tmp_path / "missing.key")
    (tmp_path / "junk.key").write_text("hello\n")
    with pytest.raises(KeyFileError, match="no public-key"):
        load_public_key(tmp_path / "junk.key")


def test_trust_prints_and_appends_valid_entries(tmp_path):
    _run("keys", "generate", "--out", tmp_path / "raven")
    _run("keys", "generate", "--out", tmp_path / "phone")
    r = _run("keys", "trust", tmp_path / "raven.key", "--source-id", "raven", "--trust", "trusted-evidence")
    assert r.exit_code == 0
    assert '[[network.sources]]' in r.stdout and 'trust = "trusted-evidence"' in r.stdout
    cfg = tmp_path / "rig.toml"
    cfg.write_text('rig = "lab"\n[network]\nlisten = "tcp://127.0.0.1:5591"\n')
    assert _run("keys", "trust", tmp_path / "raven.key", "--source-id", "raven", "--config", cfg).exit_code == 0
    assert _run("keys", "trust", tmp_path / "phone.key", "--source-id", "phone-left", "--trust",
                "candidate-evidence", "--config", cfg).exit_code == 0
    loaded = load_config(cfg)
    assert [(s.source_id, s.trust) for s in loaded.network.sources] == [("raven", "observe-only"),
                                                                         ("phone-left", "candidate-evidence")]
    assert loaded.network.sources[0].public_key == load_public_key(tmp_path / "raven.key")
    before = cfg.read_text()
    r = _run("keys", "trust", tmp_path / "raven.key", "--source-id", "raven2", "--config", cfg)
    assert r.exit_code == 2 and "already trusts this key" in r.output
    r = _run("keys", "trust", tmp_path / "phone.key", "--source-id", "raven", "--config", cfg)
    assert r.exit_code == 2 and "already lists source" in r.output
    assert _run("keys", "trust", tmp_path / "phone.key", "--source-id", "x", "--trust", "root").exit_code == 2
    assert _run("keys", "trust", tmp_path / "phone.key", "--source-id", "bad id").exit_code == 2
    assert cfg.read_text() == before
