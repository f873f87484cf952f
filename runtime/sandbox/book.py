"""The sandbox's account at the venue: orders, their matching against the replayed market, fills, fees, balances.

Venue-neutral: amounts are Decimals, times are venue ms, refusals are `Reject(reason)`; the wire layer turns
them into Binance codes. Rules (each one is what a client of a real spot venue must cope with):

- Client ids are unique among OPEN orders only (Binance): a new order whose client id equals an open order's is
  refused (`duplicate_order`); once that order is filled or canceled the id is free again and a second order with
  it is created. A missing client id is generated (22 characters, from the seed).
- Order ids and trade ids only increase. Trade ids share each symbol's id space with the public prints.
- An order meets the market at the first unit released after it arrived: a market order fills at that unit's
  first price (a bar's open), a limit that crosses it fills there as taker, one that does not rests and fills at
  its limit as maker when the path trades through it (a bar that opens through it fills at the open); see
  handlers/venues/sim/fills.py, the same rules. IOC fills what that first contact allows and expires the rest; FOK
  fills whole at first contact or expires. Fills of one unit share its traded volume (path order, then order id),
  in lot steps, so a large order fills partially over several units.
- Balances per asset, free and locked: a limit buy locks price × quantity of the quote, a market buy locks
  quantity × last price (or its quote budget), a sell locks the base; a fill pays from the lock (a limit's
  better price is refunded; a market buy pays its cost from its lock, then from the free quote), and credits
  the other asset minus the fee (maker or taker rate of the instrument; buyers pay it in the base, sellers in
  the quote). A market buy that cannot pay the price it meets fills what it can and expires for the rest.
- Every change is announced to the sink as Execution / AccountUpdate / Deposit items (the user data stream).
- An order (and its trades) may be invisible to queries until `visible_at_ms` (server clock): the visibility lag.
"""
from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal, localcontext

from handlers.venues.sim.fills import MAKER, TAKER, Plan, plan_fill
from runtime.sandbox.market import Instrument, MarketUnit
from schemas.decimals import ARITHMETIC, ZERO

OPEN = ("NEW", "PARTIALLY_FILLED")
SIDES = ("BUY", "SELL")
TYPES = ("LIMIT", "MARKET", "LIMIT_MAKER")  # LIMIT_MAKER: post-only, refused when it would take
RESTING = ("LIMIT", "LIMIT_MAKER")
TIME_IN_FORCE = ("GTC", "IOC", "FOK")
CID_ALPHABET = string.ascii_letters + string.digits
FIRST_ORDER_ID = 1


class Reject(Exception):
    """A request the venue refuses; `reason` is venue-neutral, `detail` names the filter or parameter."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A new order as the wire layer parsed it (types checked, business rules not yet)."""

    symbol: str
    side: str
    type: str
    quantity: Decimal | None
    price: Decimal | None = None
    time_in_force: str | None = None
    client_order_id: str | None = None
    quote_order_qty: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Trade:
    """One fill of one of the account's orders."""

    trade_id: int
    order_id: int
    symbol: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_buyer: bool
    is_maker: bool
    visible_at_ms: int


@dataclass(slots=True)
class Order:
    """An order of the account, as the venue holds it."""

    order_id: int
    symbol: str
    client_order_id: str
    side: str
    type: str
    time_in_force: str
    price: Decimal  # 0 for market orders
    orig_qty: Decimal  # 0 for a market buy by quote quantity
    quote_order_qty: Decimal
    time_ms: int
    visible_at_ms: int
    owner: str = "api"  # "api" (placed through the API) or "external" (someone else, e.g. the web UI)
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    update_ms: int = 0
    locked: Decimal = ZERO  # what is still reserved for it: quote for buys, base for sells
    fresh: bool = True  # has not met the market yet
    trades: list[Trade] = field(default_factory=list)
    expiry_reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def buy(self) -> bool:
        return self.side == "BUY"


@dataclass(frozen=True, slots=True)
class Execution:
    """One order event for the user data stream: the order as it stands right after it."""

    order: Order
    execution_type: str  # NEW, TRADE, CANCELED, EXPIRED
    time_ms: int
    trade: Trade | None = None
    cancel_client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """Balances (free, locked) of the assets an event changed."""

    time_ms: int
    balances: tuple[tuple[str, Decimal, Decimal], ...]


@dataclass(frozen=True, slots=True)
class Deposit:
    """A balance change from outside trading (a deposit, or a withdrawal when negative)."""

    asset: str
    delta: Decimal
    time_ms: int


Notice = Execution | AccountUpdate | Deposit


class Ledger:
    """Free and locked amounts per asset."""

    def __init__(self, balances: dict[str, Decimal]):
        self.free: dict[str, Decimal] = dict(balances)
        self.locked: dict[str, Decimal] = {a: ZERO for a in balances}
        self.touched: set[str] = set()

    def ensure(self, asset: str) -> None:
        self.free.setdefault(asset, ZERO)
        self.locked.setdefault(asset, ZERO)

    def lock(self, asset: str, amount: Decimal) -> None:
        self.ensure(asset)
        self.free[asset] -= amount
        self.locked[asset] += amount
        self.touched.add(asset)

    def unlock(self, asset: str, amount: Decimal) -> None:
        self.lock(asset, -amount)

    def credit(self, asset: str, amount: Decimal) -> None:
        self.ensure(asset)
        self.free[asset] += amount
        self.touched.add(asset)

    def spend_locked(self, asset: str, amount: Decimal) -> None:
        self.ensure(asset)
        self.locked[asset] -= amount
        self.touched.add(asset)

    def take_touched(self) -> tuple[tuple[str, Decimal, Decimal], ...]:
        out = tuple((a, self.free[a], self.locked[a]) for a in sorted(self.touched))
        self.touched.clear()
        return out


class Book:
    """The account: places, cancels, finds and matches orders; announces every change to `sink`."""

    def __init__(self, instruments: dict[str, Instrument], balances: dict[str, Decimal], *, seed: int,
                 market_ms: Callable[[], int], server_ms: Callable[[], int],
                 trade_id: Callable[[str], int], last_price: Callable[[str], Decimal | None]):
        self.instruments = instruments
        self.ledger = Ledger(balances)
        self.market_ms = market_ms
        self.server_ms = server_ms
        self.trade_id = trade_id
        self.last_price = last_price
        self.rng = random.Random(f"{seed}:client-ids")
        self.orders: dict[int, Order] = {}
        self.trades: list[Trade] = []
        self.next_order_id = FIRST_ORDER_ID
        self.sink: Callable[[list[Notice]], None] = lambda notices: None
        self._notices: list[Notice] = []

    # ---- placing and canceling -----------------------------------------------------------------------------

    def place(self, req: OrderRequest, *, owner: str = "api", visible_after_ms: int = 0) -> Order:
        """Validate and book a new order (it meets the market at the next unit); Reject when the venue refuses."""
        with localcontext(ARITHMETIC):
            inst = self._instrument(req.symbol)
            order = self._new_order(inst, req, owner, visible_after_ms)
            self.orders[order.order_id] = order
            self._announce(Execution(self._copy(order), "NEW", order.time_ms))
            self._flush(order.time_ms)
            return order

    def cancel(self, symbol: str, order_id: int | None, client_order_id: str | None,
               cancel_client_order_id: str | None = None) -> tuple[Order, str]:
        """Cancel an open order by id or client id; returns it and the cancel's own client id."""
        with localcontext(ARITHMETIC):
            self._instrument(symbol)
            order = self._lookup(symbol, order_id, client_order_id, visible_only=False, prefer_open=True)
            if order is None or not order.is_open:
                raise Reject("cancel_unknown")
            cancel_cid = cancel_client_order_id or self._generated_cid()
            self._close(order, "CANCELED", cancel_cid)
            self._flush(order.update_ms)
            return order, cancel_cid

    def cancel_all(self, symbol: str) -> list[tuple[Order, str]]:
        """Cancel every open order of a symbol."""
        self._instrument(symbol)
        out = []
        for order in [o for o in self.orders.values() if o.symbol == symbol and o.is_open]:
            out.append(self.cancel(symbol, order.order_id, None))
        return out

    def deposit(self, asset: str, amount: Decimal) -> None:
        """Credit (or debit) an asset from outside trading, like a deposit."""
        with localcontext(ARITHMETIC):
            now = self.market_ms()
            self.ledger.credit(asset.upper(), amount)
            self._announce(Deposit(asset.upper(), amount, now))
            self._flush(now)

    # ---- queries (what the venue's database shows: visibility lag applies) -----------------------------------

    def find(self, symbol: str, order_id: int | None, client_order_id: str | None) -> Order:
        """The order a query names (by id, else the latest with the client id); Reject when absent or not visible."""
        self._instrument(symbol)
        order = self._lookup(symbol, order_id, client_order_id, visible_only=True, prefer_open=False)
        if order is None:
            raise Reject("order_not_found")
        return order

    def open_orders(self, symbol: str | None) -> list[Order]:
        if symbol is not None:
            self._instrument(symbol)
        now = self.server_ms()
        return [o for o in self.orders.values()
                if o.is_open and (symbol is None or o.symbol == symbol) and o.visible_at_ms <= now]

    def all_orders(self, symbol: str, *, from_id: int | None, start_ms: int | None, end_ms: int | None,
                   limit: int) -> list[Order]:
        """Orders of a symbol: from an order id up, or in a time window, else the most recent; at most `limit`."""
        self._instrument(symbol)
        now = self.server_ms()
        rows = [o for o in self.orders.values() if o.symbol == symbol and o.visible_at_ms <= now]
        return _window(rows, lambda o: o.order_id, lambda o: o.time_ms, from_id, start_ms, end_ms, limit)

    def my_trades(self, symbol: str, *, order_id: int | None, from_id: int | None, start_ms: int | None,
                  end_ms: int | None, limit: int) -> list[Trade]:
        """The account's trades of a symbol: from a trade id up, in a time window, or the most recent."""
        self._instrument(symbol)
        now = self.server_ms()
        rows = [t for t in self.trades if t.symbol == symbol and t.visible_at_ms <= now
                and (order_id is None or t.order_id == order_id)]
        return _window(rows, lambda t: t.trade_id, lambda t: t.time_ms, from_id, start_ms, end_ms, limit)

    def balances(self) -> list[tuple[str, Decimal, Decimal]]:
        return [(a, self.ledger.free[a], self.ledger.locked[a]) for a in sorted(self.ledger.free)]

    # ---- matching ------------------------------------------------------------------------------------------

    def on_market(self, unit: MarketUnit) -> None:
        """Match the open orders of the unit's symbol against it (fills, expiries), in path then id order."""
        if not unit.matchable:
            return
        with localcontext(ARITHMETIC):
            orders = [o for o in self.orders.values() if o.symbol == unit.symbol and o.is_open]
            if not orders:
                return
            inst = self.instruments[unit.symbol]
            planned: list[tuple[tuple, Order, Plan]] = []
            contact: list[Order] = []  # IOC / FOK: this unit was their one chance
            for o in orders:
                plan = self._plan(o, unit)
                if o.time_in_force in ("IOC", "FOK"):
                    contact.append(o)
                o.fresh = False
                if plan is not None and plan.price is not None:
                    planned.append((plan.key(unit.path) + (o.order_id,), o, plan))
            planned.sort(key=lambda x: x[0])
            volume = unit.volume
            for _, o, plan in planned:
                remaining = self._remaining(o, plan.price)  # type: ignore[arg-type]
                if o.time_in_force == "FOK" and remaining > volume:
                    continue
                want = _floor(min(remaining, volume), inst.step)
                qty = self._affordable(o, plan.price, want, inst)  # type: ignore[arg-type]
                if qty > 0:
                    self._fill(o, inst, plan.price, qty, plan.liquidity, unit.time_ms)  # type: ignore[arg-type]
                    volume -= qty
                if o.type == "MARKET" and o.is_open and (remaining <= 0 or qty < want):
                    # a quote budget too small for one more lot, or a buy that cannot pay the price it meets
                    self._close(o, "EXPIRED", reason=None if remaining <= 0 else "INSUFFICIENT_BALANCE")
            for o in contact:
                if o.is_open:
                    self._close(o, "EXPIRED", reason="IOC" if o.time_in_force == "IOC" else "FOK")
            self._flush(unit.time_ms)

    def _plan(self, o: Order, unit: MarketUnit) -> Plan | None:
        first = unit.path[0]
        if o.type == "MARKET":
            return Plan(0, first, first, TAKER, False)
        if o.time_in_force in ("IOC", "FOK"):
            crosses = first <= o.price if o.buy else first >= o.price
            return Plan(0, first, first, TAKER, False) if crosses else None
        if o.type == "LIMIT_MAKER":  # it rested on the book from the start: it only ever makes, at its price
            return plan_fill(buy=o.buy, order_type="LIMIT", limit=o.price, trigger=None, triggered=False,
                             fresh=False, path=unit.path, gap_fill_at_first=False)
        return plan_fill(buy=o.buy, order_type="LIMIT", limit=o.price, trigger=None, triggered=False,
                         fresh=o.fresh, path=unit.path, gap_fill_at_first=unit.kind == "bar")

    def _remaining(self, o: Order, price: Decimal) -> Decimal:
        if o.orig_qty == 0:  # market buy by quote quantity: what the rest of the budget buys
            inst = self.instruments[o.symbol]
            return _floor((o.quote_order_qty - o.cum_quote) / price, inst.step)
        return o.orig_qty - o.executed_qty

    def _affordable(self, o: Order, price: Decimal, qty: Decimal, inst: Instrument) -> Decimal:
        """A market buy pays the price it meets: cap the fill at what its lock plus the free quote can pay."""
        if not o.buy or o.type != "MARKET" or qty <= 0 or o.orig_qty == 0:
            return qty
        funds = o.locked + self.ledger.free.get(inst.quote, ZERO)
        return qty if price * qty <= funds else _floor(funds / price, inst.step)

    @staticmethod
    def _release_share(o: Order, price: Decimal, qty: Decimal) -> Decimal:
        """The part of an order's lock a fill of `qty` at `price` frees: a limit's own price, a market order's
        cost (from its lock first)."""
        if o.type in RESTING:
            return o.price * qty if o.buy else qty
        if not o.buy:
            return qty
        return min(o.locked, price * qty)

    def _fill(self, o: Order, inst: Instrument, price: Decimal, qty: Decimal, liquidity: str, now: int) -> None:
        rate = inst.maker_fee if liquidity == MAKER else inst.taker_fee
        notional = price * qty
        release = self._release_share(o, price, qty)
        if o.buy:
            self.ledger.spend_locked(inst.quote, release)
            self.ledger.credit(inst.quote, release - notional)
            commission, commission_asset = qty * rate, inst.base
            self.ledger.credit(inst.base, qty - commission)
        else:
            self.ledger.spend_locked(inst.base, release)
            commission, commission_asset = notional * rate, inst.quote
            self.ledger.credit(inst.quote, notional - commission)
        o.locked -= release
        o.executed_qty += qty
        o.cum_quote += notional
        o.update_ms = now
        done = (o.executed_qty >= o.orig_qty) if o.orig_qty > 0 else self._remaining(o, price) <= 0
        o.status = "FILLED" if done else "PARTIALLY_FILLED"
        trade = Trade(self.trade_id(o.symbol), o.order_id, o.symbol, price, qty, notional, commission,
                      commission_asset, now, o.buy, liquidity == MAKER, max(o.visible_at_ms, self.server_ms()))
        o.trades.append(trade)
        self.trades.append(trade)
        if done and o.locked != 0:  # a market buy locked more than it paid: the rest goes back
            self.ledger.unlock(inst.quote if o.buy else inst.base, o.locked)
            o.locked = ZERO
        self._announce(Execution(self._copy(o), "TRADE", now, trade))

    def _close(self, o: Order, status: str, cancel_cid: str | None = None, reason: str | None = None) -> None:
        inst = self.instruments[o.symbol]
        if o.locked != 0:
            self.ledger.unlock(inst.quote if o.buy else inst.base, o.locked)
            o.locked = ZERO
        o.status = status
        o.expiry_reason = reason
        o.update_ms = self.market_ms()
        self._announce(Execution(self._copy(o), status, o.update_ms, None, cancel_cid))

    # ---- helpers -------------------------------------------------------------------------------------------

    def _instrument(self, symbol: str) -> Instrument:
        inst = self.instruments.get(symbol)
        if inst is None:
            raise Reject("unknown_symbol")
        return inst

    def _new_order(self, inst: Instrument, req: OrderRequest, owner: str, visible_after_ms: int) -> Order:
        if req.side not in SIDES:
            raise Reject("bad_side")
        if req.type not in TYPES:
            raise Reject("bad_type")
        tif = req.time_in_force
        price = req.price
        qty = req.quantity
        if req.type == "LIMIT_MAKER":
            if tif is not None:
                raise Reject("bad_combination", "timeInForce")
            if qty is None or price is None:
                raise Reject("missing_param", "quantity" if qty is None else "price")
            if req.quote_order_qty is not None:
                raise Reject("bad_combination", "quoteOrderQty")
            last = self.last_price(inst.symbol)
            if last is not None and ((price >= last + inst.tick) if req.side == "BUY" else (price <= last - inst.tick)):
                raise Reject("would_take")  # at or through the best quote on the other side
            tif = "GTC"
        elif req.type == "LIMIT":
            if tif is None:
                raise Reject("missing_param", "timeInForce")
            if tif not in TIME_IN_FORCE:
                raise Reject("bad_time_in_force")
            if qty is None:
                raise Reject("missing_param", "quantity")
            if price is None:
                raise Reject("missing_param", "price")
            if req.quote_order_qty is not None:
                raise Reject("bad_combination", "quoteOrderQty")
        else:
            if tif is not None:
                raise Reject("bad_combination", "timeInForce")
            if price is not None:
                raise Reject("bad_combination", "price")
            if (qty is None) == (req.quote_order_qty is None):
                raise Reject("missing_param", "quantity" if qty is None else "quoteOrderQty")
            if req.quote_order_qty is not None and req.side == "SELL":
                raise Reject("unsupported", "quoteOrderQty with side SELL")
            tif = "GTC"
        if price is not None and (price <= 0 or price % inst.tick != 0):
            raise Reject("filter", "PRICE_FILTER")
        if qty is not None and (qty <= 0 or qty < inst.min_qty or qty % inst.step != 0
                                or (inst.max_qty is not None and qty > inst.max_qty)):
            raise Reject("filter", "LOT_SIZE")
        if req.quote_order_qty is not None and req.quote_order_qty <= 0:
            raise Reject("bad_param", "quoteOrderQty")
        reference = price if price is not None else self.last_price(inst.symbol)
        notional = req.quote_order_qty if qty is None else (qty * reference if reference is not None else None)
        if inst.min_notional is not None and notional is not None and notional < inst.min_notional:
            raise Reject("filter", "NOTIONAL")
        cid = req.client_order_id
        if cid is not None and any(o.client_order_id == cid and o.is_open for o in self.orders.values()):
            raise Reject("duplicate_order")
        # funds: what the order locks until it fills or is closed
        if req.side == "BUY":
            asset = inst.quote
            need = req.quote_order_qty if qty is None else (qty * reference if reference is not None else ZERO)
        else:
            asset, need = inst.base, qty or ZERO
        if self.ledger.free.get(asset, ZERO) < need:
            raise Reject("insufficient_balance")
        now = self.market_ms()
        order = Order(self.next_order_id, inst.symbol, cid or self._generated_cid(), req.side, req.type, tif,
                      price or ZERO, qty or ZERO, req.quote_order_qty or ZERO, now,
                      self.server_ms() + max(0, visible_after_ms), owner, update_ms=now)
        self.next_order_id += 1
        if need:
            self.ledger.lock(asset, need)
            order.locked = need
        return order

    def _lookup(self, symbol: str, order_id: int | None, cid: str | None, *, visible_only: bool,
                prefer_open: bool) -> Order | None:
        now = self.server_ms()
        if order_id is not None:
            o = self.orders.get(order_id)
            if o is None or o.symbol != symbol or (cid is not None and o.client_order_id != cid):
                return None
            return o if not visible_only or o.visible_at_ms <= now else None
        matches = [o for o in self.orders.values() if o.symbol == symbol and o.client_order_id == cid
                   and (not visible_only or o.visible_at_ms <= now)]
        if not matches:
            return None
        if prefer_open:
            open_ = [o for o in matches if o.is_open]
            if open_:
                return open_[-1]
        return matches[-1]

    def web_client_order_id(self) -> str:
        """A client id like the venue's web UI gives its orders (web_ + 32 hex), from the seed."""
        return "web_" + self.rng.getrandbits(128).to_bytes(16, "big").hex()

    def _generated_cid(self) -> str:
        return "".join(self.rng.choice(CID_ALPHABET) for _ in range(22))

    @staticmethod
    def _copy(o: Order) -> Order:
        return replace(o, trades=list(o.trades))

    def _announce(self, notice: Notice) -> None:
        self._notices.append(notice)

    def _flush(self, now: int) -> None:
        touched = self.ledger.take_touched()
        if touched:
            self._notices.append(AccountUpdate(now, touched))
        notices, self._notices = self._notices, []
        if notices:
            self.sink(notices)


def _floor(qty: Decimal, step: Decimal) -> Decimal:
    """`qty` rounded down to a whole number of lot steps."""
    if qty <= 0:
        return ZERO
    return (qty / step).to_integral_value(rounding=ROUND_DOWN) * step


def _window(rows: list, key: Callable, when: Callable, from_id: int | None, start_ms: int | None,
            end_ms: int | None, limit: int) -> list:
    """Binance's paging: from an id up; or oldest first from startTime (not past endTime); or the most recent."""
    rows = sorted(rows, key=key)
    if from_id is not None:
        rows = [r for r in rows if key(r) >= from_id]
        if start_ms is not None:
            rows = [r for r in rows if when(r) >= start_ms]
        if end_ms is not None:
            rows = [r for r in rows if when(r) <= end_ms]
        return rows[:limit]
    if start_ms is not None:
        rows = [r for r in rows if when(r) >= start_ms and (end_ms is None or when(r) <= end_ms)]
        return rows[:limit]
    if end_ms is not None:
        rows = [r for r in rows if when(r) <= end_ms]
    return rows[-limit:]

