"""Stopping a process cleanly on SIGTERM/SIGINT, safely.

A Python signal handler runs in the main thread between bytecodes, so a
second signal can run the handler again *inside* the first one. Handlers that
call ``threading.Event.set()`` deadlock then: ``set()`` holds the event's
non-reentrant lock while the nested call waits for it (seen: a worker that
ignored its parent-death SIGTERM forever). The handler here sets the event at
most once and never enters ``set()`` from a nested call.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["stop_on_signals", "STOP_SIGNALS"]

# SIGBREAK: what a Windows supervisor sends (CTRL_BREAK_EVENT to the worker's process group; see
# mimir.process_control.request_stop). SIGTERM and SIGINT everywhere.
STOP_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGBREAK") if hasattr(signal, name)
)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event,
                    signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[threading.Event]:
    """Set ``stop`` when one of ``signals`` arrives; restore the previous handlers on exit.

    Only the main thread may install handlers; elsewhere this does nothing
    (the caller's own thread owns ``stop``).
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    requested: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if requested:  # already stopping: a nested or repeated signal must not re-enter Event.set()
            return
        requested.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
