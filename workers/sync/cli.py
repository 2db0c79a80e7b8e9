"""The typer command function of the sync worker, ``mimir-worker sync`` (wired in :mod:`mimir_cli.app`).

Exit codes of ``sync_worker``: 0 after a clean stop (SIGTERM, SIGINT or
``--duration``), 2 for bad input (a malformed ``--band`` or
``--channel-path`` or ``--channel-pulse``, a band that cannot hold the codebook, a pulse measured at another rate
or band than the ring's, a path for a channel the ring does not have, no audio ring to read), each with one line on
stderr.
"""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from mimir.sync.witness_output import DEFAULT_EPOCH_UNIX_S

__all__ = ["sync_worker"]


def sync_worker(
    rig: str = "default",
    ring: str = "audio",
    codebook_id: str = "mimir-default",
    seed: int = 0,
    epoch_unix_s: float = DEFAULT_EPOCH_UNIX_S,
    duration: Optional[float] = None,
    band: Optional[str] = None,
    channel_path: Optional[List[str]] = None,
    channel_pulse: Optional[List[str]] = None,
) -> None:
    """Decode the active witness on every channel of an audio ring and publish clock fits (ring sync.fits).

    ``--band LO-HI``: band limits for every channel. ``--channel-path C:DIST_M[:DELAY_MS]`` (repeatable):
    the known acoustic path of rig channel C (distance in metres, optional extra delay in ms).
    ``--channel-pulse C:FILE`` (repeatable): channel C's transducer pulse, the JSON ``mimir decode DRY.wav
    --measure-pulse`` writes (its delay then measured with it, as in the rig config's ``path``).
    """
    from mimir.sync.calibration import parse_band, parse_channel_paths
    from mimir.sync.codebook import Codebook
    from ringbuf import SegmentMissing

    from .worker import run_sync_worker

    try:
        limits = parse_band(band) if band is not None else None
        if limits is not None:
            limits.validate(Codebook.from_id(codebook_id, seed).spec)  # refused here, not by the first receiver
        paths = parse_channel_paths(channel_path or [], channel_pulse or [])
    except ValueError as exc:
        print(f"mimir-worker sync: {exc}", file=sys.stderr)
        raise typer.Exit(2)
    try:
        code = run_sync_worker(rig, ring=ring, codebook_id=codebook_id, seed=seed, epoch_unix_s=epoch_unix_s,
                               duration_s=duration, paths=paths, band=limits)
    except SegmentMissing as exc:
        print(f"mimir-worker sync: {exc}", file=sys.stderr)
        raise typer.Exit(2)
    raise typer.Exit(code)
