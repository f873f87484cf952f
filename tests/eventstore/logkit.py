"""Helpers shared by the file-log tests and their subprocess scripts: step drafts, marks, checks."""
from __future__ import annotations

import hashlib
import os
import random
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from eventstore.writer import Draft

KEYS = ("BTCUSDT.BINANCE", "ETHUSDT.BINANCE", "SOLUSDT.BINANCE", "XRPUSDT.BINANCE", "ADAUSDT.BINANCE")
# one event of each topic, in this order, makes a step span market + intents + executions + system
KINDS = ("trade", "intent", "fill", "heartbeat")


def mark(step: int, i: int, n: int) -> str:
    """The text a draft carries so a reader can tell which step it belongs to and how big that step was."""
    return f"s{step}/{i}/{n}"


def draft(kind: str, step: int, i: int, n: int, ts: int, key: str = KEYS[0]) -> Draft:
    """One marked draft of a kind: trade (market), intent (intents), fill (executions), heartbeat (system)."""
    m = mark(step, i, n)
    if kind == "trade":
        payload = {"instrument_id": key, "price": Decimal("101.25"), "quantity": Decimal("0.5"), "trade_id": m}
    elif kind == "intent":
        payload = {"instrument_id": key, "strategy_id": "t", "client_order_id": m, "side": "BUY", "order_type": "LIMIT",
                   "quantity": Decimal("1"), "price": Decimal("100"), "time_in_force": "GTC", "tags": {"step": str(step)}}
    elif kind == "fill":
        payload = {"instrument_id": key, "client_order_id": "c", "trade_id": m, "side": "SELL",
                   "last_price": Decimal("100.1"), "last_quantity": Decimal("0.25"), "fee": Decimal("-0.0001"),
                   "fee_currency": "USDT"}
    elif kind == "heartbeat":
        key = m
        payload = {"component": m}
    else:
        raise ValueError(kind)
    type_ = {"trade": "TradeTick", "intent": "OrderIntent", "fill": "OrderFilled", "heartbeat": "Heartbeat"}[kind]
    return Draft(type_, payload, ts_event=ts, key=key, source="test")


def step(step_no: int, kinds: Iterable[str] = KINDS, ts: int = 0, key: str = KEYS[0]) -> list[Draft]:
    """The drafts of one marked step, one per kind."""
    kinds = list(kinds)
    return [draft(k, step_no, i, len(kinds), ts or 1_000 + step_no, key) for i, k in enumerate(kinds)]


def mark_of(event) -> tuple[int, int, int]:
    """(step, index in step, step size) from a delivered event's payload."""
    d = event.data
    text = {"TradeTick": "trade_id", "OrderIntent": "client_order_id", "OrderFilled": "trade_id",
            "Heartbeat": "component"}[event.name]
    s, i, n = d[text][1:].split("/")
    return int(s), int(i), int(n)


def steps_of(events) -> list[tuple[int, list]]:
    """Group delivered events into steps by their marks, asserting every step is whole and contiguous."""
    out: list[tuple[int, list]] = []
    for e in events:
        s, i, n = mark_of(e)
        if i == 0:
            out.append((s, [e]))
        else:
            assert out and out[-1][0] == s, f"event {e} of step {s} delivered without its step's first event"
            out[-1][1].append(e)
        assert out[-1][1][-1] is e and len(out[-1][1]) == i + 1, f"step {s}: event {i} out of place"
    for s, evs in out:
        n = mark_of(evs[0])[2]
        assert len(evs) == n, f"partial step {s} delivered: {len(evs)} of {n} events"
        assert [e.seq for e in evs] == list(range(evs[0].seq, evs[0].seq + n)), f"step {s} seqs not consecutive"
    return out


def check_chain(events) -> None:
    """Seqs strictly increase and every prev_hash is the sha256 of the previous delivered event's value."""
    prev_value = None
    last_seq = 0
    for e in events:
        assert e.seq > last_seq, f"seq {e.seq} after {last_seq}"
        last_seq = e.seq
        expected = b"" if prev_value is None else hashlib.sha256(prev_value).digest()
        assert e.envelope["prev_hash"] == expected, f"hash chain broken at seq {e.seq}"
        assert e.envelope["seq"] == e.seq
        prev_value = e.value


def files(root: Path) -> dict[str, bytes]:
    """Every regular file under root, by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def segment(ns_dir: Path, part: str) -> Path:
    """The last segment file of a topic-partition directory such as 'market-0' or '_commits'."""
    return sorted((ns_dir / part).glob("*.log"))[-1]


def truncate(path: Path, size: int) -> None:
    os.truncate(path, size)


_catalog = None


def catalog():
    """Today's catalog, loaded once per process (loading parses and fingerprints every schema)."""
    global _catalog
    if _catalog is None:
        from eventstore.catalog import Catalog

        _catalog = Catalog.load()
    return _catalog


def open_log(root: Path):
    """A Log on a file: store at root, with the shared catalog."""
    from eventstore.store import Log

    return Log.open(f"file:{root}", catalog=catalog())


def restore(root: Path, snapshot: dict[str, bytes]) -> None:
    """Put the files under root back to a snapshot taken with files(): rewrite changed ones, drop new ones."""
    for p in sorted(root.rglob("*"), reverse=True):
        rel = str(p.relative_to(root))
        if p.is_dir():
            if not any(k.startswith(rel + "/") for k in snapshot):
                p.rmdir()
        elif rel not in snapshot:
            p.unlink()
    for rel, data in snapshot.items():
        p = root / rel
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        elif p.read_bytes() != data:
            with open(p, "r+b") as f:  # not O_TRUNC: ext4 flushes a file truncated to zero when it is closed
                f.write(data)
                f.truncate(len(data))


def random_value(t: Any, rng: random.Random, depth: int = 0, named: dict[str, Any] | None = None) -> Any:
    """A random value of an (expanded) Avro type: decimals across their whole range and every exponent, longs
    over all 64 bits, strings beyond ASCII; named types are followed where they are referenced."""
    named = _named_types(t, {}) if named is None else named
    if isinstance(t, list):
        return random_value(rng.choice(t), rng, depth, named)
    if isinstance(t, str):
        if t in named:
            return random_value(named[t], rng, depth, named)
        return {"null": None, "boolean": rng.random() < 0.5, "int": rng.randint(-(2**31), 2**31 - 1),
                "long": rng.choice([rng.randint(-(2**63), 2**63 - 1), rng.randint(-200, 200)]),
                "float": 0.5, "double": rng.uniform(-1e9, 1e9), "bytes": rng.randbytes(rng.randint(0, 80)),
                "string": "".join(rng.choice("abcXYZ:.-é€𝄞") for _ in range(rng.choice([0, 3, 12, 70])))}[t]
    kind = t["type"]
    if t.get("logicalType") == "decimal":
        places = rng.randint(0, t["scale"])
        digits = rng.randint(1, t["precision"] - t["scale"] + places)
        unscaled = rng.randint(-(10**digits) + 1, 10**digits - 1)
        return Decimal(f"{unscaled}E-{places}")
    if kind == "record":
        return {f["name"]: random_value(f["type"], rng, depth + 1, named) for f in t["fields"]}
    if kind == "enum":
        return rng.choice(t["symbols"])
    if kind == "array":
        return [random_value(t["items"], rng, depth + 1, named) for _ in range(rng.randint(0, 3 if depth < 3 else 0))]
    if kind == "map":
        return {f"k{i}é": random_value(t["values"], rng, depth + 1, named)
                for i in range(rng.randint(0, 3 if depth < 3 else 0))}
    if kind == "fixed":
        return rng.randbytes(t["size"])
    return random_value(kind, rng, depth, named)


def _named_types(t: Any, named: dict[str, Any]) -> dict[str, Any]:
    """Every named type a schema defines, by the name its references use."""
    if isinstance(t, list):
        for b in t:
            _named_types(b, named)
    elif isinstance(t, dict):
        if "name" in t and t.get("type") in ("record", "enum", "fixed"):
            named[t["name"]] = t
        for f in t.get("fields", ()):
            _named_types(f["type"], named)
        for k in ("items", "values"):
            if k in t:
                _named_types(t[k], named)
    return named
