"""Property: every config the validator accepts plans and starts; every one it refuses gets one line and exit 2.

Configs are drawn field by field from valid values, boundary values and hostile ones (NaN, infinities,
absurd sizes, missing files, wrong keys), written as TOML and read by the real loader.

* In-process, for many examples: ``load_config`` + ``plan_rig`` either return a plan or raise
  ConfigError with one line (never another exception); for a plan, every worker's own start-up checks pass
  on its spec (the camera family opens each camera in the requested mode, the audio engine validates and
  prepares its backend), except what needs a device this machine does not have (a ks or PS3 Eye camera,
  a sound card): there only "device not found" may remain.
* Through ``mimir-supervisor start --duration 2`` for a bounded, derandomized sample of tiny synthetic
  rigs: accepted ones run with every worker up and nothing failed or restarted, and refused ones exit 2
  with exactly one line on stderr.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from mimir.config import ConfigError, load_config
from mimir.net.keys import load_public_key, write_keypair
from mimir.topology import AudioWorkerSpec, CameraWorkerSpec, plan_rig

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, str]:
    import av

    d = tmp_path_factory.mktemp("assets")
    video = d / "clip.mkv"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(6):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i, np.uint8), format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    sf.write(str(d / "take.wav"), np.zeros((4800, 2), np.float32), 48000)
    (d / "junk.bin").write_bytes(b"\x00\x01junk" * 50)
    write_keypair(d / "server")
    write_keypair(d / "raven")
    return {"dir": str(d), "video": str(video), "wav": str(d / "take.wav"), "junk": str(d / "junk.bin"),
            "server": str(d / "server.key_secret"), "server_public": str(d / "server.key"),
            "raven": load_public_key(d / "raven.key")}


# ---- a small TOML writer for the drawn documents (strings, numbers incl. nan/inf, lists, tables) ----------------
def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_value(x) for x in v) + "]"


def to_toml(doc: dict) -> str:
    lines = [f"{k} = {_value(v)}" for k, v in doc.items() if not isinstance(v, (dict, list)) or
             (isinstance(v, list) and not (v and isinstance(v[0], dict)))]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {_value(vv)}" for kk, vv in v.items() if not (isinstance(vv, list) and vv
                                                                            and isinstance(vv[0], dict))]
            for kk, vv in v.items():
                if isinstance(vv, list) and vv and isinstance(vv[0], dict):
                    for item in vv:
                        lines.append(f"[[{k}.{kk}]]")
                        lines += [f"{a} = {_value(b)}" for a, b in item.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines.append(f"[[{k}]]")
                lines += [f"{a} = {_value(b)}" for a, b in item.items()]
    return "\n".join(lines) + "\n"


# ---- strategies --------------------------------------------------------------------------------------------------
NAN, INF = float("nan"), float("inf")


def maybe(**fields) -> st.SearchStrategy[dict]:
    """A table with each field absent or drawn from its strategy."""
    return st.fixed_dictionaries({}, optional=fields)


def mostly(valid: list, hostile: list) -> st.SearchStrategy:
    """A valid value three times in four, else a hostile one."""
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(hostile))


def coherent_cameras(files) -> list[dict]:
    """Cameras each family can run (the ks and PS3 Eye ones still need their device)."""
    return [
        {"family": "synthetic", "count": 1, "width": 64, "height": 48, "fps": 30.0, "format": "YUYV"},
        {"family": "synthetic", "count": 2, "width": 32, "height": 24, "fps": 1.0, "format": "GREY"},
        {"family": "synthetic", "count": 6, "width": 640, "height": 480, "fps": 60.0, "format": "BGR3"},
        {"family": "synthetic", "count": 1, "width": 64, "height": 48, "fps": 187.0, "format": "GRBG"},
        {"family": "file", "files": [files["video"]], "width": 64, "height": 48, "fps": 30.0, "format": "BGR3"},
        {"family": "ps3eye", "width": 640, "height": 480, "fps": 60.0, "format": "GRBG"},
        {"family": "ps3eye", "width": 320, "height": 240, "fps": 187.0, "format": "GRBG"},
        {"family": "ks", "format": "BGR3", "width": 1280, "height": 720, "fps": 30.0},
    ]


def coherent_camera(files) -> st.SearchStrategy[dict]:
    return st.sampled_from(coherent_cameras(files))


def edges(files) -> dict[str, list]:
    """Values on and next to each camera field's limits, the families' rules and the files' modes."""
    return {
        "width": [31, 32, 33, 63, 64, 65, 321, 641, 7680, 7681],
        "height": [23, 24, 25, 47, 48, 240, 480, 4320, 4321],
        "fps": [0.49, 0.5, 1.0, 29.99, 30.0, 30.3, 59.0, 60.0, 61.0, 187.0, 1000.0, 1000.1, INF, NAN],
        "format": ["YUYV", "BGR3", "GREY", "GRBG", "MJPG"],
        "count": [0, 1, 2, 6, 7],
        "devices": [["0"], ["1"], ["0", "0"], ["cam"], ["0", "1"]],
        "files": [[files["video"]], [files["junk"]], [files["dir"] + "/nope.mkv"], [files["video"]] * 2],
        "ring_capacity": [0, 1, 8, 19, 20, 400],
    }


def camera(files) -> st.SearchStrategy[dict]:
    """A coherent camera, the same with one field on or next to an edge, or anything at all."""
    table = edges(files)
    one_off = st.tuples(coherent_camera(files), st.sampled_from(sorted(table))).flatmap(
        lambda pair: st.sampled_from(table[pair[1]]).map(lambda v: {**pair[0], pair[1]: v}))
    anything = maybe(**{k: st.sampled_from(v) for k, v in table.items()}).flatmap(
        lambda d: st.sampled_from(["synthetic", "file", "ks", "ps3eye", "gopro"]).map(
            lambda fam: {"family": fam, **d}))
    return st.one_of(coherent_camera(files), one_off, one_off, one_off, anything)


def audio(files) -> st.SearchStrategy[dict]:
    return st.one_of(
        maybe(rate_hz=mostly([16000, 44100, 48000], [500, 1e20, 10**12]),
              block_frames=mostly([16, 64, 256, 8192], [8, 100000]),
              channels=mostly([1, 2, 8, 64], [0, 65]),
              output=mostly(["witness", "silence", "passthrough"], ["loud"]),
              ring_seconds=mostly([5.0, 10.0], [0.05, INF]),
              backend=mostly(["synthetic"], ["sounddevice", "tape"])),
        maybe(backend=st.just("file"), file=mostly([files["wav"]], [files["junk"], files["dir"] + "/nope.wav"]),
              rate_hz=mostly([48000], [44100]), channels=mostly([1, 2], [3])),
        maybe(backend=st.just("sounddevice"), host_api=st.sampled_from(["jack", "alsa"]),
              device=st.sampled_from(["0", "Focusrite"])),
    )


def coherent_audio(files) -> list[dict]:
    return [{"backend": "synthetic", "rate_hz": 48000, "block_frames": 64, "channels": 8, "output": "witness"},
            {"backend": "synthetic", "rate_hz": 16000, "block_frames": 256, "channels": 1, "output": "silence"},
            {"backend": "file", "file": files["wav"], "rate_hz": 48000, "channels": 2}]


def audio_edges(files) -> dict[str, list]:
    return {"rate_hz": [999, 1000, 44100, 768000, 768001], "block_frames": [15, 16, 8192, 8193],
            "channels": [0, 1, 2, 3, 64, 65], "ring_seconds": [4.99, 5.0, 3600.0, 3600.1],
            "file": [files["wav"], files["junk"], files["dir"] + "/nope.wav"], "host_api": ["jack"],
            "device": ["0"], "output": ["passthrough", "witness", "silence"]}


def network(files) -> st.SearchStrategy[dict]:
    source = maybe(trust=mostly(["observe-only", "trusted-evidence"], ["root"])).flatmap(
        lambda d: st.tuples(mostly(["raven"], ["bad id", "x" * 41]), mostly([files["raven"]], ["~" * 40, "short"])).map(
            lambda t: {"source_id": t[0], "public_key": t[1], **d}))
    return maybe(
        listen=mostly(["tcp://127.0.0.1:*"], ["5591", "tcp://127.0.0.1:70000"]),
        server_key_file=mostly([files["server"]], [files["server_public"], files["dir"] + "/none"]),
        max_messages_per_s=mostly([1.0, 200.0], [INF, -3.0]),
        sources=st.lists(source, max_size=2),
    )


def rig_document(files, rig: str) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({"rig": mostly([rig], ["../../etc", "x" * 17, ""])}, optional={
        "cameras": st.lists(camera(files), min_size=1, max_size=3),
        "audio": audio(files),
        "reservoir": maybe(window_s=mostly([0.5, 5.0, 60.0], [0.01, 1e9, NAN]),
                           capacity_margin=mostly([1.0, 1.5, 10.0], [0.5, 1e9])),
        "supervision": maybe(heartbeat_timeout_s=mostly([2.0, 10.0], [0.001, INF]),
                             restart_backoff_s=mostly([0.1, 0.5], [30.0, NAN]),
                             restart_backoff_max_s=mostly([1.0, 10.0], [1e12]),
                             max_restarts=mostly([0, 5], [-1, 10**6])),
        "sync": maybe(seed=mostly([0, 7], [-(2**64), 2**64]), codebook_id=mostly(["mimir-default"], ["", "x" * 65]),
                      epoch_unix_s=mostly([0.0, 1767225600.0], [INF, -1.0]),
                      level_dbfs=mostly([-20.0], [5.0, NAN])),
        "network": network(files),
    })


def worker_document(files, rig: str) -> st.SearchStrategy[dict]:
    """One camera family (coherent, or one field on an edge) and maybe audio: most are accepted, so the workers'
    own checks run on many specs that sit on the validator's boundaries."""
    return st.fixed_dictionaries({"rig": st.just(rig), "cameras": st.lists(camera(files), min_size=1, max_size=1),
                                  "supervision": st.just({"heartbeat_timeout_s": 10.0})},
                                 optional={"audio": audio(files)})


# ---- what a worker would say about its spec (the same code paths the worker processes run) ------------------------
DEVICE_DEPENDENT = ("no devices found", "no device", "not plugged in", "requested", "found:", "not available yet",
                    "cannot load")


def check_camera_spec(spec: CameraWorkerSpec) -> None:
    from workers.camera.family import CameraError, DeviceNotFound, FamilyUnavailable, resolve_family, select_devices
    from workers.camera.worker import WorkerConfig

    config = WorkerConfig.from_spec(spec)
    if spec.family == "ps3eye":  # the family's own mode table (open() needs a device to get there)
        from workers.camera.ps3eye.registers import find_mode

        assert spec.pixel_format == "GRBG"
        find_mode(spec.width, spec.height, int(spec.fps))
        assert float(int(spec.fps)) == spec.fps
    try:
        family = resolve_family(spec.family)
        devices = select_devices(family.discover(config.hints), config.hints, family.name)
    except (DeviceNotFound, FamilyUnavailable) as exc:
        assert spec.family in ("ks", "ps3eye"), f"{spec.family}: {exc}"  # the hardware families only
        return
    for device in devices:
        try:
            cam = family.open(device, config.request)
        except CameraError as exc:
            assert spec.family == "ks" and any(w in str(exc) for w in DEVICE_DEPENDENT), exc
            continue
        cam.close()


def check_audio_spec(spec: AudioWorkerSpec) -> None:
    from workers.audio.backends import make_backend
    from workers.audio.config import EngineConfig

    config = EngineConfig.from_spec(spec)  # raises AudioConfigError for what the engine cannot run
    if spec.backend != "sounddevice":  # a sound card is device-dependent
        make_backend(config).prepare()


def _note(what: str) -> None:
    if currently_in_test_context():  # hypothesis statistics (--hypothesis-show-statistics)
        event(what)


def _plan_or_refuse(assets, tmp_path, doc: dict) -> None:
    path = tmp_path / "rig.toml"
    path.write_text(to_toml(doc))
    try:
        plan = plan_rig(load_config(path))
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
        _note("refused")
        return
    _note("accepted")
    assert plan.budget_bytes > 0 and plan.reservoir_capacity < 2**32
    for spec in plan.workers:
        if isinstance(spec, CameraWorkerSpec):
            _note(f"accepted camera family {spec.family}")
            check_camera_spec(spec)
        elif isinstance(spec, AudioWorkerSpec):
            _note(f"accepted audio backend {spec.backend}")
            check_audio_spec(spec)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_config_is_planned_or_refused_in_one_line(assets, tmp_path, data):
    """Whole documents, every section drawn (most are refused somewhere): never anything but one ConfigError line."""
    _plan_or_refuse(assets, tmp_path, data.draw(rig_document(assets, "prop")))


def test_every_single_field_edge_of_every_family_is_refused_or_runs(assets, tmp_path):
    """Exhaustive, not random: each coherent camera and audio config with each one field set to each value on or
    next to a limit. Each is refused in one line, or passes the workers' own start-up checks."""
    cases = []
    for base in coherent_cameras(assets):
        cases.append({"cameras": [base]})
        for key, values in edges(assets).items():
            cases += [{"cameras": [{**base, key: v}]} for v in values]
    for base in coherent_audio(assets):
        cases.append({"audio": base})
        for key, values in audio_edges(assets).items():
            cases += [{"audio": {**base, key: v}} for v in values]
    for case in cases:
        try:
            _plan_or_refuse(assets, tmp_path, {"rig": "prop", "supervision": {"heartbeat_timeout_s": 10.0}, **case})
        except BaseException as exc:
            raise AssertionError(f"{case}: {type(exc).__name__}: {exc}") from exc


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_accepted_camera_and_audio_spec_passes_the_workers_own_checks(assets, tmp_path, data):
    """One camera family on or next to each limit, and maybe audio: whatever the validator accepts, the
    workers' own start-up checks accept too (only a missing device remains)."""
    _plan_or_refuse(assets, tmp_path, data.draw(worker_document(assets, "prop")))


# ---- a bounded sample through the real supervisor ------------------------------------------------------------------
def tiny_rig(files, rig: str) -> st.SearchStrategy[dict]:
    """Small synthetic rigs (and a few broken ones): 32-64 px frames, at most 2 cameras (rig and window set later)."""
    cam = st.fixed_dictionaries({
        "family": st.just("synthetic"), "count": st.sampled_from([1, 2]), "width": st.sampled_from([32, 64, 33]),
        "height": st.sampled_from([24, 48]), "fps": st.sampled_from([10.0, 30.0, INF]),
        "format": st.sampled_from(["YUYV", "GREY", "BGR3", "MJPG"])})
    sound = st.fixed_dictionaries({"backend": st.just("synthetic"), "rate_hz": st.just(16000),
                                   "block_frames": st.sampled_from([256, 100000]), "channels": st.sampled_from([1, 2]),
                                   "output": st.just("witness")})
    return st.fixed_dictionaries({"cameras": st.lists(cam, min_size=1, max_size=1)}, optional={"audio": sound})


def _worker_rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("worker "))
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(line.split(None, 5))
    return rows


TINY_CAMERA = {"family": "synthetic", "count": 2, "width": 64, "height": 48, "fps": 30.0, "format": "GREY"}
TINY_AUDIO = {"backend": "synthetic", "rate_hz": 16000, "block_frames": 256, "channels": 2, "output": "witness"}


@pytest.mark.slow
@settings(max_examples=2, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@example(doc={"cameras": [TINY_CAMERA], "audio": TINY_AUDIO})                       # accepted: the whole rig
@example(doc={"cameras": [{**TINY_CAMERA, "format": "YUYV", "count": 1}]})           # accepted: cameras only
@example(doc={"cameras": [{**TINY_CAMERA, "format": "MJPG"}], "audio": TINY_AUDIO})  # refused by the validator
@example(doc={"audio": {**TINY_AUDIO, "block_frames": 100000}})                     # refused while parsing
@given(doc=st.deferred(lambda: tiny_rig(None, "")))
def test_accepted_tiny_rigs_start_and_refused_ones_exit_2_with_one_line(assets, tmp_path, rig, doc):
    doc = {**doc, "rig": rig, "reservoir": {"window_s": 0.5}}
    path = tmp_path / "rig.toml"
    path.write_text(to_toml(doc))
    try:
        plan_rig(load_config(path))
        accepted = True
    except ConfigError:
        accepted = False
    r = subprocess.run([str(BIN / "mimir-supervisor"), "start", "--config", str(path), "--duration", "2"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if not accepted:
        lines = r.stderr.splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("mimir-supervisor: "), r.stderr
        return
    assert r.returncode == 0, r.stderr[-3000:]
    plan = plan_rig(load_config(path))
    rows = _worker_rows(r.stdout)
    assert len(rows) == len(plan.workers)
    for name, _pid, state, restarts, _exit_code, *error in rows:
        assert state == "stopped" and restarts == "0" and not error, (name, state, restarts, error, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    indexed = re.search(r"indexed ([\d,]+), lost", r.stdout)
    assert indexed and (int(indexed.group(1).replace(",", "")) > 0) == bool(plan.sources)
