"""A two-sided limit-order market maker: quotes around the mark, skews off inventory limits."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from handlers.strategy import Strategy
from schemas.errors import TapeError


class MarketMaker(Strategy):
    """Re-quotes a bid and an ask at ±spread around the last price on each bar; post-only, GTC."""

    name = "market_maker"

    @dataclass(frozen=True)
    class Params:
        spread: Decimal = Decimal("0.001")
        quantity: Decimal = Decimal("0.01")
        max_inventory: Decimal = Decimal("0.05")
        instrument: str = ""

    def __init__(self, params: "MarketMaker.Params", ctx: Any):
        super().__init__(params, ctx)
        if params.spread <= 0 or params.quantity <= 0 or params.max_inventory < 0:
            raise TapeError(f"market_maker: need spread > 0, quantity > 0 and max_inventory >= 0, got spread="
                            f"{params.spread} quantity={params.quantity} max_inventory={params.max_inventory}")
        self.quotes: dict[str, str] = {}  # side → client order id

    def snapshot(self) -> dict[str, Any]:
        return {"quotes": dict(self.quotes)}

    def restore(self, state: dict[str, Any]) -> None:
        self.quotes = dict(state["quotes"])

    def on_bar(self, bar: dict[str, Any]) -> None:
        p = self.params
        iid = bar["instrument_id"]
        if p.instrument and iid != p.instrument:
            return
        inst = self.ctx.state.market.instruments.get(iid)
        tick = inst.price_increment if inst is not None else Decimal("0.01")
        for side, cid in sorted(self.quotes.items()):
            order = self.ctx.state.orders.by_id.get(cid)
            if order is not None and order.status in ("SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED"):
                self.ctx.cancel(iid, cid, "requote")
        self.quotes.clear()
        mid = bar["close"]
        pos = self.position(iid)
        bid = (mid * (1 - p.spread) / tick).to_integral_value(ROUND_FLOOR) * tick
        ask = (mid * (1 + p.spread) / tick).to_integral_value(ROUND_CEILING) * tick
        if pos + p.quantity <= p.max_inventory:
            self.quotes["BUY"] = self.buy(iid, p.quantity, order_type="LIMIT", price=bid, post_only=True)
        if pos - p.quantity >= -p.max_inventory:
            self.quotes["SELL"] = self.sell(iid, p.quantity, order_type="LIMIT", price=ask, post_only=True)
