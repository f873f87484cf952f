"""Incremental indicators for strategies: one value in per bar, the answer in constant time, exact.

A strategy keeps one indicator per instrument and series and feeds it in its callback (`on_bar`): nothing is
recomputed over the window, so a user's strategy runs at the built-ins' speed (sma_cross, breakout are written on
these). Values are Decimals and stay exact: sums are exact, comparisons of averages are made without dividing.
Each indicator snapshots to plain data (lists, Decimals, ints) for the engine's snapshots and restores from it.
"""
from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Any

from schemas.decimals import ARITHMETIC

_ZERO = Decimal(0)


class RollingSum:
    """The sum of the last `n` values (exact)."""

    __slots__ = ("n", "window", "total")

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"a rolling window needs n >= 1, got {n}")
        self.n = n
        self.window: deque[Decimal] = deque()
        self.total = _ZERO

    def add(self, value: Decimal) -> None:
        """Take the next value in (the oldest leaves once the window is full)."""
        w = self.window
        w.append(value)
        if len(w) > self.n:
            self.total = self.total + value - w.popleft()
        else:
            self.total += value

    @property
    def full(self) -> bool:
        return len(self.window) == self.n

    def snapshot(self) -> dict[str, Any]:
        return {"n": self.n, "window": list(self.window), "total": self.total}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> RollingSum:
        r = cls(state["n"])
        r.window, r.total = deque(state["window"]), state["total"]
        return r


class SMA(RollingSum):
    """The simple moving average of the last `n` values; None until `n` have come in."""

    __slots__ = ()

    @property
    def value(self) -> Decimal | None:
        return ARITHMETIC.divide(self.total, self.n) if self.full else None

    def above(self, other: SMA) -> bool | None:
        """Whether this average is above `other`, compared exactly (no division); None until both are full."""
        if len(self.window) < self.n or len(other.window) < other.n:
            return None
        return self.total * other.n > other.total * self.n


class AverageCross:
    """Whether the fast simple average of a series is above the slow one (None until the slow window is full):
    the two windows in one object, updated in one call — the signal of a crossover strategy at the cost of a few
    exact additions a bar."""

    __slots__ = ("fast", "slow")

    def __init__(self, fast: int, slow: int):
        if not 0 < fast < slow:
            raise ValueError(f"an average cross needs 0 < fast < slow, got fast={fast} slow={slow}")
        self.fast, self.slow = SMA(fast), SMA(slow)

    def add(self, value: Decimal) -> bool | None:
        f, s = self.fast, self.slow
        fw, sw = f.window, s.window
        fw.append(value)
        if len(fw) > f.n:
            f.total = f.total + value - fw.popleft()
        else:
            f.total += value
        sw.append(value)
        if len(sw) > s.n:
            s.total = s.total + value - sw.popleft()
        else:
            s.total += value
            if len(sw) < s.n:
                return None
        return f.total * s.n > s.total * f.n  # fast_sum / fast > slow_sum / slow, without a division


class RollingMax:
    """The largest of the last `n` values, in amortised constant time (a monotonic queue)."""

    __slots__ = ("n", "count", "queue")
    _keep_greater = True

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"a rolling window needs n >= 1, got {n}")
        self.n = n
        self.count = 0
        self.queue: deque[tuple[int, Decimal]] = deque()  # (index, value), values strictly decreasing (max)

    def add(self, value: Decimal) -> None:
        q, i = self.queue, self.count
        greater = self._keep_greater
        while q and (q[-1][1] <= value if greater else q[-1][1] >= value):
            q.pop()
        q.append((i, value))
        if q[0][0] <= i - self.n:
            q.popleft()
        self.count = i + 1

    @property
    def full(self) -> bool:
        return self.count >= self.n

    @property
    def value(self) -> Decimal | None:
        """The extreme of the window; None until `n` values have come in."""
        return self.queue[0][1] if self.full else None

    def snapshot(self) -> dict[str, Any]:
        return {"n": self.n, "count": self.count, "queue": [[i, v] for i, v in self.queue]}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> RollingMax:
        r = cls(state["n"])
        r.count, r.queue = state["count"], deque((i, v) for i, v in state["queue"])
        return r


class RollingMin(RollingMax):
    """The smallest of the last `n` values."""

    __slots__ = ()
    _keep_greater = False
