"""Pure pieces: health rule, output stages, channel specs, flag mapping, the PortAudio seam, the witness seam."""

from __future__ import annotations

import importlib.abc
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from workers.audio import parse_channels
from workers.audio.__main__ import app
from workers.audio.backends import portaudio
from workers.audio.errors import AudioConfigError, BackendUnavailable, OutputUnavailable
from workers.audio.health import classify
from workers.audio.outputs import ImpulseOutput, MlsOutput, PassthroughOutput, WitnessOutput, load_witness_output
from workers.audio.records import (
    FLAG_INPUT_OVERFLOW, FLAG_OUTPUT_UNDERFLOW, PA_FLAGS_TO_MIMIR, PA_INPUT_OVERFLOW, PA_OUTPUT_UNDERFLOW, Health,
)

S = 1_000_000_000


@pytest.mark.parametrize("now, running, callbacks, last_cb, last_bad, expected", [
    (10 * S, False, 5, 10 * S, 0, Health.UNKNOWN),
    (10 * S, True, 0, 0, 0, Health.UNKNOWN),
    (10 * S, True, 5, 10 * S - 1000, 0, Health.GREEN),
    (10 * S, True, 5, 10 * S - 1000, 8 * S, Health.RED),      # a miss 2 s ago, window 3 s
    (10 * S, True, 5, 10 * S - 1000, 6 * S, Health.GREEN),    # 4 s ago: outside the window
    (10 * S, True, 5, 9 * S, 0, Health.RED),                  # stalled for 1 s
    (2 * S, True, 5, 2 * S - 1000, 0, Health.UNKNOWN),        # running for 1 s < window: not judged yet
])
def test_health_rule(now, running, callbacks, last_cb, last_bad, expected):
    assert classify(now_ns=now, running=running, callbacks=callbacks, last_callback_ns=last_cb,
                    last_bad_ns=last_bad, window_ns=3 * S, stall_ns=S // 4, started_ns=1 * S) == expected


def test_portaudio_flags_map_to_the_record_bits():
    assert PA_FLAGS_TO_MIMIR[0] == 0
    assert PA_FLAGS_TO_MIMIR[PA_INPUT_OVERFLOW] == FLAG_INPUT_OVERFLOW
    assert PA_FLAGS_TO_MIMIR[PA_OUTPUT_UNDERFLOW] == FLAG_OUTPUT_UNDERFLOW
    # JACK reports an xrun as both at once.
    assert PA_FLAGS_TO_MIMIR[PA_INPUT_OVERFLOW | PA_OUTPUT_UNDERFLOW] == FLAG_INPUT_OVERFLOW | FLAG_OUTPUT_UNDERFLOW


def test_channel_specs():
    assert parse_channels("4").count == 4
    assert parse_channels("0,2").selectors == (0, 2)
    assert parse_channels("1-3").selectors == (1, 2, 3)
    assert parse_channels(None).resolve(6) == (0, 1)
    assert parse_channels(None).resolve(1) == (0,)
    for bad in ("0", "x", "2,2", "3-1", "-1"):
        with pytest.raises(AudioConfigError, match="--channels"):
            parse_channels(bad)
    with pytest.raises(AudioConfigError, match="has 2 input channel"):
        parse_channels("0,3").resolve(2)


def test_impulse_output_places_impulses_on_the_frame_counter():
    stage = ImpulseOutput(100, channel=1, amplitude=0.5, armed_at=250)
    out = np.full((64, 2), 9.0, dtype=np.float32)
    positions = []
    for start in range(0, 640, 64):
        stage.fill(out, start)
        assert (out[:, 0] == 0).all()
        positions += [start + int(i) for i in np.flatnonzero(out[:, 1])]
    assert positions == [250, 350, 450, 550]
    assert stage.impulses_between(0, 640) == positions


def test_mls_output_is_the_periodic_sequence_from_its_arm_point():
    stage = MlsOutput(6, max_frames=16, channel=0, amplitude=1.0, armed_at=20)
    out = np.zeros((16, 1), dtype=np.float32)
    played = []
    for start in range(0, 160, 16):
        stage.fill(out, start)
        played.append(out[:, 0].copy())
    played = np.concatenate(played)
    assert (played[:20] == 0).all()
    assert np.array_equal(played[20:20 + 63], stage.sequence)
    assert np.array_equal(played[83:146], stage.sequence)


def test_passthrough_rejects_layouts_it_cannot_copy():
    with pytest.raises(AudioConfigError, match="--through-channel"):
        PassthroughOutput(2, 1)
    with pytest.raises(AudioConfigError, match="only 2 channel"):
        PassthroughOutput(2, 2, source_channel=2)


def test_witness_output_copies_a_mono_emitter_to_every_channel():
    class Emitter:
        def fill(self, out, start_sample):
            out[:] = np.arange(start_sample, start_sample + len(out), dtype=np.float32)

    stage = WitnessOutput(Emitter(), 8)
    out = np.zeros((8, 2), dtype=np.float32)
    stage.fill(out, 100)
    assert np.array_equal(out[:, 0], np.arange(100, 108)) and np.array_equal(out[:, 1], out[:, 0])
    with pytest.raises(OutputUnavailable, match="no fill"):
        WitnessOutput(object(), 8)


def test_the_witness_played_is_the_configured_codebook():
    """The output stage plays the rig's codebook, seed and epoch (the contract's WitnessSpec): a receiver of
    that codebook locks on it, a receiver of the default codebook never does."""
    from mimir.sync import Codebook, StreamingReceiver
    from mimir.topology import WitnessSpec

    rate, seconds = 16_000, 6.0
    studio = WitnessSpec(codebook_id="studio-b", seed=17, epoch_unix_s=1_700_000_000.0, level_dbfs=-12.0)
    stage = load_witness_output(rate, 4096, studio, start_canonical_seconds=1234.0)
    audio = np.zeros((int(rate * seconds), 1), np.float32)
    for start in range(0, len(audio), 4096):
        stage.fill(audio[start:start + 4096], start)
    assert 0.2 < np.abs(audio).max() <= 10 ** (-12 / 20) + 1e-6  # played at the configured level
    right = StreamingReceiver(Codebook.from_id("studio-b", 17), float(rate), "right", approx_canonical_seconds=1234.0)
    wrong = StreamingReceiver(Codebook.from_id("mimir-default", 0), float(rate), "wrong",
                              approx_canonical_seconds=1234.0)
    right.feed(audio[:, 0])
    wrong.feed(audio[:, 0])
    assert right.locked and not wrong.locked
    assert abs(right.canonical_seconds_at(0) - 1234.0) < 1e-4  # device frame 0 is the canonical start asked for


class _NoPortAudio(importlib.abc.MetaPathFinder):
    """Makes `import sounddevice` fail the way it does when libportaudio is missing."""

    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return None


def test_missing_portaudio_library_says_how_to_install_it(monkeypatch):
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio(), *sys.meta_path])
    with pytest.raises(BackendUnavailable, match="apt-get install libportaudio2") as exc:
        portaudio.load_sounddevice()
    assert exc.value.exit_code == 3


def test_missing_sounddevice_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(BackendUnavailable, match="pip install sounddevice"):
        portaudio.load_sounddevice()


def test_cli_reports_missing_portaudio_with_exit_code_3(monkeypatch, rig):
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio(), *sys.meta_path])
    result = CliRunner().invoke(app, ["worker", "--rig", rig])
    assert result.exit_code == 3
    assert "libportaudio2" in result.output and "Traceback" not in result.output


def test_cli_bad_values_exit_2_with_a_clear_line(rig):
    for args, expect in (
        (["--block", "3"], "16..8192"),
        (["--rate", "5"], "--rate 5"),
        (["--backend", "cd"], "--backend 'cd' is not one of"),
        (["--host-api", "directx"], "--host-api 'directx' is not one of"),
        (["--channels", "two"], "--channels 'two'"),
        (["--output", "witness", "--backend", "synthetic", "--ring", "bad name"], "--ring"),
    ):
        result = CliRunner().invoke(app, ["worker", "--rig", rig, *args])
        assert result.exit_code == 2, (args, result.output)
        assert expect in result.output, (args, result.output)


@pytest.mark.parametrize("fmt, scale", [("int32", 2.0**-31), ("int16", 2.0**-15), ("float32", 1.0)])
def test_portaudio_callback_converts_once_into_the_slot(rig, fmt, scale):
    """The raw PortAudio callback body, fed through cffi pointers as PortAudio would: device format and a
    subset of channels (inputs 2 and 0 of 3) converted once into the ring; output played from the stage."""
    from mimir.descriptors import AudioBlockRecord
    from ringbuf import Ring, RingReader
    from workers.audio import EngineConfig
    from workers.audio.backends.base import DevicePlan
    from workers.audio.callback import BlockProcessor
    from workers.audio.outputs import PassthroughOutput
    from workers.audio.records import AudioStatus, CallbackMetric

    frames = 64
    plan = DevicePlan(backend="sounddevice", device_label="fake", host_api="fake", device_index=0,
                      sample_rate_hz=48000, block_frames=frames, slot_frames=frames, expected_frames=frames,
                      input_channels=(2, 0), output_channels=2, sample_format=fmt)
    backend = portaudio.PortAudioBackend(EngineConfig(sample_format=fmt, channels=parse_channels("2,0")))
    backend.plan = plan
    backend._open_in_channels = 3
    backend._selectors = np.array([2, 0], dtype=np.intp)
    backend._direct = False
    ring = Ring.create("pa", rig=rig, descriptor=AudioBlockRecord, capacity=8, payload_shape=(frames, 2),
                       payload_dtype=np.float32, status=AudioStatus)
    metrics = Ring.create("pa.metrics", rig=rig, descriptor=CallbackMetric, capacity=64)
    reader = RingReader.attach("pa", rig=rig, descriptor=AudioBlockRecord)
    try:
        proc = BlockProcessor(ring=ring, metrics=metrics, sample_rate_hz=48000, block_frames=frames,
                              slot_frames=frames, channels=2, output=PassthroughOutput(2, 2), output_channels=2,
                              channel_layout_hash=1)
        callback = backend._python_callback(proc)
        ffi = portaudio._get_ffi()
        dtype = {"int32": np.int32, "int16": np.int16, "float32": np.float32}[fmt]
        rng = np.random.default_rng(5)
        if fmt == "float32":
            device_in = rng.random((frames, 3), dtype=np.float32)
        else:
            info = np.iinfo(dtype)
            device_in = rng.integers(info.min, info.max, size=(frames, 3), dtype=dtype)
        device_out = np.zeros((frames, 2), dtype=np.float32)
        time_info = ffi.new("PaStreamCallbackTimeInfo *", {"inputBufferAdcTime": 12.5})
        rc = callback(ffi.from_buffer(device_in), ffi.from_buffer(device_out), frames, time_info, 0, ffi.NULL)
        assert rc == portaudio.PA_CONTINUE
        want = (device_in[:, [2, 0]].astype(np.float64) * scale).astype(np.float32)
        item = reader.read()
        record = AudioBlockRecord(*item.descriptor)
        assert np.array_equal(item.payload, want)
        assert record.adc_time_ns == 12_500_000_000 and record.frame_count == frames and record.start_sample == 0
        assert np.array_equal(device_out, want)  # pass-through played what was captured
        assert proc.callbacks == 1
    finally:
        reader.close()
        metrics.close()
        ring.close()
