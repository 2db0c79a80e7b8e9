"""``mimir latency``: the round trip measured through a loopback, beside what the stream reports.

Method: the engine runs with an impulse (or MLS) output stage on
``output_channel``; the input ring is read back and the probe found on
``input_channel``. Output and input share the device frame counter (a duplex
callback handles input frames ``[n, n + B)`` and output frames ``[n, n + B)``),
so the round trip is simply *frame where the probe came back - frame where
it was played*, the same quantity PortAudio's input + output latency
describes.

* impulse: one sample of 0.5 every ``period`` frames (default 0.25 s); each
  is found as the peak of ``|x|`` in the following period.
* MLS: a maximum-length sequence (period ``L = 2**order - 1`` >= 0.25 s),
  played periodically; each period of the input is circularly
  cross-correlated with the sequence; the peak lag is the round trip
  (robust to noise, for analog loops).

Loopback: ``jack`` connects the stream's own JACK ports ``out_k -> in_k``
(every other connection of those ports removed); ``external`` assumes a
cable (or the synthetic backend's ``loopback`` signal).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from mimir.descriptors import AudioBlockRecord
from ringbuf import RingReader

from . import jack
from .config import EngineConfig
from .engine import AudioEngine
from .errors import AudioConfigError, AudioError
from .health import restore_scheduler, scheduler_policy, try_realtime
from .outputs import ImpulseOutput, MlsOutput
from .records import XRUN_MASK

__all__ = ["LatencyResult", "measure_latency", "format_latency"]


@dataclass
class LatencyResult:
    signal: str
    backend: str
    device: str
    host_api: str | None
    sample_rate_hz: int
    block_frames: int
    loopback: str
    round_trip_frames: float
    round_trip_ms: float
    measurements_frames: list[int]
    reported_input_latency_frames: float
    reported_output_latency_frames: float
    reported_round_trip_frames: float
    difference_frames: float
    xruns_during_capture: int
    iodelay_round_trip_frames: float | None = None
    iodelay_difference_frames: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _mls_order(rate_hz: int) -> int:
    return max(10, math.ceil(math.log2(rate_hz * 0.25 + 1)))


def measure_latency(config: EngineConfig, *, signal: str = "impulse", repeats: int = 4, loopback: str = "auto",
                    input_channel: int = 0, output_channel: int = 0, timeout_s: float = 20.0,
                    compare_iodelay: bool = False) -> LatencyResult:
    """Play ``repeats`` probes through the loop and return the measured and reported round trips."""
    if signal not in ("impulse", "mls"):
        raise AudioConfigError(f"--signal {signal!r} is not one of: impulse, mls")
    if loopback not in ("auto", "jack", "external"):
        raise AudioConfigError(f"--loopback {loopback!r} is not one of: auto, jack, external")
    if repeats < 1:
        raise AudioConfigError("--repeats must be at least 1")
    rate = config.rate_or_default()
    # GC frozen and helper threads realtime while the stream runs: this thread reads the ring meanwhile
    # and must not stall the callback on the GIL (see docs/audio.md, "the GIL").
    changes: dict = {"output": signal, "probe_channel": output_channel, "freeze_gc": True, "realtime_threads": True}
    if config.backend == "synthetic" and loopback in ("auto", "external"):
        changes["signal"] = "loopback"
    if signal == "impulse":
        period = config.impulse_period_frames or max(rate // 4, 4 * max(config.block_frames, 256))
        changes["impulse_period_frames"] = period
    else:
        changes["mls_order"] = _mls_order(rate)
    engine = AudioEngine(config.with_(**changes))
    reader = None
    policy = None
    try:
        info = engine.init()
        plan = info.plan
        if not (0 <= input_channel < len(plan.input_channels)):
            raise AudioConfigError(
                f"--input-channel {input_channel}: {len(plan.input_channels)} channel(s) are captured"
            )
        stage = engine.output
        if not isinstance(stage, (ImpulseOutput, MlsOutput)):  # no output channel: the engine plays silence
            raise AudioConfigError(f"the stream has no output channel to play the {signal} probe on")
        processor = engine.processor
        assert processor is not None  # init() made it
        stage.armed_at = -1
        ring_name, _ = engine.ring_names
        reader = RingReader.attach(ring_name, rig=config.rig, descriptor=AudioBlockRecord, start="latest")
        policy = scheduler_policy()
        try_realtime(1)
        engine.start()
        mode = loopback
        if loopback in ("auto", "jack") and info.jack_output_ports:
            outs, ins = info.jack_output_ports, info.jack_input_ports
            if output_channel >= len(outs) or input_channel >= len(ins):
                raise AudioConfigError("the probe channels are outside the stream's JACK ports")
            jack.make_loopback([outs[output_channel]], [ins[input_channel]])
            mode = "jack"
        elif loopback == "jack":
            raise AudioConfigError("--loopback jack needs --host-api jack (the stream has no JACK ports)")
        else:
            mode = "external"
        rate = plan.sample_rate_hz
        margin = max(rate // 20, 4 * (plan.expected_frames or 64))
        arm = processor.next_sample + margin
        if isinstance(stage, ImpulseOutput):
            span = stage.period_frames
            needed = repeats * span + span
        else:
            span = stage.length
            needed = (repeats + 2) * span
        stage.armed_at = arm
        capture, xruns = _capture(engine, reader, len(plan.input_channels), arm, needed, timeout_s)
        engine.stop()
        if isinstance(stage, ImpulseOutput):
            found = _find_impulses(capture, input_channel, span, repeats, stage.amplitude)
        else:
            found = _find_mls(capture, input_channel, stage, repeats)
        if not found:
            raise AudioError(
                f"no probe came back on input channel {input_channel}: is output {output_channel} looped back to "
                "it? (JACK: --loopback jack; hardware: a cable from that output to that input)"
            )
        rt = float(statistics.median(found))
        reported = info.reported_round_trip_frames
        result = LatencyResult(
            signal=signal, backend=plan.backend, device=plan.device_label, host_api=plan.host_api,
            sample_rate_hz=rate, block_frames=plan.block_frames, loopback=mode, round_trip_frames=rt,
            round_trip_ms=rt * 1e3 / rate, measurements_frames=found,
            reported_input_latency_frames=info.input_latency_s * rate,
            reported_output_latency_frames=info.output_latency_s * rate,
            reported_round_trip_frames=reported, difference_frames=rt - reported, xruns_during_capture=xruns,
        )
        if len(set(found)) > 1:
            result.notes.append("the round trip changed between probes (xruns or a drifting device)")
        if xruns:
            result.notes.append(f"{xruns} xrun(s) during the capture")
    finally:
        if reader is not None:
            reader.close()
        engine.shutdown()
        restore_scheduler(policy)
    if compare_iodelay:
        result.iodelay_round_trip_frames = jack.iodelay_round_trip().round_trip_frames
        result.iodelay_difference_frames = rt - result.iodelay_round_trip_frames
        if plan.block_frames:
            result.notes.append(
                f"PortAudio adds one block ({plan.block_frames} frames) of buffering to JACK's own round trip "
                "when the block size is fixed; --block 0 uses JACK's period directly"
            )
    return result


def _capture(engine: AudioEngine, reader: RingReader, channels: int, arm: int, needed: int,
             timeout_s: float) -> tuple[np.ndarray, int]:
    """Input frames ``[arm, arm + needed)`` from the ring, all ``channels``; also the xrun count seen meanwhile."""
    buf = np.zeros((needed, channels), dtype=np.float32)
    have = 0
    xruns = 0
    deadline = time.monotonic() + timeout_s
    end = arm + needed
    while True:
        if time.monotonic() > deadline:
            raise AudioError(f"timed out after {timeout_s:.0f} s capturing the loopback "
                             f"({have} of {needed} frames); is the stream running?")
        if engine.ended():
            raise AudioError(f"the stream stopped during the capture: {engine.failure() or 'source ended'}")
        if not reader.wait(0.2):
            continue
        while (item := reader.read()) is not None:
            d = AudioBlockRecord(*item.descriptor)
            payload = item.payload
            assert payload is not None  # the audio ring has a payload slot per block
            if d.status_flags & XRUN_MASK:
                xruns += 1
            s, f = d.start_sample, d.frame_count
            lo, hi = max(s, arm), min(s + f, end)
            if hi > lo:
                buf[lo - arm:hi - arm] = payload[lo - s:hi - s]
                have = max(have, hi - arm)
            if s + f >= end:
                if reader.lost:
                    raise AudioError(f"the capture lost {reader.lost} block(s) (reader too slow)")
                return buf, xruns


def _find_impulses(capture: np.ndarray, ch: int, period: int, repeats: int, amplitude: float) -> list[int]:
    x = np.abs(capture[:, ch])
    found = []
    for k in range(repeats):
        window = x[k * period:(k + 1) * period]
        if window.size == 0:
            break
        i = int(np.argmax(window))
        if window[i] >= amplitude / 4:
            found.append(i)
    return found


def _find_mls(capture: np.ndarray, ch: int, stage: MlsOutput, repeats: int) -> list[int]:
    seq = stage.sequence.astype(np.float64)
    n = stage.length
    ref = np.conj(np.fft.rfft(seq))
    found = []
    for k in range(1, repeats + 1):
        y = capture[k * n:(k + 1) * n, ch].astype(np.float64)
        if len(y) < n:
            break
        c = np.fft.irfft(np.fft.rfft(y) * ref, n=n)
        lag = int(np.argmax(c))
        peak = c[lag]
        rest = np.delete(np.abs(c), lag)
        if peak > 8 * float(np.max(rest)) and peak > 0:  # a clear, unique peak
            found.append(lag)
    return found


def format_latency(r: LatencyResult) -> str:
    lines = [
        f"round trip ({r.signal}, {r.loopback} loopback): {r.round_trip_frames:g} frames = {r.round_trip_ms:.3f} ms",
        f"stream reports: in {r.reported_input_latency_frames:g} + out {r.reported_output_latency_frames:g} = "
        f"{r.reported_round_trip_frames:g} frames  (measured - reported = {r.difference_frames:+g} frames)",
    ]
    if r.iodelay_round_trip_frames is not None:
        lines.append(f"jack_iodelay on the same server: {r.iodelay_round_trip_frames:g} frames "
                     f"(measured - jack_iodelay = {r.iodelay_difference_frames:+g} frames)")
    lines.append(f"{r.backend}: {r.device}, {r.sample_rate_hz} Hz, block {r.block_frames or 'host-native'}; "
                 f"probes {r.measurements_frames}")
    lines.extend(f"note: {n}" for n in r.notes)
    return "\n".join(lines)
