"""Every bad input gets one clear line and exit 2 before anything starts: the findings of issue 12, one by one.

Each case is a config that used to give a traceback, or that the validator accepted and a worker then
refused in a restart loop. In-process every case must raise ConfigError with a one-line message naming what
to change; a sample goes through the real `mimir-supervisor start` (exit 2, exactly one line on stderr,
nothing left in shared memory).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from mimir.config import FAMILY_FORMATS, LIMITS, PS3EYE_MODES, ConfigError, load_config, parse_config
from mimir.net.keys import load_public_key, write_keypair
from mimir.topology import plan_rig

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("inputs")
    video = d / "clip.mkv"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    wav = d / "take.wav"
    sf.write(str(wav), np.zeros((4800, 2), np.float32), 48000)
    write_keypair(d / "server")
    write_keypair(d / "raven")
    loose = d / "loose"
    write_keypair(loose)
    os.chmod(str(loose) + ".key_secret", 0o644)
    (d / "notvideo.mkv").write_bytes(b"this is not a video" * 10)
    (d / "empty.wav").write_bytes(b"")
    return {"dir": str(d), "video": str(video), "wav": str(wav), "server": str(d / "server.key_secret"),
            "server_public": str(d / "server.key"), "server_pub": load_public_key(d / "server.key"),
            "raven": load_public_key(d / "raven.key"), "loose": str(loose) + ".key_secret",
            "notvideo": str(d / "notvideo.mkv"), "empty": str(d / "empty.wav")}


NET = '[network]\nlisten = "tcp://127.0.0.1:*"\nserver_key_file = "{server}"\n'
SRC = '[[network.sources]]\nsource_id = "{sid}"\npublic_key = "{key}"\n'
CAM = '[[cameras]]\nfamily = "synthetic"\ncount = 1\nwidth = 64\nheight = 48\nfps = 30.0\n'

# (id, config text ({name} placeholders from the `files` fixture), what the one line must say)
CASES = [
    ("inf-fps", '[[cameras]]\nfamily = "synthetic"\nfps = inf', "field `cameras[0].fps`: Expected `float` <= 1000.0"),
    ("nan-fps", '[[cameras]]\nfamily = "synthetic"\nfps = nan', "field `cameras[0].fps`: Expected `float` >= 0.5"),
    ("nan-window", "[reservoir]\nwindow_s = nan", "field `reservoir.window_s`"),
    ("rate-1e20", "[audio]\nrate_hz = 1e20", "field `audio.rate_hz`: Expected `int`, got `float`"),
    ("rate-huge-int", "[audio]\nrate_hz = 100000000000", "field `audio.rate_hz`: Expected `int` <= 768000"),
    ("17-camera-entries", '[[cameras]]\nfamily = "synthetic"\n' * 17, "one [[cameras]] entry per family"),
    ("17-cameras", '[[cameras]]\nfamily="synthetic"\ncount=6\n[[cameras]]\nfamily="ks"\ncount=6\n'
                   '[[cameras]]\nfamily="ps3eye"\nformat="GRBG"\ncount=5', "17 cameras configured"),
    ("count-7", '[[cameras]]\nfamily = "synthetic"\ncount = 7', "field `cameras[0].count`: Expected `int` <= 6"),
    ("20000x20000", '[[cameras]]\nfamily = "synthetic"\nwidth = 20000\nheight = 20000', "Expected `int` <= 7680"),
    ("tiny-frame", '[[cameras]]\nfamily = "synthetic"\nwidth = 8\nheight = 8', "Expected `int` >= 32"),
    ("block-100000", "[audio]\nblock_frames = 100000", "field `audio.block_frames`: Expected `int` <= 8192"),
    ("channels-0", "[audio]\nchannels = 0", "field `audio.channels`: Expected `int` >= 1"),
    ("heartbeat-1ms", "[supervision]\nheartbeat_timeout_s = 0.001", "Expected `float` >= 0.5"),
    ("heartbeat-vs-fps", '[supervision]\nheartbeat_timeout_s = 1.0\n[[cameras]]\nfamily = "synthetic"\nfps = 1.0',
     "heartbeat_timeout_s = 1 s is shorter than 3 publish periods"),
    ("backoff-inf", "[supervision]\nrestart_backoff_s = inf", "field `supervision.restart_backoff_s`"),
    ("backoff-order", "[supervision]\nrestart_backoff_s = 30.0", "restart_backoff_max_s = 10 is below"),
    ("epoch-inf", "[sync]\nepoch_unix_s = inf", "field `sync.epoch_unix_s`"),
    ("seed-2**64", "[sync]\nseed = 18446744073709551616", "field `sync.seed`"),
    ("codebook-empty", '[sync]\ncodebook_id = ""', "field `sync.codebook_id`"),
    ("margin-1e9", "[reservoir]\ncapacity_margin = 1e9", "field `reservoir.capacity_margin`"),
    ("rig-path", 'rig = "../../etc"', "field `rig`"),
    ("ring-capacity-1", CAM + "ring_capacity = 1", "ring capacity 1 holds"),
    ("ring-capacity-0", CAM + "ring_capacity = 0", "field `cameras[0].ring_capacity`"),
    ("duplicate-family", CAM + CAM, "family 'synthetic' is listed twice"),
    ("synthetic-mjpg", '[[cameras]]\nfamily = "synthetic"\nformat = "MJPG"', "MJPG frames have no fixed size"),
    ("ks-mjpg", '[[cameras]]\nfamily = "ks"\nformat = "MJPG"', "a ks camera's MJPG is decoded to BGR3"),
    ("ps3eye-yuyv", '[[cameras]]\nfamily = "ps3eye"', "use one of GRBG"),
    ("ps3eye-mode", '[[cameras]]\nfamily = "ps3eye"\nformat = "GRBG"\nfps = 61.0', "the PS3 Eye has no mode"),
    ("yuyv-odd-width", '[[cameras]]\nfamily = "synthetic"\nwidth = 641', "the width must be even"),
    ("synthetic-device", '[[cameras]]\nfamily = "synthetic"\ndevices = ["cam7"]', "synthetic devices are indices"),
    ("device-twice", '[[cameras]]\nfamily = "ks"\ncount = 2\ndevices = ["0", "0"]', "a device is listed twice"),
    ("missing-video", '[[cameras]]\nfamily = "file"\nfiles = ["{dir}/nope.mkv"]', "nope.mkv: No such file"),
    ("not-a-video", '[[cameras]]\nfamily = "file"\nfiles = ["{notvideo}"]', "is not a video FFmpeg can decode"),
    ("video-mode", '[[cameras]]\nfamily = "file"\nfiles = ["{video}"]',
     'is 64x48 at 30 fps and is replayed as it is; set width = 64, height = 48, fps = 30, format = "BGR3"'),
    ("video-files-count", '[[cameras]]\nfamily = "file"\ncount = 2\nformat = "BGR3"\nwidth = 64\nheight = 48\n'
                          'fps = 30.0\nfiles = ["{video}"]', "one file per camera"),
    ("missing-wav", '[audio]\nbackend = "file"\nfile = "{dir}/nope.wav"', "nope.wav: No such file"),
    ("empty-wav", '[audio]\nbackend = "file"\nfile = "{empty}"', "is empty"),
    ("wav-not-audio", '[audio]\nbackend = "file"\nfile = "{notvideo}"', "is not audio libsndfile can read"),
    ("wav-no-file", '[audio]\nbackend = "file"', 'backend = "file" needs file = "PATH"'),
    ("wav-rate", '[audio]\nbackend = "file"\nfile = "{wav}"\nrate_hz = 44100', "set rate_hz = 48000"),
    ("wav-channels", '[audio]\nbackend = "file"\nfile = "{wav}"\nchannels = 8', "set channels = 2 or fewer"),
    ("file-on-synthetic", '[audio]\nfile = "{wav}"', 'audio.file applies to backend = "file" only'),
    ("host-api-on-synthetic", '[audio]\nhost_api = "jack"', "audio.host_api applies to"),
    ("net-no-key-file", '[network]\nlisten = "tcp://127.0.0.1:*"', "network.server_key_file is not set"),
    ("net-missing-key", '[network]\nlisten = "tcp://127.0.0.1:*"\nserver_key_file = "{dir}/nope.key_secret"',
     "no such key file"),
    ("net-public-as-secret", '[network]\nlisten = "tcp://127.0.0.1:*"\nserver_key_file = "{server_public}"',
     "is it the public .key?"),
    ("net-key-mode", '[network]\nlisten = "tcp://127.0.0.1:*"\nserver_key_file = "{loose}"',
     "secret key is readable by others (mode 644)"),
    ("net-bad-listen", '[network]\nlisten = "5591"\nserver_key_file = "{server}"', "not an endpoint to listen on"),
    ("net-non-z85", NET + SRC.replace("{key}", "~" * 40).replace("{sid}", "raven"), "not a 40-character Z85"),
    ("net-short-key", NET + SRC.replace("{key}", "abc").replace("{sid}", "raven"), "Expected `str` of length >= 40"),
    ("net-server-key-as-source", NET + SRC.replace("{key}", "{server_pub}").replace("{sid}", "raven"),
     "this is the rig's own server key"),
    ("net-duplicate-id", NET + SRC.replace("{sid}", "raven").replace("{key}", "{raven}")
     + SRC.replace("{sid}", "raven").replace("{key}", "{server_pub}"), "'raven' is listed twice"),
    ("net-duplicate-key", NET + SRC.replace("{sid}", "raven").replace("{key}", "{raven}")
     + SRC.replace("{sid}", "crow").replace("{key}", "{raven}"), "each key maps to exactly one source id"),
    ("net-bad-trust", NET + SRC.replace("{sid}", "raven").replace("{key}", "{raven}") + 'trust = "root"',
     "Invalid enum value 'root'"),
    ("net-bad-id", NET + SRC.replace("{sid}", "rav en").replace("{key}", "{raven}"), "network.sources[0].source_id"),
    ("net-sources-without-listen", SRC.replace("{sid}", "raven").replace("{key}", "~" * 40), "Z85"),
    ("net-rate-inf", "[network]\nmax_messages_per_s = inf", "field `network.max_messages_per_s`"),
    ("authority-unknown", '[sync]\nauthority = "raven"\n', "sync.authority = 'raven' is not a [[network.sources]]"),
    ("authority-not-trusted", '[sync]\nauthority = "raven"\n' + NET + SRC.replace("{sid}", "raven").replace(
        "{key}", "{raven}") + 'trust = "trusted-evidence"', "only a source with trust = \"canonical-authority\""),
    ("authority-no-listen", '[sync]\nauthority = "raven"\n' + SRC.replace("{sid}", "raven").replace(
        "{key}", "{raven}") + 'trust = "canonical-authority"', "needs network.listen"),
    ("band-too-narrow", '[audio.band]\nlow_hz = 300.0\nhigh_hz = 2500.0', "audio.band: band 300-2500 Hz"),
    ("preset-unknown", '[audio]\npreset = "nope"', "audio.preset = 'nope' is not a known interface"),
]


def _text(template: str, files: dict[str, str]) -> str:
    return template.format(**files) if "{" in template else template


@pytest.mark.parametrize("template, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_bad_config_is_refused_in_one_line_naming_what_to_change(files, template, expected):
    with pytest.raises(ConfigError) as info:
        plan_rig(parse_config(_text(template, files), source="rig.toml"))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and len(message) < 600


def test_a_config_that_is_not_utf8_is_refused_naming_the_byte(tmp_path):
    path = tmp_path / "rig.toml"
    path.write_bytes(b'rig = "x"\n\xff\xfe = 1\n')
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xff at offset 10\)"):
        load_config(path)


def test_a_config_that_is_not_a_text_file_is_refused_without_reading_it_all(tmp_path):
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_config("/dev/zero")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path)  # a directory


def test_the_matching_file_family_config_and_audio_file_are_accepted(files):
    text = (f'[[cameras]]\nfamily = "file"\nformat = "BGR3"\nwidth = 64\nheight = 48\nfps = 30.0\n'
            f'files = ["{files["video"]}"]\n[audio]\nbackend = "file"\nfile = "{files["wav"]}"\nchannels = 2\n'
            + NET.format(**files) + SRC.format(sid="raven", key=files["raven"]))
    plan = plan_rig(parse_config(text))
    assert [w.name for w in plan.workers] == ["camera.file", "audio", "sync"]


def test_the_contracts_family_tables_match_the_workers():
    """mimir may not import workers: the contract keeps its own copy of what each family delivers; keep them equal."""
    from workers.camera.family import BYTES_PER_PIXEL, format_name, resolve_family
    from workers.camera.ks import RAW_FORMATS
    from workers.camera.ps3eye.registers import RATES
    from workers.camera.synthetic import SUPPORTED_FORMATS

    assert set(FAMILY_FORMATS) == {"synthetic", "file", "ks", "ps3eye"}
    assert FAMILY_FORMATS["synthetic"] == tuple(format_name(f) for f in SUPPORTED_FORMATS)
    assert set(FAMILY_FORMATS["ks"]) == {"BGR3", *(format_name(f) for f in RAW_FORMATS)}
    assert set(format_name(f) for f in BYTES_PER_PIXEL) == set(FAMILY_FORMATS["synthetic"])  # what fits a slot
    assert PS3EYE_MODES == {size: tuple(sorted(rates)) for size, rates in RATES.items()}
    assert resolve_family("file").name == "file"


def test_the_audio_worker_reads_its_limits_from_the_config():
    from workers.audio.config import MAX_BLOCK_FRAMES, MAX_RATE_HZ, MIN_BLOCK_FRAMES

    assert (MIN_BLOCK_FRAMES, MAX_BLOCK_FRAMES, MAX_RATE_HZ) == (
        LIMITS.min_block_frames, LIMITS.max_block_frames, LIMITS.max_audio_rate_hz)


SUBPROCESS_CASES = ["inf-fps", "17-camera-entries", "synthetic-mjpg", "missing-video", "net-public-as-secret",
                    "rig-path"]


@pytest.mark.slow
def test_mimir_supervisor_start_refuses_each_with_exit_2_and_one_line(files, tmp_path, rig):
    by_id = {c[0]: c for c in CASES}
    for case in SUBPROCESS_CASES:
        _, template, expected = by_id[case]
        text = _text(template, files)
        if "rig =" not in text:
            text = f'rig = "{rig}"\n' + text
        path = tmp_path / f"{case}.toml"
        path.write_text(text)
        r = subprocess.run([str(BIN / "mimir-supervisor"), "start", "--config", str(path), "--duration", "2"],
                           capture_output=True, text=True, timeout=60)
        lines = r.stderr.splitlines()
        assert r.returncode == 2, (case, r.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("mimir-supervisor: ") and expected in lines[0], (case, lines)
        assert r.stdout == ""
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(f'rig = "{rig}"\n# caf\xe9\n'.encode("latin-1"))
    r = subprocess.run([str(BIN / "mimir-supervisor"), "start", "--config", str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not UTF-8 text (byte 0xe9" in r.stderr


def test_a_config_built_in_code_meets_the_same_bounds_as_a_parsed_one():
    """msgspec checks Meta bounds only while decoding: plan_rig checks a constructed config again."""
    from mimir.config import CameraFamilyConfig, RigConfig

    with pytest.raises(ConfigError, match=r"field `cameras\[0\]\.fps`: Expected `float` <= 1000.0; found inf"):
        plan_rig(RigConfig(cameras=[CameraFamilyConfig(family="synthetic", fps=float("inf"))]))
    with pytest.raises(ConfigError, match=r"field `rig`"):
        plan_rig(RigConfig(rig="../../etc"))
