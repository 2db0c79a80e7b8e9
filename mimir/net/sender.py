"""The receiver's network thread: a CURVE DEALER that drains the backlog and never touches audio.

Ownership: :class:`Sender` owns its ZeroMQ context, DEALER socket, monitor
socket and wake-up socket pair; all of them but the pair's sending end are
used only inside its thread. Other threads talk to it through the
thread-safe :class:`~mimir.net.backlog.Backlog`, :meth:`Sender.wake` (one
byte into a non-blocking socket: every OS's ``zmq.Poller`` accepts a socket,
where a pipe is not pollable on Windows; one ``send`` per call is safe from
any thread) and callbacks it makes from its own thread (audio requests,
refusals).

Reliability: ``IMMEDIATE`` is set, so nothing is queued inside ZeroMQ while
disconnected (a send would fail and the message stays due in the backlog).
Messages stay in the backlog until acknowledged; unacknowledged ones are sent
again after ``retransmit_after_s`` and all at once after every reconnection.
ZeroMQ reconnects by itself (100 ms, backing off to 2 s); heartbeats detect a
dead peer within ``HEARTBEAT_TIMEOUT_MS``.

Time probes are answered at once from this thread: the probe's arrival is
stamped right after it is read (t2), and ``on_time_probe(t1, t2)`` builds the
echo (stamping t3 and canonical time at t3) just before it is sent, outside
the backlog (an echo is never retransmitted: a late one is worthless). After a refused handshake (key not
trusted, wrong server key) libzmq gives up on the connection, so the thread
builds a fresh socket after 1 s, 2 s, 4 s ... up to 30 s: trusting the key
later is enough, the receiver needs no restart.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq
from zmq.utils.monitor import parse_monitor_message

from .backlog import Backlog
from .keys import KeyPair
from .messages import Ack, AudioRequest, MessageRejected, Refusal, TimeProbe, decode_downlink

__all__ = ["Sender", "SenderStats"]

HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 4000
REBUILD_MIN_S = 1.0      # after a refused handshake, first retry with a fresh socket after this ...
REBUILD_MAX_S = 30.0     # ... doubling up to this


@dataclass
class SenderStats:
    """Written by the sender thread only; other threads read (ints: safe under the GIL)."""

    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    auth_failures: int = 0
    handshake_failures: int = 0
    sent: int = 0
    sent_bytes: int = 0
    acks: int = 0
    acked_through: int = -1
    downlink_malformed: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    audio_requests: int = 0
    time_probes: int = 0          # time probes received
    time_echoes: int = 0          # echoes sent
    time_echoes_failed: int = 0   # echoes ZeroMQ would not take at once (dropped: the next probe comes soon)


class Sender(threading.Thread):
    def __init__(self, endpoint: str, client: KeyPair, server_public_key: str, backlog: Backlog, session: int, *,
                 retransmit_after_s: float = 2.0, on_audio_request: Callable[[AudioRequest], None] | None = None,
                 on_time_probe: Callable[[int, int], bytes] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__(name="mimir-net-sender", daemon=True)
        self.endpoint = endpoint
        self.client = client
        self.server_public_key = server_public_key
        self.backlog = backlog
        self.session = session
        self.retransmit_after_ns = int(retransmit_after_s * 1e9)
        self.on_audio_request = on_audio_request
        self.on_time_probe = on_time_probe
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.stats = SenderStats()
        self._stop_at: float | None = None      # monotonic deadline once asked to finish
        self._finish_when_empty = False
        self._stop_now = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_open = True
        self._said: set[str] = set()
        self._rebuild_at: float | None = None
        self._rebuild_delay_s = REBUILD_MIN_S
        self.error: BaseException | None = None

    # ------------------------------------------------------------------------------------------------ control
    def wake(self) -> None:
        """Tell the thread new messages are due (any thread; never blocks)."""
        if not self._wake_open:
            return
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full (BlockingIOError): the thread is already due to wake; or closed meanwhile

    def finish(self, linger_s: float) -> None:
        """Stop once the backlog is empty (everything acknowledged) or after ``linger_s``."""
        self._finish_when_empty = True
        self._stop_at = time.monotonic() + max(0.0, linger_s)
        self.wake()

    def stop_now(self) -> None:
        self._stop_now.set()
        self.wake()

    def _say_once(self, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self.log(text)

    # ------------------------------------------------------------------------------------------------ thread
    def _open(self, ctx: zmq.Context) -> tuple[zmq.Socket, zmq.Socket]:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_secretkey = self.client.secret_bytes
        sock.curve_publickey = self.client.public_bytes
        sock.curve_serverkey = self.server_public_key.encode("ascii")
        sock.immediate = 1
        sock.sndhwm = 1000
        sock.rcvhwm = 1000
        sock.reconnect_ivl = 100
        sock.reconnect_ivl_max = 2000
        sock.heartbeat_ivl = HEARTBEAT_IVL_MS
        sock.heartbeat_timeout = HEARTBEAT_TIMEOUT_MS
        sock.handshake_ivl = 5000
        mon = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        sock.connect(self.endpoint)
        return sock, mon

    @staticmethod
    def _close(sock: zmq.Socket | None, mon: zmq.Socket | None) -> None:
        if sock is not None:
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
        if mon is not None:
            mon.close(linger=0)
        if sock is not None:
            sock.close(linger=0)

    def run(self) -> None:
        ctx = zmq.Context()
        sock = mon = None
        try:
            while not self._stop_now.is_set():
                sock, mon = self._open(ctx)
                self._rebuild_at = None
                self._loop(sock, mon)
                self._close(sock, mon)
                sock = mon = None
                if self._rebuild_at is None:
                    break  # finished or stopped; otherwise: refused, build a fresh socket and try again
                self.stats.connected = False
        except BaseException as exc:  # noqa: BLE001 - reported by the owner through .error
            self.error = exc
        finally:
            self._close(sock, mon)
            ctx.term()

    def close(self) -> None:
        """Release the wake-up sockets; call after :meth:`join` (no thread may call :meth:`wake` afterwards)."""
        self._wake_open = False
        self._wake_r.close()
        self._wake_w.close()

    def _loop(self, sock: zmq.Socket, mon: zmq.Socket) -> None:
        """Run one socket until finished, stopped, or due for a rebuild after a refused handshake."""
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(mon, zmq.POLLIN)
        wake_fd = self._wake_r.fileno()
        poller.register(wake_fd, zmq.POLLIN)
        while not self._stop_now.is_set():
            now = time.monotonic()
            if self._finish_when_empty and (len(self.backlog) == 0 or (self._stop_at is not None
                                                                       and now >= self._stop_at)):
                self._rebuild_at = None
                return
            if self._rebuild_at is not None and now >= self._rebuild_at:
                return
            events = dict(poller.poll(50))
            if wake_fd in events:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
            if mon in events:
                self._drain_monitor(mon)
            if sock in events:
                self._drain_downlink(sock)
            if self.stats.connected:
                self._send_due(sock)

    def _send_due(self, sock: zmq.Socket) -> None:
        now = time.monotonic_ns()
        for seq, data, _ in self.backlog.due(now, self.retransmit_after_ns, limit=256):
            try:
                sock.send(data, zmq.NOBLOCK)
            except zmq.Again:
                return  # not connected after all, or ZeroMQ's queue is full: try on the next round
            self.backlog.mark_sent(seq, now)
            self.stats.sent += 1
            self.stats.sent_bytes += len(data)

    def _drain_monitor(self, mon: zmq.Socket) -> None:
        s = self.stats
        while True:
            try:
                event = parse_monitor_message(mon.recv_multipart(zmq.NOBLOCK))["event"]
            except zmq.Again:
                return
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                s.connected = True
                s.connects += 1
                self._rebuild_delay_s = REBUILD_MIN_S
                self.backlog.mark_all_due()
                if s.connects > 1:
                    self.log(f"reconnected to {self.endpoint} ({s.connects - 1} reconnection(s))")
                else:
                    self.log(f"connected to {self.endpoint}")
            elif event == zmq.EVENT_DISCONNECTED:
                if s.connected:
                    s.disconnects += 1
                    self.log(f"disconnected from {self.endpoint}; reconnecting, keeping a backlog")
                s.connected = False
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                s.auth_failures += 1
                self._schedule_rebuild()
                self._say_once("auth", f"error: {self.endpoint} refused our key (not listed in the rig's "
                                       f"[network.sources], or trust = reject); retrying every "
                                       f"{REBUILD_MIN_S:g}-{REBUILD_MAX_S:g} s")
            else:
                s.handshake_failures += 1
                self._schedule_rebuild()
                self._say_once("handshake", f"error: CURVE handshake with {self.endpoint} failed (is --server-key "
                                            f"the rig's public key?); retrying")

    def _schedule_rebuild(self) -> None:
        """libzmq does not reconnect after a refused handshake: build a fresh socket later (backing off)."""
        if self._rebuild_at is None:
            self._rebuild_at = time.monotonic() + self._rebuild_delay_s
            self._rebuild_delay_s = min(REBUILD_MAX_S, self._rebuild_delay_s * 2)

    def _drain_downlink(self, sock: zmq.Socket) -> None:
        s = self.stats
        for _ in range(1000):
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            received_ns = time.monotonic_ns()  # after reading: t2 is never before the probe's arrival
            try:
                body = decode_downlink(frame).body
            except MessageRejected:
                s.downlink_malformed += 1
                continue
            if isinstance(body, Ack):
                if body.session == self.session:
                    s.acks += 1
                    s.acked_through = max(s.acked_through, body.through)
                    self.backlog.ack(body.through)
            elif isinstance(body, Refusal):
                s.refusals[body.cause] = s.refusals.get(body.cause, 0) + 1
                self._say_once("refusal:" + body.cause, f"error: the listener rejected our reports: {body.cause}"
                                                        + (f" ({body.detail})" if body.detail else ""))
            elif isinstance(body, AudioRequest):
                s.audio_requests += 1
                if self.on_audio_request is not None:
                    self.on_audio_request(body)
            elif isinstance(body, TimeProbe):
                s.time_probes += 1
                if self.on_time_probe is not None:
                    self._echo(sock, body.sent_ns, received_ns)

    def _echo(self, sock: zmq.Socket, probe_sent_ns: int, received_ns: int) -> None:
        assert self.on_time_probe is not None
        data = self.on_time_probe(probe_sent_ns, received_ns)
        try:
            sock.send(data, zmq.NOBLOCK)
        except zmq.Again:
            self.stats.time_echoes_failed += 1
            return
        self.stats.time_echoes += 1
