"""Clock segments of a snapshot, read from the canonical timestamps the reservoir indexed.

The supervisor maps host and device time to canonical time with one clock
for the whole rig: provisional (host time plus a constant) until the sync
analyzer locks to the witness, then the witness fit (audio: device samples
through ``local_sample_at_epoch`` and ``rate_hz``; cameras: host time
through the host-to-device fit). When that mapping changes, every timestamp
indexed after the change carries the step; nothing indexed before is
rewritten. The rig does not (yet) publish the history of its clock
segments, so a snapshot finds the steps in the data itself, which is exact
because each descriptor also carries the times the canonical time was
computed from:

* camera frame ``i``: ``canonical - host_time`` is constant under one
  mapping (to within the fit's rate error: ``DRIFT`` per second of host
  time; 18-50 us between frames after a lock, measured), so a jump larger
  than :data:`STEP_NS` between consecutive frames is a step;
* audio block ``i``: under the provisional mapping ``canonical - host_time``
  is exactly constant; under a witness fit ``canonical`` follows the device
  sample counter at the fit's rate (5 ns per block, measured). A jump that
  neither explains is a step, and its size is measured against the mapping
  of the segment before it.

Each segment's state follows from its audio (provisional when every block
keeps ``canonical - host`` exactly). The fit itself is *not* recovered from
the data: the sync analyzer refines it every few seconds by a sample or two,
and a line through a few seconds of such timestamps, extrapolated to the
epoch months away, would be off by tens of samples. The segment in effect
now gets the rig's current fit from the status board (``fit_now``); an
earlier locked segment has no fit here, and the snapshot lists that as
missing.

A refinement of the fit smaller than :data:`STEP_NS` (the sync analyzer
adjusts it every few seconds by microseconds) stays inside its segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mimir.take import ClockSegment

__all__ = ["STEP_NS", "DRIFT", "Split", "camera_splits", "audio_splits", "audio_segment_states"]

STEP_NS = 1_000_000     # a change of mapping smaller than this is a refinement, not a new segment
DRIFT = 1e-4            # allowance per second of host time between two items (clock rate error, generous)
_EXACT_NS = 1_000       # provisional audio: canonical - host is an integer constant (allow rounding)


@dataclass(frozen=True)
class Split:
    """A new segment starts at item ``index`` of a source; ``step_ns`` moved canonical time by that much."""

    index: int
    step_ns: int


def camera_splits(canonical_ns: np.ndarray, host_ns: np.ndarray) -> list[Split]:
    """Where a camera's canonical times step against its host times (frames in ring order)."""
    ts = canonical_ns.astype(np.int64)
    host = host_ns.astype(np.int64)
    if len(ts) < 2:
        return []
    dh = np.diff(host)
    r = np.diff(ts) - dh
    bad = np.flatnonzero(np.abs(r) > STEP_NS + DRIFT * np.abs(dh))
    return [Split(int(i) + 1, int(r[i])) for i in bad]


def audio_splits(canonical_ns: np.ndarray, host_ns: np.ndarray, start_sample: np.ndarray,
                 rate_hz: float) -> list[Split]:
    """Where an audio source's canonical times step (blocks in device order). ``host_ns`` 0 = unknown."""
    ts = canonical_ns.astype(np.int64)
    host = host_ns.astype(np.int64)
    if len(ts) < 2:
        return []
    dt = np.diff(ts)
    dh = np.diff(host)
    known = (host[1:] != 0) & (host[:-1] != 0)
    r_host = np.where(known, dt - dh, np.iinfo(np.int64).max)
    r_dev = dt - np.diff(start_sample.astype(np.int64)) * 1e9 / rate_hz
    allowance = STEP_NS + DRIFT * np.abs(dt)
    bad = np.flatnonzero(np.minimum(np.abs(r_host), np.abs(r_dev)) > allowance)
    splits = []
    for i in bad:
        # The step against the mapping of the segment before it: host-exact (provisional) or device-rate (locked).
        before = slice(splits[-1].index if splits else 0, int(i) + 1)
        provisional = _provisional(ts[before], host[before])
        splits.append(Split(int(i) + 1, int(r_host[i] if provisional and known[i] else round(r_dev[i]))))
    return splits


def _provisional(ts: np.ndarray, host: np.ndarray) -> bool:
    """Canonical = host + one constant for every block whose host time is known (at least two)."""
    known = host != 0
    if known.sum() < 2:
        return False
    offset = ts[known] - host[known]
    return bool(np.abs(offset - offset[0]).max() <= _EXACT_NS)


def audio_segment_states(canonical_ns: np.ndarray, host_ns: np.ndarray, splits: list[Split], *,
                         witness: str | None, fit_now: tuple[float, float, float] | None) -> list[ClockSegment]:
    """The :class:`ClockSegment` of each audio segment (state, step; the last one the rig's fit now).

    ``fit_now``: ``(local_sample_at_epoch, rate_hz, confidence)`` of the rig's
    clock now, or None while it is provisional. ``first_ns`` is left to the writer.
    """
    bounds = [0, *(s.index for s in splits), len(canonical_ns)]
    out = []
    for k in range(len(bounds) - 1):
        sl = slice(bounds[k], bounds[k + 1])
        last = k == len(bounds) - 2
        if (host_ns[sl] != 0).sum() >= 2:
            provisional = _provisional(canonical_ns[sl].astype(np.int64), host_ns[sl].astype(np.int64))
        else:
            provisional = fit_now is None if last else k == 0
        step = splits[k - 1].step_ns if k else None
        if provisional:
            out.append(ClockSegment(k, "provisional", step_ns=step))
        elif last and fit_now is not None:
            local, rate, confidence = fit_now
            out.append(ClockSegment(k, "locked", local_sample_at_epoch=local, rate_hz=rate, confidence=confidence,
                                    witness=witness, step_ns=step))
        else:
            out.append(ClockSegment(k, "locked", witness=witness, step_ns=step))
    return out
