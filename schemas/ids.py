"""Identifiers every layer reads and writes: event ids, client order ids, run namespaces, instrument symbols.

An event id is `<namespace>:<seq>` (deterministic: a re-run of the same inputs produces the same ids). A client
order id made by the engine is `t<6 hex of sha256(namespace)>-<seq of the order's intent>`, short enough for every
venue and unique across runs on one account; a retry after a crash carries the same id, so the venue can refuse
it instead of doubling the order.
"""
from __future__ import annotations

import hashlib
import re

RUN_PREFIXES = ("bt-", "live-")  # namespaces written by a runtime (a backtest, a live runtime)
_EVENT_ID = re.compile(r"^(.+):(\d+)$")
_CLIENT_ORDER_ID = re.compile(r"^(t[0-9a-f]{6})-(\d+)$")
# quote currencies tried, longest first, to split a symbol like BTCUSDT when nothing names its currencies
QUOTE_CURRENCIES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "USD", "EUR", "GBP", "JPY", "TRY", "BRL",
                    "AUD", "BTC", "ETH", "BNB")


def event_id(namespace: str, seq: int) -> str:
    """The id of the event at `seq` of `namespace`."""
    return f"{namespace}:{seq}"


def parse_event_id(text: str) -> tuple[str, int] | None:
    """(namespace, seq) of an event id, or None when `text` is not one."""
    m = _EVENT_ID.match(text)
    return (m.group(1), int(m.group(2))) if m is not None else None


def order_id_prefix(namespace: str) -> str:
    """A short tag of the namespace, so client order ids are unique across runs on one venue account."""
    return "t" + hashlib.sha256(namespace.encode()).hexdigest()[:6]


def client_order_id(prefix: str, intent_seq: int) -> str:
    """The client order id of the order whose intent has `intent_seq`."""
    return f"{prefix}-{intent_seq}"


def parse_client_order_id(cid: str) -> tuple[str, int] | None:
    """(namespace prefix, intent seq) of an engine-made client order id, or None for any other id."""
    m = _CLIENT_ORDER_ID.match(cid)
    return (m.group(1), int(m.group(2))) if m is not None else None


def is_run_namespace(namespace: str) -> bool:
    """True for a namespace a runtime wrote (bt-…, live-…), as opposed to imported history."""
    return namespace.startswith(RUN_PREFIXES)


def split_symbol(symbol: str) -> tuple[str, str] | None:
    """(base, quote) of 'BTC-USDT', 'BTC/USDT', 'BTC_USDT', 'BTC/USDT:USDT' or 'BTCUSDT' (a known quote suffix);
    a '.VENUE' suffix is ignored; the case is kept; None when no rule splits it."""
    symbol = symbol.split(".", 1)[0]
    for sep in "/-_":
        if sep in symbol:
            base, _, quote = symbol.partition(sep)
            quote = quote.split(":", 1)[0]
            return (base, quote) if base and quote else None
    upper = symbol.upper()
    for q in QUOTE_CURRENCIES:
        if upper.endswith(q) and len(upper) > len(q):
            return symbol[: -len(q)], symbol[-len(q):]
    return None
