"""Snapshots of the engine's state as Avro records: schemas/state/EngineState.avsc, carried by SnapshotTaken.

`State.snapshot()` gives every projection as plain data; here it becomes an `EngineState` record (plus the
position in the log, and the strategy's own state) encoded with Avro single-object encoding: C3 01, the
CRC-64-AVRO fingerprint of the writer schema, the body. `SnapshotTaken.state_schema` names the schema
('tape.state.EngineState@<fingerprint hex>'), and the writer registers it in the namespace's registry like an
event schema, so a snapshot written by older code decodes through schema resolution to today's record.

A live namespace's snapshots also carry the handlers' state (`handlers`: tape.state.HandlerState, versioned):
each component's plain data as Values, their decimals as exact text, so what a restart restores is what the
component held, digit for digit.

Decimals: fields copied from events (prices, quantities, instrument rules) are decimal(38,18), as in the
events. Values the folds compute (balances, PnL, averages, equity …) use a union [decimal(38,18), string]:
the decimal when the value fits 18 places and 38 digits, else its exact text — a snapshot never rounds.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import parse_schema

from eventstore.catalog import Catalog, EventType
from eventstore.codec import Codec, Registry
from eventstore.errors import SchemaError, TapeError
from projections.orders import ORDER_FIELDS, TERMINAL
from projections.state import State
from schemas.decimals import ARITHMETIC as _SENS_CTX, EXACT as _QCTX, PRECISION, Q18

STATE_TYPE = "tape.state.EngineState"
_MAX_UNSCALED = 10 ** PRECISION


def fits(d: Decimal) -> Decimal | None:
    """`d` quantized to 18 places when that is exact and within 38 digits, else None."""
    if not d.is_finite():
        return None
    try:
        q = d.quantize(Q18, context=_QCTX)
    except InvalidOperation:
        return None
    if q != d or abs(q.scaleb(18)) >= _MAX_UNSCALED:
        return None
    return q


def _to_union(d: Any) -> Any:
    """A computed decimal as its exact-decimal union branch: the decimal when it fits, else its text."""
    if isinstance(d, Decimal):
        q = fits(d)
        return q if q is not None else str(d)
    return d


def _from_union(x: Any) -> Any:
    """The Decimal an exact-decimal union holds, whichever branch was written."""
    return Decimal(x) if isinstance(x, str) else x


def _to_unions(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _to_union(v) for k, v in d.items()}


def _from_unions(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _from_union(v) for k, v in d.items()}


# the exact-decimal unions of each record, named once for both directions (to_record/StateEncoder and from_record)
ORDER_NUMS = ("filled_quantity", "leaves_quantity", "avg_fill_price", "filled_notional")
POSITION_NUMS = ("multiplier", "quantity", "avg_price", "realized_pnl", "traded_quantity", "traded_notional",
                 "last_fill_price")
RISK_NUMS = ("equity", "peak_equity", "day_start_equity")


def _order_record(o: Any) -> dict[str, Any]:
    """An Order (object or plain row) as an OrderState record."""
    row = {f: getattr(o, f) for f in ORDER_FIELDS} if not isinstance(o, dict) else dict(o)
    for f in ORDER_NUMS:
        row[f] = _to_union(row[f])
    row["fees"] = _to_unions(row["fees"])
    return row


def _parts(plain: dict[str, Any]) -> dict[str, Any]:
    """market, portfolio and risk of a plain state as record parts (exact-decimal unions resolved)."""
    market = dict(plain["market"])
    market["last_price"] = _to_unions(market["last_price"])
    pf = dict(plain["portfolio"])
    pf["balances"], pf["fees"] = _to_unions(pf["balances"]), _to_unions(pf["fees"])
    positions = []
    for row in pf["positions"]:
        row = dict(row)
        for f in POSITION_NUMS:
            row[f] = _to_union(row[f])
        row["fees"] = _to_unions(row["fees"])
        positions.append(row)
    pf["positions"] = positions
    risk = dict(plain["risk"])
    for f in RISK_NUMS:
        risk[f] = _to_union(risk[f])
    risk["sensitivities"] = [{"instrument_id": x["instrument_id"], "value": _to_union(x["value"])}
                             for x in risk["sensitivities"]]
    risk["marks"] = _to_unions(risk["marks"])
    return {"market": market, "portfolio": pf, "risk": risk}


# ---- the strategy's own state: tape.state.Value -------------------------------------------------------------


def _value(x: Any, path: str, text: bool = False) -> dict[str, Any]:
    """`x` as a Value record; `text`: every Decimal as its exact text (its exponent kept: 1.5 stays 1.5)."""
    if x is None or isinstance(x, (bool, str)):
        return {"v": x}
    if isinstance(x, int):
        if not -(1 << 63) <= x < (1 << 63):
            raise TapeError(f"strategy snapshot: {path} = {x} does not fit a 64-bit integer; store it as a Decimal")
        return {"v": x}
    if isinstance(x, Decimal):
        q = None if text else fits(x)
        return {"v": q if q is not None else {"text": str(x)}}
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if not isinstance(k, str):
                raise TapeError(f"strategy snapshot: {path} has key {k!r}; keys must be strings")
            out[k] = _value(v, f"{path}.{k}", text)
        return {"v": out}
    if isinstance(x, (list, tuple)) or type(x).__name__ == "deque":
        return {"v": [_value(v, f"{path}[{i}]", text) for i, v in enumerate(x)]}
    raise TapeError(f"strategy snapshot: {path} is a {type(x).__name__}; use None, bool, int, str, Decimal, "
                    "list or dict (never a float: state is exact)")


def _unvalue(rec: dict[str, Any]) -> Any:
    v = rec["v"]
    if isinstance(v, list):
        return [_unvalue(x) for x in v]
    if isinstance(v, dict):
        if set(v) == {"text"} and isinstance(v["text"], str):  # BigDecimal (a map's values are Value records)
            return Decimal(v["text"])
        return {k: _unvalue(x) for k, x in v.items()}
    return v


# ---- packed rows: what grows with a session's history, as one text -----------------------------------------
#
# A handler that remembers every order of a session (the paper venue, the queue's ids, the ccxt adapter's maps)
# packs those rows into one string: one Value instead of one per cell, so a snapshot of 100,000 orders decodes in
# milliseconds. Cells are exact text (a Decimal's str, which Decimal() reads back with its exponent), NONE for None.

ROW, CELL, NONE = "\x1e", "\x1f", "\x15"  # record separator, unit separator, NAK: never in an id or a number


def cell(v: Any) -> str:
    """A value as a packed cell."""
    if v is None:
        return NONE
    if v is True or v is False:
        return "1" if v else "0"
    return str(v)


def pack(rows: Any) -> str:
    """Rows of values as one text."""
    return ROW.join(CELL.join(cell(v) for v in row) for row in rows)


def unpack(text: str) -> list[list[str]]:
    """The rows of a packed text, each cell as text (NONE for None)."""
    return [row.split(CELL) for row in text.split(ROW)] if text else []


def typed(kind: str, text: str) -> Any:
    """A packed cell read back as `kind`: int, bool, str, Decimal, or one of them | None."""
    if text == NONE:
        return None
    base = kind.split(" |")[0]
    if base == "int":
        return int(text)
    if base == "bool":
        return text == "1"
    if base == "Decimal":
        return Decimal(text)
    return text


# ---- plain state <-> EngineState record ----------------------------------------------------------------------


@dataclass
class Snapshot:
    """A decoded snapshot: the state and where in the log(s) it stands."""

    state: State
    last_seq: int
    max_ts: int
    input_event_id: str | None
    strategy_id: str | None
    strategy_state: dict[str, Any] | None
    plain: dict[str, Any]  # the state as plain data (State.snapshot() of `state`)
    handlers: dict[str, Any] | None = None  # {"version": int, "parts": {component: plain data}} (live namespaces)


def _strategy_record(strategy_id: str | None, strategy_state: dict[str, Any] | None) -> dict[str, Any] | None:
    if strategy_state is None:
        return None
    return {"strategy_id": strategy_id or "", "state": _value(dict(strategy_state), "state")["v"]}


def _handlers_record(handlers: dict[str, Any] | None) -> dict[str, Any] | None:
    """A HandlerState record: each component's plain data as a Value, its Decimals as exact text."""
    if handlers is None:
        return None
    return {"version": handlers["version"],
            "parts": {k: _value(v, f"handlers.{k}", text=True) for k, v in handlers["parts"].items()}}


def to_record(plain: dict[str, Any], *, last_seq: int, max_ts: int, input_event_id: str | None = None,
              strategy_id: str | None = None, strategy_state: dict[str, Any] | None = None,
              handlers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The EngineState record of a plain state (State.snapshot()) and its position."""
    parts = _parts(plain)
    return {"last_seq": last_seq, "max_ts": max_ts, "input_event_id": input_event_id, "market": parts["market"],
            "orders": [_order_record(o) for o in plain["orders"]], "portfolio": parts["portfolio"],
            "risk": parts["risk"], "incidents": plain.get("incidents", []),
            "strategy": _strategy_record(strategy_id, strategy_state), "handlers": _handlers_record(handlers)}


def _rows_from_unions(rows: list[dict[str, Any]] | None, fields: tuple[str, ...]) -> None:
    """Decimals again in each row's `fields` and in its per-currency `fees`, in place."""
    for row in rows or ():
        for f in fields:
            row[f] = _from_union(row[f])
        row["fees"] = _from_unions(row["fees"])


def from_record(rec: dict[str, Any]) -> dict[str, Any]:
    """The plain state (as State.snapshot() gives it) of a decoded EngineState record; the text branch of every
    exact-decimal union becomes a Decimal again. Modifies and returns parts of `rec`."""
    market, portfolio, risk = rec["market"], rec["portfolio"], rec["risk"]
    market["last_price"] = _from_unions(market["last_price"])
    _rows_from_unions(rec["orders"], ORDER_NUMS)
    portfolio["balances"] = _from_unions(portfolio["balances"])
    portfolio["fees"] = _from_unions(portfolio["fees"])
    _rows_from_unions(portfolio["positions"], POSITION_NUMS)
    for f in RISK_NUMS:
        risk[f] = _from_union(risk[f])
    for sens in risk["sensitivities"]:  # the fold keeps them normalized (short products); so does a restore
        v = _from_union(sens["value"])
        sens["value"] = None if v is None else v.normalize(_SENS_CTX)
    risk["marks"] = _from_unions(risk["marks"])
    return {"market": market, "orders": rec["orders"], "portfolio": portfolio, "risk": risk,
            "incidents": rec.get("incidents") or []}


# ---- Avro single-object bytes -------------------------------------------------------------------------------


def state_type(catalog: Catalog) -> EventType:
    return catalog.record(STATE_TYPE)


def schema_label(et: EventType) -> str:
    """What SnapshotTaken.state_schema says: full name and fingerprint."""
    return f"{et.full_name}@{et.fingerprint:016x}"




def decode(value: bytes, catalog: Catalog, registry: Registry) -> dict[str, Any]:
    """A snapshot's state, resolved from its writer schema (in the registry) to today's EngineState."""
    current = state_type(catalog)
    if value[:10] == current.prefix:  # written by today's code: readable without the registry
        return schemaless_reader(BytesIO(value[10:]), current.parsed, None)
    name, data = Codec(catalog, registry).decode(value)
    if name != current.full_name:
        raise SchemaError(f"snapshot state is a {name}, not a {current.full_name}")
    return data


class StateEncoder:
    """Encodes EngineState records field by field — the Avro encoding of a record is the concatenation of its
    fields' — so the bytes of every order already terminal (which no later event may change) are encoded once and
    reused: a snapshot costs the open orders, not every order ever placed. Same bytes as encoding the record."""

    def __init__(self, et: EventType):
        self.et = et
        named: dict[str, Any] = {}
        self.fields: list[tuple[str, Any]] = []
        for f in et.schema["fields"]:
            typ = f["type"]
            if f["name"] == "orders":
                self.order_schema = parse_schema(typ["items"], named_schemas=named, _force=True)
                self.fields.append(("orders", None))
            else:  # each field as a record of its own (same bytes), which carries the names defined before it
                one = {"type": "record", "name": f"tape.state.EngineState_{f['name']}", "fields": [f]}
                self.fields.append((f["name"], parse_schema(one, named_schemas=named, _force=True)))
        self.closed: dict[str, bytes] = {}  # client order id → bytes of the terminal order

    def _write(self, schema: Any, value: Any, name: str) -> bytes:
        buf = BytesIO()
        try:
            schemaless_writer(buf, schema, value)
        except Exception as e:  # fastavro raises ValueError/TypeError/KeyError on mismatches
            raise SchemaError(f"{self.et.name}.{name}: the state does not match its schema ({e!r})") from None
        return buf.getvalue()

    def _orders(self, orders: Any) -> bytes:
        items = list(orders.by_id.values())
        if not items:
            return b"\x00"
        closed = self.closed
        chunks = [_zigzag(len(items))]
        for o in items:
            b = closed.get(o.client_order_id)
            if b is None:
                b = self._write(self.order_schema, _order_record(o), "orders")
                if o.status in TERMINAL:
                    closed[o.client_order_id] = b
            chunks.append(b)
        chunks.append(b"\x00")
        return b"".join(chunks)

    def encode(self, state: State, *, last_seq: int, max_ts: int, input_event_id: str | None = None,
               strategy_id: str | None = None, strategy_state: dict[str, Any] | None = None,
               handlers: dict[str, Any] | None = None) -> bytes:
        plain = {"market": state.market.snapshot(), "portfolio": state.portfolio.snapshot(),
                 "risk": state.risk.snapshot()}
        rec = {"last_seq": last_seq, "max_ts": max_ts, "input_event_id": input_event_id, **_parts(plain),
               "incidents": state.incidents.snapshot(),
               "strategy": _strategy_record(strategy_id, strategy_state), "handlers": _handlers_record(handlers)}
        out = [self.et.prefix]
        for name, schema in self.fields:
            out.append(self._orders(state.orders) if schema is None else self._write(schema, {name: rec[name]}, name))
        return b"".join(out)


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# ---- SnapshotTaken payloads ---------------------------------------------------------------------------------


def snapshot_payload(state: State, catalog: Catalog, registry: Registry | None, *, last_seq: int, max_ts: int,
                     input_event_id: str | None = None, strategy_id: str | None = None,
                     strategy_state: dict[str, Any] | None = None, handlers: dict[str, Any] | None = None,
                     encoder: StateEncoder | None = None) -> dict[str, Any]:
    """The fields of a SnapshotTaken event for `state`; registers the state schema in `registry` first. Pass the
    same `encoder` for every snapshot of one state to encode each terminal order once."""
    et = state_type(catalog)
    if registry is not None:
        registry.register(et)
    if encoder is None or encoder.et.fingerprint != et.fingerprint:
        encoder = StateEncoder(et)
    value = encoder.encode(state, last_seq=last_seq, max_ts=max_ts, input_event_id=input_event_id,
                           strategy_id=strategy_id, strategy_state=strategy_state, handlers=handlers)
    return {"last_seq": last_seq, "state_schema": schema_label(et), "state": value}


def read_snapshot(payload: dict[str, Any], catalog: Catalog, registry: Registry) -> Snapshot:
    """The state a SnapshotTaken event carries, restored (ready to fold the events after its last_seq)."""
    name = str(payload.get("state_schema", "")).partition("@")[0]
    if name and name != STATE_TYPE:
        raise SchemaError(f"snapshot state_schema {payload['state_schema']!r}: this code restores {STATE_TYPE} only")
    rec = decode(payload["state"], catalog, registry)
    strategy = rec.get("strategy")
    handlers = rec.get("handlers")
    plain = from_record(rec)
    state = State.restore(plain, rec["last_seq"])
    return Snapshot(state, rec["last_seq"], rec["max_ts"], rec.get("input_event_id"),
                    strategy["strategy_id"] if strategy else None,
                    {k: _unvalue(v) for k, v in strategy["state"].items()} if strategy else None, plain,
                    {"version": handlers["version"], "parts": {k: _unvalue(v) for k, v in handlers["parts"].items()}}
                    if handlers else None)


def roundtrip(state: State, catalog: Catalog | None = None) -> State:
    """`state` through a snapshot's bytes and back (for tests and checks)."""
    catalog = catalog or Catalog.load()
    payload = snapshot_payload(state, catalog, None, last_seq=state.last_seq, max_ts=0)
    return read_snapshot(payload, catalog, Registry()).state
