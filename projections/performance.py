"""Performance analytics: equity curve, round trips and the statistics of a run (floats allowed here only).

Round trips (`RoundTrips`, a fold over OrderFilled, per instrument): a trip opens when the position leaves 0
and closes when it returns to 0; a fill that flips the position closes one trip and opens the next with the
remainder at the fill price. Quantity is the total entered (= total exited), avg entry / avg exit are
quantity-weighted, gross PnL = direction × (exit notional − entry notional) × multiplier.

Fee attribution: each fill's fee goes to the trip its quantity belongs to; a flipping fill's fee is split pro
rata by quantity between the trip it closes and the trip it opens (closing share quantized to 18 places, the
opening share is the rest, so the parts add up exactly). Only fees charged in the trip's PnL currency (quote
for spot, settlement for derivatives) are subtracted: `pnl = gross_pnl − fees`; fees in other currencies are
listed in `other_fees` and not converted.

Statistics: returns are simple returns between consecutive equity samples (a sample whose predecessor is not
positive gives no return). Annualisation uses `periods_per_year`, or 365 days / the median sample spacing. A
ratio that is undefined (no trades, flat curve, zero deviation, non-positive equity) is None — never inf/NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, Iterable, Mapping, Sequence

from projections.market import MarketState
from schemas.decimals import ARITHMETIC as _CTX, ONE as _ONE, Q18, ZERO as _ZERO
from schemas.errors import TapeError

YEAR_NS = 365 * 24 * 3600 * 10**9


class CurveOrderError(TapeError):
    """An equity sample older than the last one: samples must come in event-time order."""


# ---- equity curve ------------------------------------------------------------------------------------------


class EquityCurve:
    """Equity samples (ts, equity) in event-time order, each with whether a position was open."""

    def __init__(self) -> None:
        self.samples: list[tuple[int, Decimal]] = []
        self.in_market: list[bool] = []

    def add(self, ts: int, equity: Decimal, in_market: bool = False) -> None:
        """Append a sample; a second sample at the same ts replaces the first (one value per instant)."""
        if self.samples:
            last = self.samples[-1][0]
            if ts < last:
                raise CurveOrderError(f"equity sample at {ts} is older than the last one at {last}; sample in "
                                      f"event-time order")
            if ts == last:
                self.samples[-1] = (ts, equity)
                self.in_market[-1] = in_market
                return
        self.samples.append((ts, equity))
        self.in_market.append(in_market)

    def record(self, portfolio: Any, currency: str, ts: int) -> None:
        """Sample a Portfolio: its equity in `currency` and whether any position is open."""
        self.add(ts, portfolio.equity(currency), portfolio.in_market())

    def __len__(self) -> int:
        return len(self.samples)

    def returns(self) -> list[float]:
        """Simple returns between consecutive samples whose predecessor is positive."""
        out = []
        for (_, a), (_, b) in zip(self.samples, self.samples[1:]):
            if a > 0:
                out.append(float(b / a) - 1.0)
        return out


# ---- round trips -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RoundTrip:
    """One excursion of an instrument's position away from zero and back."""

    instrument_id: str
    side: str  # LONG or SHORT
    currency: str
    entry_ts: int
    exit_ts: int | None = None
    quantity: Decimal = _ZERO  # total entered
    exit_quantity: Decimal = _ZERO
    entry_notional: Decimal = _ZERO  # Σ quantity × price of entries (exact)
    exit_notional: Decimal = _ZERO
    multiplier: Decimal = _ONE
    fees: Decimal = _ZERO  # in `currency`
    other_fees: dict[str, Decimal] = field(default_factory=dict)
    fills: int = 0

    @property
    def avg_entry(self) -> Decimal:
        with localcontext(_CTX):
            return (self.entry_notional / self.quantity).quantize(Q18) if self.quantity else _ZERO

    @property
    def avg_exit(self) -> Decimal:
        with localcontext(_CTX):
            return (self.exit_notional / self.exit_quantity).quantize(Q18) if self.exit_quantity else _ZERO

    @property
    def gross_pnl(self) -> Decimal:
        with localcontext(_CTX):
            d = _ONE if self.side == "LONG" else -_ONE
            return ((self.exit_notional - self.entry_notional) * self.multiplier * d).quantize(Q18)

    @property
    def pnl(self) -> Decimal:
        """Gross PnL minus the fees attributed to this trip (in its PnL currency)."""
        return self.gross_pnl - self.fees

    def as_dict(self) -> dict[str, Any]:
        """The trip as the CLI reports it (Decimals kept)."""
        return {"instrument_id": self.instrument_id, "side": self.side, "entry_ts": self.entry_ts,
                "exit_ts": self.exit_ts, "quantity": self.quantity, "avg_entry": self.avg_entry,
                "avg_exit": self.avg_exit, "gross_pnl": self.gross_pnl, "fees": self.fees, "pnl": self.pnl,
                "currency": self.currency, "fills": self.fills}


class RoundTrips:
    """Fold over OrderFilled: closed round trips in closing order, the open one per instrument, fill totals.

    Without a market, multipliers are 1 and a trip's PnL currency is the fee currency of its first fill."""

    EVENTS = ("OrderFilled",)

    def __init__(self, market: MarketState | None = None):
        self.market = market
        self.closed: list[RoundTrip] = []
        self.open: dict[str, RoundTrip] = {}
        self.position: dict[str, Decimal] = {}
        self.fill_count = 0
        self.traded_notional = _ZERO  # Σ quantity × price × multiplier over every fill
        self.fees: dict[str, Decimal] = {}  # fee currency → total over every fill

    @property
    def trips(self) -> list[RoundTrip]:
        """The closed round trips (alias of `closed`)."""
        return self.closed

    def apply(self, name: str, data: dict[str, Any], ts: int) -> None:
        """Fold one fill into the instrument's current trip, closing and opening trips as the position crosses 0."""
        if name != "OrderFilled":
            return
        iid = data["instrument_id"]
        qty: Decimal = data["last_quantity"]
        price: Decimal = data["last_price"]
        fee: Decimal = data["fee"]
        fee_cur: str = data["fee_currency"]
        buy = data["side"] == "BUY"
        with localcontext(_CTX):
            self.fill_count += 1
            self.fees[fee_cur] = self.fees.get(fee_cur, _ZERO) + fee
            inst = self.market.instruments.get(iid) if self.market is not None else None
            self.traded_notional += qty * price * (inst.multiplier if inst is not None else _ONE)
            q = self.position.get(iid, _ZERO)
            signed = qty if buy else -qty
            trip = self.open.get(iid)
            if q == 0 or (q > 0) == buy:  # opening or adding
                if trip is None:
                    trip = self._new(iid, "LONG" if buy else "SHORT", ts)
                trip.quantity += qty
                trip.entry_notional += qty * price
                trip.fills += 1
                self._fee(trip, fee, fee_cur)
                self.position[iid] = q + signed
                return
            closed = min(abs(q), qty)
            rest = qty - closed
            assert trip is not None
            trip.exit_quantity += closed
            trip.exit_notional += closed * price
            trip.fills += 1
            close_fee = fee if rest == 0 else (fee * closed / qty).quantize(Q18)
            self._fee(trip, close_fee, fee_cur)
            new_q = q + signed
            self.position[iid] = new_q
            if abs(q) <= qty:  # back to zero (and maybe beyond)
                trip.exit_ts = ts
                self.closed.append(trip)
                del self.open[iid]
            if rest > 0:
                nxt = self._new(iid, "LONG" if buy else "SHORT", ts)
                nxt.quantity = rest
                nxt.entry_notional = rest * price
                nxt.fills = 1
                self._fee(nxt, fee - close_fee, fee_cur)

    def _new(self, iid: str, side: str, ts: int) -> RoundTrip:
        currency, mult = "", _ONE
        inst = self.market.instruments.get(iid) if self.market is not None else None
        if inst is not None:
            currency = inst.quote_currency if inst.kind == "SPOT" else inst.settlement_currency
            mult = inst.multiplier
        trip = RoundTrip(iid, side, currency, ts, multiplier=mult)
        self.open[iid] = trip
        return trip

    @staticmethod
    def _fee(trip: RoundTrip, fee: Decimal, cur: str) -> None:
        if not trip.currency or cur == trip.currency:
            if not trip.currency:
                trip.currency = cur
            trip.fees += fee
        else:
            trip.other_fees[cur] = trip.other_fees.get(cur, _ZERO) + fee


# ---- statistics --------------------------------------------------------------------------------------------


def _none_if_bad(x: float | None) -> float | None:
    if x is None or math.isnan(x) or math.isinf(x):
        return None
    return x


def infer_periods_per_year(samples: Sequence[tuple[int, Decimal]]) -> float | None:
    """365 days divided by the median spacing of the samples; None with fewer than 2 or zero spacing."""
    if len(samples) < 2:
        return None
    gaps = sorted(b[0] - a[0] for a, b in zip(samples, samples[1:]))
    n = len(gaps)
    median = gaps[n // 2] if n % 2 else (gaps[n // 2 - 1] + gaps[n // 2]) / 2
    if median <= 0:
        return None
    return YEAR_NS / median


def max_drawdown(samples: Sequence[tuple[int, Decimal]]) -> tuple[float, int, int, bool]:
    """(fraction, duration ns, duration samples, recovered) of the deepest peak-to-trough fall.

    Duration runs from the peak before the trough to the first later sample back at or above that peak, or to
    the last sample when it never recovers. The first of equal drawdowns is the one reported."""
    best = _ZERO
    best_peak_i = best_trough_i = 0
    peak = None
    peak_i = 0
    with localcontext(_CTX):
        for i, (_, e) in enumerate(samples):
            if peak is None or e > peak:
                peak, peak_i = e, i
                continue
            if peak > 0:
                dd = (peak - e) / peak
                if dd > best:
                    best, best_peak_i, best_trough_i = dd, peak_i, i
    if best == 0:
        return 0.0, 0, 0, True
    peak_value = samples[best_peak_i][1]
    end_i, recovered = len(samples) - 1, False
    for j in range(best_trough_i + 1, len(samples)):
        if samples[j][1] >= peak_value:
            end_i, recovered = j, True
            break
    return float(best), samples[end_i][0] - samples[best_peak_i][0], end_i - best_peak_i, recovered


def statistics(curve: EquityCurve, trips: "Iterable[RoundTrip] | RoundTrips",
               fills: Sequence[Mapping[str, Any]] | None = None, periods_per_year: float | None = None, *,
               currency: str | None = None, multipliers: Mapping[str, Decimal] | None = None) -> dict[str, Any]:
    """The run's figures: Decimals for money (equity, PnL, fees), floats for ratios, None where undefined.

    `trips`: closed RoundTrip, or a RoundTrips fold. `fills`: OrderFilled payloads (notional × `multipliers[iid]`,
    default 1); or None to take the fill count, traded notional and fees from the RoundTrips fold, which saw
    every fill. Traded notional is taken to be in the equity
    currency for turnover. `fees_paid` counts fees charged in `currency` (default: the only fee currency; None
    when fees were charged in several — see `fees_by_currency`)."""
    fold = trips if isinstance(trips, RoundTrips) else None
    if fold is not None:
        trips = fold.closed
    if fills is None:
        if fold is None:
            raise TypeError("statistics: pass the OrderFilled payloads as `fills`, or `trips` as a RoundTrips fold")
        fill_count, traded, fees = fold.fill_count, fold.traded_notional, dict(fold.fees)
    else:
        fill_count, traded, fees = len(fills), _ZERO, {}
        mults = multipliers or {}
        with localcontext(_CTX):
            for f in fills:
                traded += f["last_quantity"] * f["last_price"] * mults.get(f["instrument_id"], _ONE)
                cur = f["fee_currency"]
                fees[cur] = fees.get(cur, _ZERO) + f["fee"]
    trips = [t for t in trips if t.exit_ts is not None]
    samples = curve.samples
    n = len(samples)
    out: dict[str, Any] = {}
    start = samples[0][1] if n else None
    end = samples[-1][1] if n else None
    out["start_equity"] = start
    out["end_equity"] = end
    out["samples"] = n
    out["total_return"] = float(end / start) - 1.0 if n and start > 0 else None

    ppy = periods_per_year if periods_per_year else infer_periods_per_year(samples)
    out["periods_per_year"] = ppy
    annual = None
    if ppy and n >= 2 and start > 0 and end >= 0:
        years = (n - 1) / ppy
        try:
            annual = (float(end) / float(start)) ** (1.0 / years) - 1.0
        except (OverflowError, ZeroDivisionError):
            annual = None
    out["annualized_return"] = _none_if_bad(annual)

    rets = curve.returns()
    sharpe = sortino = None
    if ppy and len(rets) >= 2:
        mean = math.fsum(rets) / len(rets)
        var = math.fsum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
        std = math.sqrt(var)
        if std > 0:
            sharpe = mean / std * math.sqrt(ppy)
        downside = math.sqrt(math.fsum(min(r, 0.0) ** 2 for r in rets) / len(rets))
        if downside > 0:
            sortino = mean / downside * math.sqrt(ppy)
    out["sharpe"] = _none_if_bad(sharpe)
    out["sortino"] = _none_if_bad(sortino)

    dd, dd_ns, dd_samples, recovered = max_drawdown(samples)
    out["max_drawdown"] = dd
    out["max_drawdown_duration_ns"] = dd_ns
    out["max_drawdown_duration_samples"] = dd_samples
    out["max_drawdown_recovered"] = recovered

    with localcontext(_CTX):
        pnls = [t.pnl for t in trips]
        wins = [p for p in pnls if p > 0]
        losses = [p for p in pnls if p < 0]
        gross_win = sum(wins, _ZERO)
        gross_loss = -sum(losses, _ZERO)
        out["round_trips"] = len(trips)
        out["win_rate"] = len(wins) / len(trips) if trips else None
        out["profit_factor"] = float(gross_win / gross_loss) if gross_loss > 0 else None
        out["average_win"] = (gross_win / len(wins)).quantize(Q18) if wins else None
        out["average_loss"] = (-gross_loss / len(losses)).quantize(Q18) if losses else None
        out["trips_pnl"] = sum(pnls, _ZERO)

        out["exposure_time"] = sum(curve.in_market) / n if n else None

        avg_equity = sum((e for _, e in samples), _ZERO) / n if n else _ZERO
        out["traded_notional"] = traded.quantize(Q18)
        out["turnover"] = float(traded / avg_equity) if avg_equity > 0 else None
        if currency is None and len(fees) <= 1:
            fees_paid = next(iter(fees.values()), _ZERO)
        else:
            fees_paid = fees.get(currency, _ZERO) if currency is not None else None
        out["fees_paid"] = fees_paid
        out["fees_by_currency"] = fees
        out["fills"] = fill_count
    return out
