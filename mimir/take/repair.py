"""``repair(take_dir)``: rebuild the manifest of a take whose writer did not close it (``mimir record --repair``).

From the files alone (:func:`mimir.take.scan.scan` with ``fix=True``; the
manifest of the writer's last flush only supplies the sources, the rig and
the clock segments it knew):

* video: counts the whole frames of each ``NNNNN.mkv`` and cuts its
  timestamp table to them; rows of frames that never reached the file are
  listed as skipped ("lost in the crash");
* audio: keeps the samples covered by whole block-table rows and rewrites
  the WAV with exact header sizes (a killed writer leaves stale sizes that
  libsndfile and FFmpeg tolerate but other readers do not); samples past the
  last row (no timestamp) are dropped and listed as missing;
* XDF: cuts a torn last chunk (pyxdf fails on a torn header chunk);
* recomputes counts, spans and gaps, and writes the manifest with
  ``complete = false``, ``repaired = true`` and the cause.

Files written after the last flush (not in that manifest) are found and
listed; their clock segment is unknown (``null``). A take its writer closed
(cleanly, or after a failure it recorded) is left as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from .errors import NotATake
from .manifest import (
    MANIFEST_NAME,
    RESERVE_NAME,
    Manifest,
    Missing,
    read_manifest,
    write_manifest,
)
from .scan import scan

__all__ = ["repair"]

CAUSE = "the writer did not close the take (killed or crashed); repaired from its files"


def repair(take_dir: str | os.PathLike) -> Manifest:
    """Rebuild and write ``manifest.json`` from what is in ``take_dir``; returns the new manifest."""
    directory = Path(take_dir)
    if not (directory / MANIFEST_NAME).is_file():
        raise NotATake(f"{directory} holds no take ({MANIFEST_NAME} is missing): nothing to repair")
    old = read_manifest(directory)
    if old.closed_unix_ns is not None:
        return old  # its writer closed it and wrote the truth (complete, or incomplete with the cause)
    found = scan(directory, old, fix=True, trust_closed=False)
    missing = [m for m in old.missing if m.cause != CAUSE] + found.missing
    missing.append(Missing(None, "the end of the take (after the writer's last flush)", CAUSE))
    manifest = msgspec.structs.replace(old, sources=found.sources, files=found.files, complete=False,
                                       missing=missing, repaired=True)
    (directory / RESERVE_NAME).unlink(missing_ok=True)
    (directory / (MANIFEST_NAME + ".tmp")).unlink(missing_ok=True)
    write_manifest(directory, manifest, sync=True)
    return manifest
