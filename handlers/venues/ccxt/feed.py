"""Market data from a venue through ccxt, as input events: closed bars polled over REST.

A bar enters the log once, when it is closed (a later bar exists, or its open time + timeframe is at or before the
venue's clock as the runtime estimates it), with
ts_event = its close time (as `tape ingest` writes history) and the venue's prices as exact decimals. The cursor is
the open time of the last bar recorded per instrument, rebuilt from the log on restart (`learn`), so a restart
neither skips nor repeats a bar. Websocket streams (ccxt.pro) are the next step; REST polling is the fallback they
will keep.
"""
from __future__ import annotations

from typing import Any, Callable

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

    def learn(self, name: str, data: dict[str, Any]) -> None:
        """Fold a recorded event: the last bar per instrument is where the feed resumes."""
        if name == "Bar" and data.get("timeframe") == self.timeframe:
            iid = data["instrument_id"]
            if data["open_ts"] > self.last_open.get(iid, -1):
                self.last_open[iid] = data["open_ts"]

    def poll(self) -> list[tuple[str, dict[str, Any], int]]:
        """Bars closed since the cursor, oldest first, every instrument in instrument-id order."""
        now = self.venue_time()
        out: list[tuple[str, dict[str, Any], int]] = []
        for iid in sorted(self.symbols):
            last = self.last_open.get(iid)
            since = (last + self.timeframe_ns) if last is not None else now - (self.history + 1) * self.timeframe_ns
            rows = self.exchange.fetch_ohlcv(self.symbols[iid], self.timeframe, since // MS, 1000)
            for i, (open_ms, o, h, low, c, v) in enumerate(rows):
                open_ts = int(open_ms) * MS
                close_ts = open_ts + self.timeframe_ns
                forming = i == len(rows) - 1 and close_ts > now  # the venue's last bar, still open
                if (last is not None and open_ts <= last) or forming:
                    continue
                out.append(("Bar", {"instrument_id": iid, "timeframe": self.timeframe, "open_ts": open_ts,
                                    "open": dec(o), "high": dec(h), "low": dec(low), "close": dec(c),
                                    "volume": dec(v), "trades": None}, close_ts))
                last = open_ts
            if last is not None:
                self.last_open[iid] = last
        return out
