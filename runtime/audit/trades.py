"""The fills of one or more namespaces as flat rows with exact decimals (`tape audit trades`)."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from eventstore.store import Log
from runtime.audit.chain import run_namespaces
from runtime.times import format_ns
from schemas.decimals import exact_text
from schemas.errors import TapeError

TRADE_COLUMNS = ("namespace", "time", "ts_event", "instrument_id", "side", "price", "quantity", "fee",
                 "fee_currency", "liquidity_side", "client_order_id", "trade_id", "venue_order_id", "seq")


def trade_namespaces(log: Log, namespace: str | None) -> list[str]:
    """The namespace asked for (it must exist), or every run namespace."""
    if namespace is None:
        return run_namespaces(log)
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


