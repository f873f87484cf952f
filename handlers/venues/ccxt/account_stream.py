"""The account's private streams (orders, own trades) as wake-ups for REST reads, never as a source of truth.

ccxt.pro's `watch_orders` and `watch_my_trades` (Binance: one signed user-data subscription, the WebSocket API's
`userDataStream.subscribe.signature`) tell when the account changed: a fill, a cancel, an expiry. Their content is
not recorded: ccxt.pro's caches drop updates silently when the consumer lags (live-runtime.md §1.5), so an update
only counts as "read the account now" and the live loop reads the venue's trade history over REST at once — within
its rate-limit floor (`--fills-poll`) — instead of at its next timer. While the stream is connected the loop does
not read on a timer at all between its periodic order checks (which read fills too): the venue is asked when it has
something to say. A stream that is down, stalled or drops a frame costs latency, never a fill: the checks go on.
"""
from __future__ import annotations

import threading
from collections.abc import Coroutine
from typing import Any

from handlers.venues.ccxt.stream import StreamThread

WATCHES = {"watch_orders": "watchOrders", "watch_my_trades": "watchMyTrades"}  # method → `has` key


class AccountStream(StreamThread):
    """Counts the account's updates as they arrive (`take`); `connected()` from the first update any watch delivered
    until a watch fails (on Binance one user-data subscription carries orders and trades alike, and a watch of trades
    is silent until the first fill)."""

    thread_name = "account-stream"

    def __init__(self, exchange: Any, *, retry_seconds: float = 1.0, wake: threading.Event | None = None):
        super().__init__(exchange, retry_seconds=retry_seconds, wake=wake)
        has = getattr(exchange, "has", None) or {}
        self.watches = [w for w, key in WATCHES.items() if has.get(key)]
        self._lock = threading.Lock()
        self._changes = 0

    def take(self) -> int:
        """The updates that arrived since the last call (0: nothing new the stream knows of)."""
        with self._lock:
            n, self._changes = self._changes, 0
        return n

    # ---- the stream's thread -------------------------------------------------------------------------------------

    def _watches(self) -> list[Coroutine[Any, Any, None]]:
        return [self._watch(w) for w in self.watches]

    async def _watch(self, name: str) -> None:
        def deliver(got: Any) -> None:
            with self._lock:
                self._changes += max(1, len(got) if isinstance(got, list) else 1)
            self.arrived.set()

        await self._keep("account", getattr(self.exchange, name), deliver)
