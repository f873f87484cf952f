"""The one netting rule: how a fill moves a position and the balances.

Used by the portfolio fold (projections/portfolio.py), the simulated venue's own account and the SQL read model,
so the engine, the venue's checks and `tape project` book every fill the same way.

Positions net per instrument: one signed quantity (+ long, − short) and the average price of what is open.
Realized PnL is booked on the reducing part of a fill: (exit − avg) × closed quantity × multiplier, with the sign
of the position; a fill that flips the position closes it and opens the remainder at the fill price.

Balances:
- SPOT: base += signed quantity, quote −= signed quantity × price (18 places).
- PERPETUAL and FUTURE: settlement currency += realized PnL of the reducing part (the open position is worth its
  unrealized PnL, which equity adds).
- every fill: fee currency −= fee. (On spot the position quantity is the traded quantity: a fee charged in the base
  currency lowers the base balance, not the position.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Protocol

from schemas.decimals import ARITHMETIC, ONE, Q18, ZERO

DERIVATIVES = frozenset({"PERPETUAL", "FUTURE"})


class Contract(Protocol):
    """What the rule needs to know of an instrument (projections.market.Instrument has it)."""

    kind: str
    base_currency: str
    quote_currency: str
    settlement_currency: str
    multiplier: Decimal


@dataclass(frozen=True, slots=True)
class Terms:
    """A contract's terms on their own, for folds that hold no projections.market.Instrument."""

    kind: str
    base_currency: str
    quote_currency: str
    settlement_currency: str
    multiplier: Decimal = ONE


@dataclass(slots=True)
class Position:
    """The net position in one instrument and what it has earned and cost so far."""

    instrument_id: str
    currency: str  # PnL currency: quote for spot, settlement for derivatives
    multiplier: Decimal = ONE
    quantity: Decimal = ZERO  # signed: + long, − short
    avg_price: Decimal = ZERO  # average entry price of the open quantity (18 places); 0 when flat
    realized_pnl: Decimal = ZERO  # gross of fees, in `currency`
    fees: dict[str, Decimal] = field(default_factory=dict)  # fee currency → total paid (negative: rebate)
    traded_quantity: Decimal = ZERO  # Σ |fill quantity|
    traded_notional: Decimal = ZERO  # Σ |fill quantity| × price × multiplier, in `currency`
    fill_count: int = 0
    last_fill_price: Decimal | None = None
    ts_opened: int | None = None  # when the current non-zero position was opened (None when flat)
    ts_last: int = 0

    @classmethod
    def of(cls, instrument_id: str, contract: Contract) -> "Position":
        """A flat position in the instrument, its PnL in the quote (spot) or settlement (derivative) currency."""
        currency = contract.quote_currency if contract.kind == "SPOT" else contract.settlement_currency
        return cls(instrument_id, currency, contract.multiplier)

    @property
    def net_realized_pnl(self) -> Decimal:
        """Realized PnL minus the fees charged in the PnL currency."""
        return self.realized_pnl - self.fees.get(self.currency, ZERO)

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        """PnL of the open quantity if it were closed at `mark`."""
        if not self.quantity:
            return ZERO
        c = ARITHMETIC
        return c.multiply(c.multiply(c.subtract(mark, self.avg_price), self.quantity), self.multiplier)


def fill_position(pos: Position, side: str, qty: Decimal, price: Decimal, ts: int) -> Decimal:
    """Apply one fill to a netting position; returns the realized PnL of its reducing part (18 places)."""
    signed = qty if side == "BUY" else -qty
    q = pos.quantity
    realized = ZERO
    with localcontext(ARITHMETIC):
        if q == 0 or (q > 0) == (signed > 0):  # opening or adding
            new_q = q + signed
            pos.avg_price = ((abs(q) * pos.avg_price + qty * price) / abs(new_q)).quantize(Q18)
            if q == 0:
                pos.ts_opened = ts
            pos.quantity = new_q
        else:  # reducing, closing or flipping
            closed = min(abs(q), qty)
            direction = ONE if q > 0 else -ONE
            realized = ((price - pos.avg_price) * closed * pos.multiplier * direction).quantize(Q18)
            pos.realized_pnl += realized
            rest = qty - closed
            if rest > 0:  # flip: the remainder opens at the fill price
                pos.quantity = rest if signed > 0 else -rest
                pos.avg_price = price
                pos.ts_opened = ts
            else:
                pos.quantity = q + signed
                if pos.quantity == 0:
                    pos.avg_price = ZERO
                    pos.ts_opened = None
        pos.traded_quantity += qty
        pos.traded_notional += (qty * price * pos.multiplier).quantize(Q18)
    pos.fill_count += 1
    pos.last_fill_price = price
    pos.ts_last = ts
    return realized


def balance_moves(contract: Contract, side: str, qty: Decimal, price: Decimal, realized: Decimal, fee: Decimal,
                  fee_currency: str) -> list[tuple[str, Decimal]]:
    """(currency, amount) changes one fill makes to the balances, in order; `realized` from fill_position."""
    moves: list[tuple[str, Decimal]] = []
    if contract.kind == "SPOT":
        signed = qty if side == "BUY" else -qty
        with localcontext(ARITHMETIC):
            moves.append((contract.base_currency, signed))
            moves.append((contract.quote_currency, -(signed * price).quantize(Q18)))
    elif realized:
        moves.append((contract.settlement_currency, realized))
    moves.append((fee_currency, -fee))
    return moves


def book_fill(pos: Position, balances: dict[str, Decimal], contract: Contract, side: str, qty: Decimal,
              price: Decimal, fee: Decimal, fee_currency: str, ts: int) -> Decimal:
    """Apply one fill to a position and a balance table; returns the realized PnL it booked."""
    realized = fill_position(pos, side, qty, price, ts)
    with localcontext(ARITHMETIC):
        for currency, amount in balance_moves(contract, side, qty, price, realized, fee, fee_currency):
            balances[currency] = balances.get(currency, ZERO) + amount
        pos.fees[fee_currency] = pos.fees.get(fee_currency, ZERO) + fee
    return realized
