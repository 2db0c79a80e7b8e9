"""The snapshot's span against a rig the test drives item by item (``tests/mimir/_fake_rig.py``).

The span ends at the reservoir's edge, the newest item of *any* source. Under
load the audio worker's blocks arrive tens of milliseconds after a camera's
frame (CI saw 1,115 of 1,125 blocks in a 1.5 s snapshot, the manifest saying
complete). Here the cameras run ahead of the audio by a known amount, so what
the take must hold is exact.
"""

from __future__ import annotations

import threading
import time


from mimir.snapshot import take_snapshot
from mimir.snapshot.capture import CATCH_UP_S

SHORT = "items up to the span's end"


def cameras_ahead(r, frames: int) -> int:
    """Both cameras publish ``frames`` more frames while the audio publishes nothing; the new edge (ns)."""
    for _ in range(frames):
        for c in range(len(r.cameras)):
            r.publish_frame(c)
    return max(r.frame_time(r.frames_published[c] - 1, c) for c in range(len(r.cameras)))


def blocks_in(r, t0: int, t1: int) -> int:
    return sum(1 for n in range(r.blocks_published) if t0 <= r.block_time(n) <= t1)


def test_a_source_behind_the_edge_is_waited_for_and_the_take_reaches_the_span_end(fake_rig, tmp_path):
    """Invariant: every audio block up to the edge the snapshot chose is written, though it was indexed after."""
    r = fake_rig()
    r.run(2.0)
    edge_ns = cameras_ahead(r, 4)  # the audio is ~100 ms behind the cameras' newest frame
    assert edge_ns - r.block_time(r.blocks_published - 1) > 80_000_000

    def audio_catches_up() -> None:
        time.sleep(0.05)
        while r.block_time(r.blocks_published) <= edge_ns + 20_000_000:
            r.publish_block()

    worker = threading.Thread(target=audio_catches_up)
    worker.start()
    try:
        result = take_snapshot(r.rig, 1.0, tmp_path / "take")
    finally:
        worker.join()
    t0, t1 = result.span_ns
    assert t1 == edge_ns
    expected = blocks_in(r, t0, t1)
    assert expected >= 749  # 1 s of 64-frame blocks at 48 kHz: 750, give or take the boundary
    assert result.written["audio"] == expected and result.lost["audio"] == 0
    assert [m for m in result.manifest.missing if m.what == SHORT] == []


def test_a_source_still_behind_after_the_wait_is_listed_with_how_far(fake_rig, tmp_path):
    """Invariant: a take that ends short for a source says so in its manifest (never complete and short)."""
    r = fake_rig()
    r.run(2.0)
    edge_ns = cameras_ahead(r, 4)
    behind_ms = (edge_ns - r.block_time(r.blocks_published - 1)) / 1e6
    started = time.monotonic()
    result = take_snapshot(r.rig, 1.0, tmp_path / "take")
    assert time.monotonic() - started >= CATCH_UP_S
    (short,) = [m for m in result.manifest.missing if m.what == SHORT]
    assert short.source == "audio" and f"{behind_ms:.1f} ms before the span's end" in short.cause
    assert not result.manifest.complete
    t0, t1 = result.span_ns
    assert result.written["audio"] == blocks_in(r, t0, t1)  # what was there is written all the same
    assert all(result.written[name] >= 29 for name in ("cam.synthetic.0", "cam.synthetic.1"))
