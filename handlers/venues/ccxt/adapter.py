"""The ccxt venue adapter: sends only what a committed step recorded, and reports every answer as a later input.

Write-ahead. `submit` and `cancel` are called while the engine builds a step; they only note the request. The
engine commits the step (OrderSubmitted, or the cancel's OrderReleased, is durable), then calls `after_commit`,
which sends. Whatever the venue answers is queued in `reports` and fed back by the live node as input events of
later steps (source `report:<venue>`), so the log holds the answer as received, and a replay of the log never calls
the venue. A process killed between the commit and the send leaves an order recorded as submitted and never sent;
recovery resolves it by looking it up, never by sending it again.

Outcomes of a send (handlers/venues/ccxt/errors.py): accepted (OrderAccepted with the venue's order id), refused
for sure (OrderRejected with the reason), or unknown (OrderOutcomeUnknown): the client order id goes to the
in-doubt set and `resolve` looks it up by client order id until it is found (OrderAccepted, or the terminal status
the venue reports) or, once the venue's visibility window has passed with no order and no trade for it, it is
OrderResolvedAbsent. Fills always come from the venue's trade history (`poll_fills`, a trade-id cursor per
instrument, deduplicated by trade id), the source of truth whatever the order answers said. `check_orders`
compares the venue's open orders with the log's (what the venue ended while nobody looked, orders that are not
ours); a cancel or expiry is reported only after every fill the venue counted before it (`settling`), so the
order state machine never sees a fill after an order ended.

ccxt's own retries stay off for order endpoints (a transport retry of a POST is the double-order bug); its rate
limiter stays on. Credentials are given to ccxt and nowhere else: no event, error text or log line holds them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import ccxt

from handlers.venues.ccxt.clock import ExchangeClock
from handlers.venues.ccxt.errors import one_line, rejection_reason
from handlers.venues.ccxt.mapping import balances_payload, dec, fill_payload, order_params
from projections.snapshot import pack, unpack
from schemas.decimals import ZERO
from schemas.errors import TapeError
from schemas.ids import parse_client_order_id

Report = tuple[str, dict[str, Any], int]  # (event name, payload, ts_event): an input for the next step
CLOSED = {"closed": "FILLED", "canceled": "OrderCanceled", "cancelled": "OrderCanceled", "expired": "OrderExpired",
          "rejected": "OrderRejected"}


class VenueUnavailable(TapeError):
    """The venue cannot be reached or refuses the credentials: nothing can be sent or checked."""


def credentials_refused(venue: str, error: BaseException, secrets: tuple[str, ...]) -> VenueUnavailable:
    """The one-line error for an AuthenticationError: the venue's words (masked) and where keys come from."""
    return VenueUnavailable(f"venue {venue}: credentials refused ({one_line(error, secrets)}); check "
                            f"TAPE_{venue.upper()}_API_KEY and TAPE_{venue.upper()}_SECRET")


@dataclass
class InDoubt:
    """An order whose send has no known outcome: looked up by client order id until resolved."""

    instrument_id: str
    client_order_id: str
    since_ns: int  # when the runtime recorded it as submitted (its clock)
    lookups: int = 0


@dataclass
class VenueOrders:
    """What the adapter knows of its orders to tie the venue's answers to them."""

    by_venue_id: dict[str, str] = field(default_factory=dict)  # venue order id → client order id
    instrument: dict[str, str] = field(default_factory=dict)  # client order id → instrument id
    trades_seen: dict[str, set[str]] = field(default_factory=dict)  # instrument → trade ids folded
    trade_cursor: dict[str, str] = field(default_factory=dict)  # instrument → last trade id folded
    quantity: dict[str, Decimal] = field(default_factory=dict)  # client order id → quantity ordered
    filled: dict[str, Decimal] = field(default_factory=dict)  # client order id → quantity the log holds fills for
    open: set[str] = field(default_factory=set)  # accepted at the venue, not yet terminal in the log


@dataclass
class Knowledge:
    """What the adapter knows of this namespace's orders from the venue's answers: kept twice — as answers arrive
    (the adapter's working copy) and as steps are committed (`CcxtVenue.recorded`, the fold recovery rebuilds from
    the log, which a snapshot carries: an answer not yet recorded must not be known after a restart)."""

    orders: VenueOrders = field(default_factory=VenueOrders)
    in_doubt: dict[str, InDoubt] = field(default_factory=dict)
    cancels: set[str] = field(default_factory=set)  # client order ids whose released cancel has no answer yet

    def learn(self, name: str, data: dict[str, Any], ts_init: int) -> None:
        """Fold one recorded event (a send in doubt until its answer is recorded too)."""
        if name == "OrderSubmitted":
            cid = data["client_order_id"]
            self.orders.instrument[cid] = data["instrument_id"]
            self.orders.quantity[cid] = data["quantity"]
            self.in_doubt[cid] = InDoubt(data["instrument_id"], cid, ts_init)  # until the venue's answer is read
        elif name == "OrderReleased" and data.get("action") == "CANCEL":
            self.cancels.add(data["client_order_id"])
        else:
            self.fold(name, data)

    def fold(self, name: str, data: dict[str, Any]) -> bool:
        """One venue answer, recorded or just reported: the one rule for what it tells the adapter. True when it
        ends the order."""
        cid = data.get("client_order_id")
        if cid is None or name not in VENUE_ANSWERS:
            return False
        orders = self.orders
        if data.get("venue_order_id"):
            orders.by_venue_id[data["venue_order_id"]] = cid
        if name == "OrderCancelRejected":
            self.cancels.discard(cid)  # the cancel is answered; it says nothing of whether the order is there
            return False
        if name == "OrderOutcomeUnknown":
            return False
        self.in_doubt.pop(cid, None)
        if name == "OrderAccepted":
            orders.open.add(cid)
        elif name == "OrderFilled":
            iid, tid = data["instrument_id"], data["trade_id"]
            orders.trades_seen.setdefault(iid, set()).add(tid)
            orders.trade_cursor[iid] = max_id(orders.trade_cursor.get(iid), tid)
            filled = orders.filled[cid] = orders.filled.get(cid, ZERO) + data["last_quantity"]
            if filled >= orders.quantity.get(cid, filled):
                orders.open.discard(cid)
                self.cancels.discard(cid)
            else:
                orders.open.add(cid)
        else:  # rejected, absent, canceled, expired: the order is over
            orders.open.discard(cid)
            self.cancels.discard(cid)
            return True
        return False

    def snapshot(self) -> dict[str, Any]:
        """As plain data, every collection in a fixed order (the same knowledge gives the same bytes)."""
        o = self.orders  # what grows with every order and fill, packed (projections/snapshot.py)
        return {"by_venue_id": pack(sorted(o.by_venue_id.items())), "instrument": pack(sorted(o.instrument.items())),
                "trades_seen": {iid: pack([i] for i in sorted(ids)) for iid, ids in sorted(o.trades_seen.items())},
                "trade_cursor": dict(sorted(o.trade_cursor.items())), "quantity": pack(sorted(o.quantity.items())),
                "filled": pack(sorted(o.filled.items())), "open": sorted(o.open),
                "in_doubt": [[d.instrument_id, d.client_order_id, d.since_ns, d.lookups]
                             for _, d in sorted(self.in_doubt.items())],
                "cancels": sorted(self.cancels)}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Knowledge:
        orders = VenueOrders(dict(unpack(state["by_venue_id"])), dict(unpack(state["instrument"])),
                             {iid: {r[0] for r in unpack(ids)} for iid, ids in state["trades_seen"].items()},
                             dict(state["trade_cursor"]), {k: Decimal(v) for k, v in unpack(state["quantity"])},
                             {k: Decimal(v) for k, v in unpack(state["filled"])}, set(state["open"]))
        return cls(orders, {row[1]: InDoubt(*row) for row in state["in_doubt"]}, set(state["cancels"]))


@dataclass(frozen=True)
class Terminal:
    """A cancel or expiry the venue reported, held until the log has every fill the venue counted before it."""

    name: str
    payload: dict[str, Any]
    venue_filled: Decimal


class CcxtVenue:
    """The Venue port for a real venue through a ccxt exchange object (sync REST)."""

    def __init__(self, name: str, exchange: Any, symbols: dict[str, str], *, clock: Callable[[], int],
                 venue_now: Callable[[], int] | None = None, visibility_window_ns: int = 30_000_000_000,
                 secrets: tuple[str, ...] = (), own_prefix: str = ""):
        self.name = name
        self.own_prefix = own_prefix  # the client-order-id prefix of this namespace (schemas/ids.py)
        self.exchange = exchange
        self.symbols = symbols  # instrument id → ccxt symbol
        self.clock = clock  # the runtime's own clock: durations (the visibility window)
        self.venue_now = venue_now or ExchangeClock(exchange, clock).now  # what reports are stamped with
        self.visibility_window_ns = visibility_window_ns
        self.secrets = secrets
        self.known = Knowledge()  # as the venue's answers arrive
        self.recorded = Knowledge()  # as the log holds them (what a snapshot carries)
        self.settling: dict[str, Terminal] = {}  # client order id → its terminal report, waiting for fills
        self.foreign: set[str] = set()  # venue order ids of orders this namespace did not place, reported once
        self.reports: list[Report] = []
        self._outbox: list[tuple[str, dict[str, Any]]] = []  # ("submit", order) | ("cancel", {iid, cid})
        self.sending = True  # False while the engine replays the log: nothing leaves the process

    @property
    def orders(self) -> VenueOrders:
        return self.known.orders

    @property
    def in_doubt(self) -> dict[str, InDoubt]:
        return self.known.in_doubt

    @property
    def cancels(self) -> set[str]:
        return self.known.cancels

    # ---- the engine's calls (inside a step: record, never send) ----------------------------------------------

    def start(self, now: int) -> list[Any]:
        """The venue's opening state enters as an input (`balances`), not as the engine's own event."""
        return []

    def on_market(self, name: str, data: dict[str, Any], ts: int) -> list[Any]:
        return []

    def submit(self, order: dict[str, Any], now: int) -> list[Any]:
        self.orders.instrument[order["client_order_id"]] = order["instrument_id"]
        self.orders.quantity[order["client_order_id"]] = order["quantity"]
        if self.sending:
            self._outbox.append(("submit", order))
        return []

    def cancel(self, instrument_id: str, client_order_id: str, now: int) -> list[Any]:
        self.cancels.add(client_order_id)  # unanswered until the venue's answer (or the order check's) is folded
        if self.sending:
            self._outbox.append(("cancel", {"instrument_id": instrument_id, "client_order_id": client_order_id}))
        return []

    def after_commit(self, committed: Any = ()) -> None:
        """Send what the committed steps recorded, in order; each answer becomes a report."""
        if self.sending:  # (while the log replays, the node's learn() folds what it holds)
            learn = self.recorded.learn
            for step in committed:
                for d in step:
                    learn(d.type, d.payload, d.ts_init)
        outbox, self._outbox = self._outbox, []
        for action, item in outbox:
            if action == "submit":
                self._send_order(item)
            else:
                self._send_cancel(item)

    # ---- sending -----------------------------------------------------------------------------------------------

    def _send_order(self, order: dict[str, Any]) -> None:
        iid, cid = order["instrument_id"], order["client_order_id"]
        kind, side, amount, price, params = order_params(order)
        try:
            # amounts and prices as exact text: ccxt rounds strings to the market's precision without a float
            answer = self.exchange.create_order(self.symbols[iid], kind, side, str(amount),
                                                None if price is None else str(price), params)
        except ccxt.AuthenticationError as e:
            raise credentials_refused(self.name, e, self.secrets) from None
        except Exception as e:  # noqa: BLE001 - every failure is classified: refused for sure, or unknown
            reason = rejection_reason(e)
            if reason is not None:
                self._report("OrderRejected", {"instrument_id": iid, "client_order_id": cid, "reason_code": reason,
                                               "reason": one_line(e, self.secrets)})
            else:
                self._unknown(iid, cid, "SUBMIT", e)
            return
        self._accepted(iid, cid, answer)

    def _send_cancel(self, item: dict[str, Any]) -> None:
        iid, cid = item["instrument_id"], item["client_order_id"]
        try:
            answer = self.exchange.cancel_order(None, self.symbols[iid], {"clientOrderId": cid,
                                                                          "origClientOrderId": cid})
        except Exception as e:  # noqa: BLE001 - refused (already done, unknown) or unknown: the order check settles it
            if isinstance(e, ccxt.OrderNotFound) or rejection_reason(e) is not None:
                self._report("OrderCancelRejected", {"instrument_id": iid, "client_order_id": cid,
                                                     "venue_order_id": None, "reason": one_line(e, self.secrets)})
            else:
                self._unknown(iid, cid, "CANCEL", e)
            return
        self._terminal(iid, cid, "OrderCanceled", answer, "requested")

    def _accepted(self, iid: str, cid: str, answer: dict[str, Any]) -> None:
        voi = str(answer["id"]) if answer.get("id") is not None else None
        if voi is not None:
            self.orders.by_venue_id[voi] = cid
        doubted = self.in_doubt.pop(cid, None) is not None
        self._report("OrderAccepted", {"instrument_id": iid, "client_order_id": cid, "venue_order_id": voi})
        if doubted:
            self._catch_up(iid, cid, answer)
        self._settle(iid, cid, answer)

    def _catch_up(self, iid: str, cid: str, venue_order: dict[str, Any]) -> None:
        """The venue counts more filled for an order than the log holds: read that order's own trades. Its fills
        can be behind the trade cursor — it was in doubt (no venue id to tie its trades to) while later trades
        were folded — and a cursor is rebuilt from the log after a crash, so only the order's id finds them."""
        voi = venue_order.get("id")
        if voi is None or (dec(venue_order.get("filled")) or ZERO) <= self.orders.filled.get(cid, ZERO):
            return
        try:
            trades = self.exchange.fetch_my_trades(self.symbols[iid], None, 1000, {"orderId": voi})
        except Exception:  # noqa: BLE001 - no answer: the next order check asks again
            return
        seen = self.orders.trades_seen.setdefault(iid, set())
        for t in sorted(trades, key=lambda t: int(t["id"]) if str(t["id"]).isdigit() else 0):
            if str(t["id"]) not in seen and str(t.get("order")) == str(voi):
                self._report("OrderFilled", fill_payload(t, iid, cid))

    def _settle(self, iid: str, cid: str, answer: dict[str, Any]) -> None:
        """Record a venue status that ends the order without (all of) its fills: canceled or expired."""
        status = CLOSED.get(answer.get("status") or "")
        if status in ("OrderCanceled", "OrderExpired"):
            self._terminal(iid, cid, status, answer, "venue")

    def _terminal(self, iid: str, cid: str, name: str, answer: dict[str, Any], reason: str) -> None:
        """A cancel or expiry, reported once the log holds every fill the venue counted for the order (the
        order's fills come first, so the order state machine sees them before the order ends)."""
        voi = str(answer["id"]) if answer.get("id") is not None else None
        payload: dict[str, Any] = {"instrument_id": iid, "client_order_id": cid, "venue_order_id": voi}
        if name == "OrderCanceled":
            payload["reason"] = reason
        if cid not in self.orders.instrument:  # not an order of this namespace
            return
        self.settling[cid] = Terminal(name, payload, dec(answer.get("filled")) or ZERO)
        self._release_settled()

    def _release_settled(self) -> None:
        for cid, t in list(self.settling.items()):
            if self.orders.filled.get(cid, ZERO) >= t.venue_filled:
                del self.settling[cid]
                if cid in self.orders.open:
                    self._report(t.name, t.payload)

    def _unknown(self, iid: str, cid: str, action: str, error: BaseException) -> None:
        self._report("OrderOutcomeUnknown", {"instrument_id": iid, "client_order_id": cid, "venue": self.name,
                                             "action": action, "error": one_line(error, self.secrets)})
        if action == "SUBMIT":
            self.in_doubt.setdefault(cid, InDoubt(iid, cid, self.clock()))

    def _report(self, name: str, payload: dict[str, Any]) -> None:
        self.reports.append((name, payload, self.venue_now()))
        self._fold(name, payload)

    def drain(self) -> list[Report]:
        """The answers received since the last call, oldest first."""
        out, self.reports = self.reports, []
        return out

    # ---- looking orders up --------------------------------------------------------------------------------------

    def resolve(self) -> None:
        """Look every in-doubt order up by client order id; past the visibility window, with no order and no trade,
        it is absent (a terminal verdict that only evidence, never a timeout alone, gives)."""
        history: dict[str, list[dict[str, Any]] | None] = {}  # instrument → its recent trades, read once a pass
        for cid, doubt in list(self.in_doubt.items()):
            try:
                found = self.exchange.fetch_order(None, self.symbols[doubt.instrument_id],
                                                  {"clientOrderId": cid, "origClientOrderId": cid})
            except ccxt.OrderNotFound:
                doubt.lookups += 1
                age = self.clock() - doubt.since_ns
                if age < self.visibility_window_ns:
                    continue
                if doubt.instrument_id not in history:
                    history[doubt.instrument_id] = self._recent_trades(doubt.instrument_id)
                if not self._traded(history[doubt.instrument_id], cid):
                    del self.in_doubt[cid]
                    self._report("OrderResolvedAbsent", {"instrument_id": doubt.instrument_id, "client_order_id": cid,
                                                         "venue": self.name, "lookups": doubt.lookups,
                                                         "window_ns": self.visibility_window_ns})
                continue
            except Exception:  # noqa: BLE001 - the venue is not answering: try again on the next pass
                continue
            self._accepted(doubt.instrument_id, cid, found)

    def _recent_trades(self, iid: str) -> list[dict[str, Any]] | None:
        """The venue's latest trades of an instrument; None when it does not answer (no evidence either way)."""
        try:
            return self.exchange.fetch_my_trades(self.symbols[iid], None, 1000)
        except Exception:  # noqa: BLE001
            return None

    def _traded(self, trades: list[dict[str, Any]] | None, cid: str) -> bool:
        """True when the venue's trade history holds a fill of this order (it exists, whatever the lookup says),
        or could not be read."""
        if trades is None:
            return True
        return any(self.orders.by_venue_id.get(str(t.get("order"))) == cid or
                   (t.get("info") or {}).get("clientOrderId") == cid for t in trades)

    def poll_fills(self) -> None:
        """Fills since each instrument's trade cursor, one report per new venue trade of an order of ours; then
        the cancels and expiries that were waiting for them."""
        for iid, symbol in self.symbols.items():
            cursor = self.orders.trade_cursor.get(iid)
            params = {"fromId": int(cursor) + 1} if cursor is not None and cursor.isdigit() else {}
            try:
                trades = self.exchange.fetch_my_trades(symbol, None, 1000, params)
            except Exception:  # noqa: BLE001 - the next poll tries again from the same cursor
                continue
            seen = self.orders.trades_seen.setdefault(iid, set())
            for t in sorted(trades, key=lambda t: int(t["id"]) if str(t["id"]).isdigit() else 0):
                tid = str(t["id"])
                cid = self.orders.by_venue_id.get(str(t.get("order")))
                if tid not in seen and cid is not None:
                    self._report("OrderFilled", fill_payload(t, iid, cid))
                self.orders.trade_cursor[iid] = max_id(self.orders.trade_cursor.get(iid), tid)
        self._release_settled()

    def check_orders(self) -> list[dict[str, Any]]:
        """Compare the venue's open orders with the log's: an order of ours gone from the venue is looked up and
        its end recorded (canceled or expired by the venue; filled: its fills come from the trade history); an
        order with this namespace's id that the log does not hold is a blocking mismatch; anyone else's order is
        reported once as external. Returns the mismatches found."""
        mismatches: list[dict[str, Any]] = []
        for iid, symbol in sorted(self.symbols.items()):
            try:
                venue_open = self.exchange.fetch_open_orders(symbol)
            except Exception:  # noqa: BLE001 - no answer, no evidence: the next check tries again
                continue
            at_venue = set()
            for o in venue_open:
                cid = client_id_of(o)
                at_venue.add(cid)
                if cid in self.orders.instrument:
                    self._catch_up(iid, cid, o)  # a partial fill behind the cursor, on an order still open
                    continue
                ours = parse_client_order_id(cid or "")
                if ours is not None and ours[0] == self.own_prefix:
                    mismatches.append({"kind": "unknown_at_venue", "client_order_id": cid, "field": "order",
                                       "local": None, "venue": str(o.get("id"))})
                elif str(o.get("id")) not in self.foreign:
                    self.foreign.add(str(o.get("id")))
                    mismatches.append({"kind": "external_order", "client_order_id": cid, "field": "order",
                                       "local": None, "venue": str(o.get("id"))})
            for cid in sorted(c for c in self.orders.open if self.orders.instrument.get(c) == iid):
                if cid in at_venue and cid in self.cancels:  # a cancel lost (or never sent: a crash) left it open
                    self._report("OrderCancelRejected", {"instrument_id": iid, "client_order_id": cid,
                                                         "venue_order_id": None,
                                                         "reason": "cancel not taken: the order is open at the venue"})
                if cid in at_venue or cid in self.settling:
                    continue
                try:
                    found = self.exchange.fetch_order(None, symbol, {"clientOrderId": cid, "origClientOrderId": cid})
                except ccxt.OrderNotFound:
                    mismatches.append({"kind": "missing_at_venue", "client_order_id": cid, "field": "status",
                                       "local": "ACCEPTED", "venue": None})
                    continue
                except Exception:  # noqa: BLE001
                    continue
                self._catch_up(iid, cid, found)
                self._settle(iid, cid, found)
        return mismatches

    def balances(self) -> Report:
        """The venue's balances now, as a reported AccountState input (the opening state, or what a check
        compares)."""
        try:
            balance = self.exchange.fetch_balance()
        except ccxt.AuthenticationError as e:
            raise credentials_refused(self.name, e, self.secrets) from None
        except ccxt.NetworkError as e:
            raise VenueUnavailable(f"venue {self.name} is unreachable ({one_line(e, self.secrets)}); check the "
                                   "network or --sandbox-url") from None
        return ("AccountState", balances_payload(balance, self.name), self.venue_now())

    # ---- what the log says (recovery) --------------------------------------------------------------------------

    def learn(self, name: str, data: dict[str, Any], ts_init: int) -> None:
        """Fold one event the log holds (recovery): into what the log says, and the working copy alike."""
        self.recorded.learn(name, data, ts_init)
        self.known.learn(name, data, ts_init)

    def _fold(self, name: str, data: dict[str, Any]) -> None:
        if self.known.fold(name, data):
            self.settling.pop(data["client_order_id"], None)

    def snapshot(self) -> dict[str, Any]:
        """What the log says, as of the last committed step (answers received but not recorded yet excluded)."""
        return self.recorded.snapshot()

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a snapshot: what the log said then, for both copies (the log's tail is learned next)."""
        self.recorded = Knowledge.restore(state)
        self.known = Knowledge.restore(state)


VENUE_ANSWERS = frozenset({"OrderAccepted", "OrderRejected", "OrderResolvedAbsent", "OrderCanceled", "OrderExpired",
                           "OrderFilled", "OrderCancelRejected", "OrderOutcomeUnknown"})


def max_id(current: str | None, trade_id: str) -> str:
    """The later of two venue trade ids (numeric where both are; otherwise the newest one read)."""
    if current is not None and current.isdigit() and trade_id.isdigit() and int(current) > int(trade_id):
        return current
    return trade_id


def client_id_of(order: dict[str, Any]) -> str | None:
    """The client order id of a ccxt order structure (unified field, else the venue's raw one)."""
    info = order.get("info") or {}
    return order.get("clientOrderId") or info.get("clientOrderId") or info.get("origClientOrderId")
