"""Binary layouts declared once, as msgspec Structs.

A layout is a ``msgspec.Struct`` whose every field is annotated with one of the
binary types below (``U64``, ``F32``, ...). Each type is an ordinary ``int`` or
``float`` annotation carrying its little-endian numpy dtype in
``msgspec.Meta(extra={"dtype": ...})``. From that one declaration this module
derives everything else:

* :func:`dtype_of`   - the numpy structured dtype of one record (packed, little-endian);
* :func:`packer_of`  - a precompiled :class:`struct.Struct` for fast scalar pack/unpack;
* :func:`describe`   - a :class:`Layout` document (name, fields, size) stored in
  ring headers so an attacher can check it reads what the writer writes;
* :func:`layout_hash` - a 64-bit hash of that document.

Example::

    class Tick(msgspec.Struct):
        sequence: U64
        value: F32

    dtype_of(Tick)        # dtype([('sequence', '<u8'), ('value', '<f4')])
"""

from __future__ import annotations

import hashlib
import struct
import typing
from functools import cache
from typing import Annotated

import msgspec
import numpy as np

__all__ = [
    "U8", "U16", "U32", "U64", "I8", "I16", "I32", "I64", "F32", "F64", "Bytes",
    "Field", "struct_code", "Layout", "LayoutError", "dtype_of", "packer_of", "describe", "layout_hash",
    "field_names", "record_fields",
]


# Each binary type is a plain type alias (so type checkers read ``sequence: U64`` as an ``int``) carrying its
# little-endian numpy dtype, and msgspec's bounds, in ``msgspec.Meta``.
U8 = Annotated[int, msgspec.Meta(extra={"dtype": "<u1"}, ge=0, le=2**8 - 1)]
U16 = Annotated[int, msgspec.Meta(extra={"dtype": "<u2"}, ge=0, le=2**16 - 1)]
U32 = Annotated[int, msgspec.Meta(extra={"dtype": "<u4"}, ge=0, le=2**32 - 1)]
# msgspec bounds stop at int64; the packer rejects > 2**64-1
U64 = Annotated[int, msgspec.Meta(extra={"dtype": "<u8"}, ge=0)]
I8 = Annotated[int, msgspec.Meta(extra={"dtype": "<i1"}, ge=-(2**7), le=2**7 - 1)]
I16 = Annotated[int, msgspec.Meta(extra={"dtype": "<i2"}, ge=-(2**15), le=2**15 - 1)]
I32 = Annotated[int, msgspec.Meta(extra={"dtype": "<i4"}, ge=-(2**31), le=2**31 - 1)]
I64 = Annotated[int, msgspec.Meta(extra={"dtype": "<i8"}, ge=-(2**63), le=2**63 - 1)]
F32 = Annotated[float, msgspec.Meta(extra={"dtype": "<f4"})]
F64 = Annotated[float, msgspec.Meta(extra={"dtype": "<f8"})]


def Bytes(size: int) -> object:
    """A fixed-size byte string field (NUL padded), e.g. a name: ``name: Bytes(32)``."""
    return Annotated[bytes, msgspec.Meta(max_length=size, extra={"dtype": f"|S{size}"})]

# numpy dtype string -> struct module code (all little-endian, no padding).
_STRUCT_CODES = {
    "<u1": "B", "<u2": "H", "<u4": "I", "<u8": "Q",
    "<i1": "b", "<i2": "h", "<i4": "i", "<i8": "q",
    "<f4": "f", "<f8": "d", "|u1": "B", "|i1": "b",
}


class LayoutError(TypeError):
    """A Struct cannot be used as a binary layout, or two layouts disagree."""


class Field(msgspec.Struct, frozen=True):
    name: str
    dtype: str


class Layout(msgspec.Struct, frozen=True):
    """The self-description of a binary record, stored in ring headers."""

    name: str
    fields: tuple[Field, ...]
    itemsize: int

    def __str__(self) -> str:
        body = ", ".join(f"{f.name}:{f.dtype}" for f in self.fields)
        return f"{self.name}({body}; {self.itemsize} B)"


@cache
def describe(struct_cls: type[msgspec.Struct]) -> Layout:
    """Return the :class:`Layout` of ``struct_cls``; raise :class:`LayoutError` if a field has no binary type."""
    if not (isinstance(struct_cls, type) and issubclass(struct_cls, msgspec.Struct)):
        raise LayoutError(f"{struct_cls!r} is not a msgspec.Struct subclass")
    hints = typing.get_type_hints(struct_cls, include_extras=True)
    fields = []
    for name in struct_cls.__struct_fields__:
        dtype = _dtype_of_annotation(hints[name])
        if dtype is None:
            raise LayoutError(
                f"{struct_cls.__name__}.{name}: annotation {hints[name]!r} carries no binary type; "
                "annotate it with one of ringbuf.layout.U8 ... F64"
            )
        fields.append(Field(name, dtype))
    itemsize = sum(np.dtype(f.dtype).itemsize for f in fields)
    return Layout(struct_cls.__name__, tuple(fields), itemsize)


def _dtype_of_annotation(annotation: object) -> str | None:
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, msgspec.Meta) and meta.extra and "dtype" in meta.extra:
            return str(meta.extra["dtype"])
    return None


@cache
def dtype_of(struct_cls: type[msgspec.Struct]) -> np.dtype:
    """The packed little-endian numpy structured dtype of one record of ``struct_cls``."""
    layout = describe(struct_cls)
    return np.dtype([(f.name, f.dtype) for f in layout.fields])


def struct_code(dtype: str) -> str:
    """The :mod:`struct` code of one field dtype string (``"<u8"`` -> ``"Q"``, ``"|S32"`` -> ``"32s"``)."""
    if dtype.startswith("|S"):
        return dtype[2:] + "s"
    try:
        return _STRUCT_CODES[dtype]
    except KeyError:
        raise LayoutError(f"dtype {dtype} has no struct code") from None


@cache
def packer_of(struct_cls: type[msgspec.Struct]) -> struct.Struct:
    """A precompiled :class:`struct.Struct` packing the fields of ``struct_cls`` in declaration order."""
    return packer_of_layout(describe(struct_cls))


def packer_of_layout(layout: Layout) -> struct.Struct:
    return struct.Struct("<" + "".join(struct_code(f.dtype) for f in layout.fields))


def field_names(struct_cls: type[msgspec.Struct]) -> tuple[str, ...]:
    return tuple(struct_cls.__struct_fields__)


def record_fields(dtype: np.dtype) -> tuple[str, ...]:
    """The field names of a record (structured) dtype, in order; :class:`LayoutError` for a plain dtype."""
    names = dtype.names
    if names is None:
        raise LayoutError(f"{dtype} is not a record dtype: it has no fields")
    return names


def layout_hash(layout: Layout) -> int:
    """A stable 64-bit hash of a layout document (blake2b of its msgspec JSON encoding)."""
    digest = hashlib.blake2b(msgspec.json.encode(layout), digest_size=8).digest()
    return int.from_bytes(digest, "little")
