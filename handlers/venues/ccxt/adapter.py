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
instrument, deduplicated by trade id), the source of truth whatever the order answers said.

ccxt's own retries stay off for order endpoints (a transport retry of a POST is the double-order bug); its rate
limiter stays on. Credentials are given to ccxt and nowhere else: no event, error text or log line holds them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import ccxt

from handlers.venues.ccxt.errors import one_line, rejection_reason
from handlers.venues.ccxt.mapping import balances_payload, fill_payload, order_params
from schemas.errors import TapeError

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


class CcxtVenue:
    """The Venue port for a real venue through a ccxt exchange object (sync REST)."""

    def __init__(self, name: str, exchange: Any, symbols: dict[str, str], *, clock: Callable[[], int],
                 visibility_window_ns: int = 30_000_000_000, secrets: tuple[str, ...] = ()):
        self.name = name
        self.exchange = exchange
        self.symbols = symbols  # instrument id → ccxt symbol
        self.clock = clock
        self.visibility_window_ns = visibility_window_ns
        self.secrets = secrets
        self.orders = VenueOrders()
        self.in_doubt: dict[str, InDoubt] = {}
        self.reports: list[Report] = []
        self._outbox: list[tuple[str, dict[str, Any]]] = []  # ("submit", order) | ("cancel", {iid, cid})
        self.sending = True  # False while the engine replays the log: nothing leaves the process

    # ---- the engine's calls (inside a step: record, never send) ----------------------------------------------

    def start(self, now: int) -> list[Any]:
        """The venue's opening state enters as an input (`opening_balances`), not as the engine's own event."""
        return []

    def on_market(self, name: str, data: dict[str, Any], ts: int) -> list[Any]:
        return []

    def submit(self, order: dict[str, Any], now: int) -> list[Any]:
        self.orders.instrument[order["client_order_id"]] = order["instrument_id"]
        if self.sending:
            self._outbox.append(("submit", order))
        return []

    def cancel(self, instrument_id: str, client_order_id: str, now: int) -> list[Any]:
        if self.sending:
            self._outbox.append(("cancel", {"instrument_id": instrument_id, "client_order_id": client_order_id}))
        return []

    def after_commit(self) -> None:
        """Send what the committed steps recorded, in order; each answer becomes a report."""
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
            self.exchange.cancel_order(None, self.symbols[iid], {"clientOrderId": cid, "origClientOrderId": cid})
        except ccxt.OrderNotFound as e:
            self._report("OrderCancelRejected", {"instrument_id": iid, "client_order_id": cid, "venue_order_id": None,
                                                 "reason": one_line(e, self.secrets)})
            return
        except Exception as e:  # noqa: BLE001
            if rejection_reason(e) is not None:
                self._report("OrderCancelRejected", {"instrument_id": iid, "client_order_id": cid,
                                                     "venue_order_id": None, "reason": one_line(e, self.secrets)})
            else:
                self._unknown(iid, cid, "CANCEL", e)
            return
        self._report("OrderCanceled", {"instrument_id": iid, "client_order_id": cid, "venue_order_id": None,
                                       "reason": "requested"})

    def _accepted(self, iid: str, cid: str, answer: dict[str, Any]) -> None:
        voi = str(answer["id"]) if answer.get("id") is not None else None
        if voi is not None:
            self.orders.by_venue_id[voi] = cid
        if self.in_doubt.pop(cid, None) is not None:
            self.orders.trade_cursor.pop(iid, None)  # its fills may be behind the cursor: re-read, deduplicated
        self._report("OrderAccepted", {"instrument_id": iid, "client_order_id": cid, "venue_order_id": voi})
        status = CLOSED.get(answer.get("status") or "")
        if status in ("OrderCanceled", "OrderExpired"):  # done at the venue without (all of) its fills
            payload = {"instrument_id": iid, "client_order_id": cid, "venue_order_id": voi}
            if status == "OrderCanceled":
                payload["reason"] = "venue"
            self._report(status, payload)

    def _unknown(self, iid: str, cid: str, action: str, error: BaseException) -> None:
        self._report("OrderOutcomeUnknown", {"instrument_id": iid, "client_order_id": cid, "venue": self.name,
                                             "action": action, "error": one_line(error, self.secrets)})
        if action == "SUBMIT":
            self.in_doubt.setdefault(cid, InDoubt(iid, cid, self.clock()))

    def _report(self, name: str, payload: dict[str, Any]) -> None:
        self.reports.append((name, payload, self.venue_time()))

    def venue_time(self) -> int:
        """The venue's clock in ns, as ccxt measured the offset (the runtime's clock when it did not)."""
        offset_ms = (self.exchange.options or {}).get("timeDifference", 0) or 0
        return self.clock() - int(offset_ms) * 1_000_000

    def drain(self) -> list[Report]:
        """The answers received since the last call, oldest first."""
        out, self.reports = self.reports, []
        return out

    # ---- looking orders up --------------------------------------------------------------------------------------

    def resolve(self) -> None:
        """Look every in-doubt order up by client order id; past the visibility window, with no order and no trade,
        it is absent (a terminal verdict that only evidence, never a timeout alone, gives)."""
        for cid, doubt in list(self.in_doubt.items()):
            try:
                found = self.exchange.fetch_order(None, self.symbols[doubt.instrument_id],
                                                  {"clientOrderId": cid, "origClientOrderId": cid})
            except ccxt.OrderNotFound:
                doubt.lookups += 1
                age = self.clock() - doubt.since_ns
                if age >= self.visibility_window_ns and not self._traded(doubt.instrument_id, cid):
                    del self.in_doubt[cid]
                    self._report("OrderResolvedAbsent", {"instrument_id": doubt.instrument_id, "client_order_id": cid,
                                                         "venue": self.name, "lookups": doubt.lookups,
                                                         "window_ns": self.visibility_window_ns})
                continue
            except Exception:  # noqa: BLE001 - the venue is not answering: try again on the next pass
                continue
            self._accepted(doubt.instrument_id, cid, found)

    def _traded(self, iid: str, cid: str) -> bool:
        """True when the venue's trade history holds a fill of this order (it exists, whatever the lookup says)."""
        try:
            trades = self.exchange.fetch_my_trades(self.symbols[iid], None, 1000)
        except Exception:  # noqa: BLE001 - no evidence either way: not absent yet
            return True
        return any(self.orders.by_venue_id.get(str(t.get("order"))) == cid or
                   (t.get("info") or {}).get("clientOrderId") == cid for t in trades)

    def poll_fills(self) -> None:
        """Fills since each instrument's trade cursor, one report per new venue trade of an order of ours."""
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
                self.orders.trade_cursor[iid] = tid
                if tid in seen:
                    continue
                cid = self.orders.by_venue_id.get(str(t.get("order")))
                if cid is None:
                    continue  # not an order of this namespace (reconciliation reports foreign orders)
                seen.add(tid)
                self._report("OrderFilled", fill_payload(t, iid, cid))

    def opening_balances(self) -> Report:
        """The venue's balances now, as a reported AccountState input."""
        try:
            balance = self.exchange.fetch_balance()
        except ccxt.AuthenticationError as e:
            raise credentials_refused(self.name, e, self.secrets) from None
        except ccxt.NetworkError as e:
            raise VenueUnavailable(f"venue {self.name} is unreachable ({one_line(e, self.secrets)}); check the "
                                   "network or --sandbox-url") from None
        return ("AccountState", balances_payload(balance, self.name), self.venue_time())

    # ---- what the log says (recovery) --------------------------------------------------------------------------

    def learn(self, name: str, data: dict[str, Any], ts_init: int) -> None:
        """Fold one recorded event into what the adapter knows (venue ids, fills seen, sends in doubt)."""
        cid = data.get("client_order_id")
        if name == "OrderSubmitted":
            self.orders.instrument[cid] = data["instrument_id"]
            self.in_doubt[cid] = InDoubt(data["instrument_id"], cid, ts_init)  # until the venue's answer is read
        elif name in ("OrderAccepted", "OrderRejected", "OrderResolvedAbsent", "OrderCanceled", "OrderExpired"):
            if data.get("venue_order_id"):
                self.orders.by_venue_id[data["venue_order_id"]] = cid
            self.in_doubt.pop(cid, None)
        elif name == "OrderFilled":
            iid, tid = data["instrument_id"], data["trade_id"]
            self.orders.trades_seen.setdefault(iid, set()).add(tid)
            if data.get("venue_order_id"):
                self.orders.by_venue_id[data["venue_order_id"]] = cid
            cur = self.orders.trade_cursor.get(iid)
            if cur is None or (tid.isdigit() and cur.isdigit() and int(tid) > int(cur)):
                self.orders.trade_cursor[iid] = tid
            self.in_doubt.pop(cid, None)
