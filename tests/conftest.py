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
