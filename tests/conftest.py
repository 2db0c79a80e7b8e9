"""Suite-wide fixtures: a unique rig name per test and leak checks on /dev/shm.

Every test that touches shared memory takes the ``rig`` fixture (or builds
its rig name with :func:`session_rig`) so every name carries this session's
pid. After the test, nothing of that rig may be left in /dev/shm; after the
session, nothing carrying the session's pid (other processes on the machine,
such as a second test run, are not ours to judge).
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ringbuf.segment import list_segments

_counter = itertools.count()
SESSION_TAG = f"t{os.getpid()}n"


def session_rig() -> str:
    """A rig name unique to this test session and call."""
    return f"{SESSION_TAG}{next(_counter)}"


@pytest.fixture
def rig() -> str:
    name = session_rig()
    yield name
    left = list_segments(name)
    assert not left, f"test leaked shared-memory objects: {left}"


@pytest.fixture(scope="session", autouse=True)
def no_leaks_in_session():
    yield
    left = [name for name in list_segments() if SESSION_TAG in name]
    assert not left, f"the test session leaked shared-memory objects: {left}"


# ---- macOS rules (MIMIR_PLATFORM=darwin on Linux, CI's second pass) ------------------------------------------
@pytest.fixture(scope="session")
def macos_rules_log(tmp_path_factory):
    """Where every process of this session reports what macOS lacks (None unless under macOS rules)."""
    from ringbuf.platform import EMULATED
    from ringbuf.platform.macos_rules import LOG_ENV

    if not EMULATED:
        yield None
        return
    log = tmp_path_factory.mktemp("macos-rules") / "violations.log"
    log.touch()
    previous = os.environ.get(LOG_ENV)
    os.environ[LOG_ENV] = str(log)  # inherited by every process a test starts (workers included)
    yield log
    if previous is None:
        os.environ.pop(LOG_ENV, None)
    else:
        os.environ[LOG_ENV] = previous


@pytest.fixture(autouse=True)
def no_macos_rule_violations(macos_rules_log):
    """Under macOS rules, fail a test during which any Mimir process reached for /proc, prctl or a timed
    semaphore wait (ringbuf.platform.macos_rules), even where the code caught the error."""
    if macos_rules_log is None:
        yield
        return
    before = macos_rules_log.stat().st_size
    yield
    with open(macos_rules_log, "rb") as f:
        f.seek(before)
        new = f.read().decode("utf-8", "replace")
    assert not new, f"Mimir code did what macOS cannot do:\n{new}"


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Callable[[str], Path]]:
    """A factory: ``tmpfs("2m")`` mounts a fresh tmpfs of that size under ``tmp_path`` and returns it (a disk
    that fills up for real); unmounted after the test. Skips, saying why, where mounting needs a root we lack."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        mnt = tmp_path / f"tmpfs{len(mounted)}"
        mnt.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", str(mnt)], check=True)
