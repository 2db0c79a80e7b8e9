"""Audio files: bit-exact samples in every sample format (soundfile), block tables, gaps kept as gaps."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from mimir.take import AudioSource, Gap, TakeWriter, open_take
from mimir.take.audio import BLOCK_COLUMNS, COMMENT_KEY
from mimir.take.table import read_table

RATE = 48_000


def _block(fmt: str, frames: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if fmt == "float32":  # every 32-bit pattern, NaN payloads, infinities and subnormals included
        return rng.integers(0, 2**32, (frames, channels), dtype=np.uint64).astype(np.uint32).view(np.float32)
    info = np.iinfo(fmt)
    block = rng.integers(info.min, info.max, (frames, channels), dtype=fmt, endpoint=True)
    block[0, 0], block[-1, -1] = info.min, info.max
    return block


def _ns(sample: int) -> int:
    return 31_536_000_000_000_000 + sample * 1_000_000_000 // RATE


@pytest.mark.parametrize("fmt", ["float32", "int32", "int16"])
def test_samples_are_bit_exact(take_dir, fmt):
    mic = AudioSource("mic", 3, RATE, fmt)
    blocks, start = [], 1_000_000
    with TakeWriter(take_dir, [mic]) as take:
        for i in range(20):
            block = _block(fmt, 100 + 7 * i, 3, i)
            blocks.append(block)
            take.write_audio("mic", block, _ns(start), start_sample=start, host_time_ns=5 + i)
            start += len(block)
    runs = open_take(take_dir).audio("mic")
    assert len(runs) == 1
    sent = np.concatenate(blocks)
    assert runs[0].samples.dtype == np.dtype(fmt)
    assert np.array_equal(runs[0].samples.view(f"u{sent.itemsize}"), sent.view(f"u{sent.itemsize}"))
    assert runs[0].first_ns == _ns(1_000_000)
    assert runs[0].start_sample == 1_000_000
    table = runs[0].blocks
    assert table["frames"].tolist() == [len(b) for b in blocks]
    assert table["first_sample"].tolist() == np.concatenate([[0], np.cumsum([len(b) for b in blocks])[:-1]]).tolist()
    assert table["host_time_ns"].tolist() == [5 + i for i in range(20)]
    # The WAV alone says when its first sample was (a LIST/INFO comment).
    assert soundfile.SoundFile(runs[0].path).comment == f"{COMMENT_KEY}={_ns(1_000_000)}"
    # An ordinary reader of the file agrees.
    data, rate = soundfile.read(runs[0].path, dtype=fmt, always_2d=True)
    assert rate == RATE and np.array_equal(data.view(f"u{sent.itemsize}"), sent.view(f"u{sent.itemsize}"))


def test_a_gap_starts_a_new_file_and_is_recorded(take_dir):
    mic = AudioSource("mic", 2, RATE, "float32")
    with TakeWriter(take_dir, [mic]) as take:
        starts = [0, 256, 512, 2048, 2304, 2200]  # 1280 samples missing, then 360 samples back (a re-used counter)
        for i, s in enumerate(starts):
            take.write_audio("mic", _block("float32", 256, 2, i), _ns(s), start_sample=s)
        take.skip("mic", _ns(768), _ns(1792), 5, "lapped by the ring")
    manifest = take.manifest
    record = manifest.source("mic")
    assert record.gaps == [Gap(_ns(512), _ns(2048), 1280, "samples"), Gap(_ns(2304), _ns(2200), -360, "samples")]
    assert [(s.count, s.cause) for s in record.skipped] == [(5, "lapped by the ring")]
    assert record.written == 6 and record.written_samples == 6 * 256
    runs = open_take(take_dir).audio("mic")
    assert [r.start_sample for r in runs] == [0, 2048, 2200]
    assert [len(r.samples) for r in runs] == [768, 512, 256]
    assert [r.first_ns for r in runs] == [_ns(0), _ns(2048), _ns(2200)]
    assert [f.path for f in manifest.files_of("mic", "audio")] == ["mic/00000.wav", "mic/00001.wav", "mic/00002.wav"]


def test_blocks_must_match_the_source(take_dir):
    mic = AudioSource("mic", 2, RATE, "int16")
    with TakeWriter(take_dir, [mic]) as take:
        with pytest.raises(ValueError, match="expected int16"):
            take.write_audio("mic", np.zeros((10, 2), np.float32), 0, start_sample=0)
        with pytest.raises(ValueError, match="expected int16"):
            take.write_audio("mic", np.zeros((10, 3), np.int16), 0, start_sample=0)
        with pytest.raises(ValueError, match="frames > 0"):
            take.write_audio("mic", np.zeros((0, 2), np.int16), 0, start_sample=0)
        take.write_audio("mic", np.ones((10, 2), np.int16), 0, start_sample=0)
    assert take.manifest.complete and take.manifest.source("mic").written == 1


def test_a_file_rolls_over_before_the_wav_size_limit(take_dir, monkeypatch):
    import mimir.take.audio as audio

    monkeypatch.setattr(audio, "MAX_WAV_BYTES", 4 * 2 * 1000)  # room for 1000 stereo float32 frames
    mic = AudioSource("mic", 2, RATE, "float32")
    sent = []
    with TakeWriter(take_dir, [mic]) as take:
        for i in range(9):
            sent.append(_block("float32", 300, 2, i))
            take.write_audio("mic", sent[-1], _ns(300 * i), start_sample=300 * i)
    runs = open_take(take_dir).audio("mic")
    assert [len(r.samples) for r in runs] == [900, 900, 900]
    assert [r.start_sample for r in runs] == [0, 900, 1800]
    assert take.manifest.source("mic").gaps == []  # contiguous: a size roll-over is not a gap
    got = np.concatenate([r.samples for r in runs])
    assert np.array_equal(got.view(np.uint32), np.concatenate(sent).view(np.uint32))
    assert read_table(take_dir / "mic" / "00001.blocks.csv", BLOCK_COLUMNS)["first_sample"].tolist() == [0, 300, 600]
