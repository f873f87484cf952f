"""What the venue's answers say of its health, counted where every ccxt request passes: `Exchange.fetch`.

`watch(exchange)` wraps the exchange object's `fetch` (every REST call of a ccxt sync class goes through it) and its
`handle_errors` (called with the HTTP status of every answer before ccxt maps it to an exception). Counted: requests
in a row that got no answer or a 5xx (reset by any other answer), 429 answers and 418 answers (Binance's IP ban)
since the last `take()`. The live node records them in its Heartbeat inputs; the incident monitor decides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class VenueHealth:
    """Counters of the venue's answers (see the module doc)."""

    failed_reads: int = 0
    rate_limited: int = 0
    banned: int = 0

    def watch(self, exchange: Any) -> VenueHealth:
        """Count what `exchange` answers from now on (an object that is not a ccxt exchange: nothing)."""
        fetch, handle = getattr(exchange, "fetch", None), getattr(exchange, "handle_errors", None)
        if fetch is None or handle is None:
            return self

        def counted_fetch(*args: Any, **kwargs: Any) -> Any:
            status: list[int] = []
            self._status = status
            try:
                out = fetch(*args, **kwargs)
            except Exception:
                if not status or status[0] >= 500:
                    self.failed_reads += 1  # no answer, or the venue's own failure
                else:
                    self.failed_reads = 0
                raise
            self.failed_reads = 0
            return out

        def status_seen(code: Any, *args: Any, **kwargs: Any) -> Any:
            code = int(code) if code is not None else 0
            self._status.append(code)
            if code == 429:
                self.rate_limited += 1
            elif code == 418:
                self.banned += 1
            return handle(code, *args, **kwargs)

        self._status: list[int] = []
        exchange.fetch, exchange.handle_errors = counted_fetch, status_seen
        return self

    def take(self) -> tuple[int, int, int]:
        """(requests failed in a row, 429s, 418s since the last take)."""
        out = (self.failed_reads, self.rate_limited, self.banned)
        self.rate_limited = self.banned = 0
        return out
