"""File bookkeeping shared by the per-source media writers (:mod:`mimir.take.audio`, :mod:`mimir.take.video`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["remove_files", "size_or_zero"]


def remove_files(*paths: Path) -> None:
    """Remove each of ``paths`` that exists (a file a failed writer could not make readable)."""
    for path in paths:
        path.unlink(missing_ok=True)


def size_or_zero(path: Path) -> int:
    """``path``'s size in bytes, 0 when it does not exist (removed, or never created)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0
