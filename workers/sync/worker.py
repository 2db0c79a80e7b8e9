"""The rig's sync worker process: decode the witness on every channel of an audio ring, publish clock fits.

The supervisor runs this as a worker process so witness decoding (tens of
microseconds of numpy per block and channel) never competes with indexing.

Data flow: the audio worker's ring (``AudioBlockRecord`` + float32 payload)
-> this process's reader (own cursor, copying read) -> per-channel staging
buffers (contiguous device samples) -> one :class:`StreamingReceiver` per
channel, fed in chunks of ``chunk_frames`` (results do not depend on
chunking) -> the ``sync.fits`` snapshot ring (:class:`mimir.descriptors.FitsHeader`
+ :class:`mimir.descriptors.FitRow`, object :data:`mimir.topology.FITS`).

A gap in device samples (blocks lost to overrun) is passed to the receivers
as a jump in ``start_sample``; they segment their fits across it. An audio
worker restart is a new stream (a new device counter): the worker follows the
new ring with new receivers, and the fits header names the stream (the audio
ring's writer pid) so the supervisor never adopts a fit of another stream.
Blocks lost are counted in the fits header.

Ownership: this process creates, writes and unlinks the fits ring; it only
reads the audio ring.
"""

from __future__ import annotations

import math
import sys
import threading
import time

import numpy as np

from mimir.descriptors import MAX_FIT_ROWS, AudioBlockRecord, FitRow, FitsHeader
from mimir.process_control import lower_priority
from mimir.signals import stop_on_signals
from mimir.sync.calibration import BandLimits, PathCalibration
from mimir.sync.codebook import Codebook
from mimir.sync.receiver import StreamingReceiver
from mimir.sync.witness_output import DEFAULT_EPOCH_UNIX_S
from mimir.topology import FITS, SyncWorkerSpec
from ringbuf import Ring, RingReader, SegmentMissing

__all__ = ["run_sync_worker", "run_sync_spec"]


def _attach(rig: str, ring: str, stop: threading.Event, timeout_s: float | None, heartbeat) -> RingReader:
    """Wait for the audio ring (beating the fits ring's heartbeat meanwhile: waiting is not hanging)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            return RingReader.attach(ring, rig=rig, descriptor=AudioBlockRecord, start="latest")
        except SegmentMissing:
            if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
                raise
            heartbeat()
            time.sleep(0.05)


def run_sync_spec(spec: SyncWorkerSpec) -> int:
    """Process entry of the rig's sync worker (its spec from the rig contract); returns the exit code."""
    w = spec.witness
    try:
        return run_sync_worker(spec.rig, ring=spec.audio_ring.object_id, fits_ring=spec.fits_ring.object_id,
                               codebook_id=w.codebook_id, seed=w.seed, epoch_unix_s=w.epoch_unix_s,
                               attach_timeout_s=None,  # supervised: wait for the audio worker as long as it takes
                               paths=dict(spec.paths), band=spec.band)
    except SegmentMissing as exc:
        print(f"mimir-worker sync: {exc}", file=sys.stderr)
        return 2


def run_sync_worker(rig: str, *, ring: str = "audio", codebook_id: str = "mimir-default", seed: int = 0,
                    epoch_unix_s: float = DEFAULT_EPOCH_UNIX_S, chunk_frames: int = 4096,
                    publish_period_s: float = 0.25, attach_timeout_s: float | None = 30.0,
                    stop: threading.Event | None = None, duration_s: float | None = None,
                    fits_ring: str = FITS, paths: dict[int, PathCalibration] | None = None,
                    band: BandLimits | None = None) -> int:
    """Run until ``stop`` is set, SIGTERM/SIGINT, or ``duration_s``; return an exit code.

    ``paths`` (optional): the known acoustic path per rig channel (index ->
    :class:`PathCalibration`); a channel with one publishes its fit at the
    emission instead of the arrival. ``band`` (optional): band limits for
    every channel (ValueError when they cannot hold the codebook).

    Decoding is throughput work with seconds of slack once canonical time is
    locked; indexing and capture are latency work. Until the first channel
    locks the worker runs at normal priority (canonical time is provisional
    until then: on a loaded machine a deprioritised decoder never catches
    up, measured with `mimir bench pipeline --load 2`); then it lowers its own
    priority (nice +5, one way: raising it again would need privileges) so
    that on a busy machine the scheduler serves the supervisor and capture first.
    """
    stop = stop or threading.Event()
    with stop_on_signals(stop):
        return _run(rig, ring=ring, codebook_id=codebook_id, seed=seed, epoch_unix_s=epoch_unix_s,
                    chunk_frames=chunk_frames, publish_period_s=publish_period_s, attach_timeout_s=attach_timeout_s,
                    stop=stop, duration_s=duration_s, fits_ring=fits_ring, paths=paths or {}, band=band)


def _run(rig: str, *, ring: str, codebook_id: str, seed: int, epoch_unix_s: float, chunk_frames: int,
         publish_period_s: float, attach_timeout_s: float | None, stop: threading.Event, duration_s: float | None,
         fits_ring: str, paths: dict[int, PathCalibration], band: BandLimits | None) -> int:
    deprioritise = threading.current_thread() is threading.main_thread()  # a process of its own: nice +5 after lock
    fits = Ring.create(fits_ring, rig=rig, descriptor=FitsHeader, capacity=4, label=f"{rig}/sync.fits",
                       payload_shape=(MAX_FIT_ROWS,), payload_dtype=FitRow)
    try:
        reader = _attach(rig, ring, stop, attach_timeout_s, fits.heartbeat)
    except BaseException:
        fits.close()
        raise
    layout = reader.layout
    slot_frames, channels = layout.payload_shape
    channels = min(channels, MAX_FIT_ROWS)
    codebook = Codebook.from_id(codebook_id, seed)
    desc = np.zeros(1, reader.descriptor_dtype)
    desc_bytes = desc.view(np.uint8)
    block = np.zeros((slot_frames, layout.payload_shape[1]), np.float32)
    staging = np.zeros((chunk_frames + slot_frames, channels), np.float32)
    staged = 0
    staged_start = -1
    receivers: list[StreamingReceiver] = []
    rate_hz = 0
    blocks_read = 0
    next_publish = time.monotonic()
    deadline = None if duration_s is None else time.monotonic() + duration_s
    # Before the first lock the receivers need the canonical time roughly (the schedule repeats every ~1.8 h).
    approx_canonical_s = time.time() - epoch_unix_s

    def feed_staged() -> None:
        nonlocal staged
        for c, rx in enumerate(receivers):
            rx.feed(staging[:staged, c], start_sample=staged_start)
        staged = 0

    try:
        beyond = sorted(c for c in paths if c >= channels)
        if beyond:  # bad input, known once the ring is attached: never a path silently left unused
            print(f"mimir-worker sync: a path is given for channel {beyond[0]}, but the worker decodes channels "
                  f"0-{channels - 1} of ring {ring!r}", file=sys.stderr)
            return 2
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            if reader.wait(0.1):
                while reader.read_into(desc_bytes, block) >= 0:
                    blocks_read += 1
                    frames = int(desc["frame_count"][0])
                    start = int(desc["start_sample"][0])
                    if not receivers:
                        rate_hz = int(desc["sample_rate_hz"][0])
                        try:
                            receivers = [
                                StreamingReceiver(codebook, float(rate_hz), f"{ring}.ch{c}", first_sample=start,
                                                  approx_canonical_seconds=approx_canonical_s, path=paths.get(c),
                                                  band=band)
                                for c in range(channels)
                            ]
                        except ValueError as exc:  # a path pulse of another rate or band: the rate is known only now
                            print(f"mimir-worker sync: {exc}", file=sys.stderr)
                            return 2
                    if staged and start != staged_start + staged:
                        feed_staged()  # a gap or a reset: the receivers see it as a jump in start_sample
                    if staged == 0:
                        staged_start = start
                    staging[staged:staged + frames] = block[:frames, :channels]
                    staged += frames
                    if staged >= chunk_frames:
                        feed_staged()
            now = time.monotonic()
            if reader.writer_closed or (now >= next_publish and not reader.writer_alive()):
                # The audio worker is gone (restart): follow its next incarnation's ring. A new stream is a new
                # device clock, so it gets new receivers: no fit ever mixes two streams.
                staged = 0
                receivers = []
                lost = reader.lost
                reader.close()
                try:
                    reader = _attach(rig, ring, stop, attach_timeout_s, fits.heartbeat)
                except SegmentMissing:
                    if stop.is_set():  # told to stop while the audio worker was gone: a clean exit
                        return 0
                    raise
                reader.lost += lost
            if now >= next_publish and receivers:
                next_publish = now + publish_period_s
                any_locked = _publish(fits, receivers, rate_hz, blocks_read, reader.lost, reader.writer_pid())
                if any_locked and deprioritise:
                    lower_priority()
                    deprioritise = False
            elif now >= next_publish:
                fits.heartbeat()
    finally:
        reader.close()  # idempotent: the reader of a stream that ended is closed already
        fits.close()
    return 0


def _publish(fits: Ring, receivers: list[StreamingReceiver], rate_hz: int, blocks_read: int, blocks_lost: int,
             stream_pid: int) -> bool:
    """Publish every channel's fit; return whether any channel is locked."""
    any_locked = False
    rows = fits.claim()
    rows[:] = np.zeros((), rows.dtype)
    for c, rx in enumerate(receivers):
        report = rx.report()
        fit = report.canonical_clock_fit
        health = report.health
        row = rows[c]
        row["channel"] = c
        row["locked"] = int(report.locked)
        any_locked = any_locked or bool(report.locked)
        row["local_sample_at_epoch"] = fit.local_sample_at_epoch or 0.0
        row["rate_hz"] = fit.rate_hz or 0.0
        row["confidence"] = fit.confidence
        row["mae_samples"] = fit.mae_samples or 0.0
        row["anchors_accepted"] = health.anchors_accepted
        row["anchors_rejected"] = health.anchors_rejected
        row["samples_consumed"] = health.samples_consumed
        row["locks"] = health.locks
        row["relocks"] = health.relocks
        row["discontinuities"] = health.discontinuities
        path = report.response_profile.path
        for field, value in (("strongest_minus_direct_ms", None if path is None else path.strongest_minus_direct_ms),
                             ("drr_db", None if path is None else path.direct_to_reverberant_db),
                             ("rt60_s", None if path is None else path.rt60_s)):
            row[field] = math.nan if value is None else value
    fits.publish(len(receivers), rate_hz, time.monotonic_ns(), blocks_read, blocks_lost, stream_pid)
    return any_locked
