"""Fast/slow simple moving averages of bar closes: long when fast > slow; flat (or short) otherwise."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from handlers.indicators import AverageCross
from handlers.strategy import Strategy
from schemas.errors import TapeError
from schemas.names import ENDINGS

TERMINAL = frozenset(ENDINGS + ("RiskRejected",))


class SmaCross(Strategy):
    """Classic crossover: one market order per crossing, sized to reach the target position; each instrument
    on its own (its own averages, its own order on its way)."""

    name = "sma_cross"

    @dataclass(frozen=True)
    class Params:
        fast: int = 10
        slow: int = 30
        quantity: Decimal = Decimal("1")
        long_only: bool = True
        instrument: str = ""

    def __init__(self, params: "SmaCross.Params", ctx: Any):
        super().__init__(params, ctx)
        if not 0 < params.fast < params.slow:
            raise TapeError(f"sma_cross: need 0 < fast < slow, got fast={params.fast} slow={params.slow}")
        if params.quantity <= 0:
            raise TapeError(f"sma_cross: quantity must be > 0 (the position it holds when long), got "
                            f"{params.quantity}")
        self.crosses: dict[str, Cross] = {}  # instrument → its averages (each instrument is traded on its own)

    def snapshot(self) -> dict[str, Any]:
        return {"crosses": {iid: c.snapshot() for iid, c in sorted(self.crosses.items())}}

    def restore(self, state: dict[str, Any]) -> None:
        p = self.params
        self.crosses = {iid: Cross.restore(c, p.fast, p.slow) for iid, c in state["crosses"].items()}

    def on_bar(self, bar: dict[str, Any]) -> None:
        p = self.params
        iid = bar["instrument_id"]
        if p.instrument and iid != p.instrument:
            return
        c = self.crosses.get(iid)
        if c is None:
            c = self.crosses[iid] = Cross(p.fast, p.slow)
        above = c.add(bar["close"])
        if above is None or above == c.above:
            return
        c.above = above
        if c.pending is not None and not self._settled(c):
            return
        target = p.quantity if above else (Decimal(0) if p.long_only else -p.quantity)
        delta = target - self.position(iid)
        if delta > 0:
            c.pending = self.buy(iid, delta)
        elif delta < 0:
            c.pending = self.sell(iid, -delta)

    def _settled(self, c: Cross) -> bool:
        """Whether the order on its way ended already: a fill at this bar's open is folded into state before the
        bar reaches the strategy, and its on_fill comes after — without this a cross on the very bar an order fills
        would be skipped."""
        o = self.ctx.state.orders.by_id.get(c.pending)
        if o is None or o.is_open:
            return False
        c.pending = None
        return True

    def on_fill(self, fill: dict[str, Any]) -> None:
        c = self.crosses.get(fill["instrument_id"])
        o = self.ctx.state.orders.by_id.get(fill["client_order_id"])
        if c is not None and o is not None and o.status == "FILLED" and fill["client_order_id"] == c.pending:
            c.pending = None

    def on_order(self, event: str, data: dict[str, Any]) -> None:
        c = self.crosses.get(data.get("instrument_id") or "")
        if c is not None and event in TERMINAL and data.get("client_order_id") == c.pending:
            c.pending = None


class Cross:
    """One instrument's two averages of closes, which side of the slow one the fast one is, the order on its way."""

    def __init__(self, fast: int, slow: int) -> None:
        self.averages = AverageCross(fast, slow)
        self.add = self.averages.add  # take a close in; whether fast is above slow (None until slow is full)
        self.above: bool | None = None
        self.pending: str | None = None

    def snapshot(self) -> dict[str, Any]:
        f, s = self.averages.fast, self.averages.slow
        return {"fast_window": list(f.window), "slow_window": list(s.window), "fast_sum": f.total,
                "slow_sum": s.total, "above": self.above, "pending": self.pending}

    @classmethod
    def restore(cls, state: dict[str, Any], fast: int, slow: int) -> Cross:
        c = cls(fast, slow)
        f, s = c.averages.fast, c.averages.slow
        f.window, s.window = deque(state["fast_window"]), deque(state["slow_window"])
        f.total, s.total, c.above, c.pending = state["fast_sum"], state["slow_sum"], state["above"], state["pending"]
        return c
