"""The simulated venue: deterministic matching of orders against the market history being replayed.

The engine calls `start(now)` once, `on_market(name, data, ts)` for every Bar / TradeTick / QuoteTick before the
strategy sees it, `submit(order, now)` with an OrderSubmitted payload, `cancel(instrument_id, client_order_id,
now)` and `after_commit()` (a no-op here). Each returns the execution events it causes as (name, payload,
ts_event) tuples. The venue keeps its own account (balances, positions, locks) updated by its own fills, so
its checks depend only on what it has emitted. Event time only; nothing random.

Config (a dict; `load_venue_config` reads it from TOML or JSON; every key optional)::

    name = "SIM"                  # venue name in events; trade ids are "SIM-1", "SIM-2" …, venue order ids "SIM-O1" …
    starting_balances = { USDT = "10000", BTC = "0.5" }   # default: 1000000 of each quote currency defined at start
    latency_ms = 50               # or latency_ns = 50_000_000 (not both); default 0
    market_fill = "next_open"     # or "same_close"
    volume_participation = 0.25   # share of each event's volume our fills may take, (0, 1]; "unlimited": no cap
    maker_fee = "0.0002"          # overrides the instrument's maker_fee / taker_fee rates
    taker_fee = "0.0005"
    account_type = "cash"         # or "margin"
    leverage = "3"                # margin accounts only; default 1
    emit_account_state = false    # true: an AccountState (reported) after every call that filled
    report_currency = "USDT"      # read by the research runtime for statistics; ignored here

Time and latency
- An order submitted at `now` arrives at now + latency; it is accepted or rejected at arrival (ts_event = arrival);
  with latency 0 that happens inside submit(). A cancel arrives the same way and is answered at arrival
  (OrderCanceled reason "requested", or OrderCancelRejected "unknown order" / "order already filled" …); the order
  can still fill before the cancel arrives. Arrivals and expiries run in time order whenever time advances.
- An order can fill only on data after its arrival: a trade or quote with ts >= arrival, a bar whose close time
  (its ts_event) is > arrival. A bar is indivisible: it is matched whole against every eligible order.

First contact (market orders, marketable limits, IOC/FOK)
- "next_open" (default): an order meets the market at the first price of the next eligible event: a bar's open
  (fill ts = max(open_ts, arrival)), a trade's price, the ask (buys) or bid (sells) of a quote.
- "same_close": at arrival the order meets the last price the venue has seen for the instrument — the close of the
  last bar (so with latency 0 a market order fills inside submit()), the last trade, the last quote's ask/bid —
  with the volume that event has left; fill ts = arrival. Without any price yet it waits for the next event.
- At first contact a market order fills at that price, a limit order that crosses it (buy: price <= limit) fills
  at that price; both TAKER. A limit that does not cross rests. A market order's remainder (volume cap) keeps
  taking the first price of later events.
- IOC fills what first contact allows and is canceled for the rest (reason "ioc_remainder"); FOK fills its whole
  quantity at first contact or is canceled with nothing filled ("fok_not_filled"). IOC/FOK stops are rejected.

Resting orders against bars (intrabar path: bullish close >= open O→L→H→C, bearish O→H→L→C, linear between)
- Buy limit: if the open is <= limit (a gap through it) it fills at the open, else at the limit when the path
  reaches it (low <= limit). Sell limit mirrored. Both MAKER: a resting order made the liquidity; the gap fill at
  the open is the auction-like price bar backtesters conventionally give.
- Stops trigger (OrderTriggered) where the path first reaches the trigger (buy: price >= trigger). A stop-market
  then fills as TAKER at the price where it triggered: the trigger, or the open when the open is already beyond it
  (buy: max(trigger, open)). A stop-limit becomes a limit at the trigger point: if the limit crosses the price
  there it fills at that price (TAKER), else it rests and fills at its limit (MAKER) if the rest of the path
  reaches it. Stops do not trigger at arrival, only on later data (an open beyond the trigger triggers at the open).
- ts_event of what happens on a bar: max(open_ts, the order's arrival) at the open, the bar's close time later on
  the path. on_market lists its events in ts order (a fill at the open precedes an arrival later in the bar).
Resting orders against ticks: a trade at or through the limit (buy: price <= limit) fills a resting limit at its
limit (MAKER); a quote fills it when the ask (buy) / bid (sell) is at or through it. Stops trigger on trade prices,
and on the ask (buy stops) / bid (sell stops) of quotes, and fill at that price.

Volume cap, priority, fees
- Per bar, at most volume_participation × volume is filled across all orders on the instrument (per trade: × its
  quantity; per quote: × the ask size for buys, × the bid size for sells). Orders take it in path order: the
  earlier position on the path first, then the better price (the nearer to the leg's start; at one point market
  orders before limits, higher bids / lower offers first), then time of arrival. Partial quantities are rounded
  down to the size increment; the remainder stays working.
- fee = price × quantity × multiplier × rate, quantized to 18 places, in the quote currency; rate = taker_fee for
  TAKER fills, maker_fee for MAKER ones (config overrides, else the instrument's; negative is a rebate).

Rejects at arrival (OrderRejected reason_code, reason), in this order
- UNKNOWN_INSTRUMENT: no InstrumentDefined for it. DUPLICATE_CLIENT_ORDER_ID. INVALID_QUANTITY: quantity <= 0.
  INVALID_PRICE: a limit without price, a stop without trigger. OTHER: IOC/FOK stops, GTD without expire_ts,
  post-only stop-limits.
- POST_ONLY_WOULD_TAKE: a post-only market/stop-market order, or a post-only limit that crosses the last price seen
  (buy: limit >= last bar close / last trade / ask). Post-only orders rest from the start (never TAKER).
- REDUCE_ONLY_WOULD_INCREASE: no position (the net of this venue's fills in the run), a position on the order's
  side, or a quantity beyond the position. At
  fill time a reduce-only order never fills beyond what closes the position; with nothing left to reduce it is
  canceled ("reduce_only").
- INSUFFICIENT_BALANCE, cash accounts (spot): a buy needs free quote >= quantity × price × (1 + taker fee) —
  price = the limit, the trigger of a stop-market, or the last price for a market order (no check while no price
  is known); a sell needs free base >= quantity. Free = total − what working orders lock (their leaves × the same
  per-unit amount). Fills are not re-checked: a market order filling above its check price can overdraw slightly.
- INSUFFICIENT_BALANCE, margin accounts (and derivatives in any account): an order that would increase the
  instrument's exposure is refused if Σ |holding| × price × multiplier over the instruments quoted in its quote
  currency — this one at its order price, including working orders on the same side — would exceed leverage ×
  equity (quote balance + spot holdings and open derivative PnL at the last prices). Balances may go negative.
Expiry: GTD orders expire (OrderExpired, ts_event = expire_ts) and DAY orders at the next UTC midnight after
arrival. A tick at or after the expiry, or a bar closing after it, finds the order expired; a bar closing exactly
at the expiry is still matched.
Account: start() emits an AccountState (reported=True) with the starting balances. Fills move balances the way the
portfolio projection folds them (spot: base ± qty, quote ∓ qty × price; derivatives: realized PnL into settlement;
fee from the fee currency); an AccountState after fills only when emit_account_state is true.
"""
from __future__ import annotations

import heapq
import json
import math
import tomllib
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

from handlers.venues.sim.fills import MAKER, STOPS, TAKER, Plan, bar_path, plan_fill
from projections.accounting import Position, book_fill
from schemas.decimals import ARITHMETIC as _CTX
from schemas.decimals import ONE as _ONE
from schemas.decimals import Q18, exact_text, q18
from schemas.decimals import ZERO as _ZERO
from schemas.errors import TapeError
from schemas.names import PRICES

DAY_NS = 86_400 * 1_000_000_000
_DEFAULT_BALANCE = Decimal(1_000_000)
_MARKET = frozenset(PRICES)
_ARRIVE, _EXPIRE = 0, 1  # ranks in the timed heap: at one instant arrivals run before expiries

PENDING, WORKING = "PENDING", "WORKING"
FILLED, CANCELED, REJECTED, EXPIRED = "FILLED", "CANCELED", "REJECTED", "EXPIRED"

CONFIG_KEYS = ("name", "starting_balances", "latency_ms", "latency_ns", "market_fill", "volume_participation",
               "maker_fee", "taker_fee", "account_type", "leverage", "emit_account_state", "report_currency")

Emitted = tuple[str, dict[str, Any], int]


class VenueConfigError(TapeError):
    """The simulated venue's configuration has an unknown key or a value it cannot use."""


# ---- configuration -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VenueConfig:
    """The validated configuration (see the module docstring for the meaning of each key)."""

    name: str = "SIM"
    starting_balances: dict[str, Decimal] | None = None
    latency_ns: int = 0
    market_fill: str = "next_open"
    volume_participation: Decimal | None = _ONE  # None: no volume cap
    maker_fee: Decimal | None = None
    taker_fee: Decimal | None = None
    account_type: str = "cash"
    leverage: Decimal = _ONE
    emit_account_state: bool = False


def _decimal(value: Any, what: str, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise VenueConfigError(f"{where}: {what} must be a number or a decimal string, e.g. \"0.001\"; got {value!r}")
    try:
        d = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise VenueConfigError(f"{where}: {what} = {value!r} is not a decimal number; write it like "
                               f"\"0.001\"") from None
    if not d.is_finite():
        raise VenueConfigError(f"{where}: {what} = {value!r} must be finite")
    if d.as_tuple().exponent < -18:  # type: ignore[operator]
        raise VenueConfigError(f"{where}: {what} = {value!r} has more than 18 decimal places; round it")
    return d


def _normalize(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Validated, typed copy of the keys given (Decimals for amounts and rates); raises VenueConfigError."""
    if not isinstance(raw, dict):
        raise VenueConfigError(f"{where}: must be a table/object of settings, got {type(raw).__name__}")
    out: dict[str, Any] = {}
    for key in raw:
        if key not in CONFIG_KEYS:
            raise VenueConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(CONFIG_KEYS)}")
    for key, value in raw.items():
        if key in ("name", "report_currency"):
            if not isinstance(value, str) or not value.strip():
                raise VenueConfigError(f"{where}: {key} must be a non-empty string, got {value!r}")
            out[key] = value
        elif key == "starting_balances":
            if not isinstance(value, dict):
                raise VenueConfigError(f"{where}: starting_balances must be a table of currency = \"amount\", "
                                       f"e.g. {{ USDT = \"10000\" }}")
            bal = {}
            for cur, amount in value.items():
                if not isinstance(cur, str) or not cur:
                    raise VenueConfigError(f"{where}: starting_balances has an empty currency name")
                bal[cur] = _decimal(amount, f"starting_balances.{cur}", where)
            out[key] = bal
        elif key in ("latency_ms", "latency_ns"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    isinstance(value, float) and not math.isfinite(value)) or value < 0:
                raise VenueConfigError(f"{where}: {key} must be a number >= 0, got {value!r}")
            if key == "latency_ns" and not isinstance(value, int):
                raise VenueConfigError(f"{where}: latency_ns must be a whole number of nanoseconds, got {value!r}")
            out[key] = value
        elif key == "market_fill":
            if value not in ("next_open", "same_close"):
                raise VenueConfigError(f"{where}: market_fill must be \"next_open\" or \"same_close\", got {value!r}")
            out[key] = value
        elif key == "volume_participation":
            if value is None or value == "unlimited":
                out[key] = "unlimited"
                continue
            d = _decimal(value, key, where)
            if not (0 < d <= 1):
                raise VenueConfigError(f"{where}: volume_participation must be in (0, 1] or \"unlimited\", "
                                       f"got {value!r}")
            out[key] = d
        elif key in ("maker_fee", "taker_fee"):
            d = _decimal(value, key, where)
            if not (-1 < d < 1):
                raise VenueConfigError(f"{where}: {key} is a rate (0.001 = 0.1%), got {value!r}")
            out[key] = d
        elif key == "account_type":
            if value not in ("cash", "margin"):
                raise VenueConfigError(f"{where}: account_type must be \"cash\" or \"margin\", got {value!r}")
            out[key] = value
        elif key == "leverage":
            d = _decimal(value, key, where)
            if d <= 0:
                raise VenueConfigError(f"{where}: leverage must be > 0, got {value!r}")
            out[key] = d
        elif key == "emit_account_state":
            if not isinstance(value, bool):
                raise VenueConfigError(f"{where}: emit_account_state must be true or false, got {value!r}")
            out[key] = value
    if "latency_ms" in out and "latency_ns" in out:
        raise VenueConfigError(f"{where}: give latency_ms or latency_ns, not both")
    return out


def parse_venue_config(raw: dict[str, Any] | None, where: str = "venue config") -> VenueConfig:
    """The typed configuration from a dict (as loaded, or as recorded); raises VenueConfigError naming the key."""
    c = _normalize(raw or {}, where)
    latency = c.get("latency_ns", 0)
    if "latency_ms" in c:
        latency = int(Decimal(str(c["latency_ms"])) * 1_000_000)
    part = c.get("volume_participation", _ONE)
    return VenueConfig(name=c.get("name", "SIM"), starting_balances=c.get("starting_balances"), latency_ns=latency,
                       market_fill=c.get("market_fill", "next_open"),
                       volume_participation=None if part == "unlimited" else part,
                       maker_fee=c.get("maker_fee"), taker_fee=c.get("taker_fee"),
                       account_type=c.get("account_type", "cash"), leverage=c.get("leverage", _ONE),
                       emit_account_state=c.get("emit_account_state", False))


def load_venue_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a venue config file (.toml, or .json); the dict is what the run records and passes on."""
    p = Path(path)
    where = f"venue config {p}"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VenueConfigError(f"{where}: no such file; check the --venue path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise VenueConfigError(f"{where}: cannot read it ({e.__class__.__name__}: {e})") from None
    if p.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise VenueConfigError(f"{where}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    else:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            hint = "" if p.suffix.lower() == ".toml" else " (name the file .json for JSON)"
            raise VenueConfigError(f"{where}: invalid TOML: {e}{hint}") from None
    normalized = _normalize(raw, where)
    parse_venue_config(normalized, where)
    return normalized


# ---- the venue ---------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Order:
    """The venue's copy of one order and how far it has got."""

    seq: int
    cid: str
    iid: str
    buy: bool
    side: str
    order_type: str
    quantity: Decimal
    price: Decimal | None
    trigger: Decimal | None
    tif: str
    expire_ts: int | None
    post_only: bool
    reduce_only: bool
    arrival: int
    leaves: Decimal
    venue_order_id: str | None = None
    status: str = PENDING
    triggered: bool = False
    fresh: bool = True  # has not met the market yet (see "first contact")
    lock_key: str | None = None
    lock_per_unit: Decimal = _ZERO


class SimulatedVenue:
    """Matches orders against replayed market data with latency, volume caps, fees and its own account."""

    def __init__(self, config: dict[str, Any] | None, state: Any):
        self.config = parse_venue_config(config)
        self.name = self.config.name
        self.state = state
        self.balances: dict[str, Decimal] = {}
        self.positions: dict[str, Position] = {}  # the venue's own netting positions, from its own fills
        self._instruments = state.market.instruments
        self._same_close = self.config.market_fill == "same_close"
        self._participation = self.config.volume_participation
        self._orders: dict[str, _Order] = {}
        self._book: dict[str, list[_Order]] = {}  # working orders per instrument, in arrival order
        self._timed: list[tuple[int, int, int, str, Any]] = []  # (time, rank, seq, kind, item)
        self._seq = 0
        self._trade_n = 0
        self._order_n = 0
        self._last: dict[str, tuple[str, dict[str, Any]]] = {}  # iid → the last market event seen (name, data)
        self._used: dict[str, list[Any]] = {}  # iid → [data, used (buys or all), used by sells (quotes)]
        self._filled = False

    # ---- the engine's calls ------------------------------------------------------------------------------

    def start(self, now: int) -> list[Emitted]:
        """The opening account: starting balances from config (default 1,000,000 per quote currency defined)."""
        bal = self.config.starting_balances
        if bal is None:
            bal = {i.quote_currency: _DEFAULT_BALANCE for i in self._instruments.values()}
        self.balances = {cur: bal[cur] for cur in sorted(bal)}
        return [("AccountState", self._account_state(), now)]

    def on_market(self, name: str, data: dict[str, Any], ts: int) -> list[Emitted]:
        """Run arrivals and expiries due by `ts`, then match the instrument's working orders against the event."""
        if name not in _MARKET:
            return []
        iid = data["instrument_id"]
        out: list[Emitted] = []
        timed = self._timed
        is_bar = name == "Bar"
        if timed and timed[0][0] <= ts:
            with localcontext(_CTX):
                self._run_timed(ts, out, before_bar=is_bar)
        book = self._book.get(iid)
        if book:
            self._match(name, data, ts, iid, book, out)
        if is_bar and timed and timed[0][0] <= ts:  # expiries at the bar's close, after it matched
            with localcontext(_CTX):
                self._run_timed(ts, out, before_bar=False)
        self._last[iid] = (name, data)
        if out:
            self._after(out)
            if len(out) > 1:  # fills at a bar's open can precede arrivals later in the bar: list in time order
                out.sort(key=_ts)
        return out

    def submit(self, order: dict[str, Any], now: int) -> list[Emitted]:
        """Send an order: it arrives (accepted or rejected, maybe filled) at now + latency."""
        out: list[Emitted] = []
        with localcontext(_CTX):
            self._run_timed(now, out, before_bar=False)
            self._seq += 1
            o = _Order(seq=self._seq, cid=order["client_order_id"], iid=order["instrument_id"],
                       buy=order["side"] == "BUY", side=order["side"], order_type=order["order_type"],
                       quantity=order["quantity"], price=order.get("price"), trigger=order.get("trigger_price"),
                       tif=order.get("time_in_force") or "GTC", expire_ts=order.get("expire_ts"),
                       post_only=bool(order.get("post_only")), reduce_only=bool(order.get("reduce_only")),
                       arrival=now + self.config.latency_ns, leaves=order["quantity"])
            heapq.heappush(self._timed, (o.arrival, _ARRIVE, o.seq, "order", o))
            self._run_timed(now, out, before_bar=False)
        self._after(out)
        return out

    def cancel(self, instrument_id: str, client_order_id: str, now: int) -> list[Emitted]:
        """Send a cancel: answered (OrderCanceled or OrderCancelRejected) at now + latency."""
        out: list[Emitted] = []
        with localcontext(_CTX):
            self._run_timed(now, out, before_bar=False)
            self._seq += 1
            heapq.heappush(self._timed, (now + self.config.latency_ns, _ARRIVE, self._seq, "cancel",
                                         (instrument_id, client_order_id)))
            self._run_timed(now, out, before_bar=False)
        self._after(out)
        return out

    def after_commit(self) -> None:
        """Nothing to send: the simulation acts inside the engine's calls."""

    # ---- time ---------------------------------------------------------------------------------------------

    def _run_timed(self, ts: int, out: list[Emitted], *, before_bar: bool) -> None:
        """Arrivals and expiries due by ts, in time order (before a bar: not the expiries at its close)."""
        timed = self._timed
        while timed:
            t, rank = timed[0][0], timed[0][1]
            if t > ts or (before_bar and t == ts and rank == _EXPIRE):
                break
            _, _, _, kind, item = heapq.heappop(timed)
            if kind == "order":
                self._arrive(item, out)
            elif kind == "cancel":
                self._cancel_arrives(item[0], item[1], t, out)
            elif item.status == WORKING:  # expiry
                self._close(item, EXPIRED)
                out.append(("OrderExpired", {"instrument_id": item.iid, "client_order_id": item.cid,
                                             "venue_order_id": item.venue_order_id}, t))

    def _arrive(self, o: _Order, out: list[Emitted]) -> None:
        rejected = self._check(o)
        if rejected is not None:
            o.status = REJECTED
            self._orders.setdefault(o.cid, o)
            out.append(("OrderRejected", {"instrument_id": o.iid, "client_order_id": o.cid,
                                          "reason_code": rejected[0], "reason": rejected[1]}, o.arrival))
            return
        self._order_n += 1
        o.venue_order_id = f"{self.name}-O{self._order_n}"
        o.status = WORKING
        self._orders[o.cid] = o
        self._book.setdefault(o.iid, []).append(o)
        self._lock(o)
        out.append(("OrderAccepted", {"instrument_id": o.iid, "client_order_id": o.cid,
                                      "venue_order_id": o.venue_order_id}, o.arrival))
        expire = o.expire_ts if o.tif == "GTD" else (o.arrival // DAY_NS + 1) * DAY_NS if o.tif == "DAY" else None
        if expire is not None:
            if expire <= o.arrival:
                self._close(o, EXPIRED)
                out.append(("OrderExpired", {"instrument_id": o.iid, "client_order_id": o.cid,
                                             "venue_order_id": o.venue_order_id}, o.arrival))
                return
            self._seq += 1
            heapq.heappush(self._timed, (expire, _EXPIRE, self._seq, "expire", o))
        if o.post_only:
            o.fresh = False
        elif self._same_close and o.order_type in ("MARKET", "LIMIT") and o.iid in self._last:
            name, data = self._last[o.iid]
            px = _last_seen_price(name, data, o.buy)
            plan = plan_fill(buy=o.buy, order_type=o.order_type, limit=o.price, trigger=o.trigger, triggered=False,
                             fresh=True, path=(px,), gap_fill_at_first=False)
            o.fresh = False
            self._execute(o, plan, name, data, o.arrival, out)

    def _cancel_arrives(self, iid: str, cid: str, t: int, out: list[Emitted]) -> None:
        o = self._orders.get(cid)
        if o is None or o.iid != iid:
            reason = "unknown order"
        elif o.status != WORKING:
            reason = f"order already {o.status.lower()}"
        else:
            self._close(o, CANCELED)
            out.append(("OrderCanceled", {"instrument_id": iid, "client_order_id": cid,
                                          "venue_order_id": o.venue_order_id, "reason": "requested"}, t))
            return
        out.append(("OrderCancelRejected", {"instrument_id": iid, "client_order_id": cid,
                                            "venue_order_id": o.venue_order_id if o is not None else None,
                                            "reason": reason}, t))

    # ---- matching -----------------------------------------------------------------------------------------

    def _match(self, name: str, data: dict[str, Any], ts: int, iid: str, book: list[_Order],
               out: list[Emitted]) -> None:
        if name == "Bar":
            lo, hi = data["low"], data["high"]
            buy_range = sell_range = (lo, hi)
            gap = True
        elif name == "TradeTick":
            buy_range = sell_range = (data["price"], data["price"])
            gap = False
        else:
            buy_range, sell_range = (data["ask_price"],) * 2, (data["bid_price"],) * 2
            gap = False
        touched = []
        for o in book:
            if o.arrival > ts or (gap and o.arrival == ts):
                continue  # not at the venue before this event's prices
            if o.fresh:
                o.fresh = False
                touched.append((o, True))
                continue
            lo, hi = buy_range if o.buy else sell_range
            t = o.order_type
            if t == "MARKET" or (t == "STOP_MARKET" and o.triggered):
                touched.append((o, False))
            elif t == "LIMIT" or o.triggered:  # a limit, or a triggered stop-limit: needs the price at the limit
                if (lo <= o.price) if o.buy else (hi >= o.price):  # type: ignore[operator]
                    touched.append((o, False))
            elif (hi >= o.trigger) if o.buy else (lo <= o.trigger):  # type: ignore[operator]  # an armed stop
                touched.append((o, False))
        if not touched:
            return
        with localcontext(_CTX):
            self._used[iid] = [data, _ZERO, _ZERO]
            if name == "Bar":
                buy_path = sell_path = bar_path(data["open"], data["high"], data["low"], data["close"])
            else:
                buy_path, sell_path = (buy_range[0],), (sell_range[0],)
            plans: list[tuple[tuple[int, Decimal], tuple[int, Decimal], int, _Order, Plan | None]] = []
            for o, fresh in touched:
                path = buy_path if o.buy else sell_path
                plan = plan_fill(buy=o.buy, order_type=o.order_type, limit=o.price, trigger=o.trigger,
                                 triggered=o.triggered, fresh=fresh, path=path, gap_fill_at_first=gap)
                if plan is not None:
                    plans.append((plan.key(path), _aggressiveness(o), o.seq, o, plan))
                elif fresh and o.tif in ("IOC", "FOK"):
                    plans.append(((0, _ZERO), _aggressiveness(o), o.seq, o, None))
            plans.sort(key=_plan_order)
            for _, _, _, o, plan in plans:
                if gap:
                    at = max(data["open_ts"], o.arrival) if plan is None or plan.leg == 0 else ts
                else:
                    at = ts
                self._execute(o, plan, name, data, at, out)

    def _execute(self, o: _Order, plan: Plan | None, name: str, data: dict[str, Any], at: int,
                 out: list[Emitted]) -> None:
        """Apply one plan to one order: trigger, fill what the volume and reduce-only allow, IOC/FOK remainder."""
        if plan is not None and plan.triggered and not o.triggered:
            o.triggered = True
            out.append(("OrderTriggered", {"instrument_id": o.iid, "client_order_id": o.cid,
                                           "venue_order_id": o.venue_order_id}, at))
        immediate = o.tif in ("IOC", "FOK")
        if plan is not None and plan.price is not None and (not immediate or plan.leg == 0):
            qty = o.leaves
            if o.reduce_only:
                held = self._position_quantity(o.iid)
                reducible = -held if o.buy else held
                if reducible <= 0:
                    self._close(o, CANCELED)
                    out.append(("OrderCanceled", {"instrument_id": o.iid, "client_order_id": o.cid,
                                                  "venue_order_id": o.venue_order_id, "reason": "reduce_only"}, at))
                    return
                qty = min(qty, reducible)
            avail = self._available(o.iid, name, data, o.buy)
            if avail is not None and avail < qty:
                qty = self._round_down(o.iid, avail)
            if o.tif == "FOK" and qty < o.leaves:
                qty = _ZERO
            if qty > 0:
                self._fill(o, qty, plan.price, plan.liquidity, name, data, at, out)
        if immediate and o.status == WORKING:
            reason = "ioc_remainder" if o.tif == "IOC" else "fok_not_filled"
            self._close(o, CANCELED)
            out.append(("OrderCanceled", {"instrument_id": o.iid, "client_order_id": o.cid,
                                          "venue_order_id": o.venue_order_id, "reason": reason}, at))

    def _available(self, iid: str, name: str, data: dict[str, Any], buy: bool) -> Decimal | None:
        """Quantity the event still offers our orders: participation × its volume minus what we already took."""
        if self._participation is None:
            return None
        used = self._used.get(iid)
        if used is None or used[0] is not data:
            used = self._used[iid] = [data, _ZERO, _ZERO]
        if name == "Bar":
            volume, taken = data["volume"], used[1]
        elif name == "TradeTick":
            volume, taken = data["quantity"], used[1]
        elif buy:
            volume, taken = data["ask_size"], used[1]
        else:
            volume, taken = data["bid_size"], used[2]
        return max(_ZERO, self._participation * volume - taken)

    def _round_down(self, iid: str, qty: Decimal) -> Decimal:
        inc = self._instruments[iid].size_increment
        if inc > 0:
            return (qty / inc).to_integral_value(ROUND_FLOOR) * inc
        return qty.quantize(Q18, rounding=ROUND_FLOOR)

    def _fill(self, o: _Order, qty: Decimal, price: Decimal, liquidity: str, name: str, data: dict[str, Any],
              at: int, out: list[Emitted]) -> None:
        inst = self._instruments[o.iid]
        used = self._used.get(o.iid)
        if used is not None and used[0] is data:
            used[2 if (name == "QuoteTick" and not o.buy) else 1] += qty
        rate = self._rate(inst, liquidity)
        fee = (price * qty * inst.multiplier * rate).quantize(Q18)
        self._trade_n += 1
        out.append(("OrderFilled", {"instrument_id": o.iid, "client_order_id": o.cid,
                                    "venue_order_id": o.venue_order_id, "trade_id": f"{self.name}-{self._trade_n}",
                                    "side": o.side, "last_price": price, "last_quantity": qty, "fee": fee,
                                    "fee_currency": inst.quote_currency, "liquidity_side": liquidity}, at))
        self._account_fill(inst, o.buy, qty, price, fee)
        o.leaves -= qty
        self._filled = True
        if o.leaves <= 0:
            self._close(o, FILLED)

    def _rate(self, inst: Any, liquidity: str) -> Decimal:
        if liquidity == MAKER:
            return self.config.maker_fee if self.config.maker_fee is not None else inst.maker_fee
        return self.config.taker_fee if self.config.taker_fee is not None else inst.taker_fee

    def _close(self, o: _Order, status: str) -> None:
        o.status = status
        book = self._book.get(o.iid)
        if book is not None and o in book:
            book.remove(o)
            if not book:
                del self._book[o.iid]

    def _after(self, out: list[Emitted]) -> None:
        if self._filled:
            self._filled = False
            if self.config.emit_account_state:
                out.append(("AccountState", self._account_state(), max(e[2] for e in out)))

    # ---- the venue's account -------------------------------------------------------------------------------

    def _account_fill(self, inst: Any, buy: bool, qty: Decimal, price: Decimal, fee: Decimal) -> None:
        """Move balances and the netting position by the rule the portfolio projection folds the same fill with."""
        pos = self.positions.get(inst.instrument_id)
        if pos is None:
            pos = self.positions[inst.instrument_id] = Position.of(inst.instrument_id, inst)
        book_fill(pos, self.balances, inst, "BUY" if buy else "SELL", qty, price, fee, inst.quote_currency, 0)

    def _locked(self, key: str) -> Decimal:
        total = _ZERO
        for book in self._book.values():
            for o in book:
                if o.lock_key == key:
                    total += o.leaves * o.lock_per_unit
        return total

    def _lock(self, o: _Order) -> None:
        inst = self._instruments[o.iid]
        if self.config.account_type != "cash" or inst.kind != "SPOT":
            return
        if o.buy:
            ref = self._reference_price(o)
            if ref is not None:
                o.lock_key = inst.quote_currency
                o.lock_per_unit = ref * inst.multiplier * (1 + max(self._rate(inst, TAKER), _ZERO))
        else:
            o.lock_key, o.lock_per_unit = inst.base_currency, _ONE

    def _account_state(self) -> dict[str, Any]:
        balances = []
        for cur in sorted(self.balances):
            total = self.balances[cur]
            locked = self._locked(cur).quantize(Q18) if self._book else _ZERO
            balances.append({"currency": cur, "total": total, "free": total - locked, "locked": locked})
        return {"venue": self.name, "balances": balances, "reported": True}

    def _mark(self, iid: str) -> Decimal | None:
        last = self._last.get(iid)
        if last is None:
            return None
        name, data = last
        if name == "Bar":
            return data["close"]
        if name == "TradeTick":
            return data["price"]
        return (data["bid_price"] + data["ask_price"]) / 2

    def _reference_price(self, o: _Order) -> Decimal | None:
        """The price an order is checked at: its limit, a stop-market's trigger, a market order's last price."""
        if o.order_type in ("LIMIT", "STOP_LIMIT"):
            return o.price
        if o.order_type == "STOP_MARKET":
            return o.trigger
        last = self._last.get(o.iid)
        return _last_seen_price(last[0], last[1], o.buy) if last is not None else None

    # ---- checks at arrival ---------------------------------------------------------------------------------

    def _check(self, o: _Order) -> tuple[str, str] | None:
        """(reason_code, reason) when the venue refuses the order, else None."""
        inst = self._instruments.get(o.iid)
        if inst is None:
            return "UNKNOWN_INSTRUMENT", f"instrument {o.iid} is not defined on {self.name}"
        if o.cid in self._orders:
            return "DUPLICATE_CLIENT_ORDER_ID", f"client order id {o.cid} was already used on {self.name}"
        if not o.quantity > 0:
            return "INVALID_QUANTITY", f"quantity {o.quantity} must be positive"
        if o.order_type in ("LIMIT", "STOP_LIMIT") and (o.price is None or o.price <= 0):
            return "INVALID_PRICE", f"{o.order_type} order needs a positive price"
        if o.order_type in STOPS and (o.trigger is None or o.trigger <= 0):
            return "INVALID_PRICE", f"{o.order_type} order needs a positive trigger_price"
        if o.order_type in STOPS and o.tif in ("IOC", "FOK"):
            return "OTHER", f"{o.tif} is supported for MARKET and LIMIT orders only"
        if o.tif == "GTD" and o.expire_ts is None:
            return "OTHER", "GTD order needs expire_ts"
        if o.post_only:
            if o.order_type in ("MARKET", "STOP_MARKET"):
                return "POST_ONLY_WOULD_TAKE", f"a post-only {o.order_type} order always takes liquidity"
            if o.order_type == "STOP_LIMIT":
                return "OTHER", "post-only is supported for LIMIT orders only"
            last = self._last.get(o.iid)
            if last is not None:
                px = _last_seen_price(last[0], last[1], o.buy)
                if (o.price >= px) if o.buy else (o.price <= px):  # type: ignore[operator]
                    return "POST_ONLY_WOULD_TAKE", f"post-only {o.side} at {o.price} crosses the market at {px}"
        if o.reduce_only:
            held = self._position_quantity(o.iid)
            reducible = -held if o.buy else held
            if reducible <= 0 or o.quantity > reducible:
                return "REDUCE_ONLY_WOULD_INCREASE", (f"reduce-only {o.side} {o.quantity} against a position of "
                                                      f"{held} would increase it")
        if self.config.account_type == "cash" and inst.kind == "SPOT":
            return self._check_cash(o, inst)
        return self._check_margin(o, inst)

    def _check_cash(self, o: _Order, inst: Any) -> tuple[str, str] | None:
        if o.buy:
            ref = self._reference_price(o)
            if ref is None:
                return None
            need = o.quantity * ref * inst.multiplier * (1 + max(self._rate(inst, TAKER), _ZERO))
            cur = inst.quote_currency
        else:
            need, cur = o.quantity, inst.base_currency
        free = self.balances.get(cur, _ZERO) - self._locked(cur)
        if need > free:
            return "INSUFFICIENT_BALANCE", (f"{o.side} {o.quantity} {o.iid} needs {_txt(need)} {cur}, "
                                            f"{_txt(free)} free")
        return None

    def _holding(self, inst: Any) -> Decimal:
        if inst.kind == "SPOT":
            return self.balances.get(inst.base_currency, _ZERO)
        return self._position_quantity(inst.instrument_id)

    def _position_quantity(self, iid: str) -> Decimal:
        pos = self.positions.get(iid)
        return pos.quantity if pos is not None else _ZERO

    def _check_margin(self, o: _Order, inst: Any) -> tuple[str, str] | None:
        ref = self._reference_price(o)
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
            mark = self._mark(other)
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


def _last_seen_price(name: str, data: dict[str, Any], buy: bool) -> Decimal:
    """Where the market stands after an event for one side: bar close, trade price, ask (buy) / bid (sell)."""
    if name == "Bar":
        return data["close"]
    if name == "TradeTick":
        return data["price"]
    return data["ask_price"] if buy else data["bid_price"]


def _aggressiveness(o: _Order) -> tuple[int, Decimal]:
    """Price priority at one point of the path: market orders first, then the higher bid / the lower offer."""
    if o.order_type == "MARKET" or o.order_type == "STOP_MARKET":
        return 0, _ZERO
    return 1, -o.price if o.buy else o.price  # type: ignore[operator]


def _plan_order(item: tuple[Any, ...]) -> tuple[Any, ...]:
    return item[0], item[1], item[2]


def _ts(event: Emitted) -> int:
    return event[2]


def _txt(d: Decimal) -> str:
    return exact_text(q18(d))
