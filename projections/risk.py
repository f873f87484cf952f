"""Risk state: trading state, order-rate window, orders awaiting the venue, and equity day-start/peak.

A pure fold like every projection, so recovery rebuilds exactly what the risk engine saw. It runs on every
market event of a backtest, so the hot path is two comparisons unless a price that moves equity changes.

Equity (in `currency`: the settlement currency of the first instrument defined, unless given) is recomputed
in full with `Portfolio.equity` only when it can jump: on OrderFilled, AccountState and InstrumentDefined.
At that moment every instrument whose mark can move equity (an open position, or a currency with a balance
or open PnL) gets a sensitivity d(equity)/d(mark), measured exactly by marking it at m+1 and m+2 (Decimal,
prec 60): when the two differences agree, equity is linear in that mark (spot balances, linear derivatives)
and a later price event updates equity by sensitivity x (new mark - old mark) — one multiplication, no
portfolio walk. A mark that enters non-linearly (an inverse conversion) or jointly with another mark (PnL in
a foreign currency) is flagged and its price events trigger a full recompute instead. Prices of instruments
that cannot move equity are ignored. The result equals `Portfolio.equity(currency)` after every event.

Day start: the equity after the first event folded at or after 00:00 UTC of a new day (event time); equity
is unknown (None) while the account is empty, and the first known equity of a day is its start.
Peak: the highest equity seen since the start (drawdown is measured from it).
"""
from __future__ import annotations

from collections import deque
from decimal import Decimal, getcontext, localcontext
from typing import Any

from schemas.decimals import ARITHMETIC as _CTX, ONE as _ONE
from schemas.errors import TapeError
from schemas.names import PRICES, VERDICTS

DAY_NS = 86_400 * 1_000_000_000
RATE_MEMORY = 1000  # timestamps kept for the order-rate rule: the rule's count may not exceed this
TRADING_STATES = ("ACTIVE", "REDUCING", "HALTED")
PRICE_EVENTS = frozenset(PRICES)
_TWO = Decimal(2)
_FULL = None  # sensitivity marker: recompute equity in full when this mark moves


class RiskState:
    """What the risk rules read besides orders and portfolio; folded from the events named in EVENTS."""

    EVENTS = ("InstrumentDefined",) + PRICES + ("OrderIntent",) + VERDICTS + ("OrderSubmitted", "OrderFilled",
                                                                              "AccountState", "TradingStateChanged")

    def __init__(self, portfolio: Any, currency: str | None = None):
        self.portfolio = portfolio
        self.market = portfolio.market
        self.currency: str | None = currency
        self.trading_state = "ACTIVE"
        self.order_times: deque[int] = deque(maxlen=RATE_MEMORY)  # ts of RiskAccepted, oldest first
        self.intents: dict[str, tuple[str, str, Decimal]] = {}  # cid → (iid, side, qty): awaiting the verdict
        self.pending: dict[str, tuple[str, str, Decimal]] = {}  # accepted by risk, not yet OrderSubmitted
        self.equity: Decimal | None = None  # None until a currency and its conversions are known
        self.peak_equity: Decimal | None = None
        self.day_start_equity: Decimal | None = None
        self.day: int | None = None  # UTC day number (ts // DAY_NS) of day_start_equity
        self._next_day = -(1 << 62)  # first ts of the next UTC day: the day check is one comparison
        self._sens: dict[str, Decimal | None] = {}  # iid → d(equity)/d(mark), or _FULL
        self._marks: dict[str, Decimal] = {}  # iid → mark at the last equity update

    # ---- the fold ------------------------------------------------------------------------------------------

    def apply(self, name: str, data: dict[str, Any], ts: int) -> None:
        """Fold one event; called after market, orders and portfolio have folded it."""
        if name in PRICE_EVENTS:
            if self._sens:
                iid = data["instrument_id"]
                if iid in self._sens:
                    self._remark(iid)
        elif name == "RiskAccepted":
            cid = data["client_order_id"]
            intent = self.intents.pop(cid, None)
            if intent is not None:
                self.pending[cid] = intent
            self.order_times.append(ts)
        elif name == "OrderIntent":
            self.intents[data["client_order_id"]] = (data["instrument_id"], data["side"], data["quantity"])
        elif name == "OrderSubmitted":
            cid = data["client_order_id"]
            self.pending.pop(cid, None)
            self.intents.pop(cid, None)
        elif name == "RiskRejected":
            cid = data["client_order_id"]
            self.intents.pop(cid, None)
            self.pending.pop(cid, None)
        elif name == "OrderFilled" or name == "AccountState":
            self.resync()
        elif name == "InstrumentDefined":
            if self.currency is None:
                self.currency = data["settlement_currency"]
            self.resync()
        elif name == "TradingStateChanged":
            state = data["state"]
            self.trading_state = state if state in TRADING_STATES else "HALTED"  # unknown reads as HALTED
        if ts >= self._next_day:  # forward only: a late event stamped yesterday must not reset today's start
            self._new_day(ts)

    def _new_day(self, ts: int) -> None:
        self.day = ts // DAY_NS
        self._next_day = (self.day + 1) * DAY_NS
        self.day_start_equity = self.equity

    # ---- equity --------------------------------------------------------------------------------------------

    def _remark(self, iid: str) -> None:
        mark = self.market.last_price.get(iid)
        if mark is None:
            return
        sens = self._sens[iid]
        old = self._marks.get(iid)
        if sens is _FULL or old is None or self.equity is None:
            self.resync()
            return
        if mark == old:
            return
        self._marks[iid] = mark
        if getcontext().prec >= 60:  # the engine's context: operators are exact here, and 5x cheaper
            equity = self.equity + sens * (mark - old)
        else:
            ctx = _CTX
            equity = ctx.add(self.equity, ctx.multiply(sens, ctx.subtract(mark, old)))
        self.equity = equity
        if equity > self.peak_equity:  # type: ignore[operator]
            self.peak_equity = equity

    def _equity(self) -> Decimal | None:
        try:
            return self.portfolio.equity(self.currency)
        except TapeError:  # a balance no mark converts yet: equity unknown, not understated
            return None

    def resync(self) -> None:
        """Recompute equity with the portfolio and re-measure which marks move it (on fills, balances, definitions)."""
        if self.currency is None:
            return
        pf = self.portfolio
        funded = any(pf.balances.values()) or any(p.quantity for p in pf.positions.values())
        equity = self._equity() if funded else None  # an empty account has nothing to lose yet
        self.equity = equity
        self._sens = sens = {}
        self._marks = marks = {}
        for iid in self._relevant():
            if equity is None:
                sens[iid] = _FULL
                continue
            mark = self.portfolio.mark(iid)
            if mark is None:
                sens[iid] = _FULL  # the first price may make a currency convertible
                continue
            marks[iid] = mark
            sens[iid] = self._sensitivity(iid, mark, equity)
        if equity is None:
            return
        if self.peak_equity is None or equity > self.peak_equity:
            self.peak_equity = equity
        if self.day_start_equity is None and self.day is not None:
            self.day_start_equity = equity

    def _relevant(self) -> list[str]:
        """Instruments whose mark can move equity: open positions, and conversions of currencies we hold."""
        pf = self.portfolio
        curs = {c for c, v in pf.balances.items() if v}
        out: list[str] = []
        for iid, pos in pf.positions.items():
            if pos.quantity:
                out.append(iid)
                curs.add(pos.currency)
        curs.discard(self.currency)
        if curs:
            for iid, inst in self.market.instruments.items():
                if iid not in out and (inst.base_currency in curs or inst.quote_currency in curs):
                    out.append(iid)
        return out

    def _sensitivity(self, iid: str, mark: Decimal, equity: Decimal) -> Decimal | None:
        """d(equity)/d(mark of iid) when equity is linear in it alone, else _FULL."""
        prices = self.market.last_price
        had = iid in prices
        saved = prices.get(iid)
        try:
            with localcontext(_CTX):
                prices[iid] = mark + _ONE
                e1 = self._equity()
                prices[iid] = mark + _TWO
                e2 = self._equity()
        finally:
            if had:
                prices[iid] = saved  # type: ignore[assignment]
            else:
                del prices[iid]
        if e1 is None or e2 is None:
            return _FULL
        with localcontext(_CTX):
            d1, d2 = e1 - equity, e2 - e1
        if d1 != d2 or self._foreign_pnl(iid):
            return _FULL
        return d1.normalize(_CTX)  # fewest digits: keeps every later product short and exact

    def _foreign_pnl(self, iid: str) -> bool:
        """True when a derivative's open PnL is in another currency: equity then depends on two marks jointly."""
        pos = self.portfolio.positions.get(iid)
        inst = self.market.instruments.get(iid)
        if pos is None or inst is None or not pos.quantity or inst.kind == "SPOT":
            return False
        return pos.currency != self.currency

    # ---- queries for the rules -----------------------------------------------------------------------------

    def pending_quantity(self, instrument_id: str, side: str, exclude: str | None = None) -> Decimal:
        """Quantity accepted by risk on one side of an instrument but not yet submitted (held in the queue)."""
        total = Decimal(0)
        for cid, (iid, s, qty) in self.pending.items():
            if iid == instrument_id and s == side and cid != exclude:
                total += qty
        return total

    # ---- snapshot ------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything the fold holds, as plain data (restore with `RiskState.restore`); a sensitivity of None
        means 'recompute equity in full when this mark moves'."""
        def orders(d: dict[str, tuple[str, str, Decimal]]) -> list[dict[str, Any]]:
            return [{"client_order_id": cid, "instrument_id": iid, "side": side, "quantity": qty}
                    for cid, (iid, side, qty) in d.items()]

        return {
            "currency": self.currency, "trading_state": self.trading_state, "order_times": list(self.order_times),
            "intents": orders(self.intents), "pending": orders(self.pending), "equity": self.equity,
            "peak_equity": self.peak_equity, "day_start_equity": self.day_start_equity, "day": self.day,
            "next_day": self._next_day,
            "sensitivities": [{"instrument_id": iid, "value": v} for iid, v in self._sens.items()],
            "marks": dict(self._marks),
        }

    @classmethod
    def restore(cls, portfolio: Any, snapshot: dict[str, Any]) -> "RiskState":
        """The risk state as it was when `snapshot` was taken, reading `portfolio` (and its market)."""
        r = cls(portfolio, snapshot["currency"])
        r.trading_state = snapshot["trading_state"]
        r.order_times = deque(snapshot["order_times"], maxlen=RATE_MEMORY)
        r.intents = {o["client_order_id"]: (o["instrument_id"], o["side"], o["quantity"]) for o in snapshot["intents"]}
        r.pending = {o["client_order_id"]: (o["instrument_id"], o["side"], o["quantity"]) for o in snapshot["pending"]}
        r.equity = snapshot["equity"]
        r.peak_equity = snapshot["peak_equity"]
        r.day_start_equity = snapshot["day_start_equity"]
        r.day = snapshot["day"]
        r._next_day = snapshot["next_day"]
        r._sens = {s["instrument_id"]: s["value"] for s in snapshot["sensitivities"]}
        r._marks = dict(snapshot["marks"])
        return r
