"""A consumer process for the retention test: walks the whole reservoir window again and again.

``python _window_walker.py RIG SECONDS OUT`` writes one JSON line per pass to
OUT. Per pass, for every camera frame and audio block in the window (the
reservoir's own descriptors, one vectorised copy): resolve the payload handle
(``HandleResolver.payload``), check it (camera: the synthetic stamp and every
pixel byte, stamp time == the descriptor's ``device_time_ns``; audio: the ring
item's own record names the same ``start_sample``), then check the slot is
still valid. A failure is ``left`` when the sample has meanwhile left the
window (benign), ``stale`` when the sample is still in the window but its
payload is gone (the invariant broken), ``mismatched`` when the payload was
valid throughout and does not match.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from mimir.consumer import RigConsumer
from mimir.descriptors import AudioBlockRecord, PixelFormat, SampleKind
from mimir.reservoir import Evicted, StaleHandle
from workers.camera.family import CameraMode
from workers.camera.synthetic import FrameMismatch, verify_frame

CAMERA = int(SampleKind.CAMERA_FRAME)
AUDIO = int(SampleKind.AUDIO_BLOCK)
_START = AudioBlockRecord.__struct_fields__.index("start_sample")


def in_window(consumer: RigConsumer, position: int) -> bool:
    try:
        consumer.view.read_at(position)
        return True
    except Evicted:
        return False


def walk(consumer: RigConsumer, modes: dict[int, CameraMode], counts: dict) -> None:
    resolver = consumer.resolver
    rows, descs = consumer.view.typed_snapshot(CAMERA)
    for row, d in zip(rows, descs, strict=True):
        handle = int(d["payload_handle"])
        verdict = None
        try:
            pixels = resolver.payload(handle)
            try:
                _, stamped_ns = verify_frame(pixels, modes[int(row["sensor_id_hash"])])
                if stamped_ns != int(d["device_time_ns"]):
                    verdict = "mismatched"
            except FrameMismatch:
                verdict = "mismatched"
            if not resolver.valid(handle):
                verdict = "overwritten"
        except StaleHandle:
            verdict = "overwritten"
        if verdict == "overwritten":
            verdict = "stale" if in_window(consumer, int(row["position"])) else "left"
        counts["frames"] += 1
        if verdict:
            counts[verdict] += 1
    ts = rows["timestamp_ns"].astype(np.int64)
    counts["monotonic"] = all(not (np.diff(ts[rows["sensor_id_hash"] == s]) < 0).any()
                              for s in np.unique(rows["sensor_id_hash"]))
    rows, descs = consumer.view.typed_snapshot(AUDIO)
    for row, d in zip(rows, descs, strict=True):
        handle = int(d["data_handle"])
        verdict = None
        try:
            resolver.payload(handle)[: int(d["frame_count"])].sum()  # read every sample
            if resolver.descriptor(handle)[_START] != int(d["start_sample"]):
                verdict = "mismatched"
            if not resolver.valid(handle):
                verdict = "overwritten"
        except StaleHandle:
            verdict = "overwritten"
        if verdict == "overwritten":
            verdict = "stale" if in_window(consumer, int(row["position"])) else "left"
        counts["blocks"] += 1
        if verdict:
            counts[verdict] += 1
    counts["window_frames"] = len(ts)
    counts["window_blocks"] = len(rows)


def main(rig: str, seconds: float, out: str) -> None:
    with RigConsumer.attach(rig) as consumer, open(out, "w") as sink:
        modes = {}
        for worker in consumer.plan.workers:
            if getattr(worker, "cameras", None):
                mode = CameraMode(worker.width, worker.height, worker.fps, PixelFormat[worker.pixel_format])
                for cam in worker.cameras:
                    modes[consumer.plan.source(cam.source).source_hash] = mode
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            counts = {"frames": 0, "blocks": 0, "stale": 0, "mismatched": 0, "left": 0}
            began = time.monotonic() - start
            walk(consumer, modes, counts)
            counts.update(began_s=round(began, 3), ended_s=round(time.monotonic() - start, 3))
            sink.write(json.dumps(counts) + "\n")
            sink.flush()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3])
