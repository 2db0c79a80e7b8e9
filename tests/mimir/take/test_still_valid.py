"""write_frame(still_valid=...): a frame whose memory changed while it was copied is not written, nor counted."""

from __future__ import annotations

import numpy as np

from mimir.take import CameraSource, TakeWriter, open_take

T0 = 31_536_000_123_456_789


def test_a_frame_that_changed_during_its_copy_is_not_written(tmp_path):
    cam = CameraSource("cam", 8, 4, "GREY", 30.0, encoding="raw")
    frames = [np.full((4, 8), n, np.uint8) for n in range(5)]
    with TakeWriter(tmp_path / "t", [cam]) as take:
        assert take.write_frame("cam", frames[0], T0, sequence=0, still_valid=lambda: True)
        assert not take.write_frame("cam", frames[1], T0 + 1_000_000, sequence=1, still_valid=lambda: False)
        assert take.write_frame("cam", frames[2], T0 + 2_000_000, sequence=2)
        assert not take.write_frame("cam", frames[3], T0 + 3_000_000, sequence=3, still_valid=lambda: False)
        assert take.write_frame("cam", frames[4], T0 + 4_000_000, sequence=4)
    m = take.manifest
    assert m.source("cam").written == 3
    assert [(g.missing, g.unit) for g in m.source("cam").gaps] == [(1, "frames"), (1, "frames")]  # shown as gaps
    back = open_take(tmp_path / "t").frames("cam")
    assert back.sequence.tolist() == [0, 2, 4]
    assert [int(p[0, 0]) for p in back.pixels] == [0, 2, 4]
