"""Closed bars from a venue's websocket kline stream (ccxt.pro), on a thread of their own.

ccxt.pro is asyncio; the live loop is not. A `StreamThread` runs one exchange's watches on an event loop of their
own, on a daemon thread (the account's private stream, account_stream.py, is one too). A `KlineStream` keeps a
`watch_ohlcv` subscription per symbol (ccxt.pro reconnects, re-subscribes and keeps the socket alive) and hands the
loop every bar the venue declares closed, in arrival order, through a thread-safe queue (`drain`).

Which bar is closed: where the venue's frame says so (Binance's kline `x` flag, read from the raw frame as it
arrives, with its prices as the exact strings the venue sent) — and then only so: a closing frame that was dropped
leaves a gap that REST fills, never a bar built from an earlier, incomplete frame; elsewhere, when the stream holds
a later bar of the symbol (the venue started the next one; the values are ccxt.pro's cache of the last update). The stream is an accelerator, never the source of truth: the feed takes
a streamed bar only when it continues the log's bars without a gap, and falls back to REST for anything else
(`BarFeed.take`, `BarFeed.overdue`). A connection that is up but silent (a stalled socket still answers pings) is
caught by `overdue`, in the venue's time.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StreamedBar:
    """One closed bar as the stream delivered it: prices as the venue wrote them (strings or numbers)."""

    symbol: str  # ccxt symbol
    open_ms: int
    open: Any
    high: Any
    low: Any
    close: Any
    volume: Any
    received_ns: int = 0  # perf_counter_ns when its closing frame arrived: where tick-to-order latency starts


class StreamThread:
    """One ccxt.pro exchange's watches on an asyncio loop of their own, on a daemon thread, until `stop()`; every
    arrival sets `arrived`, which the live loop may share between streams to wake for whichever comes first."""

    thread_name = "stream"

    def __init__(self, exchange: Any, *, retry_seconds: float = 1.0, wake: threading.Event | None = None):
        self.exchange = exchange  # a ccxt.pro exchange, used on the stream's thread only
        self.retry_seconds = retry_seconds
        self.arrived = wake if wake is not None else threading.Event()
        self._live: dict[str, bool] = {}  # subscription → delivering (set by `_keep`)
        self.failures = 0  # watches that raised, each tried again
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # ---- the loop's side -----------------------------------------------------------------------------------------

    def start(self, markets: dict[str, Any] | None = None) -> StreamThread:
        """Subscribe on the stream's thread; `markets`: the REST client's, so no second catalogue is fetched."""
        if markets and not self.exchange.markets:
            self.exchange.set_markets(markets)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=self.thread_name, daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def connected(self) -> bool:
        """Every subscription delivered since its last failure (none yet: not connected)."""
        return bool(self._live) and all(self._live.values())

    def wait(self, timeout: float) -> None:
        """Sleep until something arrives or `timeout` passes: the loop wakes for an arrival, not for its poll."""
        self.arrived.wait(timeout)
        self.arrived.clear()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the sockets and end the thread (a daemon: a process that exits without this loses nothing)."""
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout)

    # ---- the stream's thread -------------------------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._stopping = asyncio.Event()
        ready.set()
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    def _prepare(self) -> None:
        """Once the markets are loaded, before the first watch."""

    def _watches(self) -> list[Coroutine[Any, Any, None]]:
        raise NotImplementedError

    async def _keep(self, key: str, watch: Callable[[], Awaitable[Any]], deliver: Callable[[Any], None]) -> None:
        """Watch until stopped: each delivery marks `key` live and goes to `deliver` (which sets `arrived` for what
        the loop should wake for); a failure of the socket, the subscription or `deliver` marks it down, and the
        watch is tried again after `retry_seconds` (ccxt.pro reconnects on the next call) — REST covers meanwhile."""
        self._live.setdefault(key, False)
        while True:
            try:
                got = await watch()
                self._live[key] = True
                deliver(got)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - any failure (of what came too): REST covers until it is back
                self._live[key] = False
                self.failures += 1
                await asyncio.sleep(self.retry_seconds)

    async def _main(self) -> None:
        try:
            if not self.exchange.markets:
                await self.exchange.load_markets()
            self._prepare()
        except Exception:  # noqa: BLE001, S110 - no markets: the watches load them, or fail and retry
            pass
        tasks = [asyncio.ensure_future(w) for w in self._watches()]
        await self._stopping.wait()  # type: ignore[union-attr]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # closing a socket that is already gone
            await self.exchange.close()


class KlineStream(StreamThread):
    """Closed bars of `symbols` at `timeframe`, streamed; `connected()` says whether every subscription is live."""

    thread_name = "kline-stream"

    def __init__(self, exchange: Any, symbols: list[str], timeframe: str, *, retry_seconds: float = 1.0,
                 wake: threading.Event | None = None):
        super().__init__(exchange, retry_seconds=retry_seconds, wake=wake)
        self.symbols = sorted(symbols)
        self.timeframe = timeframe
        self._bars: deque[StreamedBar] = deque()
        self._live = {s: False for s in self.symbols}
        self._taken: dict[str, int] = {}  # symbol → open time of the last bar queued
        self._tapped = False  # the venue marks closing frames: only those close a bar

    def drain(self) -> list[StreamedBar]:
        """Every closed bar received since the last call, in arrival order."""
        out = []
        while self._bars:
            out.append(self._bars.popleft())
        return out

    # ---- the stream's thread -------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        self._tap()  # no markets, no tap: the later-bar rule still holds

    def _watches(self) -> list[Coroutine[Any, Any, None]]:
        return [self._watch(s) for s in self.symbols]

    async def _watch(self, symbol: str) -> None:
        def deliver(candles: list[list[Any]]) -> None:
            if not self._tapped:
                self._later_bar(symbol, candles)

        await self._keep(symbol, lambda: self.exchange.watch_ohlcv(symbol, self.timeframe), deliver)

    def _queue(self, bar: StreamedBar) -> None:
        if bar.open_ms > self._taken.get(bar.symbol, -1):
            self._taken[bar.symbol] = bar.open_ms
            self._bars.append(bar)
            self.arrived.set()

    def _later_bar(self, symbol: str, candles: list[list[Any]]) -> None:
        """Every bar of the cache but its last is closed: the venue has started a later one."""
        for row in candles[:-1]:
            if row[0] > self._taken.get(symbol, -1):
                self._queue(StreamedBar(symbol, int(row[0]), *row[1:6], received_ns=time.perf_counter_ns()))

    def _tap(self) -> None:
        """Binance marks the frame that closes a kline (`k.x`): take it as it arrives, with its exact strings."""
        handle = getattr(self.exchange, "handle_ohlcv", None)
        if handle is None or self.exchange.id not in ("binance", "binanceus"):
            return
        by_id = {self.exchange.market(s)["id"]: s for s in self.symbols}

        def handle_ohlcv(client: Any, message: dict[str, Any]) -> None:
            k = message.get("k") if isinstance(message, dict) else None
            if isinstance(k, dict) and k.get("x") is True and k.get("i") == self.timeframe and k.get("s") in by_id:
                self._queue(StreamedBar(by_id[k["s"]], int(k["t"]), k["o"], k["h"], k["l"], k["c"], k["v"],
                                        time.perf_counter_ns()))
            handle(client, message)

        self.exchange.handle_ohlcv = handle_ohlcv
        self._tapped = True


class TickStream(StreamThread):
    """Trades and/or the book's top of `symbols`, streamed (ticks.py says what the loop records of them). Binance's
    trades are watched as aggregate trades, the ids REST pages by."""

    thread_name = "tick-stream"

    def __init__(self, exchange: Any, symbols: list[str], *, trades: bool, quotes: bool, retry_seconds: float = 1.0,
                 wake: threading.Event | None = None):
        super().__init__(exchange, retry_seconds=retry_seconds, wake=wake)
        self.symbols = sorted(symbols)
        self.trades, self.quotes = trades, quotes
        self._trades: deque[tuple[str, dict[str, Any]]] = deque()
        self._tickers: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._live = {**({f"trades:{s}": False for s in self.symbols} if trades else {}),
                      **({"quotes": False} if quotes else {})}

    def trades_connected(self) -> bool:
        return self.trades and all(v for k, v in self._live.items() if k.startswith("trades:"))

    def quotes_connected(self) -> bool:
        return self._live.get("quotes", False)

    def drain_trades(self) -> list[tuple[str, dict[str, Any]]]:
        """Every trade received since the last call, (ccxt symbol, ccxt trade), in arrival order."""
        out = []
        while self._trades:
            out.append(self._trades.popleft())
        return out

    def drain_quotes(self) -> dict[str, dict[str, Any]]:
        """The latest ticker per symbol received since the last call."""
        with self._lock:
            out, self._tickers = self._tickers, {}
        return out

    # ---- the stream's thread -------------------------------------------------------------------------------------

    def _watches(self) -> list[Coroutine[Any, Any, None]]:
        return ([self._watch_trades(s) for s in self.symbols] if self.trades else []) + \
            ([self._watch_quotes()] if self.quotes else [])

    async def _watch_trades(self, symbol: str) -> None:
        params = {"name": "aggTrade"} if self.exchange.id in ("binance", "binanceus") else {}

        def deliver(trades: list[dict[str, Any]]) -> None:
            self._trades.extend((symbol, t) for t in trades)
            self.arrived.set()

        await self._keep(f"trades:{symbol}", lambda: self.exchange.watch_trades(symbol, None, None, dict(params)),
                         deliver)

    async def _watch_quotes(self) -> None:
        def deliver(tickers: dict[str, dict[str, Any]]) -> None:
            with self._lock:
                self._tickers.update(tickers)
            self.arrived.set()

        await self._keep("quotes", lambda: self.exchange.watch_bids_asks(self.symbols), deliver)
