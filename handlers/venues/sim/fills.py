"""Fill rules of the simulated venue: where on the data an order triggers and fills, at what price, as whom.

Pure functions of an order's terms and the prices one market event offers; no state, no events, no I/O.
The rule book (intrabar path, gaps, maker/taker) is documented in handlers/venues/sim/venue.py.

A *path* is the sequence of prices the event offers, in time order: a bar is (open, low, high, close) when it
closes at or above its open, else (open, high, low, close); a trade tick is (price,); a quote is (ask,) for buys
and (bid,) for sells. Prices move linearly between path points, so a level between two points is touched.
A position on the path is (leg, price): leg 0 is the first point, leg k the move from point k-1 to point k.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

MAKER, TAKER = "MAKER", "TAKER"
STOPS = frozenset({"STOP_MARKET", "STOP_LIMIT"})

Path = tuple[Decimal, ...]


def bar_path(open_: Decimal, high: Decimal, low: Decimal, close: Decimal) -> Path:
    """The documented intrabar path: bullish O→L→H→C, bearish O→H→L→C (the pessimistic order for resting orders)."""
    return (open_, low, high, close) if close >= open_ else (open_, high, low, close)


def reach(path: Path, leg: int, price: Decimal, level: Decimal, up: bool) -> tuple[int, Decimal] | None:
    """First position at or after (leg, price) where the path is at or beyond `level` (above if up, else below)."""
    if (price >= level) if up else (price <= level):
        return leg, price
    for j in range(max(leg, 1), len(path)):
        b = path[j]
        if (b >= level) if up else (b <= level):
            return j, level
    return None


@dataclass(frozen=True, slots=True)
class Plan:
    """What one market event does to one order: where on the path, a trigger, a fill price and liquidity side."""

    leg: int
    at: Decimal  # price at that position (for priority); for a resting tick fill it is the tick, not the fill price
    price: Decimal | None  # fill price, None when the order only triggers on this event
    liquidity: str
    triggered: bool  # a stop triggered on this event

    def key(self, path: Path) -> tuple[int, Decimal]:
        """Priority on the path: earlier leg first, then the nearer to the leg's start (better price first)."""
        return (self.leg, abs(self.at - path[self.leg - 1]) if self.leg else Decimal(0))


def plan_fill(*, buy: bool, order_type: str, limit: Decimal | None, trigger: Decimal | None, triggered: bool,
              fresh: bool, path: Path, gap_fill_at_first: bool) -> Plan | None:
    """Where the order triggers and fills on `path`, or None if the event leaves it untouched.

    `fresh`: the order meets the market for the first time (it takes liquidity if it crosses at once);
    otherwise it was resting and a cross at the first point fills it as maker — at that first price when
    `gap_fill_at_first` (bars: the open gapped through the limit) else at its limit (ticks and quotes).
    """
    leg, x = 0, path[0]
    just_triggered = False
    if order_type in STOPS and not triggered:
        hit = reach(path, 0, x, trigger, up=buy)  # type: ignore[arg-type]
        if hit is None:
            return None
        leg, x = hit
        just_triggered = True
        if order_type == "STOP_MARKET":  # fills where it triggered: the trigger, or the open when it gapped past it
            return Plan(leg, x, x, TAKER, True)
        fresh = True  # the limit order a stop-limit becomes meets the market at the trigger point
    elif order_type != "LIMIT" and order_type != "STOP_LIMIT":  # market, or a stop-market triggered earlier
        return Plan(0, x, x, TAKER, False)
    lim: Decimal = limit  # type: ignore[assignment]
    if (x <= lim) if buy else (x >= lim):
        if fresh:
            return Plan(leg, x, x, TAKER, just_triggered)
        return Plan(leg, x, x if gap_fill_at_first else lim, MAKER, just_triggered)
    hit = reach(path, leg, x, lim, up=not buy)
    if hit is not None:
        return Plan(hit[0], lim, lim, MAKER, just_triggered)
    return Plan(leg, x, None, TAKER, True) if just_triggered else None


def last_seen_price(name: str, data: dict[str, Any], buy: bool) -> Decimal:
    """Where the market stands after an event for one side: bar close, trade price, ask (buy) / bid (sell)."""
    if name == "Bar":
        return data["close"]
    if name == "TradeTick":
        return data["price"]
    return data["ask_price"] if buy else data["bid_price"]
