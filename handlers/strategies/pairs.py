"""A pairs spread: two instruments that move together, traded against each other when their spread strays.

The spread is close(a) − ratio · close(b), ratio the moving average of close(a) / close(b) over `window` paired
bars; its z-score is (spread − its moving mean) / its moving standard deviation. Past +`entry` the strategy sells
a and buys ratio × as much b; past −`entry` the reverse; inside ±`exit` it closes both legs. Bars are paired by
their open time (a bar of each instrument for the same period). Selling a leg it does not hold needs a margin
account (`account_type = "margin"` in the venue config). Exact decimals throughout; the square root is taken in
the engine's 60-digit context.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from handlers.indicators import RollingSum
from handlers.strategy import Strategy
from schemas.decimals import ARITHMETIC
from schemas.errors import TapeError
from schemas.names import ENDINGS

ENDED = frozenset(ENDINGS + ("RiskRejected",))


class Pairs(Strategy):
    """Mean reversion of the spread between instruments `a` and `b`, one position at a time."""

    name = "pairs"

    @dataclass(frozen=True)
    class Params:
        a: str = ""
        b: str = ""
        window: int = 60
        entry: Decimal = Decimal("2")
        exit: Decimal = Decimal("0.5")
        quantity: Decimal = Decimal("1")  # of a; b is ratio × as much, to its lot step

    def __init__(self, params: Pairs.Params, ctx: Any):
        super().__init__(params, ctx)
        p = params
        if not p.a or not p.b or p.a == p.b:
            raise TapeError("pairs: name two instruments, --param a=ID --param b=ID")
        if p.window < 2 or p.quantity <= 0 or not 0 <= p.exit < p.entry:
            raise TapeError(f"pairs: need window >= 2, quantity > 0 and 0 <= exit < entry, got window={p.window} "
                            f"quantity={p.quantity} exit={p.exit} entry={p.entry}")
        self.ratio, self.spread, self.squares = RollingSum(p.window), RollingSum(p.window), RollingSum(p.window)
        self.last: dict[str, tuple[int, Decimal]] = {}  # instrument → (open_ts, close) of its last bar
        self.pending: set[str] = set()  # client order ids on their way
        self.side = 0  # +1: long a / short b, -1: short a / long b, 0: flat

    def on_bar(self, bar: dict[str, Any]) -> None:
        p = self.params
        iid = bar["instrument_id"]
        if iid not in (p.a, p.b):
            return
        self.last[iid] = (bar["open_ts"], bar["close"])
        a, b = self.last.get(p.a), self.last.get(p.b)
        if a is None or b is None or a[0] != b[0]:
            return  # once per period: when the second of its two bars is in
        z, ratio = self._z(a[1], b[1])
        if z is None or self.pending:
            return
        if self.side == 0 and abs(z) > p.entry:
            self.side = -1 if z > 0 else 1
            self._trade(self.side, p.quantity, self._hedge(ratio))
        elif self.side != 0 and abs(z) < p.exit:
            held_a, held_b = self.position(p.a), self.position(p.b)
            self._close(p.a, held_a)
            self._close(p.b, held_b)
            self.side = 0

    def _z(self, close_a: Decimal, close_b: Decimal) -> tuple[Decimal | None, Decimal]:
        c = ARITHMETIC
        self.ratio.add(c.divide(close_a, close_b))
        ratio = c.divide(self.ratio.total, len(self.ratio.window))
        spread = c.subtract(close_a, c.multiply(ratio, close_b))
        self.spread.add(spread)
        self.squares.add(c.multiply(spread, spread))
        n = len(self.spread.window)
        if n < self.params.window:
            return None, ratio
        mean = c.divide(self.spread.total, n)
        var = c.divide(c.subtract(self.squares.total, c.multiply(mean, self.spread.total)), n - 1)
        if var <= 0:
            return None, ratio
        return c.divide(c.subtract(spread, mean), var.sqrt(c)), ratio

    def _hedge(self, ratio: Decimal) -> Decimal:
        step = self.ctx.state.market.instruments[self.params.b].size_increment
        return (self.params.quantity * ratio / step).to_integral_value(ROUND_FLOOR) * step

    def _trade(self, side: int, qty_a: Decimal, qty_b: Decimal) -> None:
        p = self.params
        self.pending.add(self.buy(p.a, qty_a) if side > 0 else self.sell(p.a, qty_a))
        if qty_b > 0:
            self.pending.add(self.sell(p.b, qty_b) if side > 0 else self.buy(p.b, qty_b))

    def _close(self, iid: str, held: Decimal) -> None:
        if held > 0:
            self.pending.add(self.sell(iid, held, reduce_only=True))
        elif held < 0:
            self.pending.add(self.buy(iid, -held, reduce_only=True))

    def on_fill(self, fill: dict[str, Any]) -> None:
        o = self.ctx.state.orders.by_id.get(fill["client_order_id"])
        if o is not None and not o.is_open:
            self.pending.discard(fill["client_order_id"])

    def on_order(self, event: str, data: dict[str, Any]) -> None:
        if event in ENDED:
            self.pending.discard(data.get("client_order_id") or "")

    def snapshot(self) -> dict[str, Any]:
        return {"ratio": self.ratio.snapshot(), "spread": self.spread.snapshot(), "squares": self.squares.snapshot(),
                "last": {i: [t, c] for i, (t, c) in sorted(self.last.items())}, "pending": sorted(self.pending),
                "side": self.side}

    def restore(self, state: dict[str, Any]) -> None:
        self.ratio, self.spread = RollingSum.restore(state["ratio"]), RollingSum.restore(state["spread"])
        self.squares = RollingSum.restore(state["squares"])
        self.last = {i: (t, c) for i, (t, c) in state["last"].items()}
        self.pending, self.side = set(state["pending"]), state["side"]
