"""The channel map: presets by sample rate, explicit maps, and the maps that cannot be one (one line each)."""
import pytest

from mimir.config import ConfigError, parse_config
from mimir.interfaces import PRESETS, audio_inputs, preset_inputs
from mimir.topology import AudioWorkerSpec, SyncWorkerSpec, plan_rig


def _audio(text: str):
    return parse_config("[audio]\n" + text, source="rig.toml").audio


def test_the_scarlett_preset_captures_three_inputs_with_loopback_1_as_the_declared_reference():
    inputs = audio_inputs(_audio('preset = "scarlett-solo-4th"\nrate_hz = 96000'))
    assert [(i.device_index, i.name, i.role) for i in inputs] == [
        (0, "Input 1", "microphone"), (1, "Input 2", "line"), (2, "Loopback 1", "reference")]
    _, note = preset_inputs("scarlett-solo-4th", 192_000)
    assert "176.4 and 192 kHz" in note  # the rate dependence is stated, not hidden


def test_a_channel_map_wins_and_reaches_the_workers_specs():
    config = parse_config('''
[audio]
preset = "scarlett-solo-4th"
[[audio.channel_map]]
index = 3
name = "Loopback 2"
role = "reference"
[[audio.channel_map]]
index = 0
name = "Vocal"
role = "microphone"
path = { distance_m = 1.5 }
''', source="rig.toml")
    plan = plan_rig(config)
    audio = next(w for w in plan.workers if isinstance(w, AudioWorkerSpec))
    sync = next(w for w in plan.workers if isinstance(w, SyncWorkerSpec))
    assert [i.device_index for i in audio.inputs] == [3, 0] and audio.declared_reference == 0
    assert audio.channels == 2 and set(sync.paths) == {1} and sync.paths[1].distance_m == 1.5


def test_without_map_or_preset_the_first_n_inputs_are_captured_with_unknown_roles():
    inputs = audio_inputs(_audio("channels = 3"))
    assert [(i.device_index, i.role) for i in inputs] == [(0, ""), (1, ""), (2, "")]
    assert len(audio_inputs(_audio(""))) == 8


@pytest.mark.parametrize("text, expected", [
    ('preset = "scarlett-solo-9th"', "is not a known interface; known: scarlett-solo-4th"),
    ('preset = "scarlett-solo-4th"\nrate_hz = 384000', "has no layout for 384000 Hz"),
    ('preset = "scarlett-solo-4th"\nchannels = 4', "audio.channels = 4 disagrees with"),
    ('[[audio.channel_map]]\nindex = 1\nname = "a"\nrole = "line"\n'
     '[[audio.channel_map]]\nindex = 1\nname = "b"\nrole = "line"', "input 1 is listed twice ('a' and 'b')"),
    ('[[audio.channel_map]]\nindex = 0\nname = "L"\nrole = "reference"\n'
     '[[audio.channel_map]]\nindex = 1\nname = "R"\nrole = "reference"', "2 inputs have role \"reference\""),
    ('[[audio.channel_map]]\nindex = 0\nname = "x"\nrole = "unused"', "every input is \"unused\""),
])
def test_a_map_that_cannot_be_one_is_refused_in_one_line(text, expected):
    with pytest.raises(ConfigError) as info:
        audio_inputs(_audio(text))
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ('band = { low_hz = 300.0, high_hz = 2500.0 }', "audio.band: band 300-2500 Hz holds"),
    ('[[audio.channel_map]]\nindex = 0\nname = "lb"\nrole = "reference"\npath = { distance_m = 1.0 }',
     "the reference is the electrical loopback and has no acoustic path"),
    ('[[audio.channel_map]]\nindex = 0\nname = "m"\nrole = "microphone"\npath = { distance_m = -1.0 }',
     "path distance must be 0-1000 m"),
])
def test_band_and_path_checks_run_at_plan_time(text, expected):
    with pytest.raises(ConfigError) as info:
        plan_rig(parse_config("[audio]\n" + text, source="rig.toml"))
    assert expected in str(info.value)


def test_every_preset_declares_at_most_one_reference_per_band():
    for preset in PRESETS.values():
        for band in preset.bands:
            assert sum(i.role == "reference" for i in band.inputs) <= 1, preset.name


def _pulse_toml(rate_hz: float, band_hz: tuple[float, float]) -> str:
    from mimir.sync.calibration import PULSE_POST_SAMPLES, PULSE_PRE_SAMPLES

    n = PULSE_PRE_SAMPLES + PULSE_POST_SAMPLES
    re = ", ".join(["1.0"] + ["0.0"] * (n - 1))
    im = ", ".join(["0.0"] * n)
    return (f"pulse = {{ rate_hz = {rate_hz}, band_hz = [{band_hz[0]}, {band_hz[1]}], re = [{re}], im = [{im}] }}")


def test_a_measured_pulse_rides_in_the_channel_map_and_is_checked_against_the_rig_at_plan_time():
    """Invariant: a channel's path pulse reaches the sync worker's spec; one measured at another rate or band is
    refused when the rig is planned (one line), never when the sync worker builds its receiver."""
    head = '[audio]\nrate_hz = 48000\n[[audio.channel_map]]\nindex = 0\nname = "m"\nrole = "microphone"\n'
    path = f"[audio.channel_map.path]\ndistance_m = 2.0\n{_pulse_toml(48000.0, (2000.0, 8000.0))}\n"
    plan = plan_rig(parse_config(head + path, source="rig.toml"))
    sync = next(w for w in plan.workers if isinstance(w, SyncWorkerSpec))
    assert sync.paths[0].pulse is not None and sync.paths[0].pulse.rate_hz == 48000.0
    for rate, band in ((96000.0, (2000.0, 8000.0)), (48000.0, (2000.0, 5000.0))):
        with pytest.raises(ConfigError) as info:
            plan_rig(parse_config(head + f"[audio.channel_map.path]\n{_pulse_toml(rate, band)}\n", source="rig.toml"))
        assert "measure it again at this rate and band" in str(info.value) and "\n" not in str(info.value)
