import msgspec
import numpy as np
import pytest

from mimir.descriptors import EXPECTED_SIZES
from ringbuf.layout import F32, U8, U64, LayoutError, describe, dtype_of, layout_hash, packer_of


class Tick(msgspec.Struct):
    sequence: U64
    level: F32
    flag: U8


def test_dtype_and_packer_are_derived_from_the_struct():
    assert dtype_of(Tick) == np.dtype([("sequence", "<u8"), ("level", "<f4"), ("flag", "u1")])
    assert packer_of(Tick).size == 13 == dtype_of(Tick).itemsize
    raw = packer_of(Tick).pack(7, 0.5, 3)
    assert np.frombuffer(raw, dtype_of(Tick))[0].tolist() == (7, 0.5, 3)


def test_field_without_binary_type_is_named():
    class Bad(msgspec.Struct):
        ok: U64
        count: int

    with pytest.raises(LayoutError, match=r"Bad\.count"):
        describe(Bad)


def test_layout_hash_changes_with_any_field():
    class A(msgspec.Struct):
        x: U64

    class B(msgspec.Struct):
        x: F32

    assert layout_hash(describe(A)) != layout_hash(describe(B))
    assert layout_hash(describe(A)) == layout_hash(describe(A))


def test_upstream_descriptor_sizes():
    for cls, size in EXPECTED_SIZES.items():
        assert dtype_of(cls).itemsize == size, cls.__name__


def test_binary_bounds_are_validated_by_msgspec():
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"sequence": -1, "level": 0.0, "flag": 0}, Tick)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"sequence": 1, "level": 0.0, "flag": 256}, Tick)
