"""Trades and the book's top from a venue through ccxt, as input events, for strategies that listen to them.

Trades (`TradeTick`) enter the log each once, in the venue's id order (Binance: aggregate trades, the ids REST's
`aggTrades` pages by and `tape ingest exchange --trades` records). The cursor is the id of the last trade recorded
per instrument, rebuilt from the log on restart (`learn`). A streamed trade is taken only when it continues the
cursor; anything else — the stream's first trades after a restart, a dropped frame, a reconnect — makes the feed
read the venue's trades over REST from the cursor (`poll`), a thousand a page and at most `pages` pages a pass, so a
downtime is caught up trade by trade, never skipped. With nothing recorded yet the first trade is the venue's latest.

The book's top (`QuoteTick`) is a state, not a series: each pass records the latest streamed ticker per instrument
(a burst of updates between two passes is conflated to its last), REST's while the stream is down, and nothing
when it equals the last one recorded. Its ts_event is the venue's clock when the pass took it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from handlers.venues.ccxt.mapping import quote_tick, trade_tick
from projections.market import MarketState

PAGE = 1000  # trades per REST read (Binance's maximum)
PAGES = 10  # REST reads per instrument and pass while catching up


def _id(t: dict[str, Any]) -> int | None:
    tid = str(t.get("id"))
    return int(tid) if tid.isdigit() else None


class TradeFeed:
    """The venue's trades of each instrument as (name, payload, ts_event), each once, in id order."""

    def __init__(self, exchange: Any, symbols: dict[str, str], *, pages: int = PAGES):
        self.exchange = exchange
        self.symbols = symbols  # instrument id → ccxt symbol
        self.pages = pages
        self.last_id: dict[str, int] = {}  # instrument → id of the last trade recorded
        self.behind: set[str] = set()  # instruments whose next trade the stream did not bring: read over REST
        self.failures = 0  # REST reads that got no answer

    def learn(self, name: str, data: dict[str, Any]) -> None:
        """Fold a recorded event: the last trade per instrument is where the feed resumes."""
        if name == "TradeTick" and data["instrument_id"] in self.symbols and str(data.get("trade_id")).isdigit():
            iid, tid = data["instrument_id"], int(data["trade_id"])
            if tid > self.last_id.get(iid, -1):
                self.last_id[iid] = tid

    def take(self, streamed: Iterable[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any], int]]:
        """Streamed trades (symbol, ccxt trade) that continue the cursor; an instrument whose stream jumps is marked
        behind (`poll` reads it) and its streamed trades are dropped until REST has caught up."""
        ids = {symbol: iid for iid, symbol in self.symbols.items()}
        out: list[tuple[str, dict[str, Any], int]] = []
        for symbol, t in streamed:
            iid, tid = ids.get(symbol), _id(t)
            if iid is None or tid is None or iid in self.behind:
                continue
            last = self.last_id.get(iid)
            if last is not None and tid <= last:
                continue
            if last is not None and tid != last + 1:
                self.behind.add(iid)
                continue
            out.append(self._tick(iid, t))  # with nothing recorded yet, the stream's first trade starts the series
        return out

    def poll(self, instruments: Iterable[str] | None = None) -> list[tuple[str, dict[str, Any], int]]:
        """Trades since the cursor over REST, oldest first (with nothing recorded: the venue's latest one); an
        instrument is caught up when a page comes back short."""
        out: list[tuple[str, dict[str, Any], int]] = []
        for iid in sorted(self.symbols if instruments is None else instruments):
            for _ in range(self.pages):
                last = self.last_id.get(iid)
                params = {"fromId": last + 1} if last is not None else {}
                try:
                    rows = self.exchange.fetch_trades(self.symbols[iid], None, PAGE if last is not None else 1, params)
                except Exception:  # noqa: BLE001 - no answer moves no cursor: the next pass reads the same trades
                    self.failures += 1
                    break
                rows = sorted((r for r in rows if _id(r) is not None), key=lambda r: _id(r) or 0)
                if last is None:
                    rows = rows[-1:]
                for r in rows:
                    if last is None or (_id(r) or 0) > self.last_id.get(iid, -1):
                        out.append(self._tick(iid, r))
                if last is None or len(rows) < PAGE:
                    self.behind.discard(iid)
                    break
        return out

    def _tick(self, iid: str, t: dict[str, Any]) -> tuple[str, dict[str, Any], int]:
        payload, ts = trade_tick(iid, t)
        self.last_id[iid] = int(payload["trade_id"])
        return "TradeTick", payload, ts


class QuoteFeed:
    """The book's top of each instrument as QuoteTick (name, payload, ts_event) when it changed."""

    def __init__(self, exchange: Any, symbols: dict[str, str], venue_time: Callable[[], int]):
        self.exchange = exchange
        self.symbols = symbols
        self.venue_time = venue_time
        self.last: dict[str, dict[str, Any]] = {}  # instrument → the last quote recorded
        self.failures = 0

    def learn(self, name: str, data: dict[str, Any]) -> None:
        """Fold a recorded event (its payload fields: a recorded quote carries its envelope too)."""
        if name == "QuoteTick" and data["instrument_id"] in self.symbols:
            self.last[data["instrument_id"]] = {k: data[k] for k in MarketState.QUOTE_FIELDS}

    def take(self, tickers: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any], int]]:
        """The latest ticker per symbol (ccxt symbol → ticker), where it changed the book's top, in id order."""
        now = self.venue_time()
        out: list[tuple[str, dict[str, Any], int]] = []
        for iid, symbol in sorted(self.symbols.items()):
            t = tickers.get(symbol)
            quote = quote_tick(iid, t) if t is not None else None
            if quote is not None and quote != self.last.get(iid):
                self.last[iid] = quote
                out.append(("QuoteTick", quote, now))
        return out

    def poll(self) -> list[tuple[str, dict[str, Any], int]]:
        """The book's top over REST (the stream is down)."""
        try:
            tickers = self.exchange.fetch_bids_asks(sorted(self.symbols.values()))
        except Exception:  # noqa: BLE001 - no answer: the last quote stands, the next pass asks again
            self.failures += 1
            return []
        return self.take(tickers)
