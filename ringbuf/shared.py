"""The self-describing single-writer shared object every Mimir segment is: rings, the reservoir, the status board.

Layout of the first 256 bytes of every object (:class:`ObjectHeader`)::

    magic            stored LAST by the creator: readers ignore an object without it
    kind             up to 16 ASCII bytes naming the object's kind (``ring``, ``reservoir``, ``blob``)
    version          that kind's format version
    doc_offset/bytes the kind's layout document (msgspec JSON), and its hash
    created_unix_ns
    writer_pid       the single writer, and its start time (``writer_identity``, us):
    writer_identity  together they survive pid reuse
    closed           set by the writer before it unlinks
    label            a readable name (``<rig>/<logical name>``) for the tools

The kind's own static header follows at :data:`KIND_HEADER_OFFSET`; its hot
data after that.

Ownership (one answer, here):
    * **creates**: :meth:`SharedObject.create`, in the writer process. If the
      name exists, it is *reclaimed* when its writer is dead, it was closed,
      or it was never finished by a creator that is gone; it is refused
      (:class:`SegmentExists`, naming the live pid) when its writer lives,
      and (:class:`ForeignObject`, a ``SegmentExists``) when it is another
      kind of object or no Mimir object at all: Mimir never removes what it
      did not make. An empty object is a creation that died before sizing it,
      and is reclaimed.
    * **writes**: only the creator's process. Everything in the object is
      stored by it; readers store nothing, except what a kind explicitly
      hands them (a ring's reader slots).
    * **unlinks**: only the creator, in :meth:`close` (which also removes the
      object's companion files: ``<name>#lock``). On Windows a named
      mapping vanishes with its last handle instead.
    * Stale objects (a SIGKILLed writer's) are found by :func:`scan` and
      removed by :func:`remove_stale`; the next create of the same name
      reclaims one anyway.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Annotated

import msgspec
import numpy as np

from . import fence, process
from .hashing import fnv1a_64
from .layout import U32, U64, dtype_of
from .platform import PLATFORM, SegmentExists, SegmentMissing
from .segment import PREFIX, Segment, segment_name

__all__ = [
    "MAGIC", "HEADER_BYTES", "KIND_HEADER_OFFSET", "ObjectHeader", "SharedObject", "ObjectNotReady",
    "ObjectMismatch", "ObjectInfo", "ForeignObject", "scan", "remove_stale", "kind_tag", "remove_companions",
]

MAGIC = int.from_bytes(b"MIMIROBJ", "little")
HEADER_BYTES = 256
KIND_HEADER_OFFSET = HEADER_BYTES
LABEL_BYTES = 96


KIND_BYTES = 16


def kind_tag(kind: str) -> bytes:
    """The stored tag of a kind name (1-16 ASCII characters)."""
    raw = kind.encode("ascii")
    if not 0 < len(raw) <= KIND_BYTES:
        raise ValueError(f"kind {kind!r}: 1-{KIND_BYTES} ASCII characters")
    return raw


def _kind_name(tag: object) -> str:
    """The kind name stored in ``tag`` (raw bytes, or the header's 0-d bytes field)."""
    return bytes(tag).rstrip(b"\0").decode("ascii", "replace")  # type: ignore[call-overload]


class ObjectHeader(msgspec.Struct):
    """The common header of every Mimir shared object (first 256 bytes; see module docstring)."""

    magic: U64
    kind: Annotated[bytes, msgspec.Meta(max_length=KIND_BYTES, extra={"dtype": f"|S{KIND_BYTES}"})]
    version: U32
    header_bytes: U32
    doc_offset: U64
    doc_bytes: U64
    doc_hash: U64
    created_unix_ns: U64
    writer_pid: U64
    writer_identity: U64
    closed: U64
    label: Annotated[bytes, msgspec.Meta(max_length=LABEL_BYTES, extra={"dtype": f"|S{LABEL_BYTES}"})]


_HEADER_DTYPE = dtype_of(ObjectHeader)
assert _HEADER_DTYPE.itemsize <= HEADER_BYTES


class ObjectNotReady(SegmentMissing):
    """The object exists but its writer has not finished creating it (no magic yet): retry shortly."""


class ObjectMismatch(RuntimeError):
    """The object is not of the kind or version the caller reads (the message names both)."""


class ForeignObject(SegmentExists):
    """A create found that name taken by something that is not a Mimir object of that kind: never reclaimed."""


def _read_header(segment: Segment) -> np.ndarray | None:
    """A copy of the common header (a 0-d structured array), or None when the segment is too small to have one."""
    if segment.size < HEADER_BYTES:
        return None
    return np.ndarray((), dtype=_HEADER_DTYPE, buffer=segment.buf, offset=0).copy()


class SharedObject:
    """One mapped Mimir object: its segment, its common header, its layout document.

    Kinds (rings, the reservoir) hold one of these and lay their own regions
    out after :data:`KIND_HEADER_OFFSET` + their static header.
    """

    def __init__(self, segment: Segment, rig: str, name: str, header: np.ndarray, doc: bytes) -> None:
        self.segment = segment
        self.rig = rig
        self.name = name  # the object name within the rig (segment name minus "mimir-<rig>-")
        self.doc = doc
        self.kind = _kind_name(header["kind"])
        self.version = int(header["version"])
        self.label = bytes(header["label"]).rstrip(b"\0").decode("utf-8", "replace")
        self.writer_pid = int(header["writer_pid"])
        self.writer_identity = int(header["writer_identity"])
        self.created_unix_ns = int(header["created_unix_ns"])
        self._live: np.ndarray | None = np.ndarray((), dtype=_HEADER_DTYPE, buffer=segment.buf, offset=0)

    @property
    def header(self) -> np.ndarray:
        """The live common header (0-d structured view; the writer's to store into). Not after :meth:`close`."""
        assert self._live is not None, "the object was closed"
        return self._live

    @property
    def owner(self) -> bool:
        return self.segment.owner

    @property
    def buf(self):
        return self.segment.buf

    @property
    def size(self) -> int:
        return self.segment.size

    # ---- creation ------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, rig: str, name: str, *, kind: str, version: int, doc: bytes, size: int,
               label: str = "", doc_offset: int | None = None) -> "SharedObject":
        """Create (or reclaim) object ``name`` of ``rig``; everything but the magic is written.

        ``doc`` (the kind's layout document) is stored at ``doc_offset``
        (default: right after the kind header line block); the kind fills its
        own regions, then calls :meth:`publish`. On any error nothing is left.
        """
        seg_name = segment_name(rig, name)
        tag = kind_tag(kind)
        segment = _create_reclaiming(seg_name, size, tag)
        try:
            offset = KIND_HEADER_OFFSET + 256 if doc_offset is None else doc_offset
            if offset + len(doc) > segment.size:
                raise ValueError(f"object {seg_name}: layout document does not fit ({offset + len(doc)} > {segment.size})")
            segment.buf[offset:offset + len(doc)] = doc
            h = np.ndarray((), dtype=_HEADER_DTYPE, buffer=segment.buf, offset=0)
            h["kind"] = tag
            h["version"] = version
            h["header_bytes"] = HEADER_BYTES
            h["doc_offset"] = offset
            h["doc_bytes"] = len(doc)
            h["doc_hash"] = fnv1a_64(doc)
            h["created_unix_ns"] = time.time_ns()
            h["writer_pid"] = os.getpid()
            h["writer_identity"] = process.identity()
            h["label"] = (label or f"{rig}/{name}").encode("utf-8")[:LABEL_BYTES]
            del h
            header = _read_header(segment)
            assert header is not None  # the segment was sized for it
            return cls(segment, rig, name, header, doc)
        except BaseException:
            segment.close()
            PLATFORM.shm_unlink(seg_name)
            raise

    def publish(self) -> None:
        """Store the magic: from now on readers may attach. Call once, after the kind's regions are ready."""
        fence.full_fence()
        memoryview(self.segment.buf).cast("Q")[0] = MAGIC

    # ---- attaching -----------------------------------------------------------------------------------------
    @classmethod
    def attach(cls, rig: str, name: str, *, kind: str, version: int, readonly: bool = False) -> "SharedObject":
        """Map object ``name`` of ``rig`` and check it is a finished object of ``kind`` at ``version``.

        Raises :class:`SegmentMissing` (none), :class:`ObjectNotReady` (no
        magic yet: being created), :class:`ObjectMismatch` (another kind, or
        another format version: the message names both).
        """
        seg_name = segment_name(rig, name)
        segment = Segment.attach(seg_name, readonly=readonly)
        try:
            header = _read_header(segment)
            if header is None:
                raise ObjectMismatch(f"object {seg_name}: {segment.size} B is too small to be a Mimir object")
            magic = int(header["magic"])
            if magic == 0:
                raise ObjectNotReady(f"object {seg_name} is still being created by its writer (or its writer died doing so)")
            if magic != MAGIC:
                raise ObjectMismatch(
                    f"object {seg_name}: bad magic {magic:#x}; not a Mimir object of this version "
                    "(run the same Mimir version everywhere; `mimir doctor` lists objects)"
                )
            found = _kind_name(header["kind"])
            if found != kind:
                raise ObjectMismatch(f"object {seg_name} is a {found}, not a {kind}")
            if int(header["version"]) != version:
                raise ObjectMismatch(
                    f"{kind} {seg_name}: format version {int(header['version'])}, this Mimir reads version {version}; "
                    "run the same Mimir version in the writer and its readers"
                )
            start = int(header["doc_offset"])
            doc = bytes(segment.buf[start:start + int(header["doc_bytes"])])
            if fnv1a_64(doc) != int(header["doc_hash"]):
                raise ObjectMismatch(f"{kind} {seg_name}: its layout document does not match its hash (corrupt)")
            return cls(segment, rig, name, header, doc)
        except BaseException:
            segment.close()
            raise

    # ---- state ---------------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._live is None or bool(int(self._live["closed"]))

    def writer_alive(self) -> bool:
        """False once the writer closed the object or its process is gone."""
        return not self.closed and process.alive(self.writer_pid, self.writer_identity)

    # ---- teardown ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Writer: mark closed, unlink the object and its companions. Everyone: drop the header view.

        The caller unmaps the segment after dropping its own views of it
        (:meth:`unmap`), since numpy views keep the mapping exported.
        """
        if self.segment.owner and self._live is not None:
            self._live["closed"] = 1
            remove_companions(self.segment.name)
            self.segment.unlink()
        self._live = None

    def unmap(self) -> None:
        """Unmap (a view still held by a caller keeps the mapping until it is freed)."""
        self._live = None
        try:
            self.segment.close()
        except BufferError:
            pass


def remove_companions(seg_name: str) -> None:
    """Remove the companion files (``<name>#...``) of segment ``seg_name``."""
    for companion in PLATFORM.list_objects(seg_name + "#"):
        PLATFORM.remove_object(companion)


def _refusal(segment: Segment, tag: bytes) -> SegmentExists | None:
    """Why existing ``segment`` must not be reclaimed (the exception to raise), or None when it is stale."""
    header = _read_header(segment)
    if header is None:
        if segment.size == 0:  # a creator that died between creating and sizing it
            return None
        return ForeignObject(_foreign(segment.name, f"{segment.size} bytes, too small to be a Mimir object"))
    magic, pid, ident = int(header["magic"]), int(header["writer_pid"]), int(header["writer_identity"])
    me = os.getpid()
    if magic == MAGIC:
        kind = bytes(header["kind"]).rstrip(b"\0")
        if kind != tag:
            return ForeignObject(f"shared-memory object {segment.name} exists and is a {_kind_name(kind)}, not a "
                                 f"{_kind_name(tag)}; pick another name or stop that object's owner")
        if int(header["closed"]) or not process.alive(pid, ident):
            return None
        return SegmentExists(f"{_kind_name(tag)} {segment.name} is already written by live process {pid}"
                             + (" (this process)" if pid == me else "; stop it first") + " (one writer per object)")
    if magic == 0:
        if pid and pid != me and process.alive(pid, ident):
            return SegmentExists(f"{_kind_name(tag)} {segment.name} is being created by live process {pid}")
        return None
    return ForeignObject(_foreign(segment.name, f"magic {magic:#x}: another program's, or another Mimir version's"))


def _foreign(name: str, what: str) -> str:
    return (f"shared-memory object {name} exists and is not a Mimir object of this version ({what}); Mimir "
            "never removes what it did not make: stop its owner, or remove it by hand once you know it is not in "
            "use (`mimir doctor` lists it)")


def _create_reclaiming(seg_name: str, size: int, tag: bytes) -> Segment:
    try:
        return Segment.create(seg_name, size)
    except SegmentExists:
        pass
    try:
        existing = Segment.attach(seg_name, readonly=True)
    except SegmentMissing:
        return Segment.create(seg_name, size)
    except PermissionError:
        raise ForeignObject(f"shared-memory object {seg_name} exists and belongs to another user; stop their rig "
                            "or pick another rig name") from None
    try:
        refusal = _refusal(existing, tag)
    finally:
        existing.close()
    if refusal is not None:
        raise refusal
    PLATFORM.shm_unlink(seg_name)
    remove_companions(seg_name)
    return Segment.create(seg_name, size)


# ---- discovery -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectInfo:
    """One Mimir object found on this machine, and whether it is stale (safe to remove)."""

    name: str             # segment or companion name (no slash)
    role: str             # "object", "lock", "doorbell"
    kind: str             # the object's kind ("ring", "reservoir", ...) or "" for companions/unknown
    label: str
    size_bytes: int
    writer_pid: int
    stale: bool
    why: str              # what decided it, for the tools


def _inspect_segment(name: str) -> ObjectInfo:
    try:
        seg = Segment.attach(name, readonly=True)
    except SegmentMissing:
        return ObjectInfo(name, "object", "", "", 0, 0, True, "registered but gone")
    except PermissionError:
        return ObjectInfo(name, "object", "", "", 0, 0, False, "belongs to another user")
    try:
        header = _read_header(seg)
        size = seg.size
    finally:
        seg.close()
    if header is None:
        if size == 0:
            return ObjectInfo(name, "object", "", "", size, 0, True, "creation never finished (empty)")
        return ObjectInfo(name, "object", "", "", size, 0, False, "too small to be a Mimir object")
    magic, pid, ident = int(header["magic"]), int(header["writer_pid"]), int(header["writer_identity"])
    label = bytes(header["label"]).rstrip(b"\0").decode("utf-8", "replace")
    kind = _kind_name(header["kind"]) if magic == MAGIC else ""
    if magic == MAGIC:
        if int(header["closed"]):
            return ObjectInfo(name, "object", kind, label, size, pid, True, "closed by its writer")
        live = process.alive(pid, ident)
        return ObjectInfo(name, "object", kind, label, size, pid, not live,
                          f"writer {pid} alive" if live else f"writer {pid} is gone")
    if magic == 0:
        live = bool(pid) and process.alive(pid, ident)
        return ObjectInfo(name, "object", kind, label, size, pid, not live,
                          f"being created by {pid}" if live else "creation never finished")
    return ObjectInfo(name, "object", "", "", size, pid, False, f"unknown format (magic {magic:#x})")


def scan(rig: str | None = None) -> list[ObjectInfo]:
    """Every Mimir object of ``rig`` (or all rigs) on this machine, each judged stale or in use.

    An object is stale when its writer closed it, its writer process is gone
    (pid and start time), or its creation never finished and the creator is
    gone. A lock file is stale when its object is; a doorbell when the
    process that listens on it is gone. Objects of another user are never
    stale to us.
    """
    from .platform.base import LOCK_MARK, parse_bell_name

    names = PLATFORM.list_objects(PREFIX if rig is None else f"{PREFIX}{rig}-")
    out: dict[str, ObjectInfo] = {}
    for name in names:
        if "#" not in name:
            out[name] = _inspect_segment(name)
    for name in names:
        if "#" not in name:
            continue
        pid = parse_bell_name(name)
        if pid is not None:
            live = process.alive(pid)
            out[name] = ObjectInfo(name, "doorbell", "", "", 0, pid, not live,
                                   f"listener {pid} alive" if live else f"listener {pid} is gone")
            continue
        base = name.split("#", 1)[0]
        owner = out.get(base)
        stale = owner is None or owner.stale
        role = "lock" if name.endswith(LOCK_MARK) else "companion"
        out[name] = ObjectInfo(name, role, "", owner.label if owner else "", 0, owner.writer_pid if owner else 0,
                               stale, "its object is gone" if owner is None else owner.why)
    return [out[n] for n in sorted(out)]


def remove_stale(rig: str | None = None) -> list[str]:
    """Remove every stale object (and companion) of ``rig`` (or all); return the names removed."""
    removed = []
    for info in scan(rig):
        if info.stale and PLATFORM.remove_object(info.name):
            removed.append(info.name)
    return removed
