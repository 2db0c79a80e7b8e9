"""macOS rules on Linux: forbid, in this process, what macOS does not have.

``MIMIR_PLATFORM=darwin`` on Linux selects :class:`~ringbuf.platform.darwin.DarwinPlatform`
(31-character names, marker-file discovery) and calls :func:`enforce`, which
makes every process of the run fail where Mimir's own code reaches for
something macOS lacks:

* ``/proc``, ``/sys`` and ``/dev/shm`` (open, listdir, scandir): macOS has
  none of them. The process facts Mimir needs come from psutil, which reads
  /proc on Linux and sysctl on macOS, so psutil's own reads are allowed;
* ``prctl`` (and ``sem_timedwait``) looked up through ctypes: macOS has no
  such functions (no ``PR_SET_PDEATHSIG``: workers watch their parent from a
  thread instead, :mod:`mimir.process_control`);
* a POSIX semaphore wait with a timeout (``posix_ipc.Semaphore.acquire(t)``,
  ``t > 0``): posix_ipc on macOS has no timed waits and waits forever
  (Mimir uses no POSIX semaphores; this keeps it so).

"Mimir's own code" is the first Python frame outside the standard library
that makes the call, when it lies in one of Mimir's packages (``ringbuf``,
``mimir``, ``workers``, ``mimir_cli``, ``bench``). A violation raises where
the call was made (``FileNotFoundError`` for a path, as on macOS,
``AttributeError`` for a missing C function, :class:`MacOSRuleViolation`
for a timed semaphore wait), is printed on stderr and, when
``MIMIR_MACOS_RULES_LOG`` names a file, appended to it: the test suite
checks that file after every test, so a violation in a worker process that
handles the exception still fails the run.

It uses a PEP 578 audit hook (installed once, for the life of the process;
only in this mode, never on a real OS).
"""

from __future__ import annotations

import errno
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

__all__ = ["enforce", "MacOSRuleViolation", "LOG_ENV", "FORBIDDEN_PATHS", "FORBIDDEN_SYMBOLS", "mimir_caller"]

LOG_ENV = "MIMIR_MACOS_RULES_LOG"
FORBIDDEN_PATHS = ("/proc", "/sys", "/dev/shm")
FORBIDDEN_SYMBOLS = frozenset({"prctl", "sem_timedwait", "sem_clockwait"})
_PATH_EVENTS = frozenset({"open", "os.listdir", "os.scandir"})
_PACKAGES = ("ringbuf", "mimir", "workers", "mimir_cli", "bench")



def _dirs(paths: list[Path]) -> tuple[str, ...]:
    return tuple(sorted({str(p) + os.sep for path in paths for p in (path, path.resolve())}))


_here = Path(__file__).parents[2]
_MIMIR_DIRS = _dirs([_here / p for p in _PACKAGES])
_SITE_DIRS = _dirs([Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")])
_STDLIB_DIRS = _dirs([Path(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")])
_installed = False


class MacOSRuleViolation(RuntimeError):
    """Mimir code did something that does not work on macOS (the message says what and where)."""


class _NoSuchPathOnMacOS(FileNotFoundError):
    pass


class _NoSuchSymbolOnMacOS(AttributeError):
    pass


def mimir_caller(depth: int = 1) -> str | None:
    """``file:line`` of the first non-stdlib frame above the caller if it is Mimir code, else None."""
    frame: Any = sys._getframe(depth + 1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(_MIMIR_DIRS):
            return f"{filename}:{frame.f_lineno}"
        if filename.startswith(_SITE_DIRS):
            return None  # a third-party library (psutil reads /proc on Linux, sysctl on macOS)
        if filename.startswith("<") or filename.startswith(_STDLIB_DIRS):
            frame = frame.f_back
            continue
        return None
    return None


def _report(what: str, culprit: str, error: type[BaseException], *args: Any) -> None:
    message = f"macOS rules: {what} at {culprit}"
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(message + "\n")
    sys.stderr.write(message + "\n")
    raise error(*args, message) if args else error(message)


def _forbidden_path(path: object) -> str | None:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str) or not path.startswith("/"):
        return None
    for root in FORBIDDEN_PATHS:
        if path == root or path.startswith(root + "/"):
            return root
    return None


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event in _PATH_EVENTS:
        if not args:
            return
        root = _forbidden_path(args[0])
        if root is None:
            return
        culprit = mimir_caller()
        if culprit is not None:
            _report(f"{event} {args[0]!r}: macOS has no {root}", culprit, _NoSuchPathOnMacOS, errno.ENOENT)
    elif event == "ctypes.dlsym":
        if len(args) >= 2 and args[1] in FORBIDDEN_SYMBOLS:
            culprit = mimir_caller()
            if culprit is not None:
                _report(f"C function {args[1]} looked up: macOS has no {args[1]}", culprit, _NoSuchSymbolOnMacOS)


def _forbid_timed_semaphore_waits() -> None:
    try:
        import posix_ipc
    except ImportError:  # pragma: no cover - posix_ipc is installed wherever this mode runs
        return
    base = posix_ipc.Semaphore

    class Semaphore(base):  # type: ignore[misc, valid-type]
        """posix_ipc's semaphore under macOS's rules: a wait with a timeout is refused (macOS waits forever)."""

        def acquire(self, timeout: float | None = None) -> None:
            if timeout is not None and timeout > 0:
                culprit = mimir_caller()
                if culprit is not None:
                    _report(f"posix_ipc.Semaphore.acquire(timeout={timeout}): macOS has no timed semaphore waits "
                            "(it would wait forever)", culprit, MacOSRuleViolation)
            super().acquire(timeout)

    posix_ipc.Semaphore = Semaphore
    posix_ipc.SEMAPHORE_TIMEOUT_SUPPORTED = False


def enforce() -> None:
    """Install the rules in this process (idempotent; see module docstring)."""
    global _installed
    if _installed:
        return
    _installed = True
    _forbid_timed_semaphore_waits()
    sys.addaudithook(_hook)
