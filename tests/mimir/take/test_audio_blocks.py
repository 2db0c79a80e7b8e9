"""write_audio_blocks writes exactly what write_audio writes block by block: files, tables, XDF, gaps, parts."""

from __future__ import annotations

import random

import msgspec
import numpy as np
import pytest
import soundfile

from mimir.take import AudioSource, ClockSegment, TakeWriter, open_take
from mimir.take.table import read_table
from mimir.take.xdf import block_records, blocks_records

RATE = 48_000
T0 = 31_536_000_123_456_789


def _blocks(n: int, *, equal: bool, seed: int) -> list[tuple[int, int, np.ndarray]]:
    """``(canonical_ns, start_sample, block)``: gaps (forward and back) and uneven lengths where asked."""
    rng = np.random.default_rng(seed)
    out, start = [], 5_000
    for i in range(n):
        frames = 64 if equal else int(rng.integers(1, 200))
        if i in (37, 90):
            start += 1_000          # the device dropped samples: a gap
        if i == 150:
            start -= 500            # the counter went back: a gap too
        block = rng.integers(0, 2**32, (frames, 2), dtype=np.uint64).astype(np.uint32).view(np.float32)
        out.append((T0 + round(start * 1e9 / RATE), start, block))
        start += frames
    return out


def _take(directory, blocks, *, batched: bool, seed: int):
    mic = AudioSource("mic", 2, RATE, "float32")
    rng = random.Random(seed)
    with TakeWriter(directory, [mic], split_seconds=0.05) as take:  # a part every 2,400 samples
        i = 0
        while i < len(blocks):
            if i >= 120 and not getattr(take, "_stepped", False):
                take.begin_clock_segment("mic", ClockSegment(3, "locked", step_ns=-20_000))
                take._stepped = True
            k = min(len(blocks), i + rng.randint(1, 40)) if batched else i + 1
            if i < 120 < k:
                k = 120  # the clock step goes between two calls
            chunk = blocks[i:k]
            if batched:
                take.write_audio_blocks("mic", np.concatenate([b for _, _, b in chunk]), [t for t, _, _ in chunk],
                                        [s for _, s, _ in chunk], [len(b) for _, _, b in chunk],
                                        [t + 7 for t, _, _ in chunk])
            else:
                for t, s, b in chunk:
                    take.write_audio("mic", b, t, start_sample=s, host_time_ns=t + 7)
            i = k
    return take.manifest


@pytest.mark.parametrize("equal", [True, False])
def test_batched_blocks_make_the_same_take_as_one_block_at_a_time(tmp_path, equal):
    blocks = _blocks(200, equal=equal, seed=3)
    one = _take(tmp_path / "one", blocks, batched=False, seed=1)
    many = _take(tmp_path / "many", blocks, batched=True, seed=2)
    assert msgspec.to_builtins(one.sources) == msgspec.to_builtins(many.sources)
    strip = [{k: v for k, v in msgspec.to_builtins(f).items() if k != "bytes" or f.role != "xdf"} for f in one.files]
    assert strip == [{k: v for k, v in msgspec.to_builtins(f).items() if k != "bytes" or f.role != "xdf"}
                     for f in many.files]
    assert len(one.files_of("mic", "audio")) >= 8 and len(one.sources[0].gaps) == 3
    for f in one.files:
        a_path, b_path = tmp_path / "one" / f.path, tmp_path / "many" / f.path
        if f.role == "blocks":
            assert a_path.read_bytes() == b_path.read_bytes(), f.path
        elif f.role == "audio":  # libsndfile's PEAK chunk carries the second it was written: compare the rest
            assert a_path.stat().st_size == b_path.stat().st_size, f.path
            a_data, a_rate = soundfile.read(a_path, dtype="float32")
            b_data, b_rate = soundfile.read(b_path, dtype="float32")
            assert a_rate == b_rate and np.array_equal(a_data.view(np.uint32), b_data.view(np.uint32)), f.path
    a, b = open_take(tmp_path / "one").xdf(), open_take(tmp_path / "many").xdf()
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x["time_stamps"], y["time_stamps"])
        assert np.array_equal(x["time_series"].view(np.uint32), y["time_series"].view(np.uint32))
    rows = read_table(tmp_path / "many" / many.files_of("mic", "blocks")[0].path)
    assert rows["host_time_ns"][0] == rows["canonical_ns"][0] + 7


def test_blocks_records_is_block_records_back_to_back():
    rng = np.random.default_rng(5)
    for frames in ([64, 64, 64], [1, 1], [64], [3, 9, 1, 4]):
        values = rng.standard_normal((sum(frames), 3)).astype(np.float32)
        stamps = [1.5 + i for i in range(len(frames))]
        expected, start = b"", 0
        for t, n in zip(stamps, frames, strict=True):
            expected += block_records(values[start:start + n], t)
            start += n
        assert blocks_records(values, stamps, frames) == expected


def test_a_bad_batch_is_refused_and_nothing_is_written(tmp_path):
    mic = AudioSource("mic", 2, RATE, "float32")
    with TakeWriter(tmp_path / "t", [mic]) as take:
        good = np.zeros((128, 2), np.float32)
        with pytest.raises(ValueError, match="2 blocks"):
            take.write_audio_blocks("mic", good, [T0, T0 + 1], [0, 64], [64, 63])  # 127 frames named, 128 given
        with pytest.raises(ValueError):
            take.write_audio_blocks("mic", good.astype(np.float64), [T0, T0 + 1], [0, 64], [64, 64])
        with pytest.raises(ValueError):
            take.write_audio_blocks("mic", good, [T0], [0, 64], [64, 64])
    manifest = take.manifest
    assert manifest.complete and manifest.source("mic").written == 0 and not manifest.files_of("mic", "audio")
