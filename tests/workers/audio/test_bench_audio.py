"""`mimir bench audio` runs end to end on a JACK dummy server and prints the agreed JSON shape."""

from __future__ import annotations

import json

import pytest

from workers.audio import jack

def test_bench_audio_document_shape():
    if jack.jack_tools_available():
        pytest.skip(f"{jack.jack_tools_available()} is not installed (apt-get install jackd2), so no JACK server")
    from bench import audio as bench_audio
    from bench.common import machine_info

    records = bench_audio.run(seconds=1.0, progress=lambda s: None, configs=((48000, 256),), rounds=1)
    doc = json.loads(json.dumps(bench_audio.document(records, machine_info())))
    assert set(doc) == {"bench", "machine", "results"} and doc["bench"] == "audio"
    clients = {r["client"] for r in doc["results"] if r["record"] == "callback"}
    assert clients == {"bare pass-through (sounddevice)", "bare pass-through (raw cffi)",
                       "mimir (ring write + metrics)", "jack_iodelay (C client)"}
    for r in doc["results"]:
        assert all(not isinstance(v, (dict, list)) for v in r.values()), f"not flat: {r}"
    mimir = next(r for r in doc["results"] if r.get("client") == "mimir (ring write + metrics)")
    assert mimir["callbacks"] > 100 and mimir["callback_p99_us"] > 0 and mimir["metrics_lost"] == 0
    assert {g["goal"] for g in doc["results"] if g["record"] == "goal"} == {"overhead_ratio_p99",
                                                                           "xruns_per_min_vs_c_client"}
    assert "goals:" in bench_audio.format_table(doc)
