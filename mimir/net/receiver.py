"""``mimir receiver``: decode the witness on local audio and send compact timing reports to the rig.

Threads and ownership
    * decode thread (the caller of :meth:`RemoteReceiver.run`): owns the audio
      source, the :class:`~mimir.sync.StreamingReceiver`, the report scheduler
      and the raw-audio ring; it encodes messages into the backlog and never
      waits for the network (the backlog's lock is held for microseconds);
    * sender thread (:class:`~mimir.net.sender.Sender`): owns every ZeroMQ
      object; drains the backlog, retransmits, reconnects, reads acks, answers
      time probes from the line the decode thread publishes
      (:class:`~mimir.net.hostclock.HostCanonical`: canonical time at this
      host's ``time.monotonic_ns()``);
    * with ``--input``, PortAudio's callback thread only copies into a bounded
      queue (drops counted).

When the audio ends (end of file, ``--duration-s``, SIGINT/SIGTERM) the
receiver sends a final fit, health and response report and waits up to
``linger_s`` for the listener to acknowledge everything.

Exit codes: 0 every report was acknowledged; 1 some reports were never
acknowledged or the bounded backlog dropped some; 2 bad arguments or
unreadable input; 3 the listener refused us (key not trusted, or reports
rejected) and reports were left unacknowledged.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import numpy as np

from mimir.sync import Codebook, StreamingReceiver
from mimir.sync.calibration import BandLimits, PathCalibration

from .audio_source import AudioSource, PcmRing
from .backlog import Backlog
from .hostclock import HostCanonical
from .keys import KeyPair
from .messages import (
    MAX_AUDIO_BYTES,
    SCHEMA_VERSION,
    AudioRequest,
    AudioWindow,
    ClockFitSummary,
    Envelope,
    TimeEcho,
    UplinkBody,
    body_kind,
    encode,
)
from .reports import ReportSchedule, ReportScheduler
from .sender import Sender

__all__ = ["ReceiverOptions", "ReceiverSummary", "RemoteReceiver"]


@dataclass(frozen=True)
class ReceiverOptions:
    source_id: str
    connect: str
    codebook_id: str = "mimir-default"
    seed: int = 0
    approx_canonical_s: float | None = None
    path: PathCalibration | None = None  # known acoustic path: the fit then refers to the emission
    band: BandLimits | None = None  # band limits: only the witness sub-bands inside are searched
    schedule: ReportSchedule = ReportSchedule()
    backlog_messages: int = 1024
    backlog_bytes: int = 4 * 1024 * 1024
    retransmit_after_s: float = 2.0
    linger_s: float = 5.0
    duration_s: float | None = None
    audio_ring_s: float = 10.0


class ReceiverSummary(msgspec.Struct, kw_only=True):
    """What happened, printed at exit (``--json``: on stdout)."""

    source_id: str
    session: int
    endpoint: str
    exit_code: int
    exit_reason: str
    audio_seconds: float
    wall_seconds: float
    messages_total: int
    messages_by_kind: dict[str, int]
    acked_through: int
    unacknowledged: int
    backlog_dropped_messages: int
    backlog_dropped_bytes: int
    sent: int
    sent_bytes: int
    retransmits: int
    connects: int
    disconnects: int
    auth_failures: int
    handshake_failures: int
    refusals: dict[str, int]
    audio_requests: int
    input_blocks_dropped: int
    input_overflows: int
    locked: bool
    final_fit: dict | None      # the last ClockFitSummary sent, by field name
    host_clock: str             # how audio is placed on this host's clock: adc, entry, pacing or none
    host_line: dict | None      # the last canonical-at-host line (HostCanonicalLine by field name), None if none
    time_probes: int            # time probes received from the listener
    time_echoes: int            # echoes sent (time_probes - time_echoes: dropped, not connected at that moment)


class RemoteReceiver:
    def __init__(self, options: ReceiverOptions, audio: AudioSource, client: KeyPair, server_public_key: str,
                 *, log=None) -> None:
        self.opts = options
        self.audio = audio
        self.log = log or (lambda text: print(f"receiver {options.source_id}: {text}", file=sys.stderr, flush=True))
        self.session = time.time_ns()
        self.backlog = Backlog(options.backlog_messages, options.backlog_bytes)
        self.sender = Sender(options.connect, client, server_public_key, self.backlog, self.session,
                             retransmit_after_s=options.retransmit_after_s, on_audio_request=self._queue_request,
                             on_time_probe=self._time_echo, log=self.log)
        self.codebook = Codebook.from_id(options.codebook_id, options.seed)
        self.rx = StreamingReceiver(self.codebook, audio.rate_hz, options.source_id,
                                    approx_canonical_seconds=options.approx_canonical_s, path=options.path,
                                    band=options.band)
        self.scheduler = ReportScheduler(self.rx, options.schedule, self._sender_health)
        self.ring = PcmRing(audio.rate_hz, options.audio_ring_s)
        self.host_canonical = HostCanonical()
        self._requests: queue.SimpleQueue[AudioRequest] = queue.SimpleQueue()
        self._pending: list[AudioRequest] = []
        self.by_kind: dict[str, int] = {}
        self._lag_s = 0.0
        self._last_fit: ClockFitSummary | None = None

    # ------------------------------------------------------------------------------------------- helpers
    def _queue_request(self, req: AudioRequest) -> None:  # sender thread
        self._requests.put(req)

    def _sender_health(self) -> dict:
        b = self.backlog.stats()
        s = self.sender.stats
        return dict(input_blocks_dropped=self.audio.input_blocks_dropped, input_overflows=self.audio.input_overflows,
                    decode_lag_s=min(1e6, max(0.0, self._lag_s)), backlog_messages=b.messages,
                    backlog_bytes=b.bytes, backlog_dropped_messages=b.dropped_messages,
                    backlog_dropped_bytes=b.dropped_bytes, retransmits=b.retransmits, connects=s.connects,
                    auth_failures=s.auth_failures)

    def _emit(self, bodies: list) -> None:
        if not bodies:
            return
        for body in bodies:
            kind = body_kind(body)
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            if isinstance(body, ClockFitSummary):
                self._last_fit = body
            self.backlog.add(self._encoder(body))
        self.sender.wake()

    def _encoder(self, body: UplinkBody) -> Callable[[int, int], bytes]:
        """The backlog's encoder of ``body``: it is encoded again at every send (fresh seq, low water, time)."""
        def encode_at(seq: int, low: int) -> bytes:
            return encode(Envelope(v=SCHEMA_VERSION, source_id=self.opts.source_id, session=self.session, seq=seq,
                                   low_water=low, sent_unix_ns=time.time_ns(), body=body))
        return encode_at

    def _time_echo(self, probe_sent_ns: int, received_ns: int) -> bytes:
        """The echo of a probe (sender thread): canonical time at t3 = now, by the decode thread's latest line."""
        line = self.host_canonical.line
        sent_ns = time.monotonic_ns()
        body = TimeEcho(probe_sent_ns=probe_sent_ns, received_ns=received_ns, sent_ns=sent_ns,
                        canonical_ns=None if line is None else line.canonical_ns_at(sent_ns),
                        segment=0 if line is None else line.segment, clock=self.audio.host_clock)
        return encode(Envelope(v=SCHEMA_VERSION, source_id=self.opts.source_id, session=self.session, seq=0,
                               low_water=0, sent_unix_ns=time.time_ns(), body=body))

    def _serve_requests(self, final: bool = False) -> None:
        while True:
            try:
                self._pending.append(self._requests.get_nowait())
            except queue.Empty:
                break
        if not self._pending:
            return
        keep, out = [], []
        rate = self.audio.rate_hz
        for req in self._pending:
            n = int(round(req.duration_s * rate))
            if n * 2 > MAX_AUDIO_BYTES:
                out.append(AudioWindow(request_id=req.request_id, status="too_long", sample_rate_hz=rate))
                continue
            start = req.local_start_sample if req.local_start_sample is not None else max(0, self.ring.end - n)
            samples = self.ring.read(start, n)
            if samples is not None:
                peak = float(np.max(np.abs(samples))) if samples.size else 0.0
                peak = peak if math.isfinite(peak) and peak > 0 else 1.0
                scale = peak / 32767.0
                pcm = np.clip(np.round(np.nan_to_num(samples) / scale), -32767, 32767).astype("<i2").tobytes()
                out.append(AudioWindow(request_id=req.request_id, status="ok", sample_rate_hz=rate,
                                       local_start_sample=start, scale=scale, pcm_s16le=pcm))
            elif final or start < self.ring.start or start + n > self.ring.end + int(self.opts.audio_ring_s * rate):
                out.append(AudioWindow(request_id=req.request_id, status="unavailable", sample_rate_hz=rate,
                                       local_start_sample=max(0, start)))
            else:
                keep.append(req)  # not recorded yet: serve it when it is
        self._pending = keep
        self._emit(out)

    # ------------------------------------------------------------------------------------------- run
    def run(self, stop: threading.Event | None = None) -> ReceiverSummary:
        stop = stop or threading.Event()
        started = time.monotonic()
        deadline = None if self.opts.duration_s is None else started + self.opts.duration_s
        self.sender.start()
        position = 0
        reason = "end of input"
        try:
            for start, block, lag, host_ns in self.audio.blocks(stop):
                self._lag_s = lag
                self.rx.feed(block, start_sample=start)
                self.ring.write(start, np.asarray(block, dtype=np.float32))
                position = start + block.size
                self.host_canonical.add_block(start, host_ns)
                self.host_canonical.update(self.rx, position, self.rx.health.discontinuities)
                self._emit(self.scheduler.due(position))
                self._serve_requests()
                if self.sender.error is not None:
                    reason = "sender failed"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    reason = "duration reached"
                    break
            if stop.is_set():
                reason = "stopped by signal"
        finally:
            self.audio.close()
            self._emit(self.scheduler.due(position, final=True))
            self._serve_requests(final=True)
            linger = self.opts.linger_s if not stop.is_set() else min(self.opts.linger_s, 2.0)
            self.sender.finish(linger)
            self.sender.join(timeout=linger + 5.0)
            if self.sender.is_alive():
                self.sender.stop_now()
                self.sender.join(timeout=5.0)
            self.sender.close()
        return self._summary(reason, position, time.monotonic() - started)

    def _summary(self, reason: str, position: int, wall_s: float) -> ReceiverSummary:
        b = self.backlog.stats()
        s = self.sender.stats
        refused = s.auth_failures > 0 or bool(s.refusals)
        if b.messages == 0 and b.dropped_messages == 0:
            code = 0
        elif refused and b.messages:
            code = 3
        else:
            code = 1
        if self.sender.error is not None:
            code, reason = 1, f"sender failed: {self.sender.error!r}"
        return ReceiverSummary(
            source_id=self.opts.source_id, session=self.session, endpoint=self.opts.connect, exit_code=code,
            exit_reason=reason, audio_seconds=position / self.audio.rate_hz, wall_seconds=wall_s,
            messages_total=b.next_seq, messages_by_kind=dict(self.by_kind), acked_through=b.acked_through,
            unacknowledged=b.messages, backlog_dropped_messages=b.dropped_messages,
            backlog_dropped_bytes=b.dropped_bytes, sent=s.sent, sent_bytes=s.sent_bytes, retransmits=b.retransmits,
            connects=s.connects, disconnects=s.disconnects, auth_failures=s.auth_failures,
            handshake_failures=s.handshake_failures, refusals=dict(s.refusals), audio_requests=s.audio_requests,
            input_blocks_dropped=self.audio.input_blocks_dropped, input_overflows=self.audio.input_overflows,
            locked=self.rx.locked,
            final_fit=None if self._last_fit is None else msgspec.structs.asdict(self._last_fit),
            host_clock=self.audio.host_clock,
            host_line=None if (line := self.host_canonical.line) is None else line._asdict(),
            time_probes=s.time_probes, time_echoes=s.time_echoes,
        )
