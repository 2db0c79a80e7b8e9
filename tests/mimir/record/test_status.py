"""The recorder's status board: published, read back untorn, several recorders, names that fit macOS."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from mimir.record.ledger import Cause
from mimir.record.status import (
    MAX_RECORDERS,
    RecorderBoard,
    RecorderHeader,
    RecorderState,
    read_recorders,
    recorder_lines,
    recorder_object_id,
)
from ringbuf import SegmentExists, remove_stale
from ringbuf.platform.darwin import DarwinPlatform
from ringbuf.segment import MAX_RIG_CHARS, segment_name


def header(pid: int = 4242, **kw) -> RecorderHeader:
    values = dict(pid=pid, state=int(RecorderState.RECORDING), started_unix_ns=1, seconds=12.5,
                  written_bytes=250_000_000, mb_per_s=20.0, free_bytes=80_000_000_000, staged_bytes=0, lag_ms=15.0,
                  sources=2, split_seconds=0.0, video=b"raw", out=b"/takes/a", error=b"")
    values.update(kw)
    return RecorderHeader(**values)


def row(name: str, camera: bool, published: int, written: int, **skipped: int) -> tuple:
    causes = [skipped.get(c.name.lower(), 0) for c in Cause]
    return (name.encode(), int(camera), published, written, *causes)


def test_a_snapshot_reads_back_and_renders(rig):
    board = RecorderBoard(rig)
    try:
        assert board.object_id == "rec0"
        board.publish(header(), [row("cam.synthetic.0", True, 100, 97, lapped=1, behind=2),
                                 row("audio", False, 750, 750)])
        (status,) = read_recorders(rig)
        assert status.alive and status.object_id == "rec0"
        assert status.header["out"] == "/takes/a" and status.header["video"] == "raw"
        assert [s["name"] for s in status.sources] == ["cam.synthetic.0", "audio"]
        assert status.sources[0]["lapped"] == 1 and status.sources[0]["behind"] == 2
        lines = recorder_lines([status])
        assert lines[0].startswith("recorder rec0 pid 4242 recording: /takes/a (raw), 12.5 s")
        assert "lapped 1, behind 2" in lines[2] and lines[3].rstrip().endswith("-")
    finally:
        board.close()
    assert read_recorders(rig) == []


def test_each_recorder_takes_the_next_board_and_a_killed_one_shows_as_gone(rig):
    boards = [RecorderBoard(rig) for _ in range(2)]
    try:
        assert [b.object_id for b in boards] == ["rec0", "rec1"]
        script = textwrap.dedent(f"""
            import os, sys
            from mimir.record.status import RecorderBoard, RecorderHeader
            b = RecorderBoard("{rig}")
            h = RecorderHeader(os.getpid(), 0, 1, 1.0, 0, 0.0, 0, 0, 0.0, 0, 0.0, b"raw", b"/x", b"")
            b.publish(h, [])
            print(b.object_id, flush=True)
            os._exit(0)   # dies without closing its board: as after kill -9
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == "rec2", done.stderr
        gone = [r for r in read_recorders(rig) if r.object_id == "rec2"]
        assert len(gone) == 1 and not gone[0].alive
        assert "GONE" in recorder_lines(gone)[0]
        again = RecorderBoard(rig)  # a dead recorder's board is reclaimed by the next one
        assert again.object_id == "rec2"
        again.close()
    finally:
        for b in boards:
            b.close()
        remove_stale(rig)


def test_board_names_fit_macos_with_the_longest_rig_name():
    macos = DarwinPlatform()
    for i in range(MAX_RECORDERS):
        name = segment_name("r" * MAX_RIG_CHARS, recorder_object_id(i))
        macos.check_name(name)
        assert len(name) + 1 <= 31


def test_more_recorders_than_boards_is_refused(rig):
    boards = []
    try:
        for _ in range(MAX_RECORDERS):
            boards.append(RecorderBoard(rig))
        with pytest.raises(SegmentExists, match=f"{MAX_RECORDERS} recorders"):
            RecorderBoard(rig)
    finally:
        for b in boards:
            b.close()
