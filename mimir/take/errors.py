"""Exceptions of the take writer and readers. Each message is one line that says what happened and where."""

from __future__ import annotations

import errno

__all__ = ["TakeError", "TakeExists", "DiskFull", "TakeClosed", "NotATake"]


class TakeError(RuntimeError):
    """Base class of take errors."""


class TakeExists(TakeError, FileExistsError):
    """The output folder exists and is not empty (a take never writes over files)."""


class DiskFull(TakeError, OSError):
    """The file system ran out of space during a write.

    When this is raised the writer has already closed every file (each is
    readable up to its last complete frame, block or chunk) and written a
    manifest with ``complete = false`` and the cause. ``path`` is the file
    whose write failed.
    """

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC
        self.path = path


class TakeClosed(TakeError):
    """A write to a writer that was closed (by ``close()`` or after a disk-full error)."""


class NotATake(TakeError, FileNotFoundError):
    """A folder that holds no take (no ``manifest.json``) was given to a reader or to ``repair``."""
