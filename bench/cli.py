"""``mimir bench ...``: one typer command function per benchmark, wired by :mod:`mimir_cli.app`.

Every benchmark body lives in ``bench/<name>.py`` and is imported only when
its command runs. Progress goes to stderr; with ``--json`` stdout holds
exactly one JSON document ``{"bench": NAME, "machine": {...}, "results": [...]}``.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = [
    "bench_rings", "bench_reservoir", "bench_pipeline", "bench_cameras", "bench_audio", "bench_receivers",
    "bench_take", "bench_gpu", "bench_consumer", "bench_snapshot", "bench_sync", "bench_record", "load", "finite",
]

JsonOut = Annotated[bool, typer.Option("--json", help="Print only one JSON document on stdout.")]


def load(name: str):
    """Import ``bench.<name>`` (lazily: a benchmark pulls in its peers).

    A benchmark that does not run on this OS says so in one line (exit 2).
    """
    from bench.common import UnsupportedPlatform

    try:
        return importlib.import_module(f"bench.{name}")
    except UnsupportedPlatform as exc:
        typer.echo(f"mimir bench {name}: {exc}", err=True)
        raise typer.Exit(2) from None


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def finite(value):
    """JSON has no NaN or infinity: map them to null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _machine() -> dict:
    return load("common").machine_info()


def bench_rings(
    quick: Annotated[bool, typer.Option("--quick", help="Fewer items and latency samples; under a minute.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Throughput, 1 kHz latency and reader CPU of the ring vs multiprocessing Queue/Pipe, faster-fifo, iceoryx2.

    Exit status 1 when a transport failed to deliver every item it sent (a
    correctness failure); goals missed on a busy machine do not change it.
    """
    rings = load("rings")
    records = rings.run(quick, progress=_progress)
    doc = finite(rings.document(records, _machine()))
    if json_out:
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        print(rings.format_table(doc))
    if any(r.get("complete") is False for r in doc["results"]):
        raise typer.Exit(1)


def bench_reservoir(
    json_out: JsonOut = False,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer pushes and queries (seconds instead of ~10).")] = False,
) -> None:
    """Push rates (single, typed, batched) and O(1) query latency at 1k/10k/100k samples vs a filtered scan."""
    reservoir = load("reservoir")
    records = reservoir.run(quick, progress=_progress)
    if json_out:
        sys.stdout.write(json.dumps({"bench": "reservoir", "machine": _machine(), "results": records},
                                    allow_nan=False) + "\n")
    else:
        print(reservoir.format_table(records))


def bench_pipeline(
    seconds: Annotated[float, typer.Option("--seconds", min=1.0, help="Measured seconds per workload (after a warm-up).")] = 60.0,
    workload: Annotated[str, typer.Option("--workload", help="default | ps3eye | idle | all")] = "default",
    load_procs: Annotated[int, typer.Option("--load", min=0, help="Busy processes beside the rig (compared with the same run unloaded).")] = 0,
    json_out: JsonOut = False,
) -> None:
    """The whole rig under the real supervisor: loss, supervisor CPU (vs the floor), index latency, rates."""
    pipeline = load("pipeline")
    try:
        records = pipeline.run(seconds, workload=workload, load_procs=load_procs, progress=_progress)
    except ValueError as exc:
        typer.echo(f"mimir bench pipeline: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_out:
        sys.stdout.write(json.dumps({"bench": "pipeline", "machine": _machine(), "results": finite(records)}) + "\n")
    else:
        print(pipeline.format_table(records))


def bench_cameras(
    json_out: JsonOut = False,
    duration: Annotated[float, typer.Option("--duration", min=1.0, help="Measured seconds of the six-camera run.")] = 8.0,
) -> None:
    """Six synthetic VGA cameras at 60 fps in one worker, plus the PS3 Eye parser records when available."""
    raise typer.Exit(load("cameras").main(json_out=json_out, duration_s=duration))


def bench_audio(
    json_out: JsonOut = False,
    seconds: Annotated[float, typer.Option("--seconds", help="Seconds per measured phase")] = 15.0,
) -> None:
    """Callback cost with the ring write vs bare pass-through, and xruns vs jack_iodelay, on JACK dummy servers."""
    from workers.audio.errors import AudioError

    audio = load("audio")
    try:
        records = audio.run(seconds=seconds, progress=_progress)
    except AudioError as exc:
        typer.echo(f"mimir bench audio: error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    doc = audio.document(records, _machine())
    print(json.dumps(doc) if json_out else audio.format_table(doc))


def bench_receivers(
    json_out: JsonOut = False,
    quick: Annotated[bool, typer.Option("--quick", help="Shorter runs (about a minute).")] = False,
) -> None:
    """Receivers over loopback: bytes/s per receiver, decode-to-listener latency, listener capacity."""
    receivers = load("receivers")
    results = receivers.run_bench(quick=quick, progress=_progress)
    if json_out:
        sys.stdout.write(json.dumps({"bench": "receivers", "machine": _machine(), "results": results}) + "\n")
    else:
        typer.echo(receivers.format_table(results))


def bench_take(
    seconds: Annotated[float, typer.Option("--seconds", help="Seconds of media per encoding (six VGA cameras at 60 fps).")] = 5.0,
    directory: Annotated[Optional[str], typer.Option("--dir", help="Folder on the disk to measure (default: the temp folder).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Two small cameras for half a second (a smoke run).")] = False,
    json_out: JsonOut = False,
) -> None:
    """Take writer per video encoding (raw, ffv1, h264) against a plain write of the same bytes: keeps up or not."""
    import dataclasses
    import os

    take = load("take")
    if not seconds > 0:
        typer.echo(f"mimir bench take: --seconds must be > 0, got {seconds}", err=True)
        raise typer.Exit(2)
    if directory is not None and not os.path.isdir(directory):
        typer.echo(f"mimir bench take: --dir {directory}: no such folder", err=True)
        raise typer.Exit(2)
    base = take.QUICK if quick else dataclasses.replace(take.Config(), seconds=seconds)
    cfg = dataclasses.replace(base, directory=directory)
    records = take.run(cfg, progress=_progress)
    if json_out:
        doc = {"bench": "take", "machine": _machine(), "config": dataclasses.asdict(cfg), "results": records}
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        print(take.format_table(records))


def bench_gpu(
    quick: Annotated[bool, typer.Option("--quick", help="Fewer frames and shorter live phases (about a minute).")] = False,
    json_out: JsonOut = False,
) -> None:
    """H2D GB/s and latency from a registered ring arena vs pageable vs cudaMallocHost, GPU RGB conversion, torn frames.

    One line and exit 2 where CuPy or a CUDA device is missing, or /dev/shm
    cannot hold the bench's rings; exit 1 when a torn frame was handed out or
    a copy or conversion differed from its reference (missed speed goals do
    not change the exit status).
    """
    from mimir.gpu.device import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is not None:
        print(f"mimir bench gpu: no CUDA device: {reason}", file=sys.stderr)
        raise typer.Exit(2)
    gpu = load("gpu")
    try:
        records, info = gpu.run(quick, progress=_progress)
    except gpu.BenchUnavailable as exc:
        print(f"mimir bench gpu: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    doc = gpu.document(records, {**_machine(), **info})  # every figure is finite or None
    if json_out:
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        print(gpu.format_table(doc))
    if gpu.correctness_failed(doc):
        raise typer.Exit(1)


def bench_consumer(
    quick: Annotated[bool, typer.Option("--quick", help="Fewer repeats and laps (about a minute).")] = False,
    json_out: JsonOut = False,
) -> None:
    """Time-aligned reads (frame_at, frames, moment, audio) at 1k and 100k samples vs a scan; a ring's first lap."""
    consumer = load("consumer")
    records = consumer.run(quick, progress=_progress)
    if json_out:
        sys.stdout.write(json.dumps({"bench": "consumer", "machine": _machine(), "results": records},
                                    allow_nan=False) + "\n")
    else:
        print(consumer.format_table(records))


def bench_snapshot(
    seconds: Annotated[float, typer.Option("--seconds", help="Seconds to snapshot (at most the 5 s window).")] = 5.0,
    video: Annotated[str, typer.Option("--video", help="raw | ffv1 | h264")] = "raw",
    shape: Annotated[str, typer.Option("--shape", help="default (six VGA cameras) | small (a smoke run)")] = "default",
    directory: Annotated[Optional[str], typer.Option(
        "--dir", help="Folder on the disk to measure (default: the temp folder).")] = None,
    json_out: JsonOut = False,
) -> None:
    """`mimir snapshot` of the default rig: wall time vs a plain write of the same bytes, capture loss vs none.

    Exit 1 when the snapshot or capture lost anything (a correctness failure);
    a missed speed goal does not change the exit status.
    """
    import os

    snapshot = load("snapshot")
    if not 0 < seconds <= 5.0 or video not in ("raw", "ffv1", "h264") or shape not in snapshot.SHAPES:
        typer.echo(f"mimir bench snapshot: need 0 < --seconds <= 5 (the window), --video raw|ffv1|h264 and "
                   f"--shape {'|'.join(snapshot.SHAPES)}; got {seconds:g}, {video!r}, {shape!r}", err=True)
        raise typer.Exit(2)
    if directory is not None and not os.path.isdir(directory):
        typer.echo(f"mimir bench snapshot: --dir {directory}: no such folder", err=True)
        raise typer.Exit(2)
    records = snapshot.run(seconds, video=video, shape=shape, directory=directory, progress=_progress)
    if json_out:
        sys.stdout.write(json.dumps({"bench": "snapshot", "machine": _machine(), "results": finite(records)},
                                    allow_nan=False) + "\n")
    else:
        print(snapshot.format_table(records))
    if any(not (r["goals"]["snapshot_lost_nothing"] and r["goals"]["capture_lost_nothing"]) for r in records):
        raise typer.Exit(1)


def bench_sync(
    json_out: JsonOut = False,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer trials (about 1-2 minutes).")] = False,
    only: Annotated[Optional[list[str]], typer.Option(
        "--only", help="Run only these conditions ('rooms': the rooms section).")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the rooms' error-vs-distance figure (PNG).")] = None,
) -> None:
    """Benchmark the sync receiver against the impairment matrix and simulated rooms (progress on stderr)."""
    sync = load("sync")
    unknown = sorted(set(only or ()) - set(sync.names()))
    if unknown:
        typer.echo(f"mimir bench sync: unknown --only {', '.join(unknown)}; choose from {', '.join(sync.names())}",
                   err=True)
        raise typer.Exit(2)
    doc = sync.run_bench(quick=quick, progress=_progress, only=only, plot=None if plot is None else str(plot))
    if json_out:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        typer.echo(sync.format_table(doc))


def bench_record(
    seconds: Annotated[float, typer.Option("--seconds", help="Seconds to record per encoding (and to watch the rig "
                                                              "without a recording).")] = 60.0,
    workload: Annotated[str, typer.Option(
        "--workload", help="default (six VGA cameras at 60 fps) | ps3eye (six QVGA Bayer at 187 fps, 192 kHz) | "
                           "small (a smoke run) | all (default and ps3eye)")] = "all",
    video: Annotated[str, typer.Option("--video", help="raw | ffv1 | h264 | all")] = "all",
    directory: Annotated[str | None, typer.Option(
        "--dir", help="Folder on the disk to measure (default: the temp folder).")] = None,
    json_out: JsonOut = False,
) -> None:
    """`mimir record` of a live rig per encoding: written vs published, MB/s vs a plain write, capture loss vs none.

    Exit 1 when capture lost anything during a recording or audio was skipped
    (a correctness failure); a missed speed goal (video skipped) does not
    change the exit status: the table says MISSED.
    """
    import os

    record = load("record")
    workloads = ("default", "ps3eye") if workload == "all" else (workload,)
    encodings = record.ENCODINGS if video == "all" else (video,)
    if not 0 < seconds <= 3600 or any(w not in record.WORKLOADS for w in workloads) \
            or any(e not in record.ENCODINGS for e in encodings):
        typer.echo(f"mimir bench record: need 0 < --seconds <= 3600, --workload {'|'.join(record.WORKLOADS)}|all "
                   f"and --video {'|'.join(record.ENCODINGS)}|all; got {seconds:g}, {workload!r}, {video!r}", err=True)
        raise typer.Exit(2)
    if directory is not None and not os.path.isdir(directory):
        typer.echo(f"mimir bench record: --dir {directory}: no such folder", err=True)
        raise typer.Exit(2)
    records = record.run(seconds, workloads=workloads, encodings=encodings, directory=directory, progress=_progress)
    if json_out:
        sys.stdout.write(json.dumps({"bench": "record", "machine": _machine(), "results": finite(records)},
                                    allow_nan=False) + "\n")
    else:
        print(record.format_table(records))
    if any(not (r["goals"]["capture_lost_nothing"] and r["goals"]["zero_skipped_audio"]) for r in records):
        raise typer.Exit(1)
