"""`tape ingest exchange`: an exchange's bar history through ccxt (`fetch_ohlcv`), paged and rate-limited, into a
namespace that knows what it has.

Each page is one atomic step — its bars and a HistoryImported that records the page — so a crash or Ctrl-C leaves
whole pages, and a re-run resumes after the last bar the namespace holds of that instrument and timeframe (from any
import: a CSV of the same series counts). Only closed bars are written (a bar still forming at the exchange's clock
is left for the next run). Bars the exchange does not have between two it has are gaps: counted and reported,
never invented. The instrument is defined from the exchange's market (tick and lot size, limits, fees) when the
namespace has no definition of it yet.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventstore.store import Log
from eventstore.writer import Draft
from handlers.venues.ccxt.errors import read_again
from handlers.venues.ccxt.feed import bar_event
from handlers.venues.ccxt.mapping import instrument_id, instrument_payload, trade_tick
from runtime.ingest.csvrows import fold_history, series_key
from runtime.times import format_ns, parse_timeframe, timeframe_months
from schemas.errors import TapeError

SOURCE = "ingest:exchange"
MS = 1_000_000
PAGE = 1000  # bars asked for per request (exchanges cap it: binance 1000, others less; fewer answered is fine)
RETRIES = 5  # network failures in a row before giving up (the namespace keeps every page written)


class ExchangeIngestError(TapeError):
    """What the exchange or the request made impossible, in one line."""


@dataclass(frozen=True)
class Request:
    venue: str  # ccxt exchange id
    symbol: str  # the exchange's unified symbol, BTC/USDT
    timeframe: str
    namespace: str
    since_ns: int
    until_ns: int | None = None  # exclusive; None: up to the bars closed now
    page: int = PAGE  # bars asked for per request


@dataclass
class Gap:
    from_ts: int  # open time of the first missing bar
    to_ts: int  # open time of the bar after the gap
    bars: int


@dataclass
class Outcome:
    instrument_id: str
    count: int = 0  # bars or trades written
    pages: int = 0
    first: int | None = None  # a bar's open time, a trade's time: the first written
    last: int | None = None
    resumed_after: int | None = None  # open time of the last bar the namespace held before (a resumed import)
    gaps: list[Gap] = field(default_factory=list)
    defined: bool = False  # the instrument was defined by this import


def _held(log: Log, namespace: str, iid: str, timeframe: str | None, kind: str = "bars") -> tuple[bool, int | None]:
    """(the instrument is defined, the time of the last event of this series held: a bar's close, a trade's), as
    the CSV import reads what a namespace holds (its HistoryImported records, csvrows.fold_history)."""
    if namespace not in log.namespaces():
        return False, None
    history = [e.data for e in log.replay(namespace, types=["HistoryImported"])]
    series = fold_history(history).get(series_key(iid, kind, timeframe))
    defined = any(e.key == iid for e in log.replay(namespace, types=["InstrumentDefined"]))
    return defined, series.last_ts if series is not None else None


def _market(exchange: Any, symbol: str) -> dict[str, Any]:
    markets = _call(exchange.load_markets)
    if symbol not in markets:
        near = sorted(s for s in markets if s.split("/")[0] == symbol.split("/")[0])[:5]
        raise ExchangeIngestError(f"{exchange.id} does not list {symbol!r}" + (
            f"; it lists {', '.join(near)}" if near else "; symbols are BASE/QUOTE, e.g. BTC/USDT"))
    return markets[symbol]


def _call(fn: Callable[..., Any], *args: Any, sleep: Callable[[float], None] = time.sleep) -> Any:
    """A ccxt read, asked again with backoff while the failure is transport's or the venue's (the rate limiter
    paces the rest); a refusal of the request is one line."""
    import ccxt

    for attempt in range(RETRIES):
        try:
            return fn(*args)
        except ccxt.BaseError as e:
            if not read_again(e):
                raise ExchangeIngestError(f"the exchange refused the request: {_short(e)}") from None
            if attempt == RETRIES - 1:
                raise ExchangeIngestError(f"the exchange did not answer ({type(e).__name__}) after {RETRIES} tries: "
                                          "check the network and run the same command again (it resumes)") from None
            sleep(min(30.0, 0.25 * 2 ** attempt))
    raise AssertionError("unreachable")


def _short(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:199] + "…"


def ingest_exchange(log: Log, exchange: Any, req: Request, *,
                    progress: Callable[[int, int], None] | None = None) -> Outcome:
    """Fetch the closed bars from the resume point (or `since`) to `until` (or now), page by page, each page one
    step; `progress(open time reached, bars written)` after each page."""
    if timeframe_months(req.timeframe):
        raise ExchangeIngestError(f"--timeframe {req.timeframe}: calendar-month bars are not fetched from "
                                  "exchanges; use 1w or 1d")
    tf_ns = parse_timeframe(req.timeframe)
    if not exchange.has.get("fetchOHLCV"):
        raise ExchangeIngestError(f"{exchange.id} has no fetchOHLCV in ccxt: its bar history cannot be fetched")
    if req.timeframe not in (exchange.timeframes or {}):
        raise ExchangeIngestError(f"{exchange.id} has no {req.timeframe} bars; it has "
                                  f"{', '.join(sorted(exchange.timeframes or {}, key=parse_timeframe))}")
    market = _market(exchange, req.symbol)
    iid = instrument_id(market, exchange.id.upper())
    defined, held_close = _held(log, req.namespace, iid, req.timeframe)
    out = Outcome(iid)
    now_ns = int(_call(exchange.fetch_time)) * MS
    until = min(req.until_ns, now_ns) if req.until_ns is not None else now_ns
    expected = -(-req.since_ns // tf_ns) * tf_ns  # the first bar that opens at or after `since`
    if held_close is not None:  # the bars held end where the next one opens
        out.resumed_after = held_close - tf_ns
        if held_close > expected:
            expected = held_close
        elif held_close < expected:  # asked to start later than the bars held end: the bars between are a gap
            out.gaps.append(Gap(held_close, expected, (expected - held_close) // tf_ns))
    pages = _Pages(log, req, market, exchange.id.upper(), defined, out)
    try:
        while expected + tf_ns <= until:
            rows = _call(exchange.fetch_ohlcv, req.symbol, req.timeframe, expected // MS, req.page)
            step: list[Draft] = []
            for row in rows:
                open_ts = int(row[0]) * MS
                if open_ts < expected:
                    continue
                if open_ts + tf_ns > until:  # still forming at the exchange's clock, or past --until
                    break
                if open_ts > expected:
                    out.gaps.append(Gap(expected, open_ts, (open_ts - expected) // tf_ns))
                name, payload, ts = bar_event(iid, req.timeframe, tf_ns, open_ts, (row[1], row[2], row[3], row[4],
                                                                                    row[5]))
                step.append(Draft(name, payload, ts, iid, SOURCE, None, None, ts))
                expected = open_ts + tf_ns
            if not step:
                break  # nothing closed after `expected`: the exchange has no more bars in range
            pages.write(step, "bars", step[0].payload["open_ts"], step[-1].payload["open_ts"])
            if progress is not None:
                progress(expected, out.count)
    finally:
        pages.close()
    return out


BAR_FIELDS = ("open_ts", "open", "high", "low", "close", "volume")
TRADE_FIELDS = ("trade_id", "price", "quantity", "aggressor_side")


class _Pages:
    """Writes pages: each one step — the instrument's definition first when the namespace has none, the page's
    events, its HistoryImported — the writer opened at the first page (nothing fetched, nothing written)."""

    def __init__(self, log: Log, req: Request, market: dict[str, Any], venue: str, defined: bool, out: Outcome):
        self.log, self.req, self.market, self.venue, self.defined, self.out = log, req, market, venue, defined, out
        self.writer: Any = None

    def write(self, events: list[Draft], kind: str, first: int, last: int) -> None:
        out, iid = self.out, self.out.instrument_id
        step = list(events)
        if not self.defined:
            inst = instrument_payload(self.market, self.venue)
            step.insert(0, Draft("InstrumentDefined", inst, step[0].ts_event, iid, SOURCE, None, None,
                                 step[0].ts_event))
            self.defined = out.defined = True
        step.append(_page_record(self.req, iid, events, out.count, kind))
        if self.writer is None:
            self.writer = self.log.writer(self.req.namespace)
        self.writer.append(step)
        out.count += len(events)
        out.pages += 1
        out.first = first if out.first is None else out.first
        out.last = last

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _page_record(req: Request, iid: str, events: list[Draft], before: int, kind: str = "bars") -> Draft:
    """The HistoryImported closing a page: which request, how many events, their times and a checksum of the page
    as written (the resume point of the next run)."""
    fields = BAR_FIELDS if kind == "bars" else TRADE_FIELDS
    digest = hashlib.sha256("\n".join(",".join(str(e.payload[f]) for f in fields) for e in events).encode()).hexdigest()
    last = events[-1].ts_event
    what = req.timeframe if kind == "bars" else "trades"
    payload = {"instrument_id": iid, "file_name": f"exchange:{req.venue} {req.symbol} {what}",
               "sha256": digest, "kind": kind, "timeframe": req.timeframe if kind == "bars" else None,
               "rows": len(events), "first_row": before + 1, "last_row": before + len(events),
               "first_ts": events[0].ts_event, "last_ts": last}
    return Draft("HistoryImported", payload, last, iid, SOURCE, None, None, last)


TRADE_WINDOW_MS = 3_600_000  # what an empty page moves the cursor by (binance answers an hour from `since`)


def ingest_trades(log: Log, exchange: Any, req: Request, *,
                  progress: Callable[[int, int], None] | None = None) -> Outcome:
    """Fetch the exchange's public trades from the resume point (or `since`) to `until` (or now), a page a step:
    in time order, each trade once (trades at the page boundary's millisecond told apart by their ids)."""
    if not exchange.has.get("fetchTrades"):
        raise ExchangeIngestError(f"{exchange.id} has no fetchTrades in ccxt: its trade history cannot be fetched")
    market = _market(exchange, req.symbol)
    iid = instrument_id(market, exchange.id.upper())
    defined, held = _held(log, req.namespace, iid, None, "trades")
    out = Outcome(iid)
    latest = _call(exchange.fetch_trades, req.symbol, None, 1)  # the newest trade: where the history ends now
    if not latest:
        return out
    end_ms = max(int(t["timestamp"]) for t in latest) + 1
    until_ms = min(req.until_ns // MS, end_ms) if req.until_ns is not None else end_ms
    cursor = req.since_ns // MS
    seen: set[str] = set()  # ids of the trades held at the cursor's millisecond
    if held is not None:
        out.resumed_after = held
        cursor = max(cursor, held // MS)
        seen = {e.data["trade_id"] for e in log.replay(req.namespace, types=["TradeTick"], from_ts=held)
                if e.key == iid and e.ts_event // MS == held // MS}
    pages = _Pages(log, req, market, exchange.id.upper(), defined, out)
    try:
        while cursor < until_ms:
            rows = _call(exchange.fetch_trades, req.symbol, cursor, req.page)
            rows = sorted((t for t in rows if cursor <= int(t["timestamp"]) < until_ms),
                          key=lambda t: (int(t["timestamp"]), int(t["id"]) if str(t["id"]).isdigit() else 0))
            fresh = [t for t in rows if not (int(t["timestamp"]) == cursor and str(t["id"]) in seen)]
            if not fresh:
                cursor = int(rows[-1]["timestamp"]) + 1 if rows else cursor + TRADE_WINDOW_MS
                seen = set()
                continue
            step = [_trade(iid, t) for t in fresh]
            pages.write(step, "trades", step[0].ts_event, step[-1].ts_event)
            last_ms = int(fresh[-1]["timestamp"])
            seen = (seen if last_ms == cursor else set()) | {str(t["id"]) for t in fresh
                                                             if int(t["timestamp"]) == last_ms}
            cursor = last_ms
            if progress is not None:
                progress(cursor * MS, out.count)
    finally:
        pages.close()
    return out


def _trade(iid: str, t: dict[str, Any]) -> Draft:
    payload, ts = trade_tick(iid, t)
    return Draft("TradeTick", payload, ts, iid, SOURCE, None, None, ts)


def describe_gaps(gaps: list[Gap], limit: int = 5) -> list[str]:
    """The gaps as lines for people: the first few, then how many more."""
    lines = [f"gap: {g.bars:,} bar{'s' if g.bars != 1 else ''} missing from {format_ns(g.from_ts)} to "
             f"{format_ns(g.to_ts)}" for g in gaps[:limit]]
    if len(gaps) > limit:
        lines.append(f"… and {len(gaps) - limit:,} more gaps ({sum(g.bars for g in gaps[limit:]):,} bars)")
    return lines
