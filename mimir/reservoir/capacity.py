"""Capacity sizing: rates x window x margin, and what a capacity costs in shared memory."""

from __future__ import annotations

import math
from collections.abc import Mapping

from .layout import DEFAULT_WINDOW_NS, DESCRIPTOR_SLOT_BYTES, KIND_COUNT, LINE, check_kind

__all__ = ["capacity_for", "segment_bytes", "latest_slots_for"]


def capacity_for(
    rates_hz: Mapping[int, float],
    *,
    window_ns: int = DEFAULT_WINDOW_NS,
    margin: float = 1.5,
    minimum: int = 1024,
) -> int:
    """Samples the window must hold: ``ceil(sum(rates) x window x margin)``, at least ``minimum``.

    ``rates_hz`` maps each SampleKind to the total rate of all its sensors
    (e.g. six cameras at 187 fps: ``{CAMERA_FRAME: 6 * 187}``). ``margin``
    covers bursts and late samples; below 1 the window cannot hold itself.
    """
    if margin < 1.0:
        raise ValueError(f"margin must be >= 1 (it covers bursts), got {margin}")
    if window_ns <= 0:
        raise ValueError(f"window_ns must be positive, got {window_ns}")
    total_hz = 0.0
    for kind, rate in rates_hz.items():
        check_kind(kind)
        if rate < 0 or not math.isfinite(rate):
            raise ValueError(f"rate of kind {kind} must be a finite rate >= 0 Hz, got {rate}")
        total_hz += rate
    return max(minimum, math.ceil(total_hz * window_ns / 1e9 * margin))


def latest_slots_for(max_sensors: int) -> int:
    """Latest-table slots for ``max_sensors`` (kind, sensor) pairs: a power of two, load factor <= 1/2."""
    slots = 16
    while slots < 2 * max_sensors:
        slots *= 2
    return slots


def segment_bytes(capacity: int, max_sensors: int = 256) -> int:
    """Approximate shared-memory size of a reservoir: 64 B record + 64 B descriptor + 9 x 8 B view index per slot."""
    per_slot = LINE + DESCRIPTOR_SLOT_BYTES + KIND_COUNT * 8
    return capacity * per_slot + latest_slots_for(max_sensors) * 32 + 4 * 4096
