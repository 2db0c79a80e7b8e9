"""One audio file of one source: a multichannel WAV written with soundfile plus its block table.

Why WAV for every sample format: the samples must come back bit-exact.
float32 ring data needs a float container (FLAC holds integers only);
int32 data needs 32-bit PCM (FLAC stops at 24 bits); and a FLAC file whose
writer was killed has no total-sample count, which libsndfile (soundfile)
then refuses to read, while a WAV cut anywhere is read by libsndfile and
FFmpeg up to its last whole sample frame (its header sizes are stale, the
readers use the file size; :func:`mimir.take.repair` also rewrites them).
Subtypes: float32 -> ``FLOAT``, int32 -> ``PCM_32``, int16 -> ``PCM_16``.
Audio is small next to video (8 channels of float32 at 48 kHz: 1.5 MB/s),
so compression would save little.

A file holds one contiguous run of samples: the writer starts a new file at
any discontinuity of the device sample counter (a gap), at a clock step and
at a split boundary, and before the file would pass :data:`MAX_WAV_BYTES`
(WAV sizes are 32-bit; some readers treat them as signed). So sample ``k`` of
a file is device sample ``start_sample + k`` of the first block.

The WAV's comment (LIST/INFO ICMT) reads ``canonical_first_sample_ns=<int>``.
The block table (``NNNNN.blocks.csv``, :data:`BLOCK_COLUMNS`) has one row
per block written: its first sample's offset in the file, its length, the
canonical time of its first sample, the device sample counter and host time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile

from .files import remove_files, size_or_zero
from .manifest import AudioSource
from .table import TableWriter

__all__ = ["AudioFile", "BLOCK_COLUMNS", "SUBTYPES", "MAX_WAV_BYTES", "COMMENT_KEY"]

COMMENT_KEY = "canonical_first_sample_ns"
BLOCK_COLUMNS = ("block", "first_sample", "frames", "canonical_ns", "start_sample", "host_time_ns")
SUBTYPES = {"float32": "FLOAT", "int32": "PCM_32", "int16": "PCM_16"}
MAX_WAV_BYTES = 2**31 - 2**16  # below the signed 32-bit limit, with room for the header


class AudioFile:
    """Writes one contiguous run of one source's blocks into ``<stem>.wav`` and ``<stem>.blocks.csv``.

    Owned by the take writer, used from one thread. libsndfile writes each
    block straight to the OS (no user-space buffer), so the WAV is always
    current; the table is flushed by the take writer at least once a second.
    """

    def __init__(self, stem: str | os.PathLike, source: AudioSource, first_ns: int) -> None:
        stem = Path(stem)
        self.source = source
        self.audio_path = stem.with_name(stem.name + ".wav")
        self.table_path = stem.with_name(stem.name + ".blocks.csv")
        self.dtype = np.dtype(source.sample_format)
        self.frame_bytes = self.dtype.itemsize * source.channels
        self.samples = 0
        self.blocks = 0
        self.first_ns = first_ns
        self.last_ns: int | None = None
        self.next_start_sample: int | None = None
        self._table = TableWriter(self.table_path, BLOCK_COLUMNS)
        try:
            self._file = soundfile.SoundFile(os.fspath(self.audio_path), "x", samplerate=source.sample_rate_hz,
                                             channels=source.channels, subtype=SUBTYPES[source.sample_format],
                                             format="WAV")
            # A LIST/INFO comment ahead of the samples: written with the header, so it survives a crash too.
            self._file.comment = f"{COMMENT_KEY}={first_ns}"
        except BaseException:
            self._table.close_quietly()
            remove_files(self.audio_path, self.table_path)
            raise

    def room_samples(self) -> int:
        """Sample frames this file can still take before it would pass :data:`MAX_WAV_BYTES`."""
        return (MAX_WAV_BYTES - self.samples * self.frame_bytes) // self.frame_bytes

    def write(self, block: np.ndarray, canonical_ns: int, start_sample: int, host_time_ns: int) -> None:
        self._file.write(block)
        n = block.shape[0]
        self._table.append((self.blocks, self.samples, n, canonical_ns, start_sample, host_time_ns))
        self.samples += n
        self.blocks += 1
        self.last_ns = canonical_ns
        self.next_start_sample = start_sample + n

    def write_blocks(self, samples: np.ndarray, canonical_ns: Sequence[int], start_sample: Sequence[int],
                     frames: Sequence[int], host_time_ns: Sequence[int]) -> None:
        """Consecutive blocks (their samples back to back) in one write: what :meth:`write` block by block writes."""
        self._file.write(samples)
        rows = []
        first = self.samples
        for k, n in enumerate(frames):
            rows.append((self.blocks + k, first, n, canonical_ns[k], start_sample[k], host_time_ns[k]))
            first += n
        self._table.append_many(rows)
        self.samples = first
        self.blocks += len(rows)
        self.last_ns = canonical_ns[-1]
        self.next_start_sample = start_sample[-1] + frames[-1]

    def flush(self) -> None:
        self._table.flush()

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._table.close()

    def abort(self) -> None:
        """Close after a failure, swallowing every error; what reached the disk stays readable.

        A WAV whose header never reached the disk cannot be opened: it is
        removed; its table stays, so its rows are counted as lost.
        """
        try:
            self._file.close()
        except Exception:  # noqa: BLE001 - the first error was already reported by the caller
            pass
        self._table.close_quietly()
        try:
            soundfile.info(os.fspath(self.audio_path))
        except (soundfile.LibsndfileError, RuntimeError):
            remove_files(self.audio_path)

    def bytes(self) -> int:
        return size_or_zero(self.audio_path)

    def table_bytes(self) -> int:
        return size_or_zero(self.table_path)

