"""Producers: the only way capture adapters' samples enter the reservoir with reservoir metadata.

A producer owns its sample kind, its source hash and a monotonically
increasing sequence, and stamps flags 0 (upstream ``LocalcastProducer``).
It lives in the writer process (the supervisor) and is bound to one
:class:`Reservoir`; it is not shared across processes.

Typed pushes store the descriptor in the reservoir's descriptor slot beside
the sample; the sample's ``payload_handle`` becomes the *descriptor handle*
(``reservoir.handle_id << 48 | position``), which any attached process
resolves with ``view.descriptor(handle)`` or a :class:`HandleResolver`. The
descriptor's own handles (``data_handle``, ``point_buffer_handle``,
``payload_handle``) are ring payload handles.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from mimir.descriptors import (
    AudioBlockDescriptor, CameraFeature, CameraFrameDescriptor, RenderPacketDescriptor, SampleKind,
)
from ringbuf.layout import dtype_of

from .batch import u64_column
from .errors import EmptySourceId, MissingDescriptor, WrongProducerKind
from .ids import source_id_hash
from .layout import KINDS, TYPED_DESCRIPTORS, check_kind
from .results import BatchResult

if TYPE_CHECKING:
    from .store import Reservoir

__all__ = ["Producer"]

_MAX_U64 = (1 << 64) - 1
_astuple = msgspec.structs.astuple


class Producer:
    """Stamps samples of one kind from one source and pushes them into its reservoir (writer process only)."""

    __slots__ = ("_reservoir", "_push", "_kind", "_sensor", "_latest_word", "next_sequence", "_descriptor_pack",
                 "_descriptor_field_count", "_descriptor_class")

    def __init__(self, reservoir: Reservoir, kind: int, sensor_id_hash: int, initial_sequence: int,
                 latest_word: int) -> None:
        self._reservoir = reservoir
        self._push = reservoir._push
        self._kind = kind
        self._sensor = sensor_id_hash
        self._latest_word = latest_word  # word of this pair's latest-table position_plus_one
        self.next_sequence = initial_sequence
        """The sequence the next push stamps (upstream ``localcast_producer_next_sequence``)."""
        cls = TYPED_DESCRIPTORS.get(KINDS[kind])
        self._descriptor_class = cls  # None for a kind without a descriptor
        self._descriptor_pack = reservoir._descriptor_pack.get(kind)
        self._descriptor_field_count = len(cls.__struct_fields__) if cls is not None else 0

    @classmethod
    def _create(cls, reservoir: Reservoir, kind: int, source: bytes | str | None, *, sensor_id_hash: int | None,
                initial_sequence: int) -> "Producer":
        kind = check_kind(kind)
        if (source is None) == (sensor_id_hash is None):
            raise TypeError("give a producer either a source id (bytes/str) or a sensor_id_hash, not both or neither")
        if source is not None:
            sensor = source_id_hash(source)
        else:
            assert sensor_id_hash is not None  # exactly one of the two was given
            try:
                sensor = operator.index(sensor_id_hash)
            except TypeError:
                raise TypeError(f"sensor_id_hash must be an int, got {type(sensor_id_hash).__name__}") from None
            if not 0 <= sensor <= _MAX_U64:
                raise ValueError(f"sensor_id_hash must be a u64, got {sensor}")
            if sensor == 0:
                raise EmptySourceId("sensor_id_hash 0 is the hash of an empty source id; hash a real device id")
        if not isinstance(initial_sequence, int) or not 0 <= initial_sequence <= _MAX_U64:
            raise ValueError(f"initial_sequence must be a u64 int, got {initial_sequence!r}")
        return cls(reservoir, kind, sensor, initial_sequence, reservoir._latest_word_for(kind, sensor))

    @property
    def kind(self) -> SampleKind:
        return KINDS[self._kind]

    @property
    def sensor_id_hash(self) -> int:
        return self._sensor

    def __repr__(self) -> str:
        return f"<Producer {self.kind.name} sensor={self._sensor:#018x} next_sequence={self.next_sequence}>"

    # ---- single pushes ----------------------------------------------------------------------------------------
    def push(self, timestamp_ns: int, arrival_ns: int, payload_handle: int = 0) -> int:
        """Push one sample (upstream ``localcast_producer_push``); return its position, or LATE (-1).

        The sequence advances for every accepted sample, late ones included.
        """
        sequence = self.next_sequence
        position = self._push(self._kind, self._sensor, timestamp_ns, arrival_ns, sequence, payload_handle, 0,
                              self._latest_word, None, ())
        self.next_sequence = sequence + 1
        return position

    def push_observed(self, timestamp_ns: int, arrival_ns: int,
                      descriptor: msgspec.Struct | Sequence[int | float] | None = None) -> int:
        """Push one observed (untrusted) sample: see :meth:`Reservoir.push_observed`.

        Returns its position, or a negative :class:`~mimir.reservoir.Refused`;
        the sequence advances only for a stored sample.
        """
        values = None if descriptor is None else (
            _astuple(descriptor) if isinstance(descriptor, msgspec.Struct) else tuple(descriptor))
        sequence = self.next_sequence
        position = self._reservoir.push_observed(self._kind, self._sensor, timestamp_ns, arrival_ns, sequence, values)
        if position >= 0:
            self.next_sequence = sequence + 1
        return position

    def push_audio_block(self, timestamp_ns: int, arrival_ns: int,
                         descriptor: AudioBlockDescriptor | tuple[int | float, ...]) -> int:
        """Push an AUDIO_BLOCK sample with its :class:`AudioBlockDescriptor` (or its 7 values in order)."""
        return self._push_typed(SampleKind.AUDIO_BLOCK, timestamp_ns, arrival_ns, descriptor)

    def push_camera_feature(self, timestamp_ns: int, arrival_ns: int,
                            descriptor: CameraFeature | tuple[int | float, ...]) -> int:
        """Push a CAMERA_FEATURE sample with its :class:`CameraFeature` (or its 8 values in order).

        For a features producer the supervisor trusts; it indexes the features
        worker's records with :meth:`push_observed` instead (they may never move the edge).
        """
        return self._push_typed(SampleKind.CAMERA_FEATURE, timestamp_ns, arrival_ns, descriptor)

    def push_render_packet(self, timestamp_ns: int, arrival_ns: int,
                           descriptor: RenderPacketDescriptor | tuple[int | float, ...]) -> int:
        """Push a RENDER_PACKET sample with its :class:`RenderPacketDescriptor` (or its 10 values in order)."""
        return self._push_typed(SampleKind.RENDER_PACKET, timestamp_ns, arrival_ns, descriptor)

    def push_camera_frame(self, timestamp_ns: int, arrival_ns: int,
                          descriptor: CameraFrameDescriptor | tuple[int | float, ...]) -> int:
        """Push a CAMERA_FRAME sample with its :class:`CameraFrameDescriptor` (or its 10 values in order)."""
        return self._push_typed(SampleKind.CAMERA_FRAME, timestamp_ns, arrival_ns, descriptor)

    def _push_typed(self, kind: SampleKind, timestamp_ns: int, arrival_ns: int, descriptor: object) -> int:
        if self._kind != kind:
            raise WrongProducerKind(
                f"push_{kind.name.lower()} needs a {kind.name} producer; this one produces {self.kind.name} "
                f"(create one with reservoir.producer(SampleKind.{kind.name}, source))"
            )
        values: Sequence[int | float]
        if descriptor.__class__ is self._descriptor_class:
            values = _astuple(descriptor)
        else:
            values = self._descriptor_values(descriptor)
        sequence = self.next_sequence
        position = self._push(self._kind, self._sensor, timestamp_ns, arrival_ns, sequence, 0, 0,
                              self._latest_word, self._descriptor_pack, values)
        self.next_sequence = sequence + 1
        return position

    def _descriptor_values(self, descriptor: object) -> Sequence[int | float]:
        """A descriptor given other than as an instance of exactly its Struct: its values, checked."""
        cls = self._descriptor_class
        assert cls is not None  # _push_typed checked the kind: a typed one
        values: Sequence[int | float]
        if descriptor is None:
            raise MissingDescriptor(
                f"{self.kind.name} push without a descriptor: pass a {cls.__name__} "
                "(upstream rejects a null descriptor too)"
            )
        if isinstance(descriptor, tuple):
            values = descriptor
        elif isinstance(descriptor, cls):
            values = msgspec.structs.astuple(descriptor)
        else:
            raise TypeError(f"{self.kind.name} push needs a {cls.__name__} or a tuple of its values, "
                            f"got {type(descriptor).__name__}")
        if len(values) != self._descriptor_field_count:
            if isinstance(descriptor, cls):  # a subclass such as AudioBlockRecord: keep the descriptor's fields
                return values[: self._descriptor_field_count]
            raise TypeError(
                f"{cls.__name__} has {self._descriptor_field_count} fields ({', '.join(cls.__struct_fields__)}), "
                f"got {len(values)} values"
            )
        return values

    # ---- batches ----------------------------------------------------------------------------------------------
    def push_batch(
        self,
        timestamps_ns: np.ndarray,
        arrival_ns: np.ndarray | None = None,
        payload_handles: np.ndarray | None = None,
        descriptors: np.ndarray | None = None,
    ) -> BatchResult:
        """Push ``len(timestamps_ns)`` samples at once with consecutive sequences.

        ``arrival_ns`` defaults to the timestamps, ``payload_handles`` to 0.
        ``descriptors`` (typed producers only) is a structured array of the
        kind's descriptor dtype; the payload handles then become descriptor
        handles. Same result as pushing the rows one by one.
        """
        timestamps = u64_column("timestamps_ns", timestamps_ns)
        count = timestamps.shape[0]
        arrivals = timestamps if arrival_ns is None else u64_column("arrival_ns", arrival_ns, count)
        payloads = (np.zeros(count, dtype=np.uint64) if payload_handles is None
                    else u64_column("payload_handles", payload_handles, count))
        descriptor_kind = None
        if descriptors is not None:
            cls = self._descriptor_class
            if cls is None:
                raise WrongProducerKind(
                    f"{self.kind.name} samples carry no descriptor; descriptors are for "
                    + ", ".join(kind.name for kind in TYPED_DESCRIPTORS)
                )
            if descriptors.dtype != dtype_of(cls) or descriptors.shape != (count,):
                raise TypeError(
                    f"push_batch: descriptors must be a ({count},) array of dtype_of({cls.__name__}) = "
                    f"{dtype_of(cls)}, got {descriptors.shape} {descriptors.dtype}"
                )
            descriptor_kind = self._kind
        sequences = np.arange(self.next_sequence, self.next_sequence + count, dtype=np.uint64)
        kinds = np.full(count, self._kind, dtype=np.uint8)
        sensors = np.full(count, self._sensor, dtype=np.uint64)
        reserved = np.zeros(count, dtype=np.uint64)
        result = self._reservoir._push_arrays(kinds, sensors, timestamps, arrivals, sequences, payloads, reserved,
                                              descriptor_kind=descriptor_kind, descriptors=descriptors)
        self.next_sequence += count
        return result
