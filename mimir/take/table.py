"""Append-only CSV tables of integers: the per-file timestamp and block tables of a take.

Why CSV: a table grows one line per frame or block while the take is being
recorded, and must be readable after the writer is killed. A ``.npy`` file
stores its row count in its header, so an appended ``.npy`` is valid only
after that header is rewritten at close; a CSV line is valid as soon as it
is flushed, a torn last line is recognisable (no newline), every tool reads
it (numpy, pandas, spreadsheets, awk), and int64 values are exact as decimal
text. It costs about 60 bytes per row: 4 kB/s for a 60 fps camera.

Format: one header line with the column names, then one line per row of
comma-separated decimal integers, each line ending in ``\\n``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np

__all__ = ["TableWriter", "read_table"]


class TableWriter:
    """Appends integer rows to a CSV file; rows reach the OS on :meth:`flush` (and at close).

    Owned by one writer object in one thread. ``rows`` counts appended rows
    (flushed or not).
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str]) -> None:
        self.path = os.fspath(path)
        self.columns = tuple(columns)
        self.rows = 0
        self._file = open(self.path, "x", encoding="ascii", newline="\n", buffering=1 << 16)
        try:  # the header goes out at once: from here on the file is a valid (empty) table
            self._file.write(",".join(self.columns) + "\n")
            self._file.flush()
        except BaseException:
            self.close_quietly()
            raise

    def append(self, row: Sequence[int]) -> None:
        self._file.write(",".join(map(str, row)) + "\n")
        self.rows += 1

    def append_many(self, rows: Sequence[Sequence[int]]) -> None:
        """Append several rows in one write (what :meth:`append` row by row writes)."""
        self._file.write("".join(",".join(map(str, row)) + "\n" for row in rows))
        self.rows += len(rows)

    def flush(self) -> None:
        self._file.flush()

    def close_quietly(self) -> None:
        """Close after a failure, dropping what cannot be written; never raises."""
        try:
            self._file.close()
        except OSError:
            pass

    def close(self) -> None:
        """Flush and close; safe to call twice. If the flush fails (disk full) the file is closed anyway and the
        error raised; what reached the disk is readable (a torn last line is ignored by :func:`read_table`)."""
        if not self._file.closed:
            self._file.close()


def read_table(path: str | os.PathLike, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Read a table into int64 columns; a torn last line (a crash mid-write) is ignored.

    ``columns``, when given, must match the header (a table of another layout
    is refused with the two lists).
    """
    with open(path, encoding="ascii", newline="\n") as f:
        text = f.read()
    header, newline, body = text.partition("\n")
    if not newline and columns is not None and ",".join(columns).startswith(header):
        names = list(columns)  # the header itself was cut (the disk filled at creation): no rows
    else:
        names = header.split(",") if header else []
    if columns is not None and tuple(names) != tuple(columns):
        raise ValueError(f"{os.fspath(path)}: columns {names} are not the expected {list(columns)}")
    if not body.endswith("\n"):
        body = body[: body.rfind("\n") + 1]  # drop a torn last line
    if body:
        data = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.int64, ndmin=2)
    else:
        data = np.zeros((0, len(names)), np.int64)
    if data.shape[1] != len(names):
        raise ValueError(f"{os.fspath(path)}: rows have {data.shape[1]} fields, header has {len(names)}")
    return {name: data[:, i].copy() for i, name in enumerate(names)}
