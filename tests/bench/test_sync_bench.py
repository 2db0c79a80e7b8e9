"""`mimir bench sync` through the real CLI wiring: the JSON document's shape, progress on stderr, bad --only.

One condition only (5 trials of 30 s); the whole matrix and the rooms are
the benchmark's, not a test's. No speed is asserted.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bench.sync import format_table
from mimir_cli.app import app

runner = CliRunner()


def test_json_document_shape():
    r = runner.invoke(app, ["bench", "sync", "--json", "--only", "clean"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # stdout is only the JSON document
    assert doc["bench"] == "sync" and set(doc["machine"]) >= {"cpu_model", "python", "numpy", "scipy", "ffmpeg_opus"}
    assert "rooms" not in doc
    (rec,) = doc["results"]
    for key in ("condition", "lock_rate", "offset_error_samples_p50", "rate_error_ppm_p50", "time_to_lock_s_p50",
                "x_realtime_min", "baseline_offset_error_samples_p50"):
        assert key in rec
    assert all(not isinstance(v, (dict, list)) for v in rec.values())  # flat
    assert rec["condition"] == "clean" and rec["trials"] == 5
    assert rec["lock_rate"] == 1.0 and rec["offset_error_samples_max"] < 0.25
    assert r.stderr.count("clean trial") == 5  # progress went to stderr, one line per trial
    table = format_table(doc).splitlines()
    assert table[0].startswith("| condition |") and table[2].startswith("| clean | 48k | 5 | 100% |")


def test_an_unknown_condition_is_one_line_and_exit_2():
    r = runner.invoke(app, ["bench", "sync", "--only", "clean", "--only", "nosuch"])
    assert r.exit_code == 2
    assert r.stdout == "" and r.stderr.count("\n") == 1
    assert r.stderr.startswith("mimir bench sync: unknown --only nosuch; choose from nodrift, clean,")
    assert "rooms" in r.stderr
