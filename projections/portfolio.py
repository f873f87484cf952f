"""Positions, balances, PnL and fees: a netting portfolio folded from OrderFilled and AccountState.

Positions and the balance moves of a fill follow the one netting rule of projections/accounting.py (shared with
the simulated venue and the SQL read model). `realized_pnl` is gross of fees; `net_realized_pnl` subtracts the
fees charged in the PnL currency (fees in any other currency, e.g. BNB, are kept apart in `fees` and never
silently converted). AccountState with reported=True sets every balance it lists to its `total` (absolute);
AccountState with reported=False was computed by the runtime from fills — this fold already holds it — and is
ignored. OPTION instruments are refused (premium accounting is not modelled).

Marks: an instrument's mark is market.last_price, or, until market data arrives, the price of its last fill.
Converting a currency into another uses an instrument whose base is the one and quote the other (spot ones
first, then any kind, in definition order) at its mark, or the inverse of one quoted the other way round.
A non-zero balance in a currency that cannot be converted raises `UnmarkedCurrency` naming it: equity is
never silently understated. Zero balances are ignored.
"""
from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

from projections.accounting import DERIVATIVES, Position, book_fill
from projections.market import Instrument, MarketState
from schemas.decimals import ARITHMETIC as _CTX, ONE as _ONE, ZERO as _ZERO
from schemas.errors import TapeError


class UnmarkedCurrency(TapeError):
    """A balance or PnL in a currency that no instrument with a price converts to the one asked for."""


class UnknownInstrument(TapeError):
    """A fill for an instrument that no InstrumentDefined event has described."""


class MixedCurrencies(TapeError):
    """A total asked without a currency over amounts in several currencies."""


class Portfolio:
    """Balances per currency and netting positions per instrument, marked with the market's last prices."""

    EVENTS = ("OrderFilled", "AccountState")

    def __init__(self, market: MarketState):
        self.market = market
        self.balances: dict[str, Decimal] = {}
        self.positions: dict[str, Position] = {}
        self.fees: dict[str, Decimal] = {}  # fee currency → total over all fills
        self.fill_count = 0
        self.ts = 0
        self._routes_key: tuple[Instrument, ...] | None = None
        self._route_cache: dict[tuple[str, str], list[tuple[str, bool]]] = {}

    # ---- the fold ------------------------------------------------------------------------------------------

    def apply(self, name: str, data: dict[str, Any], ts: int) -> None:
        """Fold an OrderFilled or a reported AccountState."""
        if name == "OrderFilled":
            self._fill(data, ts)
        elif name == "AccountState":
            if data.get("reported", True):
                for b in data["balances"]:
                    self.balances[b["currency"]] = b["total"]
        else:
            return
        if ts > self.ts:
            self.ts = ts

    def _instrument(self, iid: str) -> Instrument:
        inst = self.market.instruments.get(iid)
        if inst is None:
            raise UnknownInstrument(f"instrument {iid}: a fill arrived before its InstrumentDefined; define the "
                                    f"instrument (import its definition) before trading it")
        if inst.kind not in DERIVATIVES and inst.kind != "SPOT":
            raise UnknownInstrument(f"instrument {iid}: kind {inst.kind} is not supported by the portfolio "
                                    f"(SPOT, PERPETUAL, FUTURE); trade one of those")
        return inst

    def _fill(self, data: dict[str, Any], ts: int) -> None:
        iid = data["instrument_id"]
        inst = self._instrument(iid)
        pos = self.positions.get(iid)
        if pos is None:
            pos = self.positions[iid] = Position.of(iid, inst)
        fee, fee_cur = data["fee"], data["fee_currency"]
        book_fill(pos, self.balances, inst, data["side"], data["last_quantity"], data["last_price"], fee, fee_cur, ts)
        self.fees[fee_cur] = self.fees.get(fee_cur, _ZERO) + fee
        self.fill_count += 1

    # ---- marks and conversion ------------------------------------------------------------------------------

    def mark(self, instrument_id: str) -> Decimal | None:
        """The market's last price, else the last fill price, else None."""
        px = self.market.last_price.get(instrument_id)
        if px is None:
            pos = self.positions.get(instrument_id)
            if pos is not None:
                px = pos.last_fill_price
        return px

    def rate(self, from_currency: str, to_currency: str) -> Decimal | None:
        """Price of one unit of `from_currency` in `to_currency` from the marks, or None when none converts."""
        if from_currency == to_currency:
            return _ONE
        for iid, inverse in self._routes(from_currency, to_currency):
            px = self.mark(iid)
            if px:
                return _CTX.divide(_ONE, px) if inverse else px
        return None

    def _routes(self, frm: str, to: str) -> list[tuple[str, bool]]:
        """Instruments that convert frm → to, in preference order (cached until an instrument is (re)defined)."""
        instruments = self.market.instruments
        key = tuple(instruments.values())  # any definition or redefinition invalidates the cache
        if key != self._routes_key:
            self._routes_key = key
            self._route_cache = {}
        routes = self._route_cache.get((frm, to))
        if routes is None:
            routes = []
            for inverse, base, quote in ((False, frm, to), (True, to, frm)):
                for spot_only in (True, False):
                    for inst in instruments.values():
                        if (inst.kind == "SPOT") == spot_only and inst.base_currency == base \
                                and inst.quote_currency == quote:
                            routes.append((inst.instrument_id, inverse))
            self._route_cache[(frm, to)] = routes
        return routes

    def convert(self, amount: Decimal, from_currency: str, to_currency: str) -> Decimal:
        """`amount` of one currency in another; raises UnmarkedCurrency when no mark converts it."""
        if from_currency == to_currency:
            return amount
        if not amount:
            return _ZERO
        r = self.rate(from_currency, to_currency)
        if r is None:
            raise UnmarkedCurrency(f"currency {from_currency}: no instrument with a price converts it to "
                                   f"{to_currency}; define a {from_currency}/{to_currency} instrument with market "
                                   f"data, or ask in {from_currency}")
        return _CTX.multiply(amount, r)

    def unmarked(self, currency: str) -> list[str]:
        """Currencies with a non-zero balance or open PnL that `equity(currency)` could not convert."""
        out = []
        for cur in self._equity_currencies():
            if self.rate(cur, currency) is None:
                out.append(cur)
        return out

    def _equity_currencies(self) -> list[str]:
        curs = [c for c, v in self.balances.items() if v]
        for pos in self.positions.values():
            if pos.quantity and self._is_derivative(pos.instrument_id) and pos.currency not in curs:
                curs.append(pos.currency)
        return curs

    def _is_derivative(self, iid: str) -> bool:
        inst = self.market.instruments.get(iid)
        return inst is not None and inst.kind in DERIVATIVES

    # ---- queries -------------------------------------------------------------------------------------------

    def position_quantity(self, instrument_id: str) -> Decimal:
        """Signed net position (0 when none)."""
        pos = self.positions.get(instrument_id)
        return pos.quantity if pos is not None else _ZERO

    def unrealized_pnl(self, instrument_id: str | None = None, currency: str | None = None) -> Decimal:
        """Open PnL at the marks: of one instrument (in its PnL currency, or converted to `currency`), or of all."""
        if instrument_id is not None:
            pos = self.positions.get(instrument_id)
            if pos is None or not pos.quantity:
                return _ZERO
            mark = self.mark(instrument_id)
            if mark is None:  # unreachable: a position has a last fill price
                raise UnmarkedCurrency(f"instrument {instrument_id}: no price to mark the position")
            u = pos.unrealized_pnl(mark)
            return u if currency is None else self.convert(u, pos.currency, currency)
        if currency is None:
            currency = self._single_currency("unrealized PnL")
            if currency is None:
                return _ZERO
        total = _ZERO
        for iid, pos in self.positions.items():
            if pos.quantity:
                total = _CTX.add(total, self.unrealized_pnl(iid, currency))
        return total

    def realized_pnl(self, instrument_id: str | None = None, currency: str | None = None) -> Decimal:
        """Realized PnL gross of fees: of one instrument, or summed over positions whose PnL is in `currency`."""
        if instrument_id is not None:
            pos = self.positions.get(instrument_id)
            return pos.realized_pnl if pos is not None else _ZERO
        if currency is None:
            currency = self._single_currency("realized PnL")
            if currency is None:
                return _ZERO
        with localcontext(_CTX):
            return sum((p.realized_pnl for p in self.positions.values() if p.currency == currency), _ZERO)

    def net_realized_pnl(self, instrument_id: str | None = None, currency: str | None = None) -> Decimal:
        """Realized PnL minus the fees charged in the same currency."""
        if instrument_id is not None:
            pos = self.positions.get(instrument_id)
            return pos.net_realized_pnl if pos is not None else _ZERO
        if currency is None:
            currency = self._single_currency("realized PnL")
            if currency is None:
                return _ZERO
        return self.realized_pnl(currency=currency) - self.fees.get(currency, _ZERO)

    def fees_paid(self, currency: str | None = None) -> Decimal:
        """Fees charged in `currency` (never converted); without one, the total when all fees share a currency."""
        if currency is None:
            curs = [c for c in self.fees]
            if not curs:
                return _ZERO
            if len(curs) > 1:
                raise MixedCurrencies(f"fees were charged in {', '.join(curs)}; ask fees_paid(currency) for one")
            currency = curs[0]
        return self.fees.get(currency, _ZERO)

    def _single_currency(self, what: str) -> str | None:
        curs: list[str] = []
        for p in self.positions.values():
            if p.currency not in curs:
                curs.append(p.currency)
        if len(curs) > 1:
            raise MixedCurrencies(f"{what} is in {', '.join(curs)}; pass currency= to choose one")
        return curs[0] if curs else None

    def equity(self, currency: str) -> Decimal:
        """Account value in `currency`: balances at the marks, plus open PnL of derivative positions."""
        add = _CTX.add
        total = _ZERO
        for cur, amount in self.balances.items():
            if amount:
                total = add(total, self.convert(amount, cur, currency))
        for iid, pos in self.positions.items():
            if pos.quantity and self._is_derivative(iid):
                total = add(total, self.unrealized_pnl(iid, currency))
        return total

    def gross_exposure(self, currency: str) -> Decimal:
        """Σ |position| × mark × multiplier over open positions, in `currency` (balances held are not positions)."""
        c = _CTX
        total = _ZERO
        for iid, pos in self.positions.items():
            if pos.quantity:
                notional = c.multiply(c.multiply(abs(pos.quantity), self.mark(iid)), pos.multiplier)
                total = c.add(total, self.convert(notional, self.market.instruments[iid].quote_currency, currency))
        return total

    def in_market(self) -> bool:
        """True while any position is open (the exposure-time statistic samples it)."""
        return any(p.quantity for p in self.positions.values())

    # ---- snapshot ------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Balances, positions and fees as plain data (restore with `Portfolio.restore`)."""
        return {
            "balances": dict(self.balances),
            "fees": dict(self.fees),
            "fill_count": self.fill_count,
            "ts": self.ts,
            "positions": [{f: (dict(getattr(p, f)) if f == "fees" else getattr(p, f))
                           for f in Position.__dataclass_fields__} for p in self.positions.values()],
        }

    @classmethod
    def restore(cls, market: MarketState, snapshot: dict[str, Any]) -> "Portfolio":
        """The portfolio as it was when `snapshot` was taken, marked against `market`."""
        p = cls(market)
        p.balances = dict(snapshot["balances"])
        p.fees = dict(snapshot["fees"])
        p.fill_count = snapshot["fill_count"]
        p.ts = snapshot["ts"]
        for row in snapshot["positions"]:
            pos = Position(**{**row, "fees": dict(row["fees"])})
            p.positions[pos.instrument_id] = pos
        return p
