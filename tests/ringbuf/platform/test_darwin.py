"""macOS's rules, run here: 31-character names, marker-file discovery, stale markers after a SIGKILL."""
import multiprocessing as mp
import os
import signal

import msgspec
import pytest

from ringbuf import U64, NameTooLong, Ring, RingReader, remove_stale, scan
from ringbuf.platform.darwin import DarwinPlatform
from ringbuf.segment import list_segments, segment_name

FORK = mp.get_context("fork")


class Stamp(msgspec.Struct):
    sequence: U64


@pytest.fixture
def darwin(tmp_path, use_platform) -> DarwinPlatform:
    platform = DarwinPlatform(objects_dir=tmp_path / "objects")
    use_platform(platform)
    return platform


def test_names_longer_than_31_characters_are_refused(darwin):
    assert segment_name("sixteen_chars_ok", "abcdefg") == "mimir-sixteen_chars_ok-abcdefg"  # 31 with the slash
    with pytest.raises(NameTooLong, match="has 32 characters; darwin allows 31"):
        segment_name("sixteen_chars_ok", "abcdefgh")


def test_objects_are_found_through_markers_and_companions_live_beside_them(darwin, rig):
    ring = Ring.create("r", rig=rig, descriptor=Stamp, capacity=4)
    reader = RingReader.attach("r", rig=rig, descriptor=Stamp)
    assert not reader.wait(0.01)  # creates the reader's FIFO doorbell
    names = list_segments(rig)
    bells = [n for n in names if "#bell." in n]
    assert len(bells) == 1 and sorted(set(names) - set(bells)) == [f"mimir-{rig}-r", f"mimir-{rig}-r#lock"]
    assert sorted(os.listdir(darwin.objects_dir)) == names
    reader.close()
    ring.close()
    assert list_segments(rig) == [] and os.listdir(darwin.objects_dir) == []


def _create_and_hang(rig, ready) -> None:
    Ring.create("r", rig=rig, descriptor=Stamp, capacity=4)
    ready.set()
    signal.pause()


def test_a_sigkilled_creator_leaves_a_marker_and_an_object_that_scan_finds_stale(darwin, rig):
    ready = FORK.Event()
    proc = FORK.Process(target=_create_and_hang, args=(rig, ready))
    proc.start()
    try:
        assert ready.wait(10)
        assert not any(i.stale for i in scan(rig))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        stale = {i.name: i.why for i in scan(rig) if i.stale}
        gone = f"writer {proc.pid} is gone"
        assert stale == {f"mimir-{rig}-r": gone, f"mimir-{rig}-r#lock": gone}
        assert sorted(remove_stale(rig)) == sorted(stale)
        assert list_segments(rig) == []
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()


def test_limits_say_what_macos_does(darwin):
    limits = darwin.limits()
    assert "31" in limits["names"] and "marker files" in limits["discovery"] and "watchdog" in limits["parent death"]
