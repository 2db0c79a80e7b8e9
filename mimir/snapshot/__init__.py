"""`mimir snapshot`: save the last N seconds of a running rig into a take folder (docs/consumer.md, docs/take.md).

* :mod:`mimir.snapshot.capture` - :func:`take_snapshot`: the span, the copies, the take writer;
* :mod:`mimir.snapshot.stage`   - copying payloads out of live rings before the writers lap them;
* :mod:`mimir.snapshot.segments` - each item's clock segment, from the rig's published clock history;
* :mod:`mimir.snapshot.cli`     - the ``snapshot`` command function (wired in ``mimir_cli``).
"""

from .capture import BadSnapshotRequest, RigStopped, SnapshotResult, default_folder, take_snapshot

__all__ = ["take_snapshot", "SnapshotResult", "BadSnapshotRequest", "RigStopped", "default_folder"]
