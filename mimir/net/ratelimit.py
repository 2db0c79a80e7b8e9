"""A token bucket: the per-source rate bound of the listener (messages) and of the observed store (claims)."""

from __future__ import annotations

import math

__all__ = ["TokenBucket"]


class TokenBucket:
    """One token every ``1 / rate_per_s`` seconds, at most ``burst`` saved; :meth:`take` spends one if there is one.

    Integer nanoseconds throughout, so the boundary is exact: a token is there
    exactly one period after the last one was spent from an empty bucket. Time
    is the caller's monotonic clock (never a packet's); it starts full.
    """

    __slots__ = ("period_ns", "burst", "credit_ns", "last_ns")

    def __init__(self, rate_per_s: float, burst: int, now_ns: int = 0) -> None:
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)) or burst < 1:
            raise ValueError(f"a token bucket needs a finite rate > 0 and a burst >= 1, got {rate_per_s}, {burst}")
        self.period_ns = max(1, round(1e9 / rate_per_s))
        self.burst = burst
        self.credit_ns = burst * self.period_ns   # tokens x period
        self.last_ns = now_ns

    @property
    def rate_per_s(self) -> float:
        return 1e9 / self.period_ns

    @property
    def tokens(self) -> float:
        return self.credit_ns / self.period_ns

    def take(self, now_ns: int) -> bool:
        elapsed = now_ns - self.last_ns
        if elapsed > 0:  # a clock that does not advance (or goes back) earns nothing
            self.credit_ns = min(self.burst * self.period_ns, self.credit_ns + elapsed)
            self.last_ns = now_ns
        if self.credit_ns >= self.period_ns:
            self.credit_ns -= self.period_ns
            return True
        return False
