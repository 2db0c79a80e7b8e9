"""RegisteredArena: input checks and flag/fallback logic on real ring mappings, with the CUDA runtime faked.

The fake stands in for ``cupy.cuda.runtime`` only (the injectable ``runtime``
seam: ``getDevice``, ``deviceGetAttribute``, ``hostRegister``,
``hostUnregister``, ``CUDARuntimeError``); the arenas are real ring
mappings. The real registration runs in the CUDA test at the end.
"""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from bench.gpu import ring_arena
from mimir.descriptors import CameraFrameDescriptor
from mimir.gpu.arena import HOST_REGISTER_PORTABLE, HOST_REGISTER_READ_ONLY, RegisteredArena
from ringbuf import Ring, RingReader
from ringbuf.segment import Segment, segment_name


class FakeRuntime:
    """Records calls; answers the two capability attributes as configured; can refuse registration."""

    cudaDevAttrHostRegisterSupported = 99
    cudaDevAttrHostRegisterReadOnlySupported = 113

    class CUDARuntimeError(RuntimeError):
        pass

    def __init__(self, *, supported: bool = True, read_only_supported: bool = True, refuse: str | None = None) -> None:
        self.attrs = {99: int(supported), 113: int(read_only_supported)}
        self.refuse = refuse
        self.calls: list[tuple] = []

    def getDevice(self) -> int:
        return 0

    def deviceGetAttribute(self, attr: int, device: int) -> int:
        self.calls.append(("attr", attr, device))
        return self.attrs[attr]

    def hostRegister(self, ptr: int, size: int, flags: int) -> None:
        self.calls.append(("register", ptr, size, flags))
        if self.refuse:
            raise self.CUDARuntimeError(self.refuse)

    def hostUnregister(self, ptr: int) -> None:
        self.calls.append(("unregister", ptr))

    def of(self, kind: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == kind]


@pytest.fixture
def ring(rig):
    with Ring.create("cam.test.0", descriptor=CameraFrameDescriptor, capacity=4, payload_shape=(48, 64, 2), rig=rig) as r:
        with RingReader.attach("cam.test.0", rig=rig, register=False) as reader:
            yield r, reader


def test_a_ring_arena_is_page_aligned_and_registers_read_write(ring):
    _, reader = ring
    arena = ring_arena(reader)
    assert arena.ctypes.data % mmap.PAGESIZE == 0 and arena.flags.writeable
    rt = FakeRuntime()
    reg = RegisteredArena(arena, runtime=rt)
    assert reg.registered and reg.fallback_reason is None and not reg.read_only
    assert rt.of("register") == [("register", arena.ctypes.data, arena.nbytes, HOST_REGISTER_PORTABLE)]
    slot = reader._m.slots[2]
    assert reg.contains(slot) and not reg.contains(np.zeros(4, np.uint8))
    reg.close()
    reg.close()  # idempotent
    assert rt.of("unregister") == [("unregister", arena.ctypes.data)]
    assert "closed" in repr(reg)


def test_a_read_only_mapping_registers_read_only(ring, rig):
    """A PROT_READ mapping of the ring's segment gives a non-writable view: the ReadOnly flag is used."""
    segment = Segment.attach(segment_name(rig, "cam.test.0"), readonly=True)
    try:
        view = np.frombuffer(segment.buf, np.uint8)
        assert not view.flags.writeable
        rt = FakeRuntime()
        with RegisteredArena(view, runtime=rt) as reg:
            assert reg.registered and reg.read_only
            assert reg.flags == HOST_REGISTER_PORTABLE | HOST_REGISTER_READ_ONLY
        assert len(rt.of("unregister")) == 1
        del view, reg
    finally:
        segment.close()


def test_read_only_unsupported_falls_back_with_a_reason(ring):
    _, reader = ring
    arena = ring_arena(reader).view()
    arena.flags.writeable = False
    rt = FakeRuntime(read_only_supported=False)
    reg = RegisteredArena(arena, runtime=rt)
    assert not reg.registered and reg.flags is None
    assert "read-only" in reg.fallback_reason and "pageable" in reg.fallback_reason
    assert rt.of("register") == []
    reg.close()
    assert rt.of("unregister") == []


def test_no_host_register_support_falls_back(ring):
    rt = FakeRuntime(supported=False)
    reg = RegisteredArena(ring_arena(ring[1]), runtime=rt)
    assert not reg.registered and "does not support cudaHostRegister" in reg.fallback_reason
    assert rt.of("register") == []


def test_driver_refusal_falls_back_with_its_message(ring):
    rt = FakeRuntime(refuse="cudaErrorHostMemoryAlreadyRegistered: part of the range is already registered")
    reg = RegisteredArena(ring_arena(ring[1]), runtime=rt)
    assert not reg.registered
    assert "refused" in reg.fallback_reason and "AlreadyRegistered" in reg.fallback_reason
    assert "not registered" in repr(reg)
    reg.close()
    assert rt.of("unregister") == []


def test_input_is_checked(ring):
    arena = ring_arena(ring[1])
    rt = FakeRuntime()
    with pytest.raises(ValueError, match="page boundary"):
        RegisteredArena(arena[1:], runtime=rt)
    with pytest.raises(ValueError, match="uint8"):
        RegisteredArena(arena.view(np.uint16), runtime=rt)
    with pytest.raises(ValueError, match="C-contiguous"):
        RegisteredArena(arena[::2], runtime=rt)
    with pytest.raises(ValueError, match="empty"):
        RegisteredArena(arena[:0], runtime=rt)
    assert rt.calls == []


def test_real_registration(ring, cupy_device):
    _, reader = ring
    with RegisteredArena(ring_arena(reader)) as reg:
        assert reg.registered, reg.fallback_reason
