"""The venue's clock: the one time a live session stamps its inputs with.

A live namespace must read in one time line, the venue's, so that bars (stamped at their close), fills and order
answers (stamped when the venue saw them) and the runtime's own events sort together. For a real venue that is the
wall clock corrected by the offset ccxt measured (`options['timeDifference']`, ms). For the sandbox venue replaying
history it is the replay's market time, which runs at the sandbox's speed: `SandboxClock` reads it from
`GET /sandbox/clock` and extrapolates between reads. Durations (visibility windows, timeouts) are not venue time:
they run on the runtime's own clock.
"""
from __future__ import annotations

import json
import math
import time
import urllib.request
from typing import Any, Callable, Protocol

from schemas.errors import TapeError


class VenueClock(Protocol):
    """Now in the venue's time (ns); `sync` re-reads it where it can drift (called once per pass of the loop)."""

    def now(self) -> int: ...

    def sync(self) -> None: ...


class ExchangeClock:
    """A real venue's time: the runtime's clock minus the offset ccxt measured against the venue's server time."""

    def __init__(self, exchange: Any, clock: Callable[[], int] = time.time_ns):
        self.exchange, self.clock = exchange, clock

    def now(self) -> int:
        offset_ms = (self.exchange.options or {}).get("timeDifference", 0) or 0
        return self.clock() - int(offset_ms) * 1_000_000

    def sync(self) -> None:
        """ccxt measures the offset when it loads markets; nothing to do per pass."""


class SandboxClock:
    """The sandbox's market time: read from /sandbox/clock, extrapolated at its speed between reads."""

    def __init__(self, url: str, monotonic: Callable[[], float] = time.monotonic):
        self.url = url.rstrip("/") + "/sandbox/clock"
        self.monotonic = monotonic
        self.market_ns = 0
        self.speed = 0.0
        self.read_at = 0.0
        self.sync()

    def sync(self) -> None:
        """Read the market time; once it has been read, a failed read keeps extrapolating (the next pass retries)."""
        try:
            with urllib.request.urlopen(self.url, timeout=5) as r:
                body = json.loads(r.read())
        except (OSError, ValueError) as e:
            if self.read_at:
                return
            raise TapeError(f"sandbox venue at {self.url} is unreachable or tells no clock ({e}); start it with "
                            "`tape sandbox serve` and pass its URL to --sandbox-url") from None
        speed = body["speed"]
        self.speed = math.inf if speed == "max" else float(speed)
        self.market_ns = int(body["marketTimeNs"])
        self.read_at = self.monotonic()

    def now(self) -> int:
        if 0 < self.speed < math.inf:
            return self.market_ns + int((self.monotonic() - self.read_at) * self.speed * 1e9)
        return self.market_ns  # stepped or as fast as it can: time moves only with what the venue released
