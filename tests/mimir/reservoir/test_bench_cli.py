"""``mimir bench reservoir --quick --json``: one JSON document on stdout, progress on stderr, no leftovers."""

from __future__ import annotations

import json

from bench.cli import bench_reservoir, load
from ringbuf.segment import list_segments


def test_quick_json_run_prints_one_document(capsys):
    bench_reservoir(json_out=True, quick=True)
    out, err = capsys.readouterr()
    doc = json.loads(out)  # the whole of stdout is one document
    assert doc["bench"] == "reservoir"
    assert {"cpu_model", "cpu_cores", "python", "numpy", "os"} <= set(doc["machine"])
    metrics = {r["metric"] for r in doc["results"]}
    assert {"push_single", "push_batched", "read_view_index", "latest_for_sensor", "read_total_index"} <= metrics
    windows = {r.get("window_samples") for r in doc["results"] if r.get("impl") == "naive"}
    assert windows == {1_000, 10_000, 100_000}
    flat = [r for r in doc["results"] if r.get("summary") == "flatness"]
    assert flat and all("ratio_100k_over_1k" in r for r in flat)
    assert "reservoir bench: done" in err
    bench = load("reservoir")
    assert list_segments(bench.RIG) == []  # only the bench's own rig: other rigs may run meanwhile
