"""FNV-1a 64, the stable id hash shared with the upstream reservoir ABI."""

from __future__ import annotations

__all__ = ["FNV_OFFSET_BASIS", "FNV_PRIME", "fnv1a_64"]

FNV_OFFSET_BASIS = 14695981039346656037
FNV_PRIME = 1099511628211
_MASK_64 = (1 << 64) - 1


def fnv1a_64(data: bytes | str) -> int:
    """FNV-1a 64 of ``data`` (str is UTF-8 encoded). Pure function; empty input hashes to the offset basis."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    h = FNV_OFFSET_BASIS
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & _MASK_64
    return h
