"""The supervisor side: :class:`RemoteListener` accepts authenticated receiver reports over ZeroMQ.

Transport: one ROUTER socket, CURVE server (the rig's key pair from
``network.server_key_file``), bound to ``network.listen``. Receivers connect
DEALER sockets with their own key pairs.

Authentication: a ZAP handler (pyzmq's ``ThreadAuthenticator``, its own
thread) accepts a CURVE handshake only for a public key listed in
``network.sources`` whose trust is not ``reject``; it sets the connection's
ZMQ ``User-Id`` to that key's source id. ``ZAP_ENFORCE_DOMAIN`` is on, so
without a running handler no one gets in. Each frame's ``User-Id`` is the only
identity the listener believes: a report claiming another source id is
rejected (:mod:`mimir.net.sources` has the per-frame rules).

Ownership and threads: the listener owns its ZeroMQ context, socket, monitor
socket and the authenticator thread. Everything but the ZAP callback runs in
the caller's thread: :meth:`poll` never blocks, handles at most
``max_messages`` frames, and sends acknowledgements (coalesced: at most one
per peer per ``ack_interval_s``; receivers retransmit after 2 s) and time
probes (every ``time_probe_interval_s`` to each source heard from in the last
5 s). The ZAP callback only reads an immutable key map and bumps locked counters.

Time transfer (:mod:`mimir.net.probes`, :mod:`mimir.net.timetransfer`): each
probe carries ``time.monotonic_ns()`` taken just before it is sent, and each
frame is stamped with ``time.monotonic_ns()`` just after it is read, so the
round trip of every echo is bounded from above by what the network and both
loops really took. :meth:`RemoteListener.authority_line` gives the supervisor
a source's canonical time as a line on this host's monotonic clock.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable

import msgspec
import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from mimir.config import ConfigError, NetworkConfig

from .claims import ClaimLimits
from .keys import KeyFileError, KeyPair, is_z85_key, load_secret_key
from .messages import (
    MAX_MESSAGE_BYTES,
    SCHEMA_VERSION,
    Ack,
    AudioRequest,
    AudioWindow,
    DownEnvelope,
    Refusal,
    TimeProbe,
    encode,
)
from .sources import MAX_MESSAGES_PER_S, EventClaim, RejectCounts, RemoteSourceStatus, SourceTable
from .trust import TRUST_LEVELS

__all__ = ["HandshakeCounts", "ListenerConfigError", "ListenerStatus", "RemoteListener", "UnknownKey", "check_network"]

HARD_MAX_FRAME_BYTES = 4 * MAX_MESSAGE_BYTES  # libzmq drops a connection that sends more than this in one frame
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 4000
MAX_UNKNOWN_KEYS_SHOWN = 16


class ListenerConfigError(ConfigError):
    """The ``[network]`` config cannot run a listener; the message names the field (one line)."""


class HandshakeCounts(msgspec.Struct, kw_only=True):
    accepted_tcp: int = 0        # TCP connections accepted (before any handshake)
    succeeded: int = 0           # CURVE handshakes completed (authenticated)
    failed_auth: int = 0         # refused by the ZAP handler (unknown key or trust = reject)
    failed_protocol: int = 0     # broken handshakes: wrong server key on the client, not ZMTP, bad CURVE boxes
    failed_other: int = 0
    disconnected: int = 0


class UnknownKey(msgspec.Struct):
    public_key: str
    attempts: int


class ListenerStatus(msgspec.Struct, kw_only=True):
    endpoint: str
    server_public_key: str
    authenticator_alive: bool             # False: the ZAP thread died; with ZAP enforced, nobody can connect
    influence_at: str
    frames_received: int
    acks_sent: int
    downlink_failed: int
    event_claims_dropped: int
    handshakes: HandshakeCounts
    rejected_total: RejectCounts          # every cause, summed over sources and unattributed frames
    unknown_keys: list[UnknownKey]
    sources: list[RemoteSourceStatus]


class _Gate:
    """The ZAP decisions: called in the authenticator thread. The key map is never mutated after construction."""

    def __init__(self, keys: dict[bytes, tuple[str, str]]) -> None:
        self.keys = keys
        self.lock = threading.Lock()
        self.unknown: dict[str, int] = {}
        self.unknown_other = 0
        self.refused: dict[str, int] = {}

    def callback(self, domain: str, key: bytes) -> bool:  # ZAP credentials provider protocol
        entry = self.keys.get(bytes(key))
        with self.lock:
            if entry is None:
                name = bytes(key).decode("ascii", "replace")
                if name in self.unknown or len(self.unknown) < MAX_UNKNOWN_KEYS_SHOWN:
                    self.unknown[name] = self.unknown.get(name, 0) + 1
                else:
                    self.unknown_other += 1
                return False
            source_id, trust = entry
            if trust == "reject":
                self.refused[source_id] = self.refused.get(source_id, 0) + 1
                return False
        return True


class _Authenticator(ThreadAuthenticator):
    """ZAP handler whose User-Id for a CURVE client is the source id its public key is listed under."""

    def __init__(self, context: zmq.Context, gate: _Gate) -> None:
        super().__init__(context)
        self.gate = gate

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.gate.keys[z85.encode(client_public_key)][0]


def _validated_sources(config: NetworkConfig, server_public: str | None = None) -> dict[bytes, tuple[str, str]]:
    keys: dict[bytes, tuple[str, str]] = {}
    ids: set[str] = set()
    for i, src in enumerate(config.sources):
        where = f"network.sources[{i}]"
        if not is_z85_key(src.public_key):
            raise ListenerConfigError(f"{where}.public_key: not a 40-character Z85 CURVE public key "
                                      f"(copy it from the receiver's .key file, or use `mimir keys trust`)")
        if src.source_id in ids:
            raise ListenerConfigError(f"{where}.source_id: {src.source_id!r} is listed twice")
        key = src.public_key.encode("ascii")
        if key in keys:
            raise ListenerConfigError(f"{where}.public_key: the same key is already listed for "
                                      f"{keys[key][0]!r}; each key maps to exactly one source id")
        if src.public_key == server_public:
            raise ListenerConfigError(f"{where}.public_key: this is the rig's own server key; list the receiver's "
                                      "public key (its NAME.key file)")
        if src.trust not in TRUST_LEVELS:
            raise ListenerConfigError(f"{where}.trust: {src.trust!r} is not one of {', '.join(TRUST_LEVELS)}")
        ids.add(src.source_id)
        keys[key] = (src.source_id, src.trust)
    return keys


def _listen_endpoint(listen: str) -> str:
    """``listen`` if it is an endpoint a listener can bind: ``tcp://HOST:PORT`` (PORT may be ``*``) or ``ipc://PATH``."""
    match = re.fullmatch(r"tcp://([^\s:/]+|\[[0-9A-Fa-f:.]+\]):(\*|\d{1,5})", listen)
    if match and (match.group(2) == "*" or 0 < int(match.group(2)) < 65536):
        return listen
    if re.fullmatch(r"ipc://\S+", listen):
        return listen
    raise ListenerConfigError(f"network.listen: {listen!r} is not an endpoint to listen on; use "
                              "\"tcp://0.0.0.0:5591\" (any interface), \"tcp://127.0.0.1:5591\" or \"ipc://PATH\"")


def check_network(config: NetworkConfig) -> tuple[KeyPair | None, dict[bytes, tuple[str, str]]]:
    """Every ``[network]`` check that needs no socket: the listen endpoint, the server key file, the sources.

    Returns the server key pair (None when ``listen`` is not set) and the key map
    (Z85 public key -> (source id, trust)). Raises :class:`ListenerConfigError`
    (a :class:`~mimir.config.ConfigError`: one line naming the field).
    """
    server = None
    if config.listen:
        _listen_endpoint(config.listen)
        if not config.server_key_file:
            raise ListenerConfigError("network.server_key_file is not set; create one with "
                                      "`mimir keys generate --out server` and point it at server.key_secret")
        try:
            server = load_secret_key(config.server_key_file)
        except KeyFileError as exc:
            raise ListenerConfigError(f"network.server_key_file: {exc}") from None
    influence_at = getattr(config, "influence_at", "trusted-evidence")
    if influence_at not in TRUST_LEVELS:
        raise ListenerConfigError(f"network.influence_at: {influence_at!r} is not a trust level")
    return server, _validated_sources(config, server.public if server else None)


class RemoteListener:
    """Receive remote receivers' reports for rig ``rig``.

    ``codebook``: the rig's (codebook_id, seed); sources reporting fits of
    another codebook never influence canonical time. ``on_event_claim``: called
    (in the polling thread) for each event claim; without it claims queue up
    (bounded, overflow counted) for :meth:`drain_event_claims`.
    """

    def __init__(self, config: NetworkConfig, rig: str, *, codebook: tuple[str, int] | None = None,
                 on_event_claim: Callable[[EventClaim], None] | None = None, min_confidence: float = 0.5,
                 max_fit_age_s: float = 10.0, refresh_period_s: float = 0.5, ack_interval_s: float = 0.5,
                 time_probe_interval_s: float = 0.5) -> None:
        if not config.listen:
            raise ListenerConfigError("network.listen is not set (e.g. \"tcp://0.0.0.0:5591\")")
        server, keys = check_network(config)
        assert server is not None  # check_network loads the server key whenever listen is set
        influence_at = getattr(config, "influence_at", "trusted-evidence")
        self.rig = rig
        self.config = config
        self.server_public_key = server.public
        self.influence_at = influence_at
        self.table = SourceTable([(sid, trust) for sid, trust in keys.values()], influence_at=influence_at,
                                 codebook=codebook, min_confidence=min_confidence, max_fit_age_s=max_fit_age_s,
                                 on_event_claim=on_event_claim,
                                 max_messages_per_s=getattr(config, "max_messages_per_s", MAX_MESSAGES_PER_S),
                                 claim_limits=ClaimLimits(per_second=getattr(config, "max_claims_per_s",
                                                                             ClaimLimits().per_second)))
        self._gate = _Gate(keys)
        self._handshakes = HandshakeCounts()
        self.frames_received = 0
        self.acks_sent = 0
        self.downlink_failed = 0
        self._request_ids = itertools.count(1)
        self._acks_pending: dict[bytes, tuple[int, int]] = {}
        self._ack_sent_ns: dict[bytes, int] = {}
        self._ack_interval_ns = int(ack_interval_s * 1e9)
        self._next_ack_check_ns = 0
        self._refresh_period_ns = int(refresh_period_s * 1e9)
        self._next_refresh_ns = 0
        if not time_probe_interval_s > 0:
            raise ValueError("time_probe_interval_s must be > 0")
        self._probe_interval_ns = int(time_probe_interval_s * 1e9)
        self._next_probe_ns = 0
        self.probes_sent = 0
        self._closed = False
        self._ctx = zmq.Context()
        self._auth: _Authenticator | None = None
        self._monitor: zmq.Socket | None = None
        self._sock: zmq.Socket | None = None
        try:
            self._auth = _Authenticator(self._ctx, self._gate)
            self._auth.start()
            domain = f"mimir-{rig}"
            self._auth.configure_curve_callback(domain=domain, credentials_provider=self._gate)
            sock = self._ctx.socket(zmq.ROUTER)
            self._sock = sock
            sock.linger = 0
            sock.curve_server = True
            sock.curve_secretkey = server.secret_bytes
            sock.curve_publickey = server.public_bytes
            sock.zap_domain = domain.encode()
            sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            sock.router_mandatory = 1
            sock.maxmsgsize = HARD_MAX_FRAME_BYTES
            sock.rcvhwm = 10_000
            sock.sndhwm = 1_000
            sock.heartbeat_ivl = HEARTBEAT_IVL_MS
            sock.heartbeat_timeout = HEARTBEAT_TIMEOUT_MS
            sock.handshake_ivl = 5000
            self._monitor = sock.get_monitor_socket(
                zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            try:
                sock.bind(config.listen)
            except zmq.ZMQError as exc:
                raise ListenerConfigError(f"network.listen: cannot listen on {config.listen}: {exc}") from None
            self.endpoint: str = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------------------ loop
    @property
    def socket(self) -> zmq.Socket:
        """The ROUTER socket, for a caller that wants to wait on it with a ``zmq.Poller`` (read-only use)."""
        assert self._sock is not None, "the listener is closed"
        return self._sock

    def poll(self, max_messages: int = 100) -> int:
        """Handle up to ``max_messages`` queued frames without blocking; return how many were handled.

        Cheap when idle (one ``ZMQ_EVENTS`` read, about 3 us). Acknowledgements are
        coalesced: at most one per peer per ``ack_interval_s``. Time probes go out
        every ``time_probe_interval_s``.
        """
        if self._closed:
            return 0
        now = time.monotonic_ns()
        sock = self._sock
        assert sock is not None  # open until closed
        handled = 0
        if int(sock.get(zmq.EVENTS)) & zmq.POLLIN:
            while handled < max_messages:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                now = time.monotonic_ns()  # after reading: a time echo's t4 is never before its arrival
                handled += 1
                self.frames_received += 1
                self._handle(frames, now)
        if now >= self._next_probe_ns:
            self._next_probe_ns = now + self._probe_interval_ns
            self._send_probes(now)
        if self._acks_pending and now >= self._next_ack_check_ns:
            self._flush_acks(now)
        if now >= self._next_refresh_ns:
            self._next_refresh_ns = now + self._refresh_period_ns
            self._drain_monitor()
            self.table.refresh(now)
            stale = now - 60_000_000_000
            for rid in [r for r, t in self._ack_sent_ns.items() if t < stale]:
                del self._ack_sent_ns[rid]
        return handled

    def _send_probes(self, now: int) -> None:
        for st in self.table.probe_targets(now):
            assert st.routing_id is not None  # probe_targets picks sources with a connection
            t1 = time.monotonic_ns()  # just before sending: the round trip can only come out longer, never shorter
            if self._send(st.routing_id, TimeProbe(sent_ns=t1)):
                st.time.sent(t1)
                self.probes_sent += 1

    def _flush_acks(self, now: int) -> None:
        due_next = now + self._ack_interval_ns
        for routing_id in list(self._acks_pending):
            last = self._ack_sent_ns.get(routing_id, 0)
            if now - last < self._ack_interval_ns:
                due_next = min(due_next, last + self._ack_interval_ns)
                continue
            session, through = self._acks_pending.pop(routing_id)
            if self._send(routing_id, Ack(session=session, through=through)):
                self.acks_sent += 1
            self._ack_sent_ns[routing_id] = now
        self._next_ack_check_ns = due_next if self._acks_pending else now

    def _handle(self, frames: list[zmq.Frame], now: int) -> None:
        payload = frames[-1]
        try:
            user_id: str | None = str(payload.get("User-Id"))
            peer = str(payload.get("Peer-Address"))
        except zmq.ZMQError:
            user_id, peer = None, ""
        routing_id = frames[0].bytes
        if len(frames) != 2:
            st = self.table.states.get(user_id) if user_id else None
            if st is None:
                self.table.reject_unattributed("unauthenticated" if not user_id else "malformed")
            else:
                self.table._reject(st, "malformed", f"{len(frames) - 1} frames, expected 1", now)
            return
        result = self.table.ingest(user_id or None, payload.buffer, routing_id=routing_id, peer_address=peer or "",
                                   now_ns=now)
        if result.ack is not None:
            self._acks_pending[routing_id] = result.ack
        if result.refusal is not None:
            self._send(routing_id, Refusal(cause=result.refusal[0], detail=result.refusal[1]))

    def _send(self, routing_id: bytes, body) -> bool:
        assert self._sock is not None
        try:
            self._sock.send_multipart([routing_id, encode(DownEnvelope(v=SCHEMA_VERSION, body=body))], zmq.NOBLOCK)
            return True
        except zmq.ZMQError:  # peer gone (ROUTER_MANDATORY) or its queue is full: it will retransmit and re-ask
            self.downlink_failed += 1
            return False

    def _drain_monitor(self) -> None:
        mon = self._monitor
        assert mon is not None
        h = self._handshakes
        while True:
            try:
                msg = mon.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                event = parse_monitor_message(msg)["event"]
            except Exception:  # noqa: BLE001 - a monitor frame we do not understand is not worth a crash
                h.failed_other += 1
                continue
            if event == zmq.EVENT_ACCEPTED:
                h.accepted_tcp += 1
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                h.succeeded += 1
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                h.failed_auth += 1
            elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                h.failed_protocol += 1
            elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                h.failed_other += 1
            elif event == zmq.EVENT_DISCONNECTED:
                h.disconnected += 1

    # ------------------------------------------------------------------------------------------------ requests
    def request_audio_window(self, source_id: str, duration_s: float, local_start_sample: int | None = None) -> int:
        """Ask a connected source for raw audio; returns a request id (see :meth:`audio_window`).

        Raises ``KeyError`` for an unknown source, ``RuntimeError`` if it has not connected yet.
        """
        st = self.table.states[source_id]
        if st.routing_id is None:
            raise RuntimeError(f"source {source_id!r} has not sent anything yet")
        request_id = next(self._request_ids)
        st.pending_audio.add(request_id)
        if len(st.pending_audio) > 16:
            st.pending_audio.discard(min(st.pending_audio))
        self._send(st.routing_id, AudioRequest(request_id=request_id, duration_s=duration_s,
                                               local_start_sample=local_start_sample))
        return request_id

    def audio_window(self, source_id: str, request_id: int) -> AudioWindow | None:
        return self.table.states[source_id].audio_windows.get(request_id)

    # ------------------------------------------------------------------------------------------------ time
    def authority_line(self, source_id: str) -> tuple[int, int, float, int] | None:
        """The source's canonical time on this host's ``time.monotonic_ns()``, if it may define canonical time.

        Returns ``(origin_host_ns, origin_canonical_ns, scale, uncertainty_ns)``,
        meaning ``canonical_ns = origin_canonical_ns + scale * (host_ns -
        origin_host_ns)`` to within ``uncertainty_ns`` at ``origin_host_ns``
        (the newest echo; the bound grows by
        ``source(id).time_transfer.scale_uncertainty_ppm`` away from it), or
        None unless both hold now: the source's trust decision says
        ``canonical_authority`` (trust ``canonical-authority``, a fresh locked fit
        of the rig's codebook with enough confidence) and its time-transfer line
        is ready (at least 8 echoes of its current session and fit segment, the
        newest at most 10 s old). Cheap (no status is built): call it every
        tick. ``KeyError`` for a source that is not configured.
        """
        return self.table.authority_line(source_id, time.monotonic_ns())

    # ------------------------------------------------------------------------------------------------ state
    def drain_event_claims(self) -> list[EventClaim]:
        """Event claims since the last call (empty when an ``on_event_claim`` callback takes them)."""
        return self.table.drain_claims()

    def sources(self) -> list[RemoteSourceStatus]:
        """Per-source status (a snapshot; safe to keep)."""
        return self.status().sources

    def source(self, source_id: str) -> RemoteSourceStatus:
        for s in self.sources():
            if s.source_id == source_id:
                return s
        raise KeyError(source_id)

    def status(self) -> ListenerStatus:
        """Everything for ``mimir status``: listener-wide counters and one entry per configured source."""
        if not self._closed:
            self._drain_monitor()
        sources = self.table.status()
        total = RejectCounts()
        for s in sources:
            for f in total.__struct_fields__:
                setattr(total, f, getattr(total, f) + getattr(s.counters.rejected, f))
        for f in total.__struct_fields__:
            setattr(total, f, getattr(total, f) + getattr(self.table.unattributed, f))
        with self._gate.lock:
            unknown = [UnknownKey(k, n) for k, n in self._gate.unknown.items()]
            total.unknown_key += sum(self._gate.unknown.values()) + self._gate.unknown_other
            refused = dict(self._gate.refused)
        total.refused_by_policy += sum(refused.values())
        for s in sources:
            s.counters.rejected.refused_by_policy += refused.get(s.source_id, 0)
        return ListenerStatus(
            endpoint=self.endpoint if not self._closed else "", server_public_key=self.server_public_key,
            authenticator_alive=bool(self._auth is not None and self._auth.is_alive()),
            influence_at=self.influence_at, frames_received=self.frames_received, acks_sent=self.acks_sent,
            downlink_failed=self.downlink_failed, event_claims_dropped=self.table.claims_dropped,
            handshakes=msgspec.structs.replace(self._handshakes), rejected_total=total, unknown_keys=unknown,
            sources=sources,
        )

    # ------------------------------------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Close the socket, stop the authenticator, end the context. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._sock is not None:
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass
        if self._monitor is not None:
            self._monitor.close(linger=0)
        if self._sock is not None:
            self._sock.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    def __enter__(self) -> RemoteListener:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
