"""The sandbox venue assembled: market, account, faults, credentials and streams, and the pump that moves time.

Every request handler and the pump run on one asyncio loop, so the venue's state changes one step at a time and
needs no lock. Releasing a market unit publishes it to the market streams first, then matches the account's
orders against it (whose executions go to the user data stream), as a real venue prints the trade before it
reports your fill.
"""
from __future__ import annotations

import asyncio
import math
from collections import Counter
from decimal import Decimal

from eventstore.store import Log
from runtime.sandbox.book import Book
from runtime.sandbox.config import DEFAULT_QUOTE_BALANCE, SandboxConfig
from runtime.sandbox.faults import Faults, parse_spec
from runtime.sandbox.market import Market, MarketUnit, VenueClock, load_instruments
from runtime.sandbox.signing import Credentials
from runtime.sandbox.ws import Streams

PUMP_TICK_S = 0.25  # longest sleep of the paced pump, so speed changes and new data are picked up
FAST_BATCH = 200  # source events per loop turn at speed max


class Venue:
    """One sandbox venue: what every endpoint reads and changes."""

    def __init__(self, config: SandboxConfig, log: Log):
        self.config = config
        instruments = load_instruments(log, config.source)
        self.clock = VenueClock(config.speed)
        self.market = Market(log, config.source, instruments, self.clock, loop=config.loop)
        self.clock.offset_ms = config.clock_offset_ms
        balances = dict(config.balances) or {i.quote: DEFAULT_QUOTE_BALANCE for i in instruments.values()}
        for inst in instruments.values():
            balances.setdefault(inst.base, Decimal(0))
            balances.setdefault(inst.quote, Decimal(0))
        self.book = Book(instruments, balances, seed=config.seed, market_ms=self.clock.market_ms,
                         server_ms=self.clock.server_ms, trade_id=self.market.trade_id,
                         last_price=self.market.last_price)
        self.faults = Faults(config.seed, parse_spec(config.faults))
        self.credentials = Credentials(config.api_key, config.secret)
        self.streams = Streams(self.market, self.clock, self.credentials, self.faults)
        self.requests: Counter[str] = Counter()  # REST requests served, by "METHOD /path" (/sandbox/state)
        self.book.sink = self.streams.publish_user

    def release(self, units: list[MarketUnit]) -> None:
        """Publish each unit to the market streams, then match the account's orders against it."""
        for unit in units:
            self.streams.publish_market(unit)
            self.book.on_market(unit)

    def step(self, events: int) -> int:
        """Release the next `events` source events now; how many were released."""
        before = self.market.released
        self.release(self.market.step(events))
        return self.market.released - before

    async def pump(self) -> None:
        """Move the market with time: paced by the speed, as fast as possible (max), or not at all (0); the speed
        is read every turn, so a change at run time (POST /sandbox/speed) takes effect at once."""
        while True:
            speed = self.clock.speed
            if speed == 0:
                await asyncio.sleep(PUMP_TICK_S)
                continue
            if speed == math.inf:
                if self.market.exhausted:
                    return
                self.release(self.market.step(FAST_BATCH))
                await asyncio.sleep(0)
                continue
            self.release(self.market.due())
            nxt = self.market.next_time_ns()
            if nxt is None:
                return
            wait = (nxt - self.clock.market_ns()) / 1e9 / speed
            await asyncio.sleep(min(max(wait, 0.0), PUMP_TICK_S))
