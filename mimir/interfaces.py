"""Channel layouts of audio interfaces, by sample-rate band: which input is a microphone, a line, the loopback.

A rig's canonical time must come from the electrical loopback, and on many
interfaces that is not channel 0 (Focusrite's 4th Gen Scarlett Solo: Input
1, Input 2, Loopback 1, Loopback 2). ``[audio] preset = "NAME"`` fills the
channel map from one of these; an explicit ``[[audio.channel_map]]`` always
wins.

Adding an interface: append a :class:`InterfacePreset` to :data:`PRESETS`,
one :class:`PresetBand` per sample-rate band whose layout differs (the
highest rate of the band; bands are tried in order), each input in the order
the driver presents it, with its name and role. Say where the layout comes
from in ``source``. A preset is a claim about hardware Mimir has never run
on: state what is documented and what is not, and let the rig check it (the
reference channel must still be found clean, see
:mod:`mimir.supervisor.reference`).
"""

from __future__ import annotations

import msgspec

from mimir.config import AudioConfig, ChannelRole, ConfigError
from mimir.sync.calibration import PathCalibration

__all__ = ["AudioInput", "audio_inputs", "DEFAULT_CHANNELS", "PresetInput", "PresetBand", "InterfacePreset", "PRESETS", "preset_inputs"]

DEFAULT_CHANNELS = 8  # inputs captured when the config names neither a map, a preset nor a count


class AudioInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One captured input, as the rig contract carries it: ring channel ``k`` is the ``k``-th of these.

    ``device_index`` is the 0-based input as the driver presents it; ``role``
    is ``""`` where nothing declared one (the reference is then found).
    """

    device_index: int
    name: str
    role: str
    path: PathCalibration | None = None  # a known acoustic path: the channel's fit then refers to the emission


class PresetInput(msgspec.Struct, frozen=True):
    name: str
    role: ChannelRole


class PresetBand(msgspec.Struct, frozen=True):
    max_rate_hz: int
    inputs: tuple[PresetInput, ...]
    note: str = ""


class InterfacePreset(msgspec.Struct, frozen=True):
    name: str
    description: str
    source: str
    bands: tuple[PresetBand, ...]


def _inputs(*pairs: tuple[str, ChannelRole]) -> tuple[PresetInput, ...]:
    return tuple(PresetInput(name, role) for name, role in pairs)


_SCARLETT_SOLO_4 = _inputs(("Input 1", "microphone"), ("Input 2", "line"), ("Loopback 1", "reference"),
                           ("Loopback 2", "unused"))

PRESETS: dict[str, InterfacePreset] = {
    "scarlett-solo-4th": InterfacePreset(
        name="scarlett-solo-4th",
        description="Focusrite Scarlett Solo 4th Gen (USB): 4 inputs, 2 outputs, 44.1-192 kHz",
        source="the upstream rig's interface as its driver presents it (Input 1, Input 2, Loopback 1, Loopback 2; "
               "shared/REFERENCE.md); roles from the front panel (Input 1 XLR microphone, Input 2 instrument/line)",
        bands=(
            PresetBand(96_000, _SCARLETT_SOLO_4),
            PresetBand(192_000, _SCARLETT_SOLO_4,
                       note="Focusrite documents that 4th Gen interfaces drop some routing features at 176.4 and "
                            "192 kHz; whether Loopback still carries the playback there is undocumented. If it "
                            "does not, the rig finds no clean reference and says so: use 96 kHz or below."),
        ),
    ),
}


def preset_inputs(name: str, rate_hz: int) -> tuple[tuple[PresetInput, ...], str]:
    """The inputs of preset ``name`` at ``rate_hz`` and the band's note; KeyError/ValueError say what is known."""
    preset = PRESETS[name]
    for band in preset.bands:
        if rate_hz <= band.max_rate_hz:
            return band.inputs, band.note
    raise ValueError(f"preset {name!r} has no layout for {rate_hz} Hz (its bands end at "
                     f"{preset.bands[-1].max_rate_hz} Hz)")


def audio_inputs(audio: AudioConfig) -> tuple[AudioInput, ...]:
    """The inputs ``audio`` captures, in ring order: from its channel map, its preset, or its channel count.

    ``unused`` inputs are not captured. Raises :class:`ConfigError` with the
    field's name for a map that cannot be one (two entries for one input, two
    references, nothing captured) or a preset that does not exist or has no
    layout at the rate.
    """
    if audio.channel_map:
        where = "audio.channel_map"
        entries = [(c.index, c.name, c.role, c.path) for c in audio.channel_map]
    elif audio.preset is not None:
        where = f"audio.preset = {audio.preset!r}"
        if audio.preset not in PRESETS:
            raise ConfigError(f"{where} is not a known interface; known: {', '.join(sorted(PRESETS))} "
                              "(or describe the inputs with [[audio.channel_map]])")
        try:
            layout, _ = preset_inputs(audio.preset, audio.rate_hz)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        entries = [(i, p.name, p.role, None) for i, p in enumerate(layout)]
    else:
        count = audio.channels if audio.channels is not None else DEFAULT_CHANNELS
        return tuple(AudioInput(i, f"ch{i}", "") for i in range(count))
    if audio.channels is not None and audio.channels != sum(role != "unused" for _, _, role, _ in entries):
        raise ConfigError(f"audio.channels = {audio.channels} disagrees with {where} "
                          f"({sum(role != 'unused' for _, _, role, _ in entries)} captured inputs); remove channels")
    seen: dict[int, str] = {}
    for index, name, _, _ in entries:
        if index in seen:
            raise ConfigError(f"{where}: input {index} is listed twice ({seen[index]!r} and {name!r})")
        seen[index] = name
    references = [name for _, name, role, _ in entries if role == "reference"]
    if len(references) > 1:
        raise ConfigError(f"{where}: {len(references)} inputs have role \"reference\" ({', '.join(references)}); "
                          "canonical time comes from one loopback")
    inputs = tuple(AudioInput(index, name, role, path) for index, name, role, path in entries if role != "unused")
    if not inputs:
        raise ConfigError(f"{where}: every input is \"unused\"; capture at least one")
    return inputs
