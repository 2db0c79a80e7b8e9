"""Config parsing: the example covers every option; bad fields are named with type and value."""
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from mimir.config import EXAMPLE_TOML, ConfigError, RigConfig, default_rig, load_config, parse_config

MIMIR = str(Path(sys.executable).with_name("mimir"))


def _fields(struct_cls, prefix=""):
    for name, field_type in zip(struct_cls.__struct_fields__, msgspec.structs.fields(struct_cls)):
        yield prefix + name
        inner = field_type.type
        for candidate in getattr(inner, "__args__", (inner,)):
            if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
                yield from _fields(candidate, prefix + name + ".")


def test_example_parses_and_mentions_every_option():
    config = parse_config(EXAMPLE_TOML)
    assert config.cameras[0].count == 6 and config.audio.output == "witness"
    for path in _fields(RigConfig):
        leaf = path.rsplit(".", 1)[-1]
        assert leaf in EXAMPLE_TOML, f"`mimir config example` does not mention {path}"


def test_default_rig_is_the_documented_synthetic_rig():
    rig = default_rig()
    assert [(c.family, c.count, c.width, c.height, c.fps) for c in rig.cameras] == [("synthetic", 6, 640, 480, 60.0)]
    assert (rig.audio.backend, rig.audio.channels, rig.audio.rate_hz, rig.audio.output) == ("synthetic", 8, 48000, "witness")


@pytest.mark.parametrize("text, expected", [
    ('[[cameras]]\nfamily = "ks"\nfps = "fast"', "field `cameras[0].fps`: Expected `float`, got `str`; found 'fast'"),
    ("[audio]\nrate_hz = -5", "field `audio.rate_hz`: Expected `int` >= 1000; found -5"),
    ('[[cameras]]\nfamily = "gopro"', "field `cameras[0].family`: Invalid enum value 'gopro'"),
    ("[audio]\nratehz = 5", "unknown field `ratehz` in `audio`"),
    ("x =", "not valid TOML"),
])
def test_bad_fields_are_named(text, expected):
    with pytest.raises(ConfigError, match=None) as info:
        parse_config(text, source="rig.toml")
    assert expected in str(info.value) and str(info.value).startswith("rig.toml: ")


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")


def test_config_example_command_prints_a_valid_config():
    out = subprocess.run([MIMIR, "config", "example"], capture_output=True, text=True, check=True).stdout
    assert parse_config(out) == parse_config(EXAMPLE_TOML)
