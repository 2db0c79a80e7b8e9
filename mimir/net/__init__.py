"""Distributed receivers: remote witness decoding with authenticated, compact timing reports over ZeroMQ.

* :mod:`.messages` - the wire format (msgspec Structs in MessagePack) and its strict decoder;
* :mod:`.keys` - CURVE key files; :mod:`.trust` - the trust policy;
* :mod:`.listener` - :class:`RemoteListener`, the supervisor side; :mod:`.sources` - its per-source rules;
* :mod:`.receiver` - the remote side (``mimir receiver``) with :mod:`.sender`, :mod:`.backlog`,
  :mod:`.reports`, :mod:`.audio_source`;
* :mod:`.relay` - a loopback TCP relay (byte counts, blackouts) for tests and the benchmark.

See ``docs/net.md``.
"""

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
