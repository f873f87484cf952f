"""Channel breakout with a trailing stop: long when a close breaks above the highest high of the last `entry` bars;
out when the lowest low of the last `exit` bars is hit — a stop-market order resting at the venue, raised as that
low rises. Each instrument on its own."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from handlers.indicators import RollingMax, RollingMin
from handlers.strategy import Strategy
from schemas.errors import TapeError
from schemas.names import ENDINGS

ENDED = frozenset(ENDINGS + ("RiskRejected",))


class Channel:
    """One instrument: its highs and lows channel, its entry order on the way, its resting stop."""

    def __init__(self, entry: int, exit: int) -> None:
        self.highs, self.lows = RollingMax(entry), RollingMin(exit)
        self.entry: str | None = None  # the market buy on its way
        self.stop: str | None = None  # the resting stop-market sell
        self.stop_price: Decimal | None = None
        self.canceling = False  # the stop is being canceled, to be placed higher

    def snapshot(self) -> dict[str, Any]:
        return {"highs": self.highs.snapshot(), "lows": self.lows.snapshot(), "entry": self.entry, "stop": self.stop,
                "stop_price": self.stop_price, "canceling": self.canceling}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Channel:
        c = cls(1, 1)
        c.highs, c.lows = RollingMax.restore(state["highs"]), RollingMin.restore(state["lows"])
        c.entry, c.stop, c.stop_price, c.canceling = (state["entry"], state["stop"], state["stop_price"],
                                                      state["canceling"])
        return c


class Breakout(Strategy):
    """Donchian-style breakout, long only, every position protected by a stop at the venue from its first bar."""

    name = "breakout"

    @dataclass(frozen=True)
    class Params:
        entry: int = 20
        exit: int = 10
        quantity: Decimal = Decimal("1")
        instrument: str = ""

    def __init__(self, params: Breakout.Params, ctx: Any):
        super().__init__(params, ctx)
        if params.entry < 1 or params.exit < 1:
            raise TapeError(f"breakout: need entry >= 1 and exit >= 1 bars, got entry={params.entry} "
                            f"exit={params.exit}")
        if params.quantity <= 0:
            raise TapeError(f"breakout: quantity must be > 0, got {params.quantity}")
        self.channels: dict[str, Channel] = {}

    def on_bar(self, bar: dict[str, Any]) -> None:
        p = self.params
        iid = bar["instrument_id"]
        if p.instrument and iid != p.instrument:
            return
        c = self.channels.get(iid)
        if c is None:
            c = self.channels[iid] = Channel(p.entry, p.exit)
        high, low = c.highs.value, c.lows.value  # of the bars before this one
        c.highs.add(bar["high"])
        c.lows.add(bar["low"])
        if c.entry is not None or c.canceling:
            return
        held = self.position(iid)
        if held <= 0:
            if c.stop is None and high is not None and bar["close"] > high:
                c.entry = self.buy(iid, p.quantity)
        elif low is not None:
            if c.stop is None:
                c.stop_price = low
                c.stop = self.ctx.submit(iid, "SELL", held, order_type="STOP_MARKET", trigger_price=low,
                                         reduce_only=True)
            elif c.stop_price is not None and low > c.stop_price:  # trail: cancel, then place higher next bar
                c.canceling = True
                self.ctx.cancel(iid, c.stop, "trailing the stop up")

    def on_fill(self, fill: dict[str, Any]) -> None:
        c = self.channels.get(fill["instrument_id"])
        o = self.ctx.state.orders.by_id.get(fill["client_order_id"])
        if c is None or o is None or o.is_open:
            return
        self._ended(c, fill["client_order_id"])

    def on_order(self, event: str, data: dict[str, Any]) -> None:
        c = self.channels.get(data.get("instrument_id") or "")
        if c is None:
            return
        if event in ENDED:
            self._ended(c, data.get("client_order_id"))
        elif event == "OrderCancelRejected" and data.get("client_order_id") == c.stop:
            c.canceling = False  # the stop rests where it was; the next higher low tries again

    @staticmethod
    def _ended(c: Channel, cid: str | None) -> None:
        if cid == c.entry:
            c.entry = None
        elif cid == c.stop:
            c.stop, c.stop_price, c.canceling = None, None, False

    def snapshot(self) -> dict[str, Any]:
        return {"channels": {iid: c.snapshot() for iid, c in sorted(self.channels.items())}}

    def restore(self, state: dict[str, Any]) -> None:
        self.channels = {iid: Channel.restore(c) for iid, c in state["channels"].items()}
