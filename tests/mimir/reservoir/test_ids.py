"""Source ids: FNV-1a 64 known answers and the upstream empty/zero rules."""

from __future__ import annotations

import pytest

import mimir.reservoir.ids as ids
from mimir.reservoir import EmptySourceId, hash_source_id, source_id_hash

# Published FNV-1a 64 test vectors (Fowler/Noll/Vo reference test suite).
KNOWN = [
    (b"a", 0xAF63DC4C8601EC8C),
    (b"foobar", 0x85944171F73967E8),
    (b"chongo was here!\n", 0x46810940EFF5F915),
]


@pytest.mark.parametrize(("source", "expected"), KNOWN)
def test_fnv1a_64_known_answers(source, expected):
    assert hash_source_id(source) == expected
    assert source_id_hash(source) == expected
    assert source_id_hash(source.decode()) == expected  # str is UTF-8 encoded


def test_utf8_encoding_of_str_sources():
    assert source_id_hash("caméra") == hash_source_id("caméra".encode("utf-8"))


def test_empty_source_hashes_to_zero_and_is_rejected():
    assert hash_source_id(b"") == 0
    assert hash_source_id("") == 0
    with pytest.raises(EmptySourceId, match="empty"):
        source_id_hash("")


def test_a_computed_zero_is_remapped_to_one(monkeypatch):
    monkeypatch.setattr(ids, "fnv1a_64", lambda data: 0)
    assert ids.hash_source_id(b"anything") == 1
    assert ids.source_id_hash(b"anything") == 1


def test_non_bytes_sources_are_refused():
    with pytest.raises(TypeError):
        source_id_hash(42)
