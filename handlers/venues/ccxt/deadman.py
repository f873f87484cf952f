"""The venue's dead-man's switch: a cancel-all-after timer re-armed while the runtime is healthy, left to expire when not.

ccxt's unified `cancel_all_orders_after(timeout_ms)` (`exchange.has['cancelAllOrdersAfter']`: okx, kraken,
krakenfutures, htx, bybit, …; not binance) asks the venue to cancel every open order of the account once the timeout
passes without a new call. While `refresh(healthy=True)` is called the switch re-arms every timeout/3 seconds, so
two refreshes can be lost before the venue acts; when the runtime is not healthy (the log stalls, the loop is stuck,
the process hangs or dies) nothing re-arms it and the venue cancels everything at expiry — that is the point.
`disarm()` sends 0, which cancels the timer (okx, kraken, krakenfutures, htx), for a clean stop that leaves orders
resting on purpose.

What the venues accept (their docs, as ccxt 4.5 sends it: whole seconds, `timeout_ms // 1000`): okx 10–120 s
(`POST /api/v5/trade/cancel-all-after {"timeOut": "60"}`), kraken up to 86 400 s (`CancelAllOrdersAfter`),
bybit 3–300 s. Bybit's is a different mechanism (DCP: orders are canceled when the private websocket that
subscribed to `dcp` disconnects, for `timeWindow` seconds); arming it only sets that window and a 0 is refused.

Every call is a blocking REST request on the caller's thread. Errors never reach the caller: they are counted in
`errors` and the last is kept, on one line with the credentials masked, in `last_error`; a failed arm is tried
again after `RETRY_SECONDS` (or timeout/3, if shorter), not on every call.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from handlers.venues.ccxt.errors import one_line
from schemas.errors import TapeError

RETRY_SECONDS = 1.0  # after a failed arm: soon, but not on every pass of the loop
LIMITS = {"okx": (10, 120), "kraken": (1, 86_400), "bybit": (3, 300)}  # seconds the venue accepts (its docs)


class DeadMansSwitchError(TapeError):
    """A dead-man's switch timeout the venue would not accept."""


class DeadMansSwitch:
    """Cancel-all-after on one exchange: `refresh` while healthy, `disarm` on a clean stop (see the module doc)."""

    def __init__(self, exchange: Any, timeout_seconds: int, clock: Callable[[], float] = time.monotonic,
                 secrets: tuple[str, ...] = ()) -> None:
        venue = str(getattr(exchange, "id", "") or type(exchange).__name__)
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, int) or timeout_seconds <= 0:
            raise DeadMansSwitchError(f"dead-man's switch on {venue}: timeout must be a whole number of seconds > 0, "
                                      f"got {timeout_seconds!r}")
        low, high = LIMITS.get(venue, (1, 86_400))
        if not low <= timeout_seconds <= high:
            raise DeadMansSwitchError(f"dead-man's switch on {venue}: timeout {timeout_seconds} s is outside what "
                                      f"the venue accepts; use {low} to {high} s")
        self.exchange = exchange
        self.venue = venue
        self.timeout_seconds = timeout_seconds
        self.interval = timeout_seconds / 3
        self.clock = clock
        self.secrets = secrets
        has = getattr(exchange, "has", None) or {}
        self.available: bool = bool(has.get("cancelAllOrdersAfter"))
        self.armed_until: float | None = None  # clock time the venue's timer expires, as last set; None: not armed
        self.last_error: str | None = None
        self.errors = 0  # calls that failed
        self.arms = 0  # arms the venue acknowledged
        self._due: float | None = None  # when the next arm is due; None: now

    @property
    def armed(self) -> bool:
        """Whether the venue's timer is running by our last acknowledged arm (it expires at `armed_until`)."""
        return self.armed_until is not None and self.clock() < self.armed_until

    def remaining(self) -> float:
        """Seconds until the venue's timer expires by our last acknowledged arm; 0 when it is not running."""
        return max(0.0, self.armed_until - self.clock()) if self.armed_until is not None else 0.0

    def refresh(self, healthy: bool) -> bool:
        """Re-arm the timer when due and healthy; unhealthy, let it run out. True when the venue acknowledged an arm."""
        if not self.available or not healthy:
            return False
        now = self.clock()
        if self._due is not None and now < self._due:
            return False
        if self._send(self.timeout_seconds * 1000):
            self.arms += 1
            self.armed_until = now + self.timeout_seconds  # measured from before the request: never later than the venue's
            self._due = now + self.interval
            return True
        self._due = now + min(self.interval, RETRY_SECONDS)
        return False

    def disarm(self) -> bool:
        """Cancel the venue's timer (timeout 0) on a clean stop, so resting orders stay; True when acknowledged."""
        if not self.available:
            return False
        if not self._send(0):
            return False
        self.armed_until = self._due = None
        return True

    def _send(self, timeout_ms: int) -> bool:
        try:
            self.exchange.cancel_all_orders_after(timeout_ms)
        except Exception as e:  # noqa: BLE001 — a venue, network or ccxt error: never into the loop
            self.errors += 1
            self.last_error = one_line(e, self.secrets)
            return False
        return True
