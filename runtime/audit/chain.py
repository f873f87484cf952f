"""What happened to order X, and why: one order's causal chain, from the event that triggered it to its last fill.

`order_chain` gives every event of one order (correlation id = client order id, from the intent to the last
fill), preceded by the event that triggered the intent (resolved across namespaces through its event id: a
backtest's intents are caused by the SOURCE namespace's market events). Each step carries its ts_event, its
ts_init and the latency from the step before. Latency is measured on the runtime's clock: the ts_init of each
step; a trigger from another namespace counts at its ts_event (the instant the run's clock took from it), so a
backtest shows the processing chain, not the time the history was imported. The order's status is the one
lifecycle vocabulary of projections/orders.py (the SQL orders table shows the same).
"""
from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eventstore.errors import TapeError
from eventstore.replay import Event
from eventstore.store import Log
from projections.orders import RISK_REJECTED, UNKNOWN, lifecycle_status
from runtime.render import summary
from runtime.times import format_ns, human_ns
from schemas.decimals import EXACT as _EXACT, plain, text as value_text
from schemas.ids import is_run_namespace, order_id_prefix, parse_client_order_id, parse_event_id
from schemas.names import ORDER_CHAIN

# every event type that carries an order's client order id
CHAIN_TYPES = ORDER_CHAIN
STEP_KIND = {"OrderIntent": "intent", "CancelIntent": "cancel", "RiskAccepted": "risk", "RiskRejected": "risk",
             "OrderHeld": "queue", "OrderReleased": "queue", "OrderSubmitted": "submit", "OrderFilled": "fill"}


class UnknownOrder(TapeError):
    """No namespace holds an order (or event) with that id."""


# ---- order chains ---------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One event of an order's chain as the audit shows it."""

    kind: str
    event: Event
    namespace: str
    clock: int
    latency_ns: int | None = None
    note: str = ""

    @property
    def type(self) -> str:
        return self.event.name

    @property
    def envelope(self) -> dict[str, Any]:
        return self.event.envelope

    @property
    def event_id(self) -> str:
        return self.envelope["event_id"]

    @property
    def ts_event(self) -> int:
        return self.envelope["ts_event"]

    @property
    def ts_init(self) -> int:
        return self.envelope["ts_init"]

    def detail(self) -> str:
        return describe(self.event, self.note)

    def as_dict(self) -> dict[str, Any]:
        env = self.envelope
        return {
            "step": self.kind,
            "type": self.type,
            "event_id": env["event_id"],
            "namespace": self.namespace,
            "seq": env["seq"],
            "ts_event": env["ts_event"],
            "ts_init": env["ts_init"],
            "time_event": format_ns(env["ts_event"]),
            "time_init": format_ns(env["ts_init"]),
            "latency_ns": self.latency_ns,
            "latency": human_ns(self.latency_ns),
            "source": env["source"],
            "causation_id": env["causation_id"],
            "correlation_id": env["correlation_id"],
            "detail": self.detail(),
            "data": {k: plain(v) for k, v in self.event.data.items() if k != "envelope"},
        }


@dataclass
class OrderAudit:
    client_order_id: str
    namespace: str
    steps: list[Step]
    summary: dict[str, Any]

    def as_json(self) -> list[dict[str, Any]]:
        """The steps in order, then one `summary` entry."""
        s = {"step": "summary", "client_order_id": self.client_order_id, "namespace": self.namespace}
        s.update({k: plain(v) for k, v in self.summary.items()})
        return [st.as_dict() for st in self.steps] + [s]


def describe(ev: Event, note: str = "") -> str:
    """One human line of what an event of an order chain says."""
    d = ev.data
    n = ev.name
    if n == "Bar":
        return (f"{d['timeframe']} bar close {value_text(d['close'])} (open {value_text(d['open'])} high {value_text(d['high'])} "
                f"low {value_text(d['low'])} volume {value_text(d['volume'])})")
    if n == "TradeTick":
        return f"trade {value_text(d['quantity'])} @ {value_text(d['price'])} {d['aggressor_side']}"
    if n == "QuoteTick":
        return f"bid {value_text(d['bid_size'])} @ {value_text(d['bid_price'])} / ask {value_text(d['ask_size'])} @ {value_text(d['ask_price'])}"
    if n == "OrderIntent":
        text = f"{d['strategy_id']}: {d['side']} {value_text(d['quantity'])} {d['instrument_id']} {d['order_type']}"
        if d.get("price") is not None:
            text += f" @ {value_text(d['price'])}"
        if d.get("trigger_price") is not None:
            text += f" trigger {value_text(d['trigger_price'])}"
        return text + f" {d['time_in_force']}" + (" post-only" if d.get("post_only") else "") + \
            (" reduce-only" if d.get("reduce_only") else "")
    if n == "CancelIntent":
        return f"{d['strategy_id']}: cancel" + (f" ({d['reason']})" if d.get("reason") else "")
    if n == "RiskAccepted":
        return "accepted by risk"
    if n == "RiskRejected":
        return f"rejected by risk: rule {d['rule']}, limit {d['limit']}, value {d['value']}: {d['reason']}"
    if n == "OrderHeld":
        until = d.get("release_after_ts")
        return f"held: {d['reason']}" + (f" until {format_ns(until)}" if until is not None else "")
    if n == "OrderReleased":
        return f"{note or 'order'} released to {d['venue']}"
    if n == "OrderSubmitted":
        text = f"sent to {d['venue']}: {d['side']} {value_text(d['quantity'])} {d['order_type']}"
        return text + (f" @ {value_text(d['price'])}" if d.get("price") is not None else "")
    if n == "OrderAccepted":
        return "accepted by venue" + (f" (venue id {d['venue_order_id']})" if d.get("venue_order_id") else "")
    if n == "OrderRejected":
        return f"rejected by venue: {d['reason_code']} {d['reason']}".rstrip()
    if n == "OrderCanceled":
        return "canceled" + (f": {d['reason']}" if d.get("reason") else "")
    if n == "OrderCancelRejected":
        return "cancel rejected" + (f": {d['reason']}" if d.get("reason") else "")
    if n == "OrderExpired":
        return "expired"
    if n == "OrderOutcomeUnknown":
        return f"{d['action'].lower()} answer lost ({d['error']}): looked up by client order id, never re-sent"
    if n == "OrderResolvedAbsent":
        return (f"not at {d['venue']}: {d['lookups']} lookups by client order id and the trade history found nothing "
                f"after {d['window_ns'] / 1e9:g} s; never sent again")
    if n == "OrderTriggered":
        return "triggered"
    if n == "OrderFilled":
        return (f"fill {d['trade_id']}: {d['side']} {value_text(d['last_quantity'])} @ {value_text(d['last_price'])}, "
                f"fee {value_text(d['fee'])} {d['fee_currency']}, {d['liquidity_side']}")
    return summary(ev)


def run_namespaces(log: Log) -> list[str]:
    """The namespaces a runtime wrote (bt-…, live-…), where orders live."""
    return [ns for ns in log.namespaces() if is_run_namespace(ns)]


def _event_at(log: Log, namespace: str, seq: int) -> Event | None:
    for ev in log.replay(namespace, from_seq=seq, to_seq=seq):
        return ev if ev.seq == seq else None
    return None


def resolve_event_id(log: Log, event_id: str, namespaces: list[str] | None = None) -> Event | None:
    """The event an event id names, in whatever namespace of the store it lives; None if none."""
    parsed = parse_event_id(event_id)
    if parsed is None:
        return None
    ns, seq = parsed
    if ns not in (namespaces if namespaces is not None else log.namespaces()):
        return None
    return _event_at(log, ns, seq)


def _value(r: Any) -> bytes:
    v = r.value
    return v if isinstance(v, bytes) else bytes(v)


def _scan_order(log: Log, namespace: str, cid: str, from_seq: int | None = None) -> list[Event]:
    """Every event of the namespace that belongs to the order (its client order id or its correlation id)."""
    needle = cid.encode()
    replay = log.replay(namespace, types=CHAIN_TYPES, from_seq=from_seq)
    codec = replay.codec
    out = []
    for r in replay.records():
        if needle not in _value(r):  # cheap filter before decoding
            continue
        ev = Event(r, codec)
        d = ev.data
        if d.get("client_order_id") == cid or d["envelope"].get("correlation_id") == cid:
            out.append(ev)
    return out


def find_order(log: Log, cid: str, namespace: str | None = None) -> tuple[str, list[Event]]:
    """(namespace, events) of an order; searches run namespaces (bt-*, live-*) unless one is given.

    An engine client order id is `<prefix>-<seq>`, the prefix a hash of the namespace and seq the seq of the
    order's intent: the namespace whose prefix matches is searched first, from that seq.
    """
    if namespace is not None:
        candidates = [namespace]
    else:
        candidates = run_namespaces(log)
    parsed = parse_client_order_id(cid)
    if parsed is not None:
        prefix, intent_seq = parsed
        candidates.sort(key=lambda ns: order_id_prefix(ns) != prefix)  # stable: matching prefix first
    for ns in candidates:
        events: list[Event] = []
        if parsed is not None and order_id_prefix(ns) == prefix:
            events = _scan_order(log, ns, cid, from_seq=intent_seq)
        if not events:
            events = _scan_order(log, ns, cid)
        if events:
            return ns, events
    where = f"namespace {namespace}" if namespace else (
        f"the run namespaces ({', '.join(candidates)})" if candidates else "the store (it has no bt-/live- namespace)")
    raise UnknownOrder(f"no order {cid!r} in {where}: `tape audit trades` lists client order ids; "
                       "or pass an event id NS:SEQ")


def _orders_caused_by(log: Log, event_id: str, namespaces: list[str]) -> list[tuple[str, str]]:
    """(namespace, client order id) of every intent whose causation is the event."""
    needle = event_id.encode()
    out = []
    for ns in namespaces:
        replay = log.replay(ns, types=["OrderIntent"])
        for r in replay.records():
            if needle in _value(r):
                ev = Event(r, replay.codec)
                if ev.envelope["causation_id"] == event_id:
                    out.append((ns, ev.data["client_order_id"]))
    return out


def order_chain(log: Log, ident: str, namespace: str | None = None) -> OrderAudit:
    """The causal chain of an order named by its client order id, or by the event id of any event of it."""
    known = log.namespaces()
    if namespace is not None and namespace not in known:
        raise UnknownOrder(f"no namespace {namespace!r} in {log.url}: `tape log namespaces` lists them")
    cid = ident
    ev = resolve_event_id(log, ident, known)
    if ev is not None:
        cid = ev.data.get("client_order_id") or ev.envelope.get("correlation_id")
        if cid:
            namespace = ev.envelope["event_id"].rpartition(":")[0]
        else:  # an event outside any order (a market event, a timer): the orders it triggered
            where = [namespace] if namespace else sorted({ident.rpartition(":")[0], *run_namespaces(log)})
            caused = _orders_caused_by(log, ident, where)
            if not caused:
                raise UnknownOrder(f"event {ident} ({ev.name}) is not part of an order and triggered none "
                                   f"in {', '.join(where)}")
            if len(caused) > 1:
                listed = ", ".join(f"{c} ({ns})" for ns, c in caused[:5]) + (" …" if len(caused) > 5 else "")
                raise UnknownOrder(f"event {ident} ({ev.name}) triggered {len(caused)} orders: {listed}; "
                                   "audit one of them (add --namespace NS to narrow the search)")
            namespace, cid = caused[0]
    elif parse_event_id(ident) is not None and ident.rpartition(":")[0] in known:
        raise UnknownOrder(f"no event {ident}: seq {ident.rpartition(':')[2]} is not committed in "
                           f"{ident.rpartition(':')[0]}")
    ns, events = find_order(log, cid, namespace)
    return build_chain(log, ns, cid, events)


def build_chain(log: Log, namespace: str, cid: str, events: list[Event]) -> OrderAudit:
    """Steps (trigger first, then the order's events in seq order) with latencies, and the summary."""
    events = sorted(events, key=lambda e: e.seq)
    steps: list[Step] = []
    intent = next((e for e in events if e.name == "OrderIntent"), None)
    cause = (intent or events[0]).envelope["causation_id"]
    if cause:
        trigger = resolve_event_id(log, cause)
        if trigger is not None:
            foreign = cause.rpartition(":")[0] != namespace
            clock = trigger.ts_event if foreign else trigger.envelope["ts_init"]
            steps.append(Step("trigger", trigger, cause.rpartition(":")[0], clock))
    submitted = False
    for e in events:
        note = ""
        if e.name == "OrderReleased":
            note = "cancel" if submitted else "order"
        if e.name == "OrderSubmitted":
            submitted = True
        kind = STEP_KIND.get(e.name, "venue")
        steps.append(Step(kind, e, namespace, e.envelope["ts_init"], note=note))
    for prev, cur in zip(steps, steps[1:]):
        cur.latency_ns = cur.clock - prev.clock
    return OrderAudit(cid, namespace, steps, _summary(events, cause, steps))


def _summary(events: list[Event], cause: str | None, steps: list[Step]) -> dict[str, Any]:
    by_name: dict[str, list[Event]] = {}
    for e in events:
        by_name.setdefault(e.name, []).append(e)
    order = (by_name.get("OrderSubmitted") or by_name.get("OrderIntent") or [None])[0]
    qty = order.data["quantity"] if order is not None else None
    fills = by_name.get("OrderFilled", [])
    with decimal.localcontext(_EXACT):
        filled = sum((f.data["last_quantity"] for f in fills), Decimal(0))
        notional = sum((f.data["last_price"] * f.data["last_quantity"] for f in fills), Decimal(0))
        avg = notional / filled if filled else None
        fees: dict[str, Decimal] = {}
        for f in fills:
            fees[f.data["fee_currency"]] = fees.get(f.data["fee_currency"], Decimal(0)) + f.data["fee"]
    status = UNKNOWN
    done = Decimal(0)
    with decimal.localcontext(_EXACT):
        for e in events:
            if e.name == "OrderFilled":
                done += e.data["last_quantity"]
            status = lifecycle_status(status, e.name, complete=qty is not None and done >= qty)
    risk_rejected = by_name.get("RiskRejected") if status == RISK_REJECTED else None
    out: dict[str, Any] = {
        "status": status,
        "instrument_id": events[0].data.get("instrument_id"),
        "side": order.data["side"] if order is not None else None,
        "quantity": qty,
        "filled_quantity": filled,
        "avg_price": avg,
        "fills": len(fills),
        "fees": fees,
        "trigger": cause,
        "events": len(events),
        "total_latency_ns": steps[-1].clock - steps[0].clock if len(steps) > 1 else 0,
    }
    if risk_rejected:
        d = risk_rejected[-1].data
        out.update(rule=d["rule"], limit=d["limit"], value=d["value"], reason=d["reason"])
    return out


