"""The engine's state: every projection folded from the same events, in seq order."""
from __future__ import annotations

from typing import Any, Callable

from projections.incidents import Incidents
from projections.market import MarketState
from projections.orders import Orders
from projections.portfolio import Portfolio
from projections.risk import RiskState
from schemas.names import MARKET


class State:
    """Market, orders, portfolio, risk state and open incidents; `apply` is the one fold both backtest and recovery
    use."""

    def __init__(self) -> None:
        self.market = MarketState()
        self.orders = Orders()
        self.portfolio = Portfolio(self.market)
        self.risk = RiskState(self.portfolio)
        self.incidents = Incidents()
        self.last_seq = 0
        self._routes: dict[str, list[Callable[[str, dict[str, Any], int], None]]] = {}
        for name in MARKET:
            self._routes.setdefault(name, []).append(self.market.apply)
        for name in Orders.EVENTS:
            self._routes.setdefault(name, []).append(self.orders.apply)
        for name in Portfolio.EVENTS:
            self._routes.setdefault(name, []).append(self.portfolio.apply)
        for name in RiskState.EVENTS:
            self._routes.setdefault(name, []).append(self.risk.apply)
        for name in Incidents.EVENTS:
            self._routes.setdefault(name, []).append(self.incidents.apply)

    def apply(self, name: str, data: dict[str, Any], ts: int) -> None:
        """Fold one event (short type name, decoded fields, ts_event) into every projection that cares."""
        for fn in self._routes.get(name, ()):
            fn(name, data, ts)

    # ---- snapshot ------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every projection as plain data (dicts, lists, Decimals, ints, strings): what a snapshot stores, and
        what two states are compared by."""
        return {"market": self.market.snapshot(), "orders": self.orders.snapshot(),
                "portfolio": self.portfolio.snapshot(), "risk": self.risk.snapshot(),
                "incidents": self.incidents.snapshot()}

    @classmethod
    def restore(cls, snapshot: dict[str, Any], last_seq: int = 0) -> "State":
        """The state as it was when `snapshot` was taken; `apply` continues the fold from there."""
        state = cls()
        market = MarketState.restore(snapshot["market"])
        portfolio = Portfolio.restore(market, snapshot["portfolio"])
        swap = {id(state.market): market, id(state.orders): Orders.restore(snapshot["orders"]),
                id(state.portfolio): portfolio, id(state.risk): RiskState.restore(portfolio, snapshot["risk"]),
                id(state.incidents): Incidents.restore(snapshot.get("incidents"))}
        for fns in state._routes.values():  # re-point every route at the restored projection
            fns[:] = [getattr(swap[id(fn.__self__)], fn.__name__) if id(getattr(fn, "__self__", None)) in swap else fn
                      for fn in fns]
        state.market, state.orders, state.portfolio, state.risk, state.incidents = (
            swap[id(state.market)], swap[id(state.orders)], portfolio, swap[id(state.risk)], swap[id(state.incidents)])
        state.last_seq = last_seq
        return state
