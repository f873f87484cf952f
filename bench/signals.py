"""sma_cross's signal path alone, for bench/hot_path.py: the same averages and crossings a bar, never an order."""
from __future__ import annotations

from typing import Any

from handlers.strategies.sma_cross import Cross, SmaCross


class SmaSignals(SmaCross):
    """The crossings of SmaCross, computed and counted; nothing is traded."""

    name = "sma_signals"

    def on_bar(self, bar: dict[str, Any]) -> None:
        p = self.params
        iid = bar["instrument_id"]
        c = self.crosses.get(iid)
        if c is None:
            c = self.crosses[iid] = Cross(p.fast, p.slow)
        above = c.add(bar["close"])
        if above is not None and above != c.above:
            c.above = above
