"""A rig built in shared memory by the test itself, indexed as the supervisor does: every step under the test's control.

The plan is the real rig contract (``plan_rig``), published as the
supervisor publishes it; the reservoir and the rings are the real ones. The
test plays the workers (publish into a ring) and the supervisor (index a
published item into the reservoir, or not), so lost, evicted, lapped and
restarted items happen exactly when a test wants them.

Frames are ``(24, 32)`` GREY; every byte of frame ``n`` of camera ``c`` is
``(7 * n + 31 * c) mod 256`` except the first 8, which hold ``n`` (so any mix-up
shows). Audio blocks are 64 frames x 2 channels of float32, sample ``k`` of
the stream being ``k + channel / 4``.
"""

from __future__ import annotations

import numpy as np

from mimir.config import AudioConfig, CameraFamilyConfig, ReservoirConfig, RigConfig
from mimir.contract import publish_plan
from mimir.descriptors import AudioBlockDescriptor, AudioBlockRecord, CameraFrameDescriptor, PixelFormat, SampleKind
from mimir.reservoir import Reservoir
from mimir.topology import RESERVOIR, plan_rig
from ringbuf import Ring

H, W = 24, 32
BLOCK = 64
CHANNELS = 2
FPS = 30.0
RATE = 48_000
T0 = 1_000_000_000_000


def frame_pixels(camera: int, n: int) -> np.ndarray:
    pixels = ((7 * n + 31 * camera + np.arange(H * W)) % 256).astype(np.uint8)
    pixels[:8] = np.frombuffer(np.uint64(n).tobytes(), np.uint8)
    return pixels.reshape(H, W)


def block_samples(n: int) -> np.ndarray:
    k = np.arange(n * BLOCK, (n + 1) * BLOCK, dtype=np.float64)[:, None]
    return (k + np.arange(CHANNELS)[None, :] / 4).astype(np.float32)


class FakeRig:
    """Two cameras and one audio source; ``camera_capacity``/``audio_capacity`` size the rings."""

    def __init__(self, rig: str, *, window_s: float = 10.0, camera_capacity: int = 64, audio_capacity: int = 2048,
                 reservoir_capacity: int = 4096) -> None:
        config = RigConfig(rig=rig, cameras=[CameraFamilyConfig(family="synthetic", count=2, width=W, height=H,
                                                                 fps=FPS, format="GREY")],
                           audio=AudioConfig(channels=CHANNELS, block_frames=BLOCK, rate_hz=RATE),
                           reservoir=ReservoirConfig(window_s=window_s))
        self.rig = rig
        self.plan = plan_rig(config)
        self.camera_capacity = camera_capacity
        self.audio_capacity = audio_capacity
        self._objects: list = []
        self.plan_object = publish_plan(self.plan)
        self.reservoir = Reservoir.create(rig, name=RESERVOIR, capacity=reservoir_capacity,
                                          duration_ns=self.plan.window_ns)
        self.cameras = [s for s in self.plan.cameras()]
        self.audio = self.plan.source("audio")
        self.cam_rings: list[Ring] = [self._camera_ring(c) for c in range(len(self.cameras))]
        self.audio_ring = Ring.create(self.audio.ring.object_id, rig=rig, descriptor=AudioBlockRecord,
                                      capacity=audio_capacity, payload_shape=(BLOCK, CHANNELS),
                                      payload_dtype=np.float32)
        self.cam_producers = [self.reservoir.producer(SampleKind.CAMERA_FRAME, sensor_id_hash=s.source_hash)
                              for s in self.cameras]
        self.mic = self.reservoir.producer(SampleKind.AUDIO_BLOCK, sensor_id_hash=self.audio.source_hash)
        self.frames_published = [0] * len(self.cameras)   # device frame number, across incarnations
        self.blocks_published = 0
        self.frame_times: dict[tuple[int, int], int] = {}  # (camera, device frame n) -> canonical ns indexed

    def _camera_ring(self, c: int) -> Ring:
        return Ring.create(self.cameras[c].ring.object_id, rig=self.rig, descriptor=CameraFrameDescriptor,
                           capacity=self.camera_capacity, payload_shape=(H, W))

    def frame_time(self, n: int, camera: int) -> int:
        return T0 + round(n * 1e9 / FPS) + camera * 1_000_000

    def block_time(self, n: int) -> int:
        return T0 + round(n * BLOCK * 1e9 / RATE)

    def publish_frame(self, camera: int, *, index: bool = True) -> int:
        """The camera worker publishes its next frame; the supervisor indexes it unless ``index`` is False."""
        ring = self.cam_rings[camera]
        n = self.frames_published[camera]
        self.frames_published[camera] += 1
        seq = ring.published
        ring.claim()[:] = frame_pixels(camera, n)
        ts = self.frame_time(n, camera)
        values = (self.cameras[camera].source_hash, seq, ts, ts, W, H, int(PixelFormat.GREY), W, H * W,
                  ring.handle(seq))
        ring.publish(*values)
        if index:
            self.cam_producers[camera].push_camera_frame(ts, ts, values)
            self.frame_times[(camera, n)] = ts
        return n

    def publish_block(self, *, index: bool = True) -> int:
        n = self.blocks_published
        self.blocks_published += 1
        ring = self.audio_ring
        seq = ring.published
        ring.claim()[:] = block_samples(n)
        ts = self.block_time(n)
        ring.publish_struct(AudioBlockRecord(
            data_handle=ring.handle(seq), frame_count=BLOCK, channel_count=CHANNELS, sample_rate_hz=RATE,
            sample_format=1, start_sample=n * BLOCK, channel_layout_hash=0, adc_time_ns=0, host_time_ns=ts,
            status_flags=0, callback_ns=0, stream_time_ns=0))
        if index:
            self.mic.push_audio_block(ts, ts, AudioBlockDescriptor(ring.handle(seq), BLOCK, CHANNELS, RATE, 1,
                                                                   n * BLOCK, 0))
        return n

    def run(self, seconds: float, *, skip_index: frozenset[tuple[str, int, int]] = frozenset()) -> None:
        """Publish ``seconds`` of every source in time order, indexing all but ``skip_index``:
        ``("c", camera, frame n)`` or ``("a", 0, block n)``."""
        end = self.frame_time(self.frames_published[0], 0) + round(seconds * 1e9)
        while True:
            nxt = [(self.frame_time(self.frames_published[c], c), "c", c) for c in range(len(self.cameras))]
            nxt.append((self.block_time(self.blocks_published), "a", 0))
            ts, what, c = min(nxt)
            if ts >= end:
                return
            if what == "c":
                self.publish_frame(c, index=("c", c, self.frames_published[c]) not in skip_index)
            else:
                self.publish_block(index=("a", 0, self.blocks_published) not in skip_index)

    def restart_camera(self, camera: int) -> None:
        """The camera's worker exits (its ring closes) and a new incarnation makes a new ring, numbered from 0."""
        self.cam_rings[camera].close()
        self.cam_rings[camera] = self._camera_ring(camera)

    def stop(self) -> None:
        """The supervisor stops: the reservoir closes (a recorder then finishes)."""
        if self.reservoir is not None:
            self.reservoir.close()
            self.reservoir = None

    def close(self) -> None:
        self.stop()
        for ring in self.cam_rings:
            ring.close()
        self.audio_ring.close()
        self.plan_object.close()
        self.plan_object.unmap()
