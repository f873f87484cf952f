"""The outbound queue: accepted orders and cancels leave for the venue in sequence, throttled, never doubled.

- Rate limit: a token bucket for the venue in EVENT time (GCRA form, exact with Fractions): `rate_per_second`
  tokens refill per second up to `burst`; every order and every cancel released takes one. Without
  `rate_per_second` there is no limit.
- Cancel in flight: no order for an instrument is released while a cancel for that instrument has been
  released and not yet answered (OrderCanceled / OrderCancelRejected, or a terminal event of that order:
  OrderRejected, OrderExpired, the fill that completes it). Cancels are never held by a cancel in flight.
  Because release is FIFO, an order offered after a cancel (cancel-replace) always waits for its answer.
- Duplicate client order ids are refused with RiskRejected(rule "duplicate_client_order_id"): nothing is sent
  and the order's own state (which shares the id) is untouched — an OrderRejected would mark the original. The
  latest KEEP_SEEN ids offered are kept as a set, the earlier ones archived (handlers/archive.py), so a snapshot
  stays small however many orders went before. (The ids are not consecutive — the engine numbers an order by its
  intent's seq — so the archive packs each id in a few bytes rather than as ranges.)
- A cancel of an order still held here removes it: RiskRejected(rule "canceled_in_queue") for the order, no
  token, nothing sent. A cancel that arrives before its order is offered marks it; the order is then refused
  the same way. So a released cancel always names an order this queue released before (or `restore`d).
- Every hold is an OrderHeld (reason "rate_limit" with the earliest release ts, or "cancel_in_flight" with
  null), emitted again only when the reason changes; every release is an OrderReleased.
- Order: FIFO by offer. `release_due` scans held items oldest first: orders held by a cancel in flight are
  skipped (they keep their place), the others are released while tokens last. `offer`, `offer_cancel` and
  `on_execution` release what is due first, so a newcomer never overtakes an item already waiting.

Released cancels and released orders both are OrderReleased for the order's client_order_id: a release for an
id that already has an OrderSubmitted is a cancel (the queue releases an order id at most once, and a cancel
only after its order).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from itertools import islice
from typing import Any

from handlers.archive import OrderArchive
from projections.snapshot import ROW
from schemas.errors import TapeError
from schemas.names import ENDINGS

NS = 1_000_000_000
QUEUE_KEYS = ("venue", "rate_per_second", "burst")
TERMINAL = frozenset(ENDINGS)


class QueueConfigError(TapeError):
    """A queue config value that cannot be used."""


@dataclass(frozen=True)
class QueueConfig:
    """The queue's settings: the venue it feeds, and its token bucket (no rate: no limit)."""

    venue: str = "SIM"
    rate_per_second: Decimal | None = None
    burst: int = 1

    def canonical(self) -> dict[str, Any]:
        """The bucket's settings as a config dict (what RunStarted records); the venue is the run's, not the file's."""
        return {} if self.rate_per_second is None else {"rate_per_second": self.rate_per_second, "burst": self.burst}


def parse_queue_config(config: dict[str, Any], source: str = "queue config") -> QueueConfig:
    """Validate {venue, rate_per_second, burst}; one-line errors naming the key."""
    if not isinstance(config, dict):
        raise QueueConfigError(f"{source}: expected a table with {', '.join(QUEUE_KEYS)}, got {config!r}")
    for k in config:
        if k not in QUEUE_KEYS:
            raise QueueConfigError(f"{source}: unknown key {k!r}; known keys: {', '.join(QUEUE_KEYS)}")
    venue = config.get("venue", "SIM")
    if not isinstance(venue, str) or not venue:
        raise QueueConfigError(f"{source}: venue must be a venue name, got {venue!r}")
    rate = config.get("rate_per_second")
    if rate is not None:
        try:
            if isinstance(rate, bool):
                raise InvalidOperation
            rate = rate if isinstance(rate, Decimal) else Decimal(str(rate))
        except InvalidOperation:
            rate = None
        if rate is None or not rate.is_finite() or rate <= 0:
            raise QueueConfigError(f"{source}: rate_per_second must be a positive number, got "
                                   f"{config['rate_per_second']!r}")
    default_burst = max(1, int(rate)) if rate is not None else 1
    burst = config.get("burst", default_burst)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise QueueConfigError(f"{source}: burst must be a whole number >= 1, got {burst!r}")
    return QueueConfig(venue, rate, burst)


@dataclass(slots=True)
class _Item:
    seq: int
    kind: str  # "order" or "cancel"
    instrument_id: str
    client_order_id: str
    quantity: Decimal | None
    intent_id: str
    reason: str  # current hold reason


class OutboundQueue:
    """Sequences orders and cancels to one venue; every decision is an event."""

    KEEP_SEEN = 1000  # order ids kept as a set; the earlier ones are archived (the same answers, less room)

    def __init__(self, config: QueueConfig | None = None):
        cfg = config if config is not None else QueueConfig()
        self.venue = cfg.venue
        self.burst = cfg.burst
        self._interval = Fraction(NS) / Fraction(cfg.rate_per_second) if cfg.rate_per_second is not None else None
        self._tolerance = (cfg.burst - 1) * self._interval if self._interval is not None else None
        self._tat: Fraction | None = None  # GCRA theoretical arrival time; None = bucket full
        self._seq = 0
        self._held: dict[int, _Item] = {}  # seq → item, FIFO (insertion order)
        self._held_orders: dict[str, int] = {}  # client_order_id → seq of a held order
        self._seen: dict[str, None] = {}  # the latest order ids offered (duplicates), oldest first
        self._seen_before = OrderArchive(0)  # the earlier ones
        self._open: dict[str, Decimal] = {}  # released, not terminal: id → quantity not yet filled
        self._cancels: dict[str, dict[str, bool]] = {}  # instrument → order ids with a cancel in flight
        self._canceled_early: set[str] = set()  # cancels that came before their order

    # ---- token bucket --------------------------------------------------------------------------------------

    def _conforms(self, now: int) -> bool:
        return self._tat is None or now >= self._tat - self._tolerance

    def _take(self, now: int) -> None:
        if self._interval is not None:
            tat = self._tat
            self._tat = (now if tat is None or tat < now else tat) + self._interval

    def _earliest(self, now: int, ahead: int) -> int:
        """Earliest ts (whole ns) at which an item with `ahead` rate-waiting items before it gets a token."""
        tat = self._tat if self._tat is not None else Fraction(now)
        t = now
        for _ in range(ahead + 1):  # each release happens on a whole ns, which the next one inherits
            due = tat - self._tolerance
            t = max(t, -((-due.numerator) // due.denominator))  # ceil
            tat = max(tat, t) + self._interval
        return t

    # ---- public API ------------------------------------------------------------------------------------------

    def offer(self, order: dict[str, Any], now: int) -> list[tuple[str, dict[str, Any]]]:
        """An order accepted by risk: release it, hold it, or refuse a duplicate id."""
        out = self._release(now)
        iid, cid = order["instrument_id"], order["client_order_id"]
        intent_id = order.get("intent_id", "")
        if self._was_seen(cid):
            out.append(_refusal(iid, cid, intent_id, "duplicate_client_order_id", "unique", cid,
                                f"client order id {cid} was already used; the order is not sent"))
            return out
        self._see(cid)
        if cid in self._canceled_early:
            self._canceled_early.discard(cid)
            out.append(_refusal(iid, cid, intent_id, "canceled_in_queue", "HELD", "CANCELED",
                                f"order {cid} was canceled before it was sent"))
            return out
        self._seq += 1
        item = _Item(self._seq, "order", iid, cid, order["quantity"], intent_id, "")
        self._admit(item, now, out)
        return out

    def offer_cancel(self, cancel: dict[str, Any], now: int) -> list[tuple[str, dict[str, Any]]]:
        """A cancel intent: drop a held order, or send the cancel through the bucket (never held by a cancel)."""
        out = self._release(now)
        iid, cid = cancel["instrument_id"], cancel["client_order_id"]
        seq = self._held_orders.pop(cid, None)
        if seq is not None:
            item = self._held.pop(seq)
            out.append(_refusal(iid, cid, item.intent_id, "canceled_in_queue", "HELD", "CANCELED",
                                f"order {cid} was canceled while held ({item.reason}); it was never sent"))
            return out
        if not self._was_seen(cid):
            self._canceled_early.add(cid)
            return out
        self._seq += 1
        self._admit(_Item(self._seq, "cancel", iid, cid, None, "", ""), now, out)
        return out

    def on_execution(self, name: str, data: dict[str, Any], now: int) -> list[tuple[str, dict[str, Any]]]:
        """Track fills and answers: resolve cancels in flight, then release what they held."""
        cid = data.get("client_order_id")
        if cid is None:
            return []
        resolved = False
        if name == "OrderFilled":
            left = self._open.get(cid)
            if left is not None:
                left -= data["last_quantity"]
                if left > 0:
                    self._open[cid] = left
                else:
                    del self._open[cid]
                    resolved = self._resolve(data["instrument_id"], cid)
        elif name in TERMINAL or name == "OrderCancelRejected":
            if name != "OrderCancelRejected":
                self._open.pop(cid, None)
            resolved = self._resolve(data["instrument_id"], cid)
        return self._release(now) if resolved else []

    def release_due(self, now: int) -> list[tuple[str, dict[str, Any]]]:
        """Release held items whose tokens are available and that no cancel holds, oldest first."""
        if not self._held:
            return []
        return self._release(now)

    def adopt(self, open_orders: Iterable[Any]) -> None:
        """Orders already at the venue (Orders.open()) that this queue did not release, so cancels for them are
        sent."""
        for o in open_orders:
            if not self._was_seen(o.client_order_id):
                self._see(o.client_order_id)
            self._open[o.client_order_id] = o.leaves_quantity

    def snapshot(self) -> dict[str, Any]:
        """Everything the queue holds between steps as plain data (the bucket's time as an exact fraction)."""
        held = [[i.seq, i.kind, i.instrument_id, i.client_order_id, i.quantity, i.intent_id, i.reason]
                for i in self._held.values()]
        return {"tat": None if self._tat is None else str(self._tat), "seq": self._seq, "held": held,
                "seen": ROW.join(self._seen), "seen_before": self._seen_before.snapshot(), "open": dict(self._open),
                "cancels": {iid: sorted(per) for iid, per in self._cancels.items()},
                "canceled_early": sorted(self._canceled_early)}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from what snapshot() gave."""
        self._tat = None if state["tat"] is None else Fraction(state["tat"])
        self._seq = state["seq"]
        self._held = {row[0]: _Item(*row) for row in state["held"]}
        self._held_orders = {i.client_order_id: i.seq for i in self._held.values() if i.kind == "order"}
        self._seen = dict.fromkeys(state["seen"].split(ROW)) if state["seen"] else {}
        self._seen_before.restore(state["seen_before"])
        self._open = dict(state["open"])
        self._cancels = {iid: dict.fromkeys(cids, True) for iid, cids in state["cancels"].items()}
        self._canceled_early = set(state["canceled_early"])

    # ---- internals -------------------------------------------------------------------------------------------

    def _was_seen(self, cid: str) -> bool:
        return cid in self._seen or cid in self._seen_before

    def _see(self, cid: str) -> None:
        """Remember an order id (not seen before); archive the earliest beyond KEEP_SEEN, a tenth at a time."""
        seen = self._seen
        seen[cid] = None
        keep = self.KEEP_SEEN
        if len(seen) > keep + keep // 10 + 1:
            for old in list(islice(seen, len(seen) - keep)):
                del seen[old]
                self._seen_before.add(old)

    def _resolve(self, iid: str, cid: str) -> bool:
        per = self._cancels.get(iid)
        if per is None or cid not in per:
            return False
        del per[cid]
        if not per:
            del self._cancels[iid]
        return True

    def _blocked(self, item: _Item) -> bool:
        return item.kind == "order" and item.instrument_id in self._cancels

    def _admit(self, item: _Item, now: int, out: list) -> None:
        """A new item: release it now, or hold it behind a cancel or the bucket."""
        if self._blocked(item):
            self._hold(item, "cancel_in_flight", None, out)
            return
        ahead = sum(1 for h in self._held.values() if not self._blocked(h))
        if ahead == 0 and self._conforms(now):
            self._send(item, now, out)
            return
        self._hold(item, "rate_limit", self._earliest(now, ahead), out)

    def _hold(self, item: _Item, reason: str, release_after: int | None, out: list) -> None:
        item.reason = reason
        self._held[item.seq] = item
        if item.kind == "order":
            self._held_orders[item.client_order_id] = item.seq
        out.append(("OrderHeld", {"instrument_id": item.instrument_id, "client_order_id": item.client_order_id,
                                  "reason": reason, "release_after_ts": release_after}))

    def _send(self, item: _Item, now: int, out: list) -> None:
        self._take(now)
        if item.kind == "order":
            self._open[item.client_order_id] = item.quantity  # type: ignore[assignment]
        elif item.client_order_id in self._open:  # in flight until answered (a finished order's blocks nothing)
            self._cancels.setdefault(item.instrument_id, {})[item.client_order_id] = True
        out.append(("OrderReleased", {"instrument_id": item.instrument_id, "client_order_id": item.client_order_id,
                                       "venue": self.venue, "action": "SUBMIT" if item.kind == "order" else "CANCEL"}))

    def _release(self, now: int) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        if not self._held:
            return out
        waiting = 0  # unblocked items left waiting for tokens, ahead of the one scanned
        for seq, item in list(self._held.items()):
            if self._blocked(item):
                if item.reason != "cancel_in_flight":  # a cancel ahead of it was just released
                    item.reason = "cancel_in_flight"
                    out.append(("OrderHeld", {"instrument_id": item.instrument_id,
                                              "client_order_id": item.client_order_id, "reason": "cancel_in_flight",
                                              "release_after_ts": None}))
                continue
            if waiting == 0 and self._conforms(now):
                del self._held[seq]
                if item.kind == "order":
                    del self._held_orders[item.client_order_id]
                self._send(item, now, out)
                continue
            if item.reason != "rate_limit":  # was held by a cancel that is now resolved
                item.reason = "rate_limit"
                out.append(("OrderHeld", {"instrument_id": item.instrument_id,
                                          "client_order_id": item.client_order_id, "reason": "rate_limit",
                                          "release_after_ts": self._earliest(now, waiting)}))
            waiting += 1
        return out


def _refusal(iid: str, cid: str, intent_id: str, rule: str, limit: str, value: str, reason: str) -> tuple:
    return ("RiskRejected", {"instrument_id": iid, "client_order_id": cid, "intent_id": intent_id, "rule": rule,
                             "limit": limit, "value": value, "reason": reason})
