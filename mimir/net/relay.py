"""A loopback TCP relay for tests and the benchmark: counts bytes each way, can black the link out or delay it.

``LoopbackRelay(("127.0.0.1", port)).start()`` listens on 127.0.0.1 (an
ephemeral port: :attr:`endpoint`) and forwards every connection to the
target. :meth:`blackout` cuts every open connection and refuses (accepts and
closes at once) new ones until :meth:`restore`, like a link that went down.
``delay_up_s`` / ``delay_down_s`` hold every byte going to the target / back
to the client that long before forwarding it (in order): an asymmetric path,
as a time transfer sees it.

One thread owns every socket; other threads only read the counters and flip
flags through a wake-up pipe. Only loopback addresses are accepted.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections import deque

__all__ = ["LoopbackRelay"]

_CHUNK = 65536


class LoopbackRelay:
    def __init__(self, target: tuple[str, int], *, port: int = 0, delay_up_s: float = 0.0,
                 delay_down_s: float = 0.0) -> None:
        if target[0] not in ("127.0.0.1", "localhost"):
            raise ValueError("the relay only forwards to loopback")
        if not (delay_up_s >= 0 and delay_down_s >= 0):
            raise ValueError("delays must be >= 0")
        self._delay_ns = {"up": int(delay_up_s * 1e9), "down": int(delay_down_s * 1e9)}
        self._held: deque[tuple[int, socket.socket, bytes]] = deque()  # (due, to, data), due rising per direction
        self.target = ("127.0.0.1", int(target[1]))
        self._listen = socket.create_server(("127.0.0.1", port))
        self._listen.setblocking(False)
        self.port = self._listen.getsockname()[1]
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.bytes_up = 0          # client -> target
        self.bytes_down = 0        # target -> client
        self.connections = 0
        self.refused = 0
        self._dark = False
        self._closing = False
        self._peers: dict[socket.socket, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()  # a pipe is not selectable on Windows; sockets are
        self._thread = threading.Thread(target=self._run, name="mimir-relay", daemon=True)

    def start(self) -> LoopbackRelay:
        self._thread.start()
        return self

    def blackout(self) -> None:
        self._dark = True
        self._wake_w.send(b"b")

    def restore(self) -> None:
        self._dark = False
        self._wake_w.send(b"r")

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._wake_w.send(b"c")
        self._thread.join(timeout=5)
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> LoopbackRelay:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------------- thread
    def _drop(self, sel: selectors.BaseSelector, s: socket.socket) -> None:
        peer = self._peers.pop(s, None)
        for x in (s, peer):
            if x is None:
                continue
            self._peers.pop(x, None)
            try:
                sel.unregister(x)
            except (KeyError, ValueError):
                pass
            x.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listen, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._closing:
                timeout = 0.5
                if self._held:
                    timeout = max(0.0, min(timeout, (min(h[0] for h in self._held) - time.monotonic_ns()) / 1e9))
                for key, _ in sel.select(timeout=timeout):
                    if key.data == "wake":
                        self._wake_r.recv(64)
                        if self._dark or self._closing:
                            for s in list(self._peers):
                                self._drop(sel, s)
                    elif key.data == "listen":
                        self._accept(sel)
                    else:
                        self._forward(sel, key.fileobj, key.data)  # type: ignore[arg-type]  # registered sockets
                self._release(sel)
        finally:
            for s in list(self._peers):
                self._drop(sel, s)
            self._listen.close()
            sel.close()

    def _accept(self, sel: selectors.BaseSelector) -> None:
        try:
            client, _ = self._listen.accept()
        except BlockingIOError:
            return
        if self._dark:
            self.refused += 1
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            client.close()  # reset at once: the client sees the link down and retries
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            self.refused += 1
            client.close()
            return
        for s in (client, upstream):
            s.setblocking(True)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        self._peers[client] = upstream
        self._peers[upstream] = client
        sel.register(client, selectors.EVENT_READ, "up")
        sel.register(upstream, selectors.EVENT_READ, "down")

    def _release(self, sel: selectors.BaseSelector) -> None:
        """Forward the held chunks that are due (in arrival order per connection and direction)."""
        now = time.monotonic_ns()
        keep: deque[tuple[int, socket.socket, bytes]] = deque()
        while self._held:
            due, to, data = self._held.popleft()
            if due > now:
                keep.append((due, to, data))
                continue
            if to in self._peers:  # still open
                try:
                    to.sendall(data)
                except OSError:
                    self._drop(sel, to)
        self._held = keep

    def _forward(self, sel: selectors.BaseSelector, s: socket.socket, direction: str) -> None:
        peer = self._peers.get(s)
        if peer is None:
            return
        try:
            data = s.recv(_CHUNK)
            if not data:
                raise ConnectionError
            delay = self._delay_ns[direction]
            if delay:
                self._held.append((time.monotonic_ns() + delay, peer, data))
            else:
                peer.sendall(data)
        except OSError:
            self._drop(sel, s)
            return
        if direction == "up":
            self.bytes_up += len(data)
        else:
            self.bytes_down += len(data)
