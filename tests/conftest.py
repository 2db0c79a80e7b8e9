"""Suite-wide fixtures: a unique rig name per test and leak checks on /dev/shm.

Every test that touches shared memory takes the ``rig`` fixture and names its
rings/reservoirs under that rig. After the test, nothing of that rig may be
left in /dev/shm; after the session, nothing named ``mimir-`` at all.
"""

from __future__ import annotations

import itertools
import os

import pytest

from ringbuf.segment import list_segments

_counter = itertools.count()


@pytest.fixture
def rig() -> str:
    name = f"t{os.getpid()}n{next(_counter)}"
    yield name
    left = list_segments(name)
    assert not left, f"test leaked shared-memory objects: {left}"


@pytest.fixture(scope="session", autouse=True)
def no_leaks_in_session():
    before = set(list_segments())
    yield
    after = set(list_segments()) - before
    assert not after, f"the test session leaked shared-memory objects: {sorted(after)}"
