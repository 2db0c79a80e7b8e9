"""Distributed receivers: remote witness decoding with authenticated, compact timing reports over ZeroMQ.

* :mod:`.messages` - the wire format (msgspec Structs in MessagePack) and its strict decoder;
* :mod:`.keys` - CURVE key files; :mod:`.trust` - the trust policy;
* :mod:`.listener` - :class:`RemoteListener`, the supervisor side; :mod:`.sources` - its per-source rules;
* :mod:`.probes` and :mod:`.timetransfer` - the time transfer's echo rules and its host -> canonical line
  (``RemoteListener.authority_line``);
* :mod:`.receiver` - the remote side (``mimir receiver``) with :mod:`.sender`, :mod:`.backlog`,
  :mod:`.reports`, :mod:`.audio_source`, :mod:`.hostclock` (canonical time at its host time);
* :mod:`.relay` - a loopback TCP relay (byte counts, blackouts) for tests and the benchmark.

The receiver side runs on Linux, macOS and Windows with no platform-specific
code, and imports nothing of the rig (no rings, no reservoir, no posix_ipc):
this package's names are therefore loaded on first use, so that
``python -m mimir.net receiver`` pulls in the receiver modules only. See
``docs/net.md`` and ``docs/platforms.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .listener import ListenerConfigError, ListenerStatus, RemoteListener
    from .sources import EventClaim, RemoteSourceStatus
    from .trust import TRUST_LEVELS, TrustDecision, decide

__all__ = [
           "TRUST_LEVELS",
           "EventClaim",
           "ListenerConfigError",
           "ListenerStatus",
           "RemoteListener",
           "RemoteSourceStatus",
           "TrustDecision",
           "decide",
]

_HOME = {
    "ListenerConfigError": "listener", "ListenerStatus": "listener", "RemoteListener": "listener",
    "EventClaim": "sources", "RemoteSourceStatus": "sources",
    "TRUST_LEVELS": "trust", "TrustDecision": "trust", "decide": "trust",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
