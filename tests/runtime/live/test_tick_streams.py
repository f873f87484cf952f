"""Trades and the book's top for a strategy that hears them (the real ccxt.pro and REST against the sandbox): the
log holds every trade of the venue once, in id order, equal to the venue's own — across dropped frames, restarts
while the market went on, and sessions without the stream — and the book's top whenever it changed."""
from __future__ import annotations

import re
import time
from decimal import Decimal
from itertools import pairwise

from killkit import SYMBOL, Live, Sandbox, log_events
from sandboxkit import write_history

EARS = '''
from handlers.strategy import Strategy


class Ears(Strategy):
    """Hears trades and quotes, and does nothing with them."""

    name = "ears"

    def on_trade(self, tick):
        pass

    def on_quote(self, quote):
        pass
'''


def venue_trades(sb: Sandbox, first: int, last: int) -> dict[str, dict]:
    ex, out = sb.ccxt(), {}
    while first <= last:
        page = ex.fetch_trades(SYMBOL, None, 1000, {"fromId": first})
        if not page:
            break
        out.update((str(t["id"]), t) for t in page)
        first = max(int(t["id"]) for t in page) + 1
    return out


def test_every_trade_once_in_order_across_a_kill_drops_restarts_and_rest_only_sessions(tmp_path):
    store = tmp_path / "store"
    write_history(store, "hist", bars=3000)
    (tmp_path / "ears.py").write_text(EARS)
    sb = Sandbox(store, "hist", speed="60", extra=("--loop",)).start()
    live = Live(store, sb.url)
    live.strategy = f"{tmp_path / 'ears.py'}:Ears"
    outs = []
    try:
        p = live.spawn()  # a session SIGKILLed mid-stream: the next one resumes after its last committed trade
        time.sleep(5)
        p.kill()
        p.communicate()
        for faults, extra in [(None, ()), ({"fault": "ws_drop", "probability": 0.3, "target": "market"}, ()),
                              (None, ("--no-stream",))]:
            sb.post("/sandbox/faults", faults or {"clear": True})
            p = live.run(6, *extra)
            assert p.returncode == 0, p.stderr[-3000:]
            outs.append(p.stdout)
        events = log_events(store)
        ticks = [e.data for e in events if e.name == "TradeTick"]
        ids = [int(t["trade_id"]) for t in ticks]
        assert len(ids) >= 30, outs
        assert ids == list(range(ids[0], ids[0] + len(ids))), ids  # each once, none missing, in the venue's order
        venue = venue_trades(sb, ids[0], ids[-1])
        for t in ticks:
            v = venue[t["trade_id"]]
            assert (t["price"], t["quantity"]) == (Decimal(repr(v["price"])), Decimal(repr(v["amount"]))), (t, v)
            assert t["aggressor_side"] == {"buy": "BUYER", "sell": "SELLER"}[v["side"]]
        quotes = [e.data for e in events if e.name == "QuoteTick"]
        assert len(quotes) >= 10, outs
        assert all(q["bid_price"] < q["ask_price"] for q in quotes)
        assert all(a != b for a, b in pairwise(quotes))  # recorded when the book's top changed
        print("\n" + "".join(outs))
        assert all(re.search(r"polled, [1-9][\d,]* trades, [1-9][\d,]* quotes\)", out) for out in outs), outs
    finally:
        sb.stop()
