"""Fast/slow simple moving averages of bar closes: long when fast > slow; flat (or short) otherwise."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from handlers.strategy import Strategy
from schemas.names import ENDINGS

TERMINAL = frozenset(ENDINGS + ("RiskRejected",))


class SmaCross(Strategy):
    """Classic crossover: one market order per crossing, sized to reach the target position."""

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
            from eventstore.errors import TapeError

            raise TapeError(f"sma_cross: need 0 < fast < slow, got fast={params.fast} slow={params.slow}")
        self.fast_window: deque[Decimal] = deque()
        self.slow_window: deque[Decimal] = deque()
        self.fast_sum = Decimal(0)
        self.slow_sum = Decimal(0)
        self.above: bool | None = None
        self.pending: str | None = None

    def snapshot(self) -> dict[str, Any]:
        return {"fast_window": list(self.fast_window), "slow_window": list(self.slow_window),
                "fast_sum": self.fast_sum, "slow_sum": self.slow_sum, "above": self.above, "pending": self.pending}

    def restore(self, state: dict[str, Any]) -> None:
        self.fast_window = deque(state["fast_window"])
        self.slow_window = deque(state["slow_window"])
        self.fast_sum = state["fast_sum"]
        self.slow_sum = state["slow_sum"]
        self.above = state["above"]
        self.pending = state["pending"]

    def on_bar(self, bar: dict[str, Any]) -> None:
        p = self.params
        iid = bar["instrument_id"]
        if p.instrument and iid != p.instrument:
            return
        close = bar["close"]
        fw, sw = self.fast_window, self.slow_window
        fw.append(close)
        self.fast_sum += close
        if len(fw) > p.fast:
            self.fast_sum -= fw.popleft()
        sw.append(close)
        self.slow_sum += close
        if len(sw) > p.slow:
            self.slow_sum -= sw.popleft()
        if len(sw) < p.slow:
            return
        # fast_sum/fast > slow_sum/slow, compared without division so it stays exact
        above = self.fast_sum * p.slow > self.slow_sum * p.fast
        if above == self.above:
            return
        self.above = above
        if self.pending is not None:
            return
        target = p.quantity if above else (Decimal(0) if p.long_only else -p.quantity)
        delta = target - self.position(iid)
        if delta > 0:
            self.pending = self.buy(iid, delta)
        elif delta < 0:
            self.pending = self.sell(iid, -delta)

    def on_fill(self, fill: dict[str, Any]) -> None:
        o = self.ctx.state.orders.by_id.get(fill["client_order_id"])
        if o is not None and o.status == "FILLED" and fill["client_order_id"] == self.pending:
            self.pending = None

    def on_order(self, event: str, data: dict[str, Any]) -> None:
        if event in TERMINAL and data.get("client_order_id") == self.pending:
            self.pending = None
