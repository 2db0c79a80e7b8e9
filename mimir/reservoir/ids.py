"""Source ids: the upstream FNV-1a 64 rule on top of :func:`ringbuf.hashing.fnv1a_64`.

Upstream (``localcast_hash_source_id``): an empty source hashes to 0, which
producer creation rejects; a non-empty source whose FNV-1a 64 is 0 is
remapped to 1, so 0 always means "no source".
"""

from __future__ import annotations

from ringbuf.hashing import fnv1a_64

from .errors import EmptySourceId

__all__ = ["hash_source_id", "source_id_hash"]


def hash_source_id(source: bytes | str) -> int:
    """Upstream ``localcast_hash_source_id``: 0 for an empty source, else FNV-1a 64 with 0 remapped to 1."""
    if isinstance(source, str):
        source = source.encode("utf-8")
    if not source:
        return 0
    return fnv1a_64(source) or 1


def source_id_hash(source: bytes | str) -> int:
    """The sensor id hash of ``source``; raises :class:`EmptySourceId` for an empty source."""
    if not isinstance(source, (bytes, bytearray, memoryview, str)):
        raise TypeError(f"a source id is bytes or str, got {type(source).__name__}")
    value = hash_source_id(bytes(source) if not isinstance(source, str) else source)
    if value == 0:
        raise EmptySourceId(
            "source id is empty: give each producer a stable, non-empty device id (e.g. 'kiyo-primary')"
        )
    return value
