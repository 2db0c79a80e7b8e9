"""`mimir record`: continuous takes of a running rig, written to disk without ever stalling capture.

* :mod:`mimir.record.recorder` - :class:`Recorder`: the reader and writer threads, the result;
* :mod:`mimir.record.feed`     - walking the reservoir with the recorder's own cursors, ring incarnations;
* :mod:`mimir.record.queues`   - the hand-over between the threads: staging, audio first, dropping video to catch up;
* :mod:`mimir.record.clock`    - each item's clock segment (and fit) from the rig's clock board;
* :mod:`mimir.record.ledger`   - the accounting: written + skipped = published, per source, by cause;
* :mod:`mimir.record.status`   - the recorder's status board (read by `mimir status`);
* :mod:`mimir.record.leftovers` - repairing takes a killed recorder left;
* :mod:`mimir.record.cli`      - the ``record`` command function (wired in ``mimir_cli``).

The folder format is the take format (docs/take.md); the recorder in docs/record.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Recorder", "RecordResult", "BadRecordRequest", "default_folder"]

if TYPE_CHECKING:
    from .recorder import BadRecordRequest, Recorder, RecordResult, default_folder


def __getattr__(name: str) -> Any:
    """The recorder loads PyAV, soundfile and the take writer: only when asked for (``mimir status`` imports
    :mod:`mimir.record.status` alone)."""
    if name in __all__:
        from . import recorder

        return getattr(recorder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
