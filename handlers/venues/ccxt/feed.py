"""Market data from a venue through ccxt, as input events: closed bars, streamed (ccxt.pro) or polled over REST.

A bar enters the log once, when it is closed (a later bar exists, or its open time + timeframe is at or before the
venue's clock as the runtime estimates it), with
ts_event = its close time (as `tape ingest` writes history) and the venue's prices as exact decimals. The cursor is
the open time of the last bar recorded per instrument, rebuilt from the log on restart (`learn`), so a restart
neither skips nor repeats a bar. A streamed bar (stream.py) is taken only when it continues the cursor; a gap (the
stream's first bars, a reconnect, a dropped frame) or a bar overdue in the venue's time is read over REST instead,
so both paths record the same bars. Bars the venue no longer serves (a read from the next bar due that begins later:
a venue keeping a window of history, a downtime longer than it) are counted per instrument (`take_gaps`), recorded in
the next Heartbeat and raised as a `bar_gap` incident: never skipped without an event.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from handlers.venues.ccxt.mapping import dec

MS = 1_000_000


class BarFeed:
    """Polls closed OHLCV bars of each instrument; `poll` returns new ones as (name, payload, ts_event)."""

    def __init__(self, exchange: Any, symbols: dict[str, str], timeframe: str, timeframe_ns: int,
                 venue_time: Callable[[], int], *, history: int = 0):
        self.exchange = exchange
        self.symbols = symbols  # instrument id → ccxt symbol
        self.timeframe = timeframe
        self.timeframe_ns = timeframe_ns
        self.venue_time = venue_time
        self.history = history  # bars before now to start from when the log has none (warm-up)
        self.last_open: dict[str, int] = {}  # instrument → open time (ns) of the last bar recorded
        self._start: dict[str, int] = {}  # instrument → open time of the first bar to record (nothing recorded yet)
        self.failures = 0  # REST reads that got no answer (the venue down, a 5xx, a 429/418)
        self.gaps: dict[str, int] = {}  # instrument → bars the venue did not serve, since the last take_gaps()

    def learn(self, name: str, data: dict[str, Any]) -> None:
        """Fold a recorded event: the last bar per instrument is where the feed resumes."""
        if name == "Bar" and data.get("timeframe") == self.timeframe:
            iid = data["instrument_id"]
            if data["open_ts"] > self.last_open.get(iid, -1):
                self.last_open[iid] = data["open_ts"]

    def next_open(self, iid: str) -> int:
        """Open time of the next bar to record: the one after the cursor, or (nothing recorded yet) `history` bars
        before the bar forming now — fixed at the first ask, so every later read starts from the same bar."""
        last = self.last_open.get(iid)
        if last is not None:
            return last + self.timeframe_ns
        if iid not in self._start:
            now = self.venue_time()
            self._start[iid] = now - now % self.timeframe_ns - self.history * self.timeframe_ns
        return self._start[iid]

    def poll(self, instruments: Iterable[str] | None = None) -> list[tuple[str, dict[str, Any], int]]:
        """Bars closed since the cursor over REST, oldest first, every instrument (or those named) in id order."""
        now = self.venue_time()
        out: list[tuple[str, dict[str, Any], int]] = []
        for iid in sorted(self.symbols if instruments is None else instruments):
            expected = self.next_open(iid)
            try:
                rows = self.exchange.fetch_ohlcv(self.symbols[iid], self.timeframe, expected // MS, 1000)
            except Exception:  # noqa: BLE001 - no answer moves no cursor: the next pass reads the same bars
                self.failures += 1
                continue
            for i, (open_ms, o, h, low, c, v) in enumerate(rows):
                open_ts = int(open_ms) * MS
                forming = i == len(rows) - 1 and open_ts + self.timeframe_ns > now  # the venue's last bar, still open
                if open_ts < expected or forming:
                    continue
                if open_ts > expected and iid in self.last_open:  # after a recorded bar, the venue's answer
                    # begins later (or skips): those bars are gone there (before the first one, nothing is missing)
                    self.gaps[iid] = self.gaps.get(iid, 0) + (open_ts - expected) // self.timeframe_ns
                out.append(self._bar(iid, open_ts, o, h, low, c, v))
                self.last_open[iid] = open_ts
                expected = open_ts + self.timeframe_ns
        return out

    def take_gaps(self) -> dict[str, int] | None:
        """The bars missing per instrument since the last call (None: none), for the next Heartbeat."""
        gaps, self.gaps = self.gaps, {}
        return gaps or None

    def take(self, bars: Iterable[Any]) -> tuple[list[tuple[str, dict[str, Any], int]], set[str]]:
        """Streamed closed bars (stream.StreamedBar) that continue the cursor, and the instruments whose next bar
        the stream skipped (read them over REST: `poll(those)`). Bars at or before the cursor are dropped."""
        ids = {symbol: iid for iid, symbol in self.symbols.items()}
        out: list[tuple[str, dict[str, Any], int]] = []
        gaps: set[str] = set()
        for b in bars:
            iid = ids.get(b.symbol)
            if iid is None or iid in gaps:
                continue
            open_ts, expected = b.open_ms * MS, self.next_open(iid)
            if open_ts < expected:
                continue
            if open_ts != expected:
                gaps.add(iid)
                continue
            out.append(self._bar(iid, open_ts, b.open, b.high, b.low, b.close, b.volume))
            self.last_open[iid] = open_ts
        return out, gaps

    def due(self) -> set[str]:
        """Instruments whose next bar has closed by the venue's clock and is not recorded yet."""
        now = self.venue_time()
        return {iid for iid in self.symbols if self.next_open(iid) + self.timeframe_ns <= now}

    def _bar(self, iid: str, open_ts: int, o: Any, h: Any, low: Any, c: Any, v: Any) -> tuple[str, dict[str, Any], int]:
        return bar_event(iid, self.timeframe, self.timeframe_ns, open_ts, (o, h, low, c, v))


def bar_event(iid: str, timeframe: str, timeframe_ns: int, open_ts: int,
              ohlcv: tuple[Any, Any, Any, Any, Any]) -> tuple[str, dict[str, Any], int]:
    """A venue's OHLCV row as a Bar (name, payload, ts_event): ts_event = its close time (as `tape ingest` writes
    history), prices exact — the one shape of a bar from a venue, live or fetched as history."""
    o, h, low, c, v = ohlcv
    return ("Bar", {"instrument_id": iid, "timeframe": timeframe, "open_ts": open_ts, "open": dec(o), "high": dec(h),
                    "low": dec(low), "close": dec(c), "volume": dec(v), "trades": None}, open_ts + timeframe_ns)
