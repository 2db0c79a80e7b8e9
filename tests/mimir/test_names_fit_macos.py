"""Every shared-memory name a rig plan derives fits macOS's 31 characters, for the longest rig name allowed."""
import msgspec
import pytest

from mimir import topology
from mimir.config import EXAMPLE_TOML, ConfigError, parse_config
from mimir.topology import plan_rig
from ringbuf.platform.darwin import DarwinPlatform
from ringbuf.segment import MAX_RIG_CHARS, segment_name

LONGEST = "r" * MAX_RIG_CHARS


def _object_ids(node) -> list[str]:
    if isinstance(node, dict):
        ids = [v for k, v in node.items() if k == "object_id" and isinstance(v, str)]
        return ids + [i for v in node.values() for i in _object_ids(v)]
    if isinstance(node, (list, tuple)):
        return [i for v in node for i in _object_ids(v)]
    return []


def test_every_object_of_a_big_rig_with_the_longest_rig_name_fits_macos():
    macos = DarwinPlatform()
    text = EXAMPLE_TOML.replace('rig = "default"', f'rig = "{LONGEST}"')  # six cameras: the most a rig has
    plan = plan_rig(parse_config(text))
    ids = set(_object_ids(msgspec.to_builtins(plan)))
    ids |= {topology.BOARD_WORKERS, topology.BOARD_SOURCES, topology.RESERVOIR, topology.PLAN}
    assert {"c0", "c5", topology.AUDIO, topology.AUDIO_METRICS, topology.FITS} <= ids
    for obj in sorted(ids):
        name = segment_name(LONGEST, obj)
        macos.check_name(name)  # raises NameTooLong if it does not fit
        assert len(name) + 1 <= 31, obj


def test_a_rig_name_that_cannot_fit_is_refused_by_the_config():
    with pytest.raises(ConfigError):
        parse_config(EXAMPLE_TOML.replace('rig = "default"', f'rig = "{LONGEST}x"'))
