"""The engine's state: every projection folded from the same events, in seq order."""
from __future__ import annotations

from typing import Any, Callable

from .market import MarketState
from .orders import Orders
from .portfolio import Portfolio
from .risk import RiskState

MARKET = ("InstrumentDefined", "Bar", "TradeTick", "QuoteTick", "OrderBookDelta", "OrderBookSnapshot")
ORDERS = ("OrderSubmitted", "OrderAccepted", "OrderRejected", "OrderTriggered", "OrderCanceled",
          "OrderCancelRejected", "OrderExpired", "OrderFilled")


class State:
    """Market, orders, portfolio and risk state; `apply` is the one fold both backtest and recovery use."""

    def __init__(self) -> None:
        self.market = MarketState()
        self.orders = Orders()
        self.portfolio = Portfolio(self.market)
        self.risk = RiskState(self.portfolio)
        self.last_seq = 0
        self._routes: dict[str, list[Callable[[str, dict[str, Any], int], None]]] = {}
        for name in MARKET:
            self._routes.setdefault(name, []).append(self.market.apply)
        for name in ORDERS:
            self._routes.setdefault(name, []).append(self.orders.apply)
        for name in ("OrderFilled", "AccountState"):
            self._routes.setdefault(name, []).append(self.portfolio.apply)
        for name in RiskState.EVENTS:
            self._routes.setdefault(name, []).append(self.risk.apply)

    def apply(self, name: str, data: dict[str, Any], ts: int) -> None:
        """Fold one event (short type name, decoded fields, ts_event) into every projection that cares."""
        for fn in self._routes.get(name, ()):
            fn(name, data, ts)
