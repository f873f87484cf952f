"""The simulated venue: deterministic matching of orders against the market history being replayed.

The engine calls `start(now)` once, `on_market(name, data, ts)` for every Bar / TradeTick / QuoteTick before the
strategy sees it, `submit(order, now)` with an OrderSubmitted payload, `cancel(instrument_id, client_order_id,
now)` and `after_commit()` (a no-op here). Each returns the execution events it causes as (name, payload,
ts_event) tuples. The venue keeps its own account (balances, positions, locks) updated by its own fills, so
its checks depend only on what it has emitted. Event time only; nothing random.

Config (handlers/venues/sim/config.py parses it once into a VenueConfig; every key optional)::

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
Finished orders: the latest KEEP_FINISHED are kept whole, the earlier ones archived (handlers/archive.py) as
(client order id, instrument, final status, venue order id) — all a cancel's answer and the duplicate-id check read
of them — so snapshots and restarts carry the working orders and a bounded tail, not every order ever placed.
Account (handlers/venues/sim/account.py): start() emits an AccountState (reported=True) with the starting balances.
Fills move balances by the one netting rule of projections/accounting.py, which the portfolio projection folds the
same fill with; an AccountState after fills only when emit_account_state is true.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, fields
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any

from eventstore.writer import own_fields
from handlers.archive import OrderArchive
from handlers.venues.sim.account import SimAccount
from handlers.venues.sim.config import VenueConfig
from handlers.venues.sim.fills import STOPS, Plan, bar_path, last_seen_price, plan_fill
from projections.snapshot import pack, typed, unpack
from schemas.decimals import ARITHMETIC as _CTX, Q18, ZERO as _ZERO
from schemas.names import PRICES

DAY_NS = 86_400 * 1_000_000_000
_DEFAULT_BALANCE = Decimal(1_000_000)
_MARKET = frozenset(PRICES)
_ARRIVE, _EXPIRE = 0, 1  # ranks in the timed heap: at one instant arrivals run before expiries

PENDING, WORKING = "PENDING", "WORKING"
FILLED, CANCELED, REJECTED, EXPIRED = "FILLED", "CANCELED", "REJECTED", "EXPIRED"

CONFIG_KEYS = ("name", "starting_balances", "latency_ms", "latency_ns", "market_fill", "volume_participation",
               "maker_fee", "taker_fee", "account_type", "leverage", "emit_account_state", "report_currency")

Execution = tuple[str, dict[str, Any], int]  # (name, payload, ts_event): what the venue reports, and when


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

    KEEP_FINISHED = 1000  # finished orders kept whole; the earlier ones are archived (the same answers, less room)

    def __init__(self, config: VenueConfig, state: Any):
        self.config = config
        self.name = config.name
        self.state = state
        self._instruments = state.market.instruments
        self._same_close = self.config.market_fill == "same_close"
        self._participation = self.config.volume_participation
        self._orders: dict[str, _Order] = {}  # working orders and the latest finished ones, in arrival order
        self._finished = 0  # how many of them are finished
        self._archive = OrderArchive(3)  # the earlier finished ones: client order id → (iid, status, venue order id)
        self._book: dict[str, list[_Order]] = {}  # working orders per instrument, in arrival order
        self._timed: list[tuple[int, int, int, str, Any]] = []  # (time, rank, seq, kind, item)
        self._seq = 0
        self._trade_n = 0
        self._order_n = 0
        self._last: dict[str, tuple[str, dict[str, Any]]] = {}  # iid → the last market event seen (name, data)
        self._used: dict[str, list[Any]] = {}  # iid → [data, used (buys or all), used by sells (quotes)]
        self._filled = False
        self.account = SimAccount(config, self._instruments, self._book, self._last)

    # ---- the engine's calls ------------------------------------------------------------------------------

    def opening_balances(self) -> dict[str, Decimal]:
        """The account the venue opens with: starting balances from config (default 1,000,000 per quote currency
        defined)."""
        bal = self.config.starting_balances
        if bal is None:
            bal = {i.quote_currency: _DEFAULT_BALANCE for i in self._instruments.values()}
        return {cur: bal[cur] for cur in sorted(bal)}

    def start(self, now: int) -> list[Execution]:
        """The opening account (opening_balances), reported."""
        self.account.balances = self.opening_balances()
        return [("AccountState", self.account.state(self.name), now)]

    def on_market(self, name: str, data: dict[str, Any], ts: int) -> list[Execution]:
        """Run arrivals and expiries due by `ts`, then match the instrument's working orders against the event."""
        if name not in _MARKET:
            return []
        iid = data["instrument_id"]
        out: list[Execution] = []
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

    def submit(self, order: dict[str, Any], now: int) -> list[Execution]:
        """Send an order: it arrives (accepted or rejected, maybe filled) at now + latency."""
        out: list[Execution] = []
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

    def cancel(self, instrument_id: str, client_order_id: str, now: int) -> list[Execution]:
        """Send a cancel: answered (OrderCanceled or OrderCancelRejected) at now + latency."""
        out: list[Execution] = []
        with localcontext(_CTX):
            self._run_timed(now, out, before_bar=False)
            self._seq += 1
            heapq.heappush(self._timed, (now + self.config.latency_ns, _ARRIVE, self._seq, "cancel",
                                         (instrument_id, client_order_id)))
            self._run_timed(now, out, before_bar=False)
        self._after(out)
        return out

    def after_commit(self, committed: Any = ()) -> None:
        """Nothing to send: the simulation acts inside the engine's calls."""

    # ---- snapshots (paper sessions restart from them) --------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The book, the orders on their way, the account and the counters as plain data (between steps)."""
        timed = []
        for t, rank, seq, kind, item in sorted(self._timed, key=_heap_key):
            if kind == "order":
                ref: Any = _order_row(item)
            elif kind == "cancel":
                ref = list(item)
            elif self._orders.get(item.cid) is item:  # an expiry names an order that arrived
                ref = item.cid
            else:  # … and finished since, and was archived: the (inert) order itself
                ref = _order_row(item)
            timed.append([t, rank, seq, kind, ref])
        used = {iid: [own_fields(u[0]), u[1], u[2], self._last.get(iid, (None, None))[1] is u[0]]
                for iid, u in self._used.items()}
        return {"orders": pack(_order_row(o) for o in self._orders.values()), "archive": self._archive.snapshot(),
                "book": {iid: [o.cid for o in book] for iid, book in self._book.items()}, "timed": timed,
                "seq": self._seq, "trade_n": self._trade_n, "order_n": self._order_n,
                "last": {iid: [name, own_fields(data)] for iid, (name, data) in self._last.items()}, "used": used,
                "balances": dict(self.account.balances),
                "positions": [{f.name: getattr(p, f.name) for f in fields(p)} for p in self.account.positions.values()]}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from what snapshot() gave; the shared book and last-event maps are refilled in place."""
        from projections.accounting import Position

        kinds = [f.type for f in fields(_Order)]
        rows = unpack(state["orders"])
        self._orders = {row[1]: _Order(*(typed(k, c) for k, c in zip(kinds, row, strict=True))) for row in rows}
        self._finished = sum(1 for o in self._orders.values() if o.status != WORKING)
        self._archive.restore(state["archive"])
        self._book.clear()
        self._book.update({iid: [self._orders[c] for c in cids] for iid, cids in state["book"].items()})
        self._timed = []
        for t, rank, seq, kind, ref in state["timed"]:
            if kind == "cancel":
                item = tuple(ref)
            else:  # an order on its way or an archived one's expiry (its row), or a kept order's expiry (its id)
                item = self._orders[ref] if isinstance(ref, str) else _Order(*ref)
            self._timed.append((t, rank, seq, kind, item))
        heapq.heapify(self._timed)
        self._seq, self._trade_n, self._order_n = state["seq"], state["trade_n"], state["order_n"]
        self._last.clear()
        self._last.update({iid: (name, data) for iid, (name, data) in state["last"].items()})
        # what a market event's volume already gave, tied to that event (the same object as the last one seen)
        self._used = {iid: [self._last[iid][1] if same else data, a, b]
                      for iid, (data, a, b, same) in state["used"].items()}
        self.account.balances = dict(state["balances"])
        self.account.positions = {p["instrument_id"]: Position(**p) for p in state["positions"]}

    # ---- time ---------------------------------------------------------------------------------------------

    def _run_timed(self, ts: int, out: list[Execution], *, before_bar: bool) -> None:
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

    def _arrive(self, o: _Order, out: list[Execution]) -> None:
        rejected = self._check(o)
        if rejected is not None:
            o.status = REJECTED
            if not self._known(o.cid):
                self._orders[o.cid] = o
                self._finished += 1
            out.append(("OrderRejected", {"instrument_id": o.iid, "client_order_id": o.cid,
                                          "reason_code": rejected[0], "reason": rejected[1]}, o.arrival))
            return
        self._order_n += 1
        o.venue_order_id = f"{self.name}-O{self._order_n}"
        o.status = WORKING
        self._orders[o.cid] = o
        self._book.setdefault(o.iid, []).append(o)
        self.account.lock(o)
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
            px = last_seen_price(name, data, o.buy)
            plan = plan_fill(buy=o.buy, order_type=o.order_type, limit=o.price, trigger=o.trigger, triggered=False,
                             fresh=True, path=(px,), gap_fill_at_first=False)
            o.fresh = False
            self._execute(o, plan, name, data, o.arrival, out)

    def _cancel_arrives(self, iid: str, cid: str, t: int, out: list[Execution]) -> None:
        o = self._orders.get(cid)
        if o is not None and o.iid == iid and o.status == WORKING:
            self._close(o, CANCELED)
            out.append(("OrderCanceled", {"instrument_id": iid, "client_order_id": cid,
                                          "venue_order_id": o.venue_order_id, "reason": "requested"}, t))
            return
        # (instrument, status, venue order id) of the order that has this id, kept whole or archived
        known = (o.iid, o.status, o.venue_order_id) if o is not None else self._archive.get(cid)
        if known is None or known[0] != iid:
            reason = "unknown order"
        else:
            reason = f"order already {known[1].lower()}"  # type: ignore[union-attr]
        out.append(("OrderCancelRejected", {"instrument_id": iid, "client_order_id": cid,
                                            "venue_order_id": known[2] if known is not None else None,
                                            "reason": reason}, t))

    # ---- matching -----------------------------------------------------------------------------------------

    def _match(self, name: str, data: dict[str, Any], ts: int, iid: str, book: list[_Order],
               out: list[Execution]) -> None:
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
                 out: list[Execution]) -> None:
        """Apply one plan to one order: trigger, fill what the volume and reduce-only allow, IOC/FOK remainder."""
        if plan is not None and plan.triggered and not o.triggered:
            o.triggered = True
            out.append(("OrderTriggered", {"instrument_id": o.iid, "client_order_id": o.cid,
                                           "venue_order_id": o.venue_order_id}, at))
        immediate = o.tif in ("IOC", "FOK")
        if plan is not None and plan.price is not None and (not immediate or plan.leg == 0):
            qty = o.leaves
            if o.reduce_only:
                held = self.account.position_quantity(o.iid)
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
              at: int, out: list[Execution]) -> None:
        inst = self._instruments[o.iid]
        used = self._used.get(o.iid)
        if used is not None and used[0] is data:
            used[2 if (name == "QuoteTick" and not o.buy) else 1] += qty
        rate = self.config.fee_rate(inst, liquidity)
        fee = (price * qty * inst.multiplier * rate).quantize(Q18)
        self._trade_n += 1
        out.append(("OrderFilled", {"instrument_id": o.iid, "client_order_id": o.cid,
                                    "venue_order_id": o.venue_order_id, "trade_id": f"{self.name}-{self._trade_n}",
                                    "side": o.side, "last_price": price, "last_quantity": qty, "fee": fee,
                                    "fee_currency": inst.quote_currency, "liquidity_side": liquidity}, at))
        self.account.fill(inst, o.buy, qty, price, fee)
        o.leaves -= qty
        self._filled = True
        if o.leaves <= 0:
            self._close(o, FILLED)

    def _close(self, o: _Order, status: str) -> None:
        if o.status == WORKING:
            self._finished += 1
        o.status = status
        book = self._book.get(o.iid)
        if book is not None and o in book:
            book.remove(o)
            if not book:
                del self._book[o.iid]

    def _after(self, out: list[Execution]) -> None:
        keep = self.KEEP_FINISHED
        if self._finished > keep + keep // 10 + 1:  # in batches: a tenth of the kept tail at a time
            self._forget(self._finished - keep)
        if self._filled:
            self._filled = False
            if self.config.emit_account_state:
                out.append(("AccountState", self.account.state(self.name), max(e[2] for e in out)))

    def _forget(self, n: int) -> None:
        """Archive the n earliest finished orders: what a cancel or a used id asks of them stays answerable.

        Which orders go depends only on `_orders` (arrival order) and their statuses, so a venue restored from a
        snapshot archives exactly what the venue it was taken from archived."""
        gone = []
        for o in self._orders.values():
            if o.status != WORKING:
                gone.append(o)
                if len(gone) == n:
                    break
        for o in gone:
            del self._orders[o.cid]
            self._archive.add(o.cid, o.iid, o.status, o.venue_order_id)
        self._finished -= len(gone)

    def _known(self, cid: str) -> bool:
        """True when an order with this client order id has arrived (working, finished or archived)."""
        return cid in self._orders or cid in self._archive

    # ---- checks at arrival ---------------------------------------------------------------------------------

    def _check(self, o: _Order) -> tuple[str, str] | None:
        """(reason_code, reason) when the venue refuses the order, else None."""
        inst = self._instruments.get(o.iid)
        if inst is None:
            return "UNKNOWN_INSTRUMENT", f"instrument {o.iid} is not defined on {self.name}"
        if self._known(o.cid):
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
                px = last_seen_price(last[0], last[1], o.buy)
                if (o.price >= px) if o.buy else (o.price <= px):  # type: ignore[operator]
                    return "POST_ONLY_WOULD_TAKE", f"post-only {o.side} at {o.price} crosses the market at {px}"
        return self.account.check(o, inst)


def _aggressiveness(o: _Order) -> tuple[int, Decimal]:
    """Price priority at one point of the path: market orders first, then the higher bid / the lower offer."""
    if o.order_type == "MARKET" or o.order_type == "STOP_MARKET":
        return 0, _ZERO
    return 1, -o.price if o.buy else o.price  # type: ignore[operator]


def _plan_order(item: tuple[Any, ...]) -> tuple[Any, ...]:
    return item[0], item[1], item[2]


def _ts(event: Execution) -> int:
    return event[2]


def _heap_key(entry: tuple[Any, ...]) -> tuple[int, int, int]:
    return entry[0], entry[1], entry[2]


def _order_row(o: _Order) -> list[Any]:
    """An order's fields in declaration order (what _Order(*row) takes back)."""
    return [getattr(o, f.name) for f in fields(o)]
