"""Fixtures shared across ``tests/mimir``: ``fake_rig``, a rig the test drives item by item (``_fake_rig.py``), and
``unfinished``, a reservoir as readers see it while its creator is still making it."""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_fake_rig", Path(__file__).with_name("_fake_rig.py"))
assert _spec is not None and _spec.loader is not None
fake = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake)


@pytest.fixture
def fake_rig(rig):
    """``fake_rig(**kwargs)`` makes a :class:`FakeRig` on the session's rig name; every one is closed after the test."""
    made = []

    def make(**kwargs):
        r = fake.FakeRig(rig, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def unfinished():
    """``with unfinished(reservoir):`` its magic word is 0, as while its creator is still making it; restored after."""
    @contextlib.contextmanager
    def clear(reservoir):
        words = memoryview(reservoir._m.buf).cast("Q")
        magic, words[0] = words[0], 0
        try:
            yield
        finally:
            words[0] = magic
            words.release()

    return clear
