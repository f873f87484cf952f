"""The sandbox's market: a store namespace replayed in venue time, as trade prints, candles and a synthetic book.

Venue time is the source's event time. With speed X > 0 it runs X market seconds per wall second from the first
event; with speed 0 it moves only when the control endpoint steps it (N source events at a time); with speed
`inf` every event is released as fast as the venue can. `--loop` starts the source again when it ends, shifted by
its own span so venue time never goes back.

Each source event becomes one MarketUnit, released at its event time: a Bar at its close (the time it is known)
with its intrabar path O→L→H→C (rising) or O→H→L→C (falling) and four synthetic prints of a quarter of its volume
along that path; a TradeTick as one print. The first bar timeframe seen for an instrument is the one orders match
on (other timeframes feed candles only); trade ticks build 1m candles. Bid and ask are one tick either side of
the last price, 20 levels deep; the book's update id moves with every unit, for the diff-depth stream.

The server clock (GET /api/v3/time, the recvWindow check of signed requests, visibility lags) is the wall clock
plus the clock offset, as a real venue's is: a client needs no time sync unless an offset is injected, at any
replay speed. Everything the venue stamps on market data, orders and fills is market time.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any

from eventstore.errors import StoreError
from eventstore.store import Log
from handlers.venues.sim.fills import Path, bar_path
from runtime.sandbox.config import SandboxError
from runtime.times import parse_timeframe
from schemas.decimals import ARITHMETIC, ZERO

NS_PER_MS = 1_000_000
DEPTH_LEVELS = 20
CANDLES_KEPT = 5000
PRINTS_KEPT = 1000
TRADE_CANDLE_NS = 60 * 1_000_000_000  # trade ticks build 1m candles
INTERVALS_S = {"1s": 1, "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200,
               "4h": 14400, "6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400, "3d": 259200, "1w": 604800}
MARKET_TYPES = ("InstrumentDefined", "Bar", "TradeTick")


@dataclass(frozen=True, slots=True)
class Instrument:
    """An instrument's trading rules as the venue enforces them (from its InstrumentDefined)."""

    instrument_id: str
    symbol: str  # the venue's id, e.g. BTCUSDT
    base: str
    quote: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal | None
    min_notional: Decimal | None
    maker_fee: Decimal
    taker_fee: Decimal
    price_precision: int
    size_precision: int


@dataclass(frozen=True, slots=True)
class Print:
    """One public trade on the venue's tape."""

    trade_id: int
    price: Decimal
    qty: Decimal
    time_ms: int
    buyer_maker: bool


@dataclass(slots=True)
class Candle:
    """One kline: [open_ms, open_ms + length) with its OHLCV, trade count and trade id range."""

    open_ms: int
    length_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int
    first_id: int
    last_id: int
    closed: bool = False

    @property
    def close_ms(self) -> int:
        return self.open_ms + self.length_ms - 1

    def merged(self, other: Candle, length_ms: int, open_ms: int) -> Candle:
        """This candle extended by a later one, as one candle of `length_ms` from `open_ms`."""
        return Candle(open_ms, length_ms, self.open, max(self.high, other.high), min(self.low, other.low),
                      other.close, self.volume + other.volume, self.quote_volume + other.quote_volume,
                      self.trades + other.trades, self.first_id if self.trades else other.first_id,
                      other.last_id if other.trades else self.last_id, other.closed)


@dataclass(frozen=True, slots=True)
class MarketUnit:
    """What one source event did to one instrument's market, at one venue time."""

    symbol: str
    time_ms: int
    kind: str  # "bar" (matched whole along its path) or "trade"
    path: Path  # prices in time order; orders match against it (handlers.venues.sim.fills)
    volume: Decimal  # traded quantity orders may share
    prints: tuple[Print, ...]
    candles: tuple[Candle, ...]  # the candles this unit closed or updated, oldest first
    timeframe_ms: int  # the candle series it belongs to
    matchable: bool  # False for bars of a second timeframe: candles only


@dataclass
class Series:
    """Candles of one timeframe of one instrument: closed ones kept, plus the one still building (trades)."""

    length_ms: int
    closed: deque[Candle] = field(default_factory=lambda: deque(maxlen=CANDLES_KEPT))
    current: Candle | None = None


@dataclass
class SymbolMarket:
    """One instrument's market as the venue shows it: last price, recent prints, candles, book update id."""

    instrument: Instrument
    last_price: Decimal | None = None
    last_qty: Decimal = ZERO
    prints: deque[Print] = field(default_factory=lambda: deque(maxlen=PRINTS_KEPT))
    series: dict[int, Series] = field(default_factory=dict)
    match_timeframe_ms: int | None = None  # the bar series orders match on; None until a bar is seen
    trades_seen: bool = False
    update_id: int = 1
    level_qty: Decimal = Decimal(1)

    def book(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """Synthetic depth: DEPTH_LEVELS bids below and asks above the last price, one tick apart."""
        if self.last_price is None:
            return [], []
        tick = self.instrument.tick
        bids = [(self.last_price - tick * (i + 1), self.level_qty) for i in range(DEPTH_LEVELS)]
        asks = [(self.last_price + tick * (i + 1), self.level_qty) for i in range(DEPTH_LEVELS)]
        return [b for b in bids if b[0] > 0], asks

    def base_series(self, interval_ms: int) -> Series | None:
        """The coarsest candle series whose length divides `interval_ms` (what its klines are built from)."""
        bases = [s for length, s in self.series.items() if interval_ms % length == 0]
        return max(bases, key=lambda s: s.length_ms) if bases else None

    def candle_at(self, interval_ms: int, open_ms: int) -> Candle | None:
        """The kline of `interval_ms` that starts at `open_ms` (closed once its last base candle closed)."""
        base = self.base_series(interval_ms)
        if base is None:
            return None
        parts: list[Candle] = [base.current] if base.current is not None and base.current.open_ms >= open_ms else []
        for c in reversed(base.closed):
            if c.open_ms < open_ms:
                break
            parts.append(c)
        parts = [c for c in reversed(parts) if c.open_ms < open_ms + interval_ms]
        if not parts:
            return None
        out = replace(parts[0], open_ms=open_ms, length_ms=interval_ms)
        for c in parts[1:]:
            out = out.merged(c, interval_ms, open_ms)
        last = parts[-1]
        out.closed = last.closed and last.open_ms + last.length_ms >= open_ms + interval_ms
        return out

    def candles(self, interval_ms: int) -> list[Candle]:
        """Closed candles (and the building one) of `interval_ms`, merged from the coarsest series dividing it."""
        base = self.base_series(interval_ms)
        if base is None:
            return []
        items = list(base.closed) + ([base.current] if base.current is not None else [])
        if base.length_ms == interval_ms:
            return items
        out: list[Candle] = []
        for c in items:
            start = c.open_ms - c.open_ms % interval_ms
            part = replace(c, open_ms=start, length_ms=interval_ms,
                           closed=c.closed and (c.open_ms + c.length_ms) % interval_ms == 0)
            if out and out[-1].open_ms == start:
                out[-1] = out[-1].merged(part, interval_ms, start)
            else:
                out.append(part)
        return out


def interval_ms(text: str) -> int:
    """A Binance kline interval (1s, 1m, … 1w) in ms; ValueError for one the venue does not serve (1M)."""
    seconds = INTERVALS_S.get(text)
    if seconds is None:
        raise ValueError(text)
    return seconds * 1000


def venue_symbol(symbol: str, base: str, quote: str) -> str:
    """The Binance-style id of an instrument: its symbol when alphanumeric, else base + quote."""
    s = symbol.upper()
    return s if s.isalnum() else (base + quote).upper()


def load_instruments(log: Log, namespace: str) -> dict[str, Instrument]:
    """The namespace's instruments by venue symbol (the last definition of each wins); errors name the fix."""
    try:
        names = log.namespaces()
    except StoreError as e:
        raise SandboxError(f"{e}") from None
    if namespace not in names:
        known = ", ".join(names[:8]) + ("…" if len(names) > 8 else "")
        raise SandboxError(f"source namespace {namespace!r} is not in store {log.url}"
                           f"{': it has ' + known if names else ' (the store is empty)'}; "
                           "import history with `tape ingest csv` or pick one from `tape log namespaces`")
    by_id: dict[str, Instrument] = {}
    for ev in log.replay(namespace, types=["InstrumentDefined"]):
        d = ev.data
        if d["kind"] != "SPOT":
            continue
        by_id[d["instrument_id"]] = Instrument(
            d["instrument_id"], venue_symbol(d["symbol"], d["base_currency"], d["quote_currency"]),
            d["base_currency"].upper(), d["quote_currency"].upper(), d["price_increment"], d["size_increment"],
            max(d["min_quantity"], d["size_increment"]), d["max_quantity"], d["min_notional"], d["maker_fee"],
            d["taker_fee"], d["price_precision"], d["size_precision"])
    if not by_id:
        raise SandboxError(f"source namespace {namespace!r} defines no spot instrument (no InstrumentDefined "
                           "event): import its history with `tape ingest csv … --base B --quote Q`")
    out: dict[str, Instrument] = {}
    for inst in by_id.values():
        other = out.get(inst.symbol)
        if other is not None:
            raise SandboxError(f"instruments {other.instrument_id} and {inst.instrument_id} of {namespace!r} share "
                               f"the venue symbol {inst.symbol}: serve one venue's namespace at a time")
        out[inst.symbol] = inst
    return out


class VenueClock:
    """Market time (the replayed event time) and the server clock (the wall clock plus an offset, for signatures)."""

    def __init__(self, speed: float, monotonic: Callable[[], float] = time.monotonic):
        self.speed = speed
        self.monotonic = monotonic
        self.anchor_ns: int | None = None
        self.start = monotonic()
        self.stepped_ns = 0  # market time when it only moves with released events (speed 0 or inf)
        self.offset_ms = 0

    @property
    def paced(self) -> bool:
        """True when market time follows the wall clock (0 < speed < inf)."""
        return 0 < self.speed < math.inf

    def anchor(self, ns: int) -> None:
        """Start market time at the first event's time."""
        self.anchor_ns = ns
        self.stepped_ns = ns
        self.start = self.monotonic()

    def set_speed(self, speed: float) -> None:
        """Change the replay's speed from now on (0 pauses it: then it moves only when stepped)."""
        now = self.market_ns()
        if self.anchor_ns is not None:
            self.anchor_ns = self.stepped_ns = now
        self.start = self.monotonic()
        self.speed = speed

    def market_ns(self) -> int:
        """Now in market time: where the replay stands."""
        if self.anchor_ns is None:
            return int(time.time() * 1e9)
        if self.paced:
            return self.anchor_ns + int((self.monotonic() - self.start) * self.speed * 1e9)
        return self.stepped_ns

    def market_ms(self) -> int:
        return self.market_ns() // NS_PER_MS

    def server_ms(self) -> int:
        """The venue's clock for /api/v3/time, recvWindow and lags: the wall clock plus the injected offset."""
        return int(time.time() * 1000) + self.offset_ms


class Market:
    """The replay: reads the source lazily, turns events into MarketUnits and keeps each symbol's market."""

    def __init__(self, log: Log, namespace: str, instruments: dict[str, Instrument], clock: VenueClock,
                 loop: bool = False):
        self.log = log
        self.namespace = namespace
        self.clock = clock
        self.loop = loop
        self.symbols = {s: SymbolMarket(i) for s, i in instruments.items()}
        self.by_id = {i.instrument_id: s for s, i in instruments.items()}
        self.next_trade_id = {s: 1 for s in instruments}
        self.released = 0  # source events released so far
        self.laps = 0
        self.exhausted = False
        self._lap_offset = 0
        self._first_ns: int | None = None
        self._last_ns: int | None = None
        self._gap_ns: int | None = None
        self._events: Iterator[Any] = self._open()
        self._peeked: tuple[int, Any] | None = None
        first = self._peek()
        if first is not None:
            clock.anchor(self._anchor_ns(first[1]))

    def _open(self) -> Iterator[Any]:
        return iter(self.log.replay(self.namespace, types=["Bar", "TradeTick"]))

    @staticmethod
    def _anchor_ns(ev: Any) -> int:
        return ev.data["open_ts"] if ev.name == "Bar" else ev.ts_event

    def _peek(self) -> tuple[int, Any] | None:
        """The next source event and its venue time (lap offset applied), without releasing it."""
        if self._peeked is not None:
            return self._peeked
        while True:
            ev = next(self._events, None)
            if ev is None:
                if not self.loop or self._first_ns is None:
                    self.exhausted = True
                    return None
                self.laps += 1
                self._lap_offset += (self._last_ns - self._first_ns) + (self._gap_ns or 1_000_000_000)  # type: ignore[operator]
                self._events = self._open()
                continue
            if ev.key not in self.by_id:
                continue
            ts = ev.ts_event
            if self._first_ns is None:
                self._first_ns = ts
            elif self._gap_ns is None and ts > self._first_ns:
                self._gap_ns = ts - self._first_ns
            if self.laps == 0:
                self._last_ns = ts
            self._peeked = (ts + self._lap_offset, ev)
            return self._peeked

    def next_time_ns(self) -> int | None:
        """Venue time of the next source event, None when the source is done."""
        nxt = self._peek()
        return None if nxt is None else nxt[0]

    def due(self) -> list[MarketUnit]:
        """Every unit whose time has come (paced speeds)."""
        now = self.clock.market_ns()
        out = []
        while True:
            nxt = self._peek()
            if nxt is None or nxt[0] > now:
                return out
            out.extend(self._release())

    def step(self, events: int) -> list[MarketUnit]:
        """Release the next `events` source events now (speed 0 / inf); market time moves to the last of them."""
        out = []
        for _ in range(events):
            if self._peek() is None:
                break
            out.extend(self._release())
        return out

    def _release(self) -> list[MarketUnit]:
        ts, ev = self._peeked  # type: ignore[misc]
        self._peeked = None
        self.released += 1
        if not self.clock.paced:
            self.clock.stepped_ns = max(self.clock.stepped_ns, ts)
        symbol = self.by_id[ev.key]
        d = ev.data
        with localcontext(ARITHMETIC):
            unit = self._bar(symbol, d, ts, self._lap_offset) if ev.name == "Bar" else self._trade(symbol, d, ts)
        return [unit]

    def trade_id(self, symbol: str) -> int:
        """The next trade id of a symbol (prints and the account's fills share one increasing sequence)."""
        return self._print_ids(symbol, 1)[0]

    def last_price(self, symbol: str) -> Decimal | None:
        return self.symbols[symbol].last_price

    def _print_ids(self, symbol: str, n: int) -> list[int]:
        first = self.next_trade_id[symbol]
        self.next_trade_id[symbol] = first + n
        return list(range(first, first + n))

    def _bar(self, symbol: str, d: dict[str, Any], ts: int, offset: int) -> MarketUnit:
        m = self.symbols[symbol]
        open_ns = d["open_ts"] + offset
        length_ns = ts - open_ns
        tf_ms = max(1, parse_timeframe(d["timeframe"]) // NS_PER_MS)
        if m.match_timeframe_ms is None and not m.trades_seen:
            m.match_timeframe_ms = tf_ms
        matchable = m.match_timeframe_ms == tf_ms
        path = bar_path(d["open"], d["high"], d["low"], d["close"])
        volume = d["volume"]
        prints: tuple[Print, ...] = ()
        if matchable and volume > 0:
            quarter = volume / len(path)
            ids = self._print_ids(symbol, len(path))
            times = [open_ns + length_ns * k // len(path) for k in range(len(path))]
            prev = m.last_price if m.last_price is not None else path[0]
            out = []
            for tid, t, p in zip(ids, times, path):
                out.append(Print(tid, p, quarter, t // NS_PER_MS, p < prev))
                prev = p
            prints = tuple(out)
        first_id = prints[0].trade_id if prints else 0
        last_id = prints[-1].trade_id if prints else 0
        quote_volume = volume * sum(path, ZERO) / len(path)
        candle = Candle(open_ns // NS_PER_MS, tf_ms, d["open"], d["high"], d["low"], d["close"], volume,
                        quote_volume, d["trades"] if d.get("trades") is not None else len(prints), first_id,
                        last_id, closed=True)
        series = m.series.setdefault(tf_ms, Series(tf_ms))
        series.closed.append(candle)
        if matchable:
            m.prints.extend(prints)
            m.last_price = d["close"]
            m.last_qty = prints[-1].qty if prints else ZERO
            m.update_id += 1
            if volume > 0:
                m.level_qty = max(m.instrument.step, (volume / DEPTH_LEVELS).quantize(
                    m.instrument.step, rounding=ROUND_DOWN))
        return MarketUnit(symbol, ts // NS_PER_MS, "bar", path, volume, prints, (candle,), tf_ms, matchable)

    def _trade(self, symbol: str, d: dict[str, Any], ts: int) -> MarketUnit:
        m = self.symbols[symbol]
        m.trades_seen = True
        price, qty = d["price"], d["quantity"]
        (tid,) = self._print_ids(symbol, 1)
        buyer_maker = d.get("aggressor_side") == "SELLER" or (
            d.get("aggressor_side") == "NO_AGGRESSOR" and m.last_price is not None and price < m.last_price)
        p = Print(tid, price, qty, ts // NS_PER_MS, buyer_maker)
        m.prints.append(p)
        m.last_price, m.last_qty = price, qty
        m.update_id += 1
        m.level_qty = max(m.instrument.step, qty)
        tf_ms = TRADE_CANDLE_NS // NS_PER_MS
        series = m.series.setdefault(tf_ms, Series(tf_ms))
        start = p.time_ms - p.time_ms % tf_ms
        cur = series.current
        touched: list[Candle] = []
        if cur is not None and cur.open_ms != start:
            cur.closed = True
            series.closed.append(cur)
            touched.append(replace(cur))
            cur = None
        notional = price * qty
        if cur is None:
            cur = series.current = Candle(start, tf_ms, price, price, price, price, qty, notional, 1, tid, tid)
        else:
            cur.high, cur.low, cur.close = max(cur.high, price), min(cur.low, price), price
            cur.volume += qty
            cur.quote_volume += notional
            cur.trades += 1
            cur.last_id = tid
        touched.append(replace(cur))
        return MarketUnit(symbol, ts // NS_PER_MS, "trade", (price,), qty, (p,), tuple(touched), tf_ms, True)
