"""The file backend: replays a WAV/FLAC (anything libsndfile reads) at real-time pace, straight into the ring.

Frames are decoded by libsndfile into the ring slot itself
(``SoundFile.buffer_read_into``) when every file channel is captured, else
into a staging block and selected once. The file's rate is the stream's
rate. At the end of the file the last (short) block is published with its
true ``frame_count`` and the stream finishes, unless ``loop`` is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import EngineConfig
from ..errors import AudioConfigError, BackendUnavailable, EngineStateError
from .base import DevicePlan
from .paced import PacedBackend

if TYPE_CHECKING:
    from soundfile import SoundFile

__all__ = ["FileBackend"]


def _soundfile():
    try:
        import soundfile
    except (ImportError, OSError) as exc:
        raise BackendUnavailable(
            f"--backend file needs soundfile and libsndfile ({exc}): pip install soundfile; "
            "on Debian/Ubuntu also apt-get install libsndfile1 (or run bash scripts/setup.sh)"
        ) from None
    return soundfile


class FileBackend(PacedBackend):
    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._file: SoundFile | None = None
        self._stage: np.ndarray | None = None     # decoded file frames, when only some channels are captured
        self._selectors: np.ndarray | None = None  # the captured channels of a staged block

    def prepare(self) -> DevicePlan:
        cfg = self.config
        sf = _soundfile()
        if cfg.path is None:  # validate() requires it for this backend
            raise AudioConfigError("--backend file needs --file PATH (a WAV or FLAC file)")
        path = Path(cfg.path)
        try:
            info = sf.info(str(path))
        except Exception as exc:  # libsndfile reports unreadable formats as RuntimeError/LibsndfileError
            raise AudioConfigError(
                f"--file {path}: cannot read it as audio ({exc}); use a WAV or FLAC file"
            ) from None
        rate = int(info.samplerate)
        if cfg.sample_rate_hz is not None and cfg.sample_rate_hz != rate:
            raise AudioConfigError(
                f"--file {path} is {rate} Hz but --rate {cfg.sample_rate_hz} was given: drop --rate "
                f"(the file's rate is used) or resample the file"
            )
        selected = cfg.channels.resolve(int(info.channels)) if cfg.channels.n_channels else tuple(range(int(info.channels)))
        block = cfg.block_frames
        n_out = cfg.output_channels if cfg.output_channels is not None else len(selected)
        self.plan = DevicePlan(
            backend="file", device_label=str(path), host_api=None, device_index=None, sample_rate_hz=rate,
            block_frames=block, slot_frames=block, expected_frames=block, input_channels=selected,
            output_channels=n_out, sample_format="float32",
        )
        if selected != tuple(range(int(info.channels))):
            self._stage = np.zeros((block, int(info.channels)), dtype=np.float32)
            self._selectors = np.asarray(selected, dtype=np.intp)
        self._file = sf.SoundFile(str(path))
        return self.plan

    def _read(self, file: SoundFile, out: np.ndarray) -> int:
        if self._stage is None or self._selectors is None:
            return file.buffer_read_into(out, dtype="float32")
        stage = self._stage if out.shape[0] == self._stage.shape[0] else self._stage[: out.shape[0]]
        n = file.buffer_read_into(stage, dtype="float32")
        np.take(stage, self._selectors, axis=1, out=out, mode="clip")
        return n

    def _produce(self, slot: np.ndarray, start_frame: int, frames: int) -> int:
        file = self._file
        if file is None:
            raise EngineStateError("the file backend has no open file: prepare() first")
        n = self._read(file, slot)
        if n < frames and self.config.loop:
            while n < frames:
                file.seek(0)
                got = self._read(file, slot[n:frames])
                if got == 0:
                    break
                n += got
        if n < frames:
            slot[n:].fill(0.0)
        return n

    def close(self) -> None:
        super().close()
        if self._file is not None:
            self._file.close()
            self._file = None
