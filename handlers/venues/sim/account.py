"""The simulated venue's own account: balances, netting positions, what working orders lock, and funds checks.

Fills move it by the one netting rule of projections/accounting.py (the portfolio projection folds the same fill
the same way), so the venue's checks depend only on what it has emitted. `check` runs the account's part of the
checks at arrival (REDUCE_ONLY_WOULD_INCREASE, INSUFFICIENT_BALANCE for cash and margin accounts), after the
venue's own order checks; the rules are written out in handlers/venues/sim/venue.py.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from handlers.venues.sim.config import VenueConfig
from handlers.venues.sim.fills import TAKER, last_seen_price
from projections.accounting import Position, book_fill
from schemas.decimals import ONE as _ONE, Q18, ZERO as _ZERO, exact_text, q18


class SimAccount:
    """Balances and positions of the simulated venue; reads its working orders and last prices, never writes them."""

    def __init__(self, config: VenueConfig, instruments: dict[str, Any], book: dict[str, list[Any]],
                 last: dict[str, tuple[str, dict[str, Any]]]):
        self.config = config
        self.balances: dict[str, Decimal] = {}
        self.positions: dict[str, Position] = {}  # the venue's own netting positions, from its own fills
        self._instruments = instruments
        self._book = book  # the venue's working orders per instrument (shared, read only here)
        self._last = last  # the last market event seen per instrument (shared, read only here)

    def fill(self, inst: Any, buy: bool, qty: Decimal, price: Decimal, fee: Decimal) -> None:
        """Move balances and the netting position by the rule the portfolio projection folds the same fill with."""
        pos = self.positions.get(inst.instrument_id)
        if pos is None:
            pos = self.positions[inst.instrument_id] = Position.of(inst.instrument_id, inst)
        book_fill(pos, self.balances, inst, "BUY" if buy else "SELL", qty, price, fee, inst.quote_currency, 0)

    def locked(self, key: str) -> Decimal:
        """What working orders lock of a currency: Σ leaves × the per-unit amount checked at arrival."""
        total = _ZERO
        for book in self._book.values():
            for o in book:
                if o.lock_key == key:
                    total += o.leaves * o.lock_per_unit
        return total

    def lock(self, o: Any) -> None:
        """Set what a newly working order locks (cash accounts, spot instruments)."""
        inst = self._instruments[o.iid]
        if self.config.account_type != "cash" or inst.kind != "SPOT":
            return
        if o.buy:
            ref = self.reference_price(o)
            if ref is not None:
                o.lock_key = inst.quote_currency
                o.lock_per_unit = ref * inst.multiplier * (1 + max(self.config.fee_rate(inst, TAKER), _ZERO))
        else:
            o.lock_key, o.lock_per_unit = inst.base_currency, _ONE

    def state(self, venue: str) -> dict[str, Any]:
        """An AccountState payload (reported) of the balances now."""
        balances = []
        for cur in sorted(self.balances):
            total = self.balances[cur]
            locked = self.locked(cur).quantize(Q18) if self._book else _ZERO
            balances.append({"currency": cur, "total": total, "free": total - locked, "locked": locked})
        return {"venue": venue, "balances": balances, "reported": True}

    def mark(self, iid: str) -> Decimal | None:
        """The last price seen: a bar's close, a trade's price, a quote's mid."""
        last = self._last.get(iid)
        if last is None:
            return None
        name, data = last
        if name == "Bar":
            return data["close"]
        if name == "TradeTick":
            return data["price"]
        return (data["bid_price"] + data["ask_price"]) / 2

    def reference_price(self, o: Any) -> Decimal | None:
        """The price an order is checked at: its limit, a stop-market's trigger, a market order's last price."""
        if o.order_type in ("LIMIT", "STOP_LIMIT"):
            return o.price
        if o.order_type == "STOP_MARKET":
            return o.trigger
        last = self._last.get(o.iid)
        return last_seen_price(last[0], last[1], o.buy) if last is not None else None

    def check(self, o: Any, inst: Any) -> tuple[str, str] | None:
        """(reason_code, reason) when the account cannot take the order (reduce-only, funds), else None."""
        if o.reduce_only:
            held = self.position_quantity(o.iid)
            reducible = -held if o.buy else held
            if reducible <= 0 or o.quantity > reducible:
                return "REDUCE_ONLY_WOULD_INCREASE", (f"reduce-only {o.side} {o.quantity} against a position of "
                                                      f"{held} would increase it")
        if self.config.account_type == "cash" and inst.kind == "SPOT":
            return self._check_cash(o, inst)
        return self._check_margin(o, inst)

    def _check_cash(self, o: Any, inst: Any) -> tuple[str, str] | None:
        if o.buy:
            ref = self.reference_price(o)
            if ref is None:
                return None
            need = o.quantity * ref * inst.multiplier * (1 + max(self.config.fee_rate(inst, TAKER), _ZERO))
            cur = inst.quote_currency
        else:
            need, cur = o.quantity, inst.base_currency
        free = self.balances.get(cur, _ZERO) - self.locked(cur)
        if need > free:
            return "INSUFFICIENT_BALANCE", (f"{o.side} {o.quantity} {o.iid} needs {_txt(need)} {cur}, "
                                            f"{_txt(free)} free")
        return None

    def _holding(self, inst: Any) -> Decimal:
        if inst.kind == "SPOT":
            return self.balances.get(inst.base_currency, _ZERO)
        return self.position_quantity(inst.instrument_id)

    def position_quantity(self, iid: str) -> Decimal:
        """The signed net position this account's fills made (0 when none)."""
        pos = self.positions.get(iid)
        return pos.quantity if pos is not None else _ZERO

    def _check_margin(self, o: Any, inst: Any) -> tuple[str, str] | None:
        ref = self.reference_price(o)
        if ref is None:
            return None
        held = self._holding(inst)
        pending = _ZERO
        for w in self._book.get(o.iid, ()):
            if w.buy == o.buy:
                pending += w.leaves
        after = held + (pending + o.quantity if o.buy else -(pending + o.quantity))
        if abs(after) <= abs(held):
            return None
        quote = inst.quote_currency
        equity = self.balances.get(quote, _ZERO)
        gross = abs(after) * ref * inst.multiplier
        bases = {inst.base_currency} if inst.kind == "SPOT" else set()
        for other in sorted(self._instruments):
            oi = self._instruments[other]
            if oi.quote_currency != quote:
                continue
            mark = self.mark(other)
            if mark is None and other == inst.instrument_id:
                mark = ref
            if mark is None:
                continue
            if oi.kind == "SPOT":
                if other != inst.instrument_id and oi.base_currency in bases:
                    continue
                bases.add(oi.base_currency)
                amount = self.balances.get(oi.base_currency, _ZERO)
                equity += amount * mark
            else:
                pos = self.positions.get(other)
                amount = pos.quantity if pos is not None else _ZERO
                if pos is not None:
                    equity += pos.unrealized_pnl(mark)
            if other != inst.instrument_id:
                gross += abs(amount) * mark * oi.multiplier
        limit = self.config.leverage * equity
        if gross > limit:
            return "INSUFFICIENT_BALANCE", (f"{o.side} {o.quantity} {o.iid}: exposure {_txt(gross)} {quote} would "
                                            f"exceed leverage {self.config.leverage} x equity {_txt(equity)} {quote}")
        return None


def _txt(d: Decimal) -> str:
    return exact_text(q18(d))
