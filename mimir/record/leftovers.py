"""Repairing the takes a killed recorder left: what `mimir record` does next to a new take before it starts.

A recorder writes its pid and process start time into its take's manifest
(``rig.record.recorder``). A take whose manifest was never closed
(``closed_unix_ns`` null), never repaired, and whose recorder process is
gone was left by a recorder killed mid-take (SIGKILL, a power cut, an OOM
kill): :func:`repair_leftovers` runs :func:`mimir.take.repair` on it, which
rebuilds the manifest from the files (docs/take.md, section 8). Only the
folders directly inside one parent folder are looked at.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from mimir.take import MANIFEST_NAME, Manifest, read_manifest, repair
from ringbuf import process

__all__ = ["left_by_a_killed_recorder", "repair_leftovers"]


def left_by_a_killed_recorder(take_dir: Path) -> bool:
    """True when ``take_dir`` is a recorder's take that no live process will close."""
    if not (take_dir / MANIFEST_NAME).is_file():
        return False
    try:
        manifest = read_manifest(take_dir)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return False
    record = manifest.rig.get("record") if isinstance(manifest.rig, dict) else None
    recorder = record.get("recorder") if isinstance(record, dict) else None
    if not isinstance(recorder, dict) or manifest.closed_unix_ns is not None or manifest.repaired:
        return False
    return not process.alive(int(recorder.get("pid", 0)), int(recorder.get("identity", 0)))


def repair_leftovers(parent: str | os.PathLike, *,
                     skip: str | os.PathLike | None = None) -> list[tuple[Path, Manifest]]:
    """Repair every take in ``parent`` (not ``skip``) left by a killed recorder; ``[(folder, new manifest)]``."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    skip_path = Path(skip).resolve() if skip is not None else None
    out = []
    for child in sorted(parent.iterdir()):
        if not child.is_dir() or child.resolve() == skip_path:
            continue
        if left_by_a_killed_recorder(child):
            out.append((child, repair(child)))
    return out
