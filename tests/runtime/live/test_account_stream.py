"""The account's private stream as a wake-up (the real ccxt.pro over the sandbox's user-data stream): while it is
connected a quiet account costs no read of the venue's trades, and a fill is read when the venue announces it; the
same session without the stream (the control) reads on its timer. The log's fills are the venue's either way."""
from __future__ import annotations

import re
import signal
import time

import pytest
from killkit import Live, Sandbox, log_events, own_orders, own_trade_ids, until
from sandboxkit import write_history

READS = "GET /api/v3/myTrades"


def updates(out: str) -> int:
    """The account updates a session's last line counts."""
    m = re.search(r"([\d,]+) account updates streamed", out)
    assert m, out
    return int(m.group(1).replace(",", ""))


@pytest.mark.parametrize("stream", [True, False], ids=["account-stream", "control-no-stream"])
def test_a_quiet_account_is_not_read_and_a_fill_is_read_when_the_venue_announces_it(tmp_path, stream):
    store = tmp_path / "store"
    write_history(store, "hist", bars=3000)
    sb = Sandbox(store, "hist", speed="15", extra=("--loop",)).start()
    live = Live(store, sb.url)
    live.strategy = "market_maker"
    p = live.spawn("--fills-poll", "0.5", "--check-every", "60", "--max-seconds", "60",
                   *(() if stream else ("--no-account-stream",)))
    try:
        assert until(lambda: any(o["status"] == "NEW" for o in own_orders(sb)), 30), "no quote rested at the venue"
        sb.post("/sandbox/speed", {"speed": 0})  # the market stops: nothing changes on the account from here
        time.sleep(1.0)  # answers in flight land
        before = sb.state()["requests"].get(READS, 0)
        time.sleep(3.0)
        quiet_reads = sb.state()["requests"].get(READS, 0) - before
        traded = own_trade_ids(sb)
        for _ in range(200):  # the market moves on, event by event, until a quote of ours trades
            sb.step(1)
            new = own_trade_ids(sb) - traded
            if new:
                break
        assert new, "the market never reached a quote of ours"
        at = time.monotonic()
        logged = until(lambda: new <= {e.data["trade_id"] for e in log_events(store) if e.name == "OrderFilled"}, 10)
        latency = time.monotonic() - at
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err[-3000:]
    finally:
        if p.poll() is None:
            p.kill()
        sb.stop()
    print(f"\nstream={stream}: {quiet_reads} reads of the venue's trades in 3 quiet seconds, fill logged in "
          f"{latency:.2f} s; {out.strip()}")
    assert logged, "the fill never reached the log"
    fills = [e.data["trade_id"] for e in log_events(store) if e.name == "OrderFilled"]
    assert len(fills) == len(set(fills))  # each once
    if stream:
        assert quiet_reads == 0  # nothing announced, nothing read
        assert latency < 3.0  # read on the venue's word (the periodic check is a minute away)
        assert updates(out) > 0
    else:
        assert quiet_reads >= 4  # every --fills-poll 0.5 s, whether or not anything happened
        assert updates(out) == 0
