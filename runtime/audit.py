"""The audit trail: one order's causal chain, the fills of a run, and the proof that a log was not altered.

Three queries over the log, no read model needed:

- `order_chain`: every event of one order (correlation id = client order id, from the intent to the last
  fill), preceded by the event that triggered the intent (resolved across namespaces through its event id:
  a backtest's intents are caused by the SOURCE namespace's market events). Each step carries its ts_event,
  its ts_init and the latency from the step before. Latency is measured on the runtime's clock: the ts_init
  of each step; a trigger from another namespace counts at its ts_event (the instant the run's clock took
  from it), so a backtest shows the processing chain, not the time the history was imported.
- `list_trades`: OrderFilled events of one or more namespaces as flat rows with exact decimals.
- `verify`: walks the committed events in seq order and checks the hash chain of the envelope
  (prev_hash = sha256 of the previous COMMITTED event's stored value), every commit record's last_hash, the
  completeness of every committed range and the frame fields (seq, type, ts_event) against the envelope.
  Seqs in a gap between committed ranges belong to a step torn by a crash: they were never delivered, the
  writer chains the next step from the last committed event, so they are reported as information, not as
  breaks. The first break stops the walk.
"""
from __future__ import annotations

import decimal
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, Iterator

from eventstore.errors import CorruptLog, TapeError
from eventstore.replay import Event, merge_by_seq
from eventstore.store import Log
from projections.orders import RISK_REJECTED, UNKNOWN, lifecycle_status
from schemas.decimals import EXACT as _EXACT, exact_text, plain, text as value_text
from schemas.ids import is_run_namespace, order_id_prefix, parse_client_order_id, parse_event_id
from schemas.names import ORDER_CHAIN


from .render import summary
from .timeparse import format_ns

# every event type that carries an order's client order id
CHAIN_TYPES = ORDER_CHAIN
STEP_KIND = {"OrderIntent": "intent", "CancelIntent": "cancel", "RiskAccepted": "risk", "RiskRejected": "risk",
             "OrderHeld": "queue", "OrderReleased": "queue", "OrderSubmitted": "submit", "OrderFilled": "fill"}


class UnknownOrder(TapeError):
    """No namespace holds an order (or event) with that id."""


# ---- time and hash formatting ---------------------------------------------------------------------------------


def human_ns(ns: int | None) -> str:
    """A duration in ns as people read it: 0, 850 ns, 12.5 µs, 3.2 ms, 60 s, 13d 20h 48m."""
    if ns is None:
        return ""
    sign, n = ("-", -ns) if ns < 0 else ("", ns)
    if n == 0:
        return "0"
    if n < 1_000:
        return f"{sign}{n} ns"
    for unit, size in (("µs", 1_000), ("ms", 1_000_000)):
        if n < size * 1_000:
            return f"{sign}{_trim(n / size)} {unit}"
    if n <= 60_000_000_000:
        return f"{sign}{_trim(n / 1_000_000_000)} s"
    seconds = n // 1_000_000_000
    parts = [(seconds // 86400, "d"), (seconds // 3600 % 24, "h"), (seconds // 60 % 60, "m"), (seconds % 60, "s")]
    while parts and parts[0][0] == 0:
        parts.pop(0)
    return sign + " ".join(f"{v}{u}" for v, u in parts[:3] if v)


def _trim(x: float) -> str:
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def short_hex(b: bytes | None, n: int = 16) -> str:
    if b is None:
        return "-"
    if not b:
        return "(empty)"
    h = bytes(b).hex()
    return h if len(h) <= n else h[:n] + "…"




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
    if n == "OrderTriggered":
        return "triggered"
    if n == "OrderFilled":
        return (f"fill {d['trade_id']}: {d['side']} {value_text(d['last_quantity'])} @ {value_text(d['last_price'])}, "
                f"fee {value_text(d['fee'])} {d['fee_currency']}, {d['liquidity_side']}")
    return summary(ev)


def _run_namespaces(log: Log) -> list[str]:
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
        candidates = _run_namespaces(log)
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
            where = [namespace] if namespace else sorted({ident.rpartition(":")[0], *_run_namespaces(log)})
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


# ---- trades ---------------------------------------------------------------------------------------------------

TRADE_COLUMNS = ("namespace", "time", "ts_event", "instrument_id", "side", "price", "quantity", "fee",
                 "fee_currency", "liquidity_side", "client_order_id", "trade_id", "venue_order_id", "seq")


def trade_namespaces(log: Log, namespace: str | None) -> list[str]:
    if namespace is None:
        return _run_namespaces(log)
    if namespace not in log.namespaces():
        raise TapeError(f"no namespace {namespace!r} in {log.url}: `tape log namespaces` lists them")
    return [namespace]


def list_trades(log: Log, namespaces: Iterable[str], from_ts: int | None = None,
                to_ts: int | None = None) -> Iterator[dict[str, Any]]:
    """One row per OrderFilled (namespace by namespace, in seq order); decimals as exact normalized text."""
    for ns in namespaces:
        for ev in log.replay(ns, types=["OrderFilled"], from_ts=from_ts, to_ts=to_ts):
            d = ev.data
            yield {
                "namespace": ns,
                "time": format_ns(ev.ts_event),
                "ts_event": ev.ts_event,
                "instrument_id": d["instrument_id"],
                "side": d["side"],
                "price": exact_text(d["last_price"]),
                "quantity": exact_text(d["last_quantity"]),
                "fee": exact_text(d["fee"]),
                "fee_currency": d["fee_currency"],
                "liquidity_side": d["liquidity_side"],
                "client_order_id": d["client_order_id"],
                "trade_id": d["trade_id"],
                "venue_order_id": d.get("venue_order_id") or "",
                "seq": ev.seq,
            }


# ---- hash-chain verification ----------------------------------------------------------------------------------


@dataclass
class Break:
    """The first place where the log is not what its writer wrote."""

    kind: str
    seq: int | None
    message: str
    expected: bytes | int | str | None = None
    found: bytes | int | str | None = None

    def text(self, namespace: str = "") -> str:
        where = f" at seq {self.seq}" if self.seq is not None else ""
        out = f"BROKEN{' ' + namespace if namespace else ''}{where}: {self.kind}: {self.message}"
        if self.expected is not None or self.found is not None:
            out += f" (expected {_shown(self.expected)}, found {_shown(self.found)})"
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "message": self.message,
                "expected": _json_value(self.expected), "found": _json_value(self.found)}


def _shown(v: Any) -> str:
    return short_hex(v) if isinstance(v, (bytes, bytearray)) else ("-" if v is None else str(v))


def _json_value(v: Any) -> Any:
    return bytes(v).hex() if isinstance(v, (bytes, bytearray)) else v


@dataclass
class Torn:
    """A gap between committed ranges: a step torn by a crash, never delivered."""

    first: int
    last: int
    records: int = 0


@dataclass
class VerifyResult:
    namespace: str
    events: int = 0
    commits: int = 0
    last_seq: int = 0
    head: bytes = b""
    torn: list[Torn] = field(default_factory=list)
    brk: Break | None = None

    @property
    def ok(self) -> bool:
        return self.brk is None

    @property
    def torn_records(self) -> int:
        return sum(t.records for t in self.torn)

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "ok": self.ok, "events": self.events, "commits": self.commits,
                "last_seq": self.last_seq, "head": self.head.hex(),
                "torn_steps": [{"first": t.first, "last": t.last, "records": t.records} for t in self.torn],
                "break": self.brk.as_dict() if self.brk else None}


class _Stop(Exception):
    pass


def verify(log: Log, namespace: str) -> VerifyResult:
    """Walk the committed events of a namespace and check every link; stops at the first break."""
    reader = log.backend.open_reader(namespace)
    res = VerifyResult(namespace)
    try:
        try:
            codec = log.codec(namespace)
        except TapeError as e:  # a registry file that no longer hashes to its name
            res.brk = Break("schema registry", None, str(e))
            return res
        _Walk(reader, codec, res).run()
    except CorruptLog as e:
        res.brk = Break("corrupt batch", None, f"{e} (after seq {res.last_seq})")
    except _Stop:
        pass
    finally:
        reader.close()
    return res


class _Walk:
    """The verification state machine; `fail` records the break and stops."""

    def __init__(self, reader: Any, codec: Any, res: VerifyResult):
        self.reader = reader
        self.codec = codec
        self.res = res
        self.horizon = reader.horizon()
        self.commits = reader.commits(1)
        self.commit: Any = None
        self.expect = 1  # next seq the current commit still owes
        self.prev_commit_last = 0
        self.chain = b""  # sha256 of the last committed event (what the next one must carry)
        self.chain_seq: int | None = None
        # a link that failed: (seq before, seq after, recorded prev_hash, recomputed hash). Which of the two
        # records was altered is decided by the next link of the later one (it fails too only if it changed).
        self.pending: tuple[int | None, int, bytes, bytes] | None = None

    def fail(self, kind: str, seq: int | None, message: str, expected: Any = None, found: Any = None) -> None:
        if self.pending is not None and kind != "prev_hash mismatch":
            self._blame_earlier()  # an unresolved link broke first
        self.res.brk = Break(kind, seq, message, expected, found)
        raise _Stop()

    def next_commit(self) -> Any:
        c = next(self.commits, None)
        if c is None or c.last > self.horizon:
            return None
        if c.first > c.last or c.first <= self.prev_commit_last:
            self.fail("commit journal", c.last, f"commit record {c.first}..{c.last} does not follow the previous "
                      f"commit (last seq {self.prev_commit_last})")
        if c.first > self.prev_commit_last + 1:
            self.res.torn.append(Torn(self.prev_commit_last + 1, c.first - 1))
        self.prev_commit_last = c.last
        self.res.commits += 1
        return c

    def link(self, seq: int, recorded: bytes, what: str) -> None:
        """Check the link from the last committed event to `seq` (whose envelope recorded `recorded`)."""
        ok = recorded == self.chain
        if self.pending is not None:
            before, after, rec, comp = self.pending
            if ok:  # the later record still chains on: the earlier one was altered
                self._blame_earlier()
            # the later record's own hash changed too: it is the altered one (its prev_hash field)
            self.fail("prev_hash mismatch", after,
                      f"the record of seq {after} was altered: its prev_hash no longer names seq {before} "
                      f"and its own hash no longer matches {what}", comp, rec)
        if not ok:
            if self.chain_seq is None:
                self.fail("prev_hash mismatch", seq, "the first committed event must carry an empty prev_hash",
                          self.chain, recorded)
            self.pending = (self.chain_seq, seq, recorded, self.chain)

    def _blame_earlier(self) -> None:
        before, after, rec, comp = self.pending  # type: ignore[misc]
        self.fail("prev_hash mismatch", before,
                  f"the record of seq {before} was altered: its sha256 no longer matches the prev_hash recorded by "
                  f"seq {after}", rec, comp)

    def run(self) -> None:
        reader, res, codec = self.reader, self.res, self.codec
        if self.horizon == 0:
            return
        cursors = [reader.cursor(t, i) for t, n in reader.partitions.items() for i in range(n)]
        records = merge_by_seq([c.read_until(self.horizon) for c in cursors])
        sha = hashlib.sha256
        last_seen = 0
        for r in records:
            s = r.seq
            if s <= last_seen:
                self.fail("seq out of order", s, f"seq {s} follows seq {last_seen}: seqs must strictly increase",
                          last_seen + 1, s)
            last_seen = s
            while self.commit is None or self.commit.last < s:
                self._close_commit()
                self.commit = self.next_commit()
                if self.commit is None:
                    break
                self.expect = self.commit.first
            c = self.commit
            if c is None or s < c.first:  # in a gap between committed ranges: a torn step
                if res.torn and res.torn[-1].first <= s <= res.torn[-1].last:
                    res.torn[-1].records += 1
                continue
            if s != self.expect:
                self.fail("missing event", self.expect, f"seq {self.expect} of committed range {c.first}..{c.last} "
                          f"is missing from the partitions (next present: seq {s})")
            self.expect = s + 1
            value = r.value if isinstance(r.value, bytes) else bytes(r.value)
            try:
                name, data = codec.decode(value)
                env = data["envelope"]
                recorded = env["prev_hash"]
            except Exception as e:  # fastavro raises many kinds on garbage
                self.fail("undecodable record", s, f"the value of seq {s} does not decode ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:120]})")
            if env["seq"] != s:
                self.fail("frame mismatch", s, "the record frame's seq differs from the envelope's", s, env["seq"])
            if name.encode() != bytes(r.type):
                self.fail("frame mismatch", s, "the record frame's type differs from the value's schema",
                          name, bytes(r.type).decode(errors="replace"))
            if env["ts_event"] != r.ts:
                self.fail("frame mismatch", s, "the record frame's ts_event differs from the envelope's",
                          env["ts_event"], r.ts)
            self.link(s, recorded, "the prev_hash recorded by the next event")
            h = sha(value).digest()
            self.chain, self.chain_seq = h, s
            res.events += 1
            res.last_seq = s
            res.head = h
            if s == c.last:
                if h != c.last_hash:
                    if self.pending is not None and self.pending[1] == s:
                        before = self.pending[0]
                        self.fail("prev_hash mismatch", s, f"the record of seq {s} was altered: its prev_hash no "
                                  f"longer names seq {before} and its hash no longer matches its commit record",
                                  self.pending[3], self.pending[2])
                    self.fail("commit hash mismatch", s, f"the record of seq {s} was altered: its sha256 differs "
                              f"from the last_hash of commit {c.first}..{c.last}", c.last_hash, h)
                if self.pending is not None:
                    self._blame_earlier()
        self._close_commit()
        if self.pending is not None:
            self._blame_earlier()
        # commits with no record at all left
        c = self.next_commit()
        if c is not None:
            self.fail("missing event", c.first, f"committed range {c.first}..{c.last} has no event in the partitions")

    def _close_commit(self) -> None:
        c = self.commit
        if c is not None and self.expect <= c.last:
            self.fail("missing event", self.expect,
                      f"seq {self.expect} of committed range {c.first}..{c.last} is missing from the partitions")
