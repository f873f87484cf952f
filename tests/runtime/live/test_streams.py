"""Bars from the venue's websocket stream (the real ccxt.pro over a real socket to the sandbox), REST when it fails:
whatever the stream does, the log holds every closed bar once, in order, equal to the venue's own klines."""
from __future__ import annotations

import re
import time
from decimal import Decimal

from killkit import SYMBOL, Live, Sandbox, log_events
from sandboxkit import write_history

MINUTE_NS = 60_000_000_000


def session(tmp_path, *extra: str, speed: str = "120") -> tuple[Sandbox, Live]:
    store = tmp_path / "store"
    write_history(store, "hist", bars=3000)
    sb = Sandbox(store, "hist", speed=speed, extra=("--loop",)).start()
    return sb, Live(store, sb.url)


def counts(stdout: str) -> tuple[int, int]:
    m = re.search(r"\(([\d,]+) bars streamed, ([\d,]+) polled\)", stdout)
    assert m, stdout
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def recorded_bars_are_the_venues(sb: Sandbox, live: Live) -> list[int]:
    """Every Bar in the log, checked: contiguous open times, none twice, each equal to the venue's kline."""
    bars = [e.data for e in log_events(live.store) if e.name == "Bar"]
    opens = [b["open_ts"] for b in bars]
    assert opens == list(range(opens[0], opens[0] + MINUTE_NS * len(opens), MINUTE_NS)), opens
    venue = {int(r[0]) * 1_000_000: r for r in sb.ccxt().fetch_ohlcv(SYMBOL, "1m", opens[0] // 1_000_000, 1000)}
    for b in bars:
        row = venue[b["open_ts"]]
        got = [b["open"], b["high"], b["low"], b["close"], b["volume"]]
        assert got == [Decimal(repr(float(x))) for x in row[1:6]], (b, row)
    return opens


def test_a_stalled_stream_then_a_closed_one_leave_no_gap_and_no_repeat(tmp_path):
    """A stall (the socket is up, pings answered, no data) is caught by the venue's clock; a close by ccxt.pro."""
    sb, live = session(tmp_path)
    try:
        for fault, at, seconds in [("ws_stall", 4, 10), ("ws_close", 3, 8)]:  # the second session resumes the first
            p = live.spawn("--max-seconds", str(seconds))
            time.sleep(at)
            acted = sb.post("/sandbox/faults", {"fault": fault, "now": True, "target": "market", "arg": 3})
            assert acted.get("stalled" if fault == "ws_stall" else "closed") == 1, acted
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err[-3000:]
            streamed, polled = counts(out)
            assert streamed >= 3 and polled >= 2, out  # the stream carried the session; REST covered the fault
            recorded_bars_are_the_venues(sb, live)
        # a third of the market frames dropped, closing ones included: each such bar comes over REST, never from an
        # earlier frame of it
        sb.post("/sandbox/faults", {"fault": "ws_drop", "probability": 0.33, "target": "market"})
        done = live.run(8)
        assert done.returncode == 0, done.stderr[-3000:]
        streamed, polled = counts(done.stdout)
        assert streamed >= 3 and polled >= 3, done.stdout
        recorded_bars_are_the_venues(sb, live)
    finally:
        sb.stop()


def test_no_stream_polls_every_bar(tmp_path):
    sb, live = session(tmp_path)
    try:
        p = live.spawn("--max-seconds", "5", "--no-stream")
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err[-3000:]
        streamed, polled = counts(out)
        assert streamed == 0 and polled >= 8, out
        recorded_bars_are_the_venues(sb, live)
    finally:
        sb.stop()
