"""The publish and read paths allocate nothing per item (tracemalloc)."""
import tracemalloc

import msgspec
import numpy as np

from ringbuf import Ring, RingReader, F64, U64


class Stamp(msgspec.Struct):
    sequence: U64
    time_s: F64


ITEMS = 100_000


def test_publish_and_read_into_do_not_allocate_per_item(rig):
    ring = Ring.create("a", rig=rig, descriptor=Stamp, capacity=256, payload_shape=(256,))
    reader = RingReader.attach("a", rig=rig, descriptor=Stamp)
    desc = np.zeros(1, reader.descriptor_dtype).view(np.uint8)
    payload = np.zeros(256, np.uint8)
    try:
        def cycle(count):
            for n in range(count):
                ring.claim()[0] = n & 0xFF
                ring.publish(n, 0.5)
                reader.read_into(desc, payload)

        cycle(1000)  # warm caches (struct, slot views)
        tracemalloc.start()
        try:
            base_current, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            cycle(ITEMS)
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Nothing retained per item, and the transient peak is a few objects, not a function of ITEMS.
        assert current - base_current < 1024, current - base_current
        assert peak - base_current < 8192, peak - base_current
        assert reader.lost == 0 and reader.cursor == ITEMS + 1000
    finally:
        reader.close()
        ring.close()


def test_batches_allocate_per_batch_not_per_item(rig):
    ring = Ring.create("b", rig=rig, descriptor=Stamp, capacity=4096)
    reader = RingReader.attach("b", rig=rig, descriptor=Stamp)
    batch = np.zeros(1024, reader.descriptor_dtype)
    out = np.zeros(1024, reader.descriptor_dtype)
    try:
        ring.publish_batch(batch)
        reader.read_batch(out)
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            for _ in range(100):
                ring.publish_batch(batch)
                assert reader.read_batch(out) == 1024
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert current - base < 1024
        # Temporaries per batch (the seq ramp) are O(batch), never O(items published).
        assert peak - base < 64 * 1024
    finally:
        reader.close()
        ring.close()
