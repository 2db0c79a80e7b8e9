"""Doorbells over loopback UDP: the Windows doorbell, written without anything Windows-specific.

Windows' ``select`` and ``zmq.Poller`` wait on sockets only (a pipe or FIFO
is not one there), so a reader's doorbell is a UDP socket bound to
``127.0.0.1`` on a port the OS picks; the port is the bell id a writer finds
in the reader's slot. A ring is one datagram of one byte to that port.

The same code runs on Linux and macOS (CI tests it on Linux, including
across processes), which is why it lives here rather than in
:mod:`ringbuf.platform.windows`.

What it is and is not:

* a wake-up *hint*, like every doorbell: a woken reader re-checks the ring.
  Any local process can send a datagram to the port; the worst it can do is
  a spurious wake-up. Datagrams from outside the machine never reach a
  socket bound to the loopback address.
* never blocking the writer: the sender's socket is non-blocking; a full
  buffer (the listener has unread rings already) or a port nobody listens on
  any more (the listener closed; Windows may report it as a connection
  reset) drops the datagram silently.
* the listener owns its socket; closing it frees the port. A writer may
  ring a closed listener's port once (until the reader slot's bell id is
  cleared); the port's next owner then gets one stray byte on the loopback.
"""

from __future__ import annotations

import select
import socket

from .base import DoorbellListener, DoorbellSender

__all__ = ["UdpListener", "UdpSender", "LOOPBACK"]

LOOPBACK = "127.0.0.1"


class UdpListener(DoorbellListener):
    """A doorbell listener on a loopback UDP port (see module docstring); ``bell_id`` is the port."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((LOOPBACK, 0))
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise
        self.bell_id = self._sock.getsockname()[1]
        self._closed = False

    def fileno(self) -> int:
        return self._sock.fileno()

    def wait(self, timeout_s: float | None) -> bool:
        ready, _, _ = select.select([self._sock], [], [], None if timeout_s is None else max(0.0, timeout_s))
        if ready:
            # One datagram: a ring comes at most once per arming, so more is rare, and what is left only makes
            # the next wait return at once (a hint, re-checked); a second recv to find the end would cost a raise.
            try:
                self._sock.recv(64)
            except (BlockingIOError, InterruptedError, ConnectionResetError):
                pass
            return True
        return False

    def drain(self) -> None:
        """Consume every pending ring (the waiter reads one per wake-up)."""
        recv = self._sock.recv
        while True:
            try:
                recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionResetError:  # Windows: an ICMP "port unreachable" for a datagram we never sent
                continue

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()


class UdpSender(DoorbellSender):
    """Rings UDP doorbells by port from one non-blocking socket; never blocks, never raises for a gone listener."""

    MAX_ADDRESSES = 1024  # cached destination tuples; beyond this the cache starts over

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._addresses: dict[int, tuple[str, int]] = {}

    def ring(self, bell_id: int) -> None:
        address = self._addresses.get(bell_id)
        if address is None:
            if not 0 < bell_id < 65536:
                return  # not a UDP doorbell (a reader of another platform's rules): nothing to ring
            if len(self._addresses) >= self.MAX_ADDRESSES:
                self._addresses.clear()
            address = self._addresses[bell_id] = (LOOPBACK, bell_id)
        try:
            self._sock.sendto(b"\x01", address)
        except OSError:  # full buffer, or (Windows) an earlier datagram to a closed port reported back
            pass

    def close(self) -> None:
        self._sock.close()
        self._addresses.clear()
