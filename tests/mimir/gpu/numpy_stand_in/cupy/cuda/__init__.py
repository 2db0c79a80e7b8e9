"""Stand-in ``cupy.cuda``: one device, streams and events that complete at once (see ``cupy/__init__.py``)."""

import time

from . import runtime


class Device:
    compute_capability = "00"

    def __init__(self, device=None) -> None:
        self.id = 0 if device is None else device

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


class Stream:
    _next_ptr = 1000

    def __init__(self, non_blocking: bool = False) -> None:
        Stream._next_ptr += 1
        self.ptr = Stream._next_ptr

    def synchronize(self) -> None:
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


_current = Stream()
_current.ptr = 0  # the legacy default stream


def get_current_stream() -> Stream:
    return _current


class Event:
    _next_ptr = 5000

    def __init__(self, block: bool = False, disable_timing: bool = False, interprocess: bool = False) -> None:
        Event._next_ptr += 1
        self.ptr = Event._next_ptr
        self.time_s = None
        runtime._events[self.ptr] = self

    def record(self, stream=None) -> None:
        self.time_s = time.perf_counter()

    def synchronize(self) -> None:
        assert self.time_s is not None, "synchronize() on an event never recorded"


def get_elapsed_time(start: Event, end: Event) -> float:
    return (end.time_s - start.time_s) * 1e3
