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
positive gives no return). A ratio that is undefined (no trades, flat curve, zero deviation, non-positive equity)
is None — never inf/NaN.

Annualisation (returns, Sharpe, Sortino) uses the periods a year given (`Annualisation.periods_per_year`), else the
ones the samples' calendar shows (`sample_calendar`): trading days a year = 365 × (the UTC days that hold samples − 1)
/ (the calendar days from the first to the last), so that a regular calendar comes out exact (a 24/7 market: 365;
weekly bars: 52.1; weekdays less nine holidays a year: about 252), times the samples a trading day
(the median count over the days strictly between the first and the last, which may be partial: 1 for daily bars,
1,440 for 24/7 minute bars, 390 for an exchange's minute bars). Data spanning two UTC days or fewer has no whole day
to count: 365 days / the median spacing. Annualised return = (end / start) ^ (periods a year / periods) − 1. Sharpe =
mean excess return / its sample deviation × √(periods a year); Sortino = mean excess return / the downside deviation
(root mean square of the excess returns below 0) × √(periods a year); the excess is over the risk-free rate's
per-period equivalent (1 + rate) ^ (1 / periods a year) − 1, 0 unless given.
"""
from __future__ import annotations

import math
from array import array
from collections.abc import Sequence as _Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, localcontext
from itertools import islice, pairwise
from typing import Any, Iterable, Iterator, Mapping, Sequence

from projections.market import MarketState
from schemas.decimals import ARITHMETIC as _CTX, ONE as _ONE, Q18, ZERO as _ZERO
from schemas.errors import TapeError

DAY_NS = 24 * 3600 * 10**9
DAYS_A_YEAR = 365
YEAR_NS = DAYS_A_YEAR * DAY_NS


class CurveOrderError(TapeError):
    """An equity sample older than the last one: samples must come in event-time order."""


# ---- equity curve ------------------------------------------------------------------------------------------


class EquityCurve:
    """Equity samples (ts, equity) in event-time order, each with whether a position was open — kept as columns:
    times and exposure in machine arrays, equities as the Decimals they are (a value that did not move is the same
    object again), about 17 bytes a sample plus the equities that changed, not 150 a tuple."""

    def __init__(self) -> None:
        self.ts = array("q")
        self.equity: list[Decimal] = []
        self.exposed = bytearray()  # 1 while a position was open

    def add(self, ts: int, equity: Decimal, in_market: bool = False) -> None:
        """Append a sample; a second sample at the same ts replaces the first (one value per instant)."""
        times = self.ts
        if times:
            last = times[-1]
            if ts < last:
                raise CurveOrderError(f"equity sample at {ts} is older than the last one at {last}; sample in "
                                      f"event-time order")
            if ts == last:
                self.equity[-1] = equity
                self.exposed[-1] = in_market
                return
        times.append(ts)
        self.equity.append(equity)
        self.exposed.append(in_market)

    def record(self, portfolio: Any, currency: str, ts: int) -> None:
        """Sample a Portfolio: its equity in `currency` and whether any position is open."""
        self.add(ts, portfolio.equity(currency), portfolio.in_market())

    @property
    def samples(self) -> Samples:
        """The samples as (ts, equity) pairs, made as they are read."""
        return Samples(self.ts, self.equity)

    @property
    def in_market(self) -> list[bool]:
        return [bool(x) for x in self.exposed]

    def __len__(self) -> int:
        return len(self.ts)

    def returns(self) -> array:  # type: ignore[type-arg]
        """Simple returns between consecutive samples whose predecessor is positive, as doubles (8 bytes each; an
        equity that did not move is the same object, and its return exactly 0.0 without a division)."""
        eq = self.equity
        out = array("d")
        append = out.append
        for a, b in zip(eq, islice(eq, 1, None)):
            if a > 0:
                append(0.0 if a is b else float(b / a) - 1.0)
        return out


class Samples(_Sequence):  # type: ignore[type-arg]
    """A curve's (ts, equity) pairs over its columns: a read-only sequence, equal to the list of the same pairs."""

    __slots__ = ("_ts", "_equity")

    def __init__(self, ts: array, equity: list[Decimal]):  # type: ignore[type-arg]
        self._ts, self._equity = ts, equity

    def __len__(self) -> int:
        return len(self._ts)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return list(zip(self._ts[i], self._equity[i]))
        return self._ts[i], self._equity[i]

    def __iter__(self) -> Iterator[tuple[int, Decimal]]:
        return zip(self._ts, self._equity)

    def __eq__(self, other: object) -> bool:
        return list(self) == (list(other) if isinstance(other, (Samples, list, tuple)) else other)

    __hash__ = None  # type: ignore[assignment]


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


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def infer_periods_per_year(samples: Sequence[tuple[int, Decimal]]) -> float | None:
    """365 days divided by the median spacing of the samples; None with fewer than 2 or zero spacing."""
    if len(samples) < 2:
        return None
    median = _median([b[0] - a[0] for a, b in pairwise(samples)])
    if median <= 0:
        return None
    return YEAR_NS / median


@dataclass(frozen=True, slots=True)
class Calendar:
    """What the samples' times say of their market's calendar: the UTC days holding samples, the calendar days
    they span, and the samples a trading day (None: too short to count whole days, the spacing decides)."""

    days_with_data: int
    calendar_days: int
    samples_per_day: float | None
    periods_per_year: float

    @property
    def trading_days_per_year(self) -> float | None:
        """365 × the days with data after the first one per calendar day after it (None when the spacing
        decided): exact for a regular calendar (every day: 365; every seventh: 52.1)."""
        if self.samples_per_day is None:
            return None
        return DAYS_A_YEAR * (self.days_with_data - 1) / (self.calendar_days - 1)

    def describe(self) -> str:
        """How the periods a year were found, in a sentence people read."""
        if self.samples_per_day is None:
            return (f"inferred from the bar spacing: {_grouped(self.periods_per_year)} samples in 365 days (the data "
                    f"spans {self.calendar_days} UTC day{'s' * (self.calendar_days != 1)}, too few to count trading "
                    "days)")
        days = self.trading_days_per_year
        assert days is not None
        return (f"inferred from the data's calendar: {_grouped(days)} trading days a year ({self.days_with_data:,} "
                f"days with data in {self.calendar_days:,} calendar days) × {_grouped(self.samples_per_day)} sample"
                f"{'s' * (self.samples_per_day != 1)} a trading day")


def _grouped(x: float) -> str:
    """A count as people read it: whole numbers grouped (525,600), others to one place (251.9)."""
    return f"{x:,.0f}" if x == int(x) else f"{x:,.1f}"


def sample_calendar(samples: Sequence[tuple[int, Decimal]]) -> Calendar | None:
    """The calendar of the samples and the periods a year it implies (module docstring); None with fewer than 2
    samples or no time between them."""
    if len(samples) < 2:
        return None
    counts: dict[int, int] = {}
    for ts, _ in samples:
        day = ts // DAY_NS
        counts[day] = counts.get(day, 0) + 1
    first, last = samples[0][0] // DAY_NS, samples[-1][0] // DAY_NS
    span = last - first + 1
    whole = [c for d, c in counts.items() if first < d < last]
    if not whole:
        spaced = infer_periods_per_year(samples)
        return None if spaced is None else Calendar(len(counts), span, None, spaced)
    calendar = Calendar(len(counts), span, _median(whole), 0.0)
    return replace(calendar, periods_per_year=calendar.trading_days_per_year * _median(whole))


@dataclass(frozen=True, slots=True)
class Annualisation:
    """How a run's figures are annualised, as the run's config records it: periods a year (None: from the data's
    calendar) and the annual risk-free rate (None: 0)."""

    periods_per_year: Decimal | None = None
    risk_free_rate: Decimal | None = None

    def canonical(self) -> dict[str, Any]:
        """Only the settings given: a run without them records nothing (its config and id stay as they were)."""
        out: dict[str, Any] = {}
        if self.periods_per_year is not None:
            out["periods_per_year"] = self.periods_per_year
        if self.risk_free_rate is not None:
            out["risk_free_rate"] = self.risk_free_rate
        return out

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str = "statistics") -> Annualisation:
        """The settings from a config dict (a recorded run's, or options): refused in one line when not usable."""
        unknown = sorted(set(raw) - {"periods_per_year", "risk_free_rate"})
        if unknown:
            raise TapeError(f"{where}: unknown key {unknown[0]!r}; known keys: periods_per_year, risk_free_rate")
        ppy = _number(raw.get("periods_per_year"), "periods_per_year", where)
        rate = _number(raw.get("risk_free_rate"), "risk_free_rate", where)
        if ppy is not None and ppy <= 0:
            raise TapeError(f"{where}: periods_per_year must be > 0 (252 for daily bars of an exchange's trading "
                            f"days), got {raw['periods_per_year']!r}")
        if rate is not None and rate <= -1:
            raise TapeError(f"{where}: risk_free_rate is an annual fraction > -1 (0.04 for 4 %), got "
                            f"{raw['risk_free_rate']!r}")
        return cls(ppy, rate)


def _number(value: Any, key: str, where: str) -> Decimal | None:
    if value is None:
        return None
    try:
        d = Decimal(str(value).strip()) if not isinstance(value, (bool, Decimal)) else value
    except ArithmeticError:
        d = None
    if not isinstance(d, Decimal) or not d.is_finite():
        raise TapeError(f"{where}: {key} must be a number, got {value!r}")
    return d


def max_drawdown(samples: Sequence[tuple[int, Decimal]]) -> tuple[float, int, int, bool]:
    """(fraction, duration ns, duration samples, recovered) of the deepest peak-to-trough fall.

    Duration runs from the peak before the trough to the first later sample back at or above that peak, or to
    the last sample when it never recovers. The first of equal drawdowns is the one reported."""
    best = _ZERO
    best_peak_i = best_trough_i = 0
    peak = trough = None
    peak_i = 0
    with localcontext(_CTX):
        for i, (_, e) in enumerate(samples):
            if peak is None or e > peak:
                peak, peak_i, trough = e, i, None
                continue
            # under one peak a fall is deepest at the lowest sample, and the rounded division is monotone in it:
            # only a new low since the peak can beat `best` (the same answer, with a division per new low)
            if peak > 0 and (trough is None or e < trough):
                trough = e
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


def drawdowns(samples: Sequence[tuple[int, Decimal]]) -> list[float]:
    """Each sample's fall below the highest equity before it, as a fraction (0 at a new peak): the curve people
    plot under the equity."""
    out = []
    peak: Decimal | None = None
    with localcontext(_CTX):
        for _, e in samples:
            if peak is None or e > peak:
                peak = e
            out.append(float((peak - e) / peak) if peak > 0 and e < peak else 0.0)
    return out


class BuyAndHold:
    """The benchmark of a run: each instrument's first mark in the slice, so that holding it from there to the
    last mark can be set against the strategy."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[int, Decimal]] = {}

    def observe(self, marks: Mapping[str, Decimal], ts: int) -> None:
        """After each market event: the marks of instruments priced for the first time are their starts."""
        if len(marks) != len(self.first):
            for iid, price in marks.items():
                if iid not in self.first:
                    self.first[iid] = (ts, price)

    def report(self, marks: Mapping[str, Decimal], periods: int, periods_per_year: float | None) -> dict[str, Any]:
        """Per instrument: first and last mark and the return between them; overall: their equal-weight mean,
        annualised over the run's `periods` like the strategy's return."""
        per: dict[str, Any] = {}
        for iid, (ts, first) in sorted(self.first.items()):
            last = marks.get(iid, first)
            per[iid] = {"first_ts": ts, "first_price": first, "last_price": last,
                        "return": float(last / first) - 1.0 if first > 0 else None}
        rets = [r["return"] for r in per.values() if r["return"] is not None]
        total = math.fsum(rets) / len(rets) if rets else None
        annual = None
        if total is not None and periods_per_year and periods > 0 and total > -1:
            try:
                annual = _none_if_bad((1.0 + total) ** (periods_per_year / periods) - 1.0)
            except OverflowError:
                annual = None
        return {"instruments": per, "return": total, "annualized_return": annual}


def instrument_statistics(trips: RoundTrips) -> dict[str, dict[str, Any]]:
    """Per instrument, what its own trips made: closed round trips, wins, win rate, profit factor, PnL after the
    fees of its trips (in the trips' currency), fees and fills — the open trip's fills and fees included."""
    out: dict[str, dict[str, Any]] = {}
    with localcontext(_CTX):
        for t in trips.closed:
            s = out.setdefault(t.instrument_id, _instrument_row(t.currency))
            pnl = t.pnl
            s["round_trips"] += 1
            s["wins"] += pnl > 0
            s["gross_win"] += max(pnl, _ZERO)
            s["gross_loss"] -= min(pnl, _ZERO)
            s["trips_pnl"] += pnl
            s["fees"] += t.fees
            s["fills"] += t.fills
        for iid, t in trips.open.items():
            s = out.setdefault(iid, _instrument_row(t.currency))
            s["fees"] += t.fees
            s["fills"] += t.fills
    for s in out.values():
        gross_win, gross_loss = s.pop("gross_win"), s.pop("gross_loss")
        s["win_rate"] = s["wins"] / s["round_trips"] if s["round_trips"] else None
        s["profit_factor"] = float(gross_win / gross_loss) if gross_loss > 0 else None
    return dict(sorted(out.items()))


def _instrument_row(currency: str) -> dict[str, Any]:
    return {"currency": currency, "round_trips": 0, "wins": 0, "gross_win": _ZERO, "gross_loss": _ZERO,
            "trips_pnl": _ZERO, "fees": _ZERO, "fills": 0}


def statistics(curve: EquityCurve, trips: "Iterable[RoundTrip] | RoundTrips",
               fills: Sequence[Mapping[str, Any]] | None = None, periods_per_year: float | None = None, *,
               currency: str | None = None, multipliers: Mapping[str, Decimal] | None = None,
               risk_free_rate: float | Decimal | None = None) -> dict[str, Any]:
    """The run's figures: Decimals for money (equity, PnL, fees), floats for ratios, None where undefined.

    `trips`: closed RoundTrip, or a RoundTrips fold. `fills`: OrderFilled payloads (notional × `multipliers[iid]`,
    default 1); or None to take the fill count, traded notional and fees from the RoundTrips fold, which saw
    every fill. Traded notional is taken to be in the equity
    currency for turnover. `fees_paid` counts fees charged in `currency` (default: the only fee currency; None
    when fees were charged in several — see `fees_by_currency`). `periods_per_year` (None: the samples' calendar)
    and `risk_free_rate` (annual, None: 0) annualise returns, Sharpe and Sortino; `periods_per_year_basis` says
    which decided and how."""
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
    out["start_ts"] = samples[0][0] if n else None
    out["end_ts"] = samples[-1][0] if n else None
    out["duration_ns"] = samples[-1][0] - samples[0][0] if n else None
    out["start_equity"] = start
    out["end_equity"] = end
    out["samples"] = n
    out["total_return"] = float(end / start) - 1.0 if n and start > 0 else None

    calendar = sample_calendar(samples)
    if periods_per_year:
        ppy: float | None = float(periods_per_year)
        out["periods_per_year_basis"] = "given"
    else:
        ppy = calendar.periods_per_year if calendar is not None else None
        out["periods_per_year_basis"] = calendar.describe() if calendar is not None else "too few samples"
    out["periods_per_year"] = ppy
    out["trading_days_per_year"] = calendar.trading_days_per_year if calendar is not None else None
    out["samples_per_trading_day"] = calendar.samples_per_day if calendar is not None else None
    rate = float(risk_free_rate) if risk_free_rate is not None else 0.0
    out["risk_free_rate"] = rate
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
        if rate:
            per_period = (1.0 + rate) ** (1.0 / ppy) - 1.0
            rets = array("d", (r - per_period for r in rets))
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

        out["exposure_time"] = sum(curve.exposed) / n if n else None

        avg_equity = sum(curve.equity, _ZERO) / n if n else _ZERO
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
