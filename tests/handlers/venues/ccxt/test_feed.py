"""BarFeed: streamed bars are taken only when they continue the cursor; gaps and late bars go to REST."""
from __future__ import annotations

from decimal import Decimal

from handlers.venues.ccxt.feed import BarFeed
from handlers.venues.ccxt.stream import StreamedBar

MIN_MS = 60_000
MIN_NS = MIN_MS * 1_000_000
IID = "BTCUSDT.BINANCE"


class Klines:
    """fetch_ohlcv over a fixed list of one-minute rows (floats, as ccxt returns them)."""

    def __init__(self, n: int):
        self.rows = [[i * MIN_MS, 100.0 + i, 101.5 + i, 99.25 + i, 100.5 + i, 2.0] for i in range(n)]
        self.calls = 0

    def fetch_ohlcv(self, symbol: str, timeframe: str, since_ms: int, limit: int) -> list[list]:
        self.calls += 1
        return [r for r in self.rows if r[0] >= since_ms][:limit]


def feed(rows: int, now_ms: int) -> tuple[BarFeed, Klines]:
    ex = Klines(rows)
    return BarFeed(ex, {IID: "BTC/USDT"}, "1m", MIN_NS, lambda: now_ms * 1_000_000, history=rows), ex


def streamed(i: int) -> StreamedBar:
    return StreamedBar("BTC/USDT", i * MIN_MS, f"{100 + i}.00000000", f"{101.5 + i}0", f"{99.25 + i}", f"{100.5 + i}",
                       "2.00000000")


def test_a_streamed_bar_that_continues_the_cursor_is_taken_exactly():
    f, _ = feed(3, 3 * MIN_MS)
    assert [b[1]["open_ts"] for b in f.poll()] == [0, MIN_NS, 2 * MIN_NS]
    bars, gaps = f.take([streamed(2), streamed(3)])  # 2 again (dropped), 3 continues
    assert gaps == set() and [b[1]["open_ts"] for b in bars] == [3 * MIN_NS]
    assert bars[0][1]["open"] == Decimal(103) and bars[0][2] == 4 * MIN_NS  # ts_event = close time
    assert f.last_open[IID] == 3 * MIN_NS


def test_a_gap_is_not_taken_and_names_the_instrument_for_rest():
    f, ex = feed(6, 6 * MIN_MS)
    f.learn("Bar", {"timeframe": "1m", "instrument_id": IID, "open_ts": MIN_NS})
    bars, gaps = f.take([streamed(4), streamed(5)])
    assert bars == [] and gaps == {IID} and f.last_open[IID] == MIN_NS
    polled = f.poll(gaps)
    assert [b[1]["open_ts"] // MIN_NS for b in polled] == [2, 3, 4, 5] and ex.calls == 1
    assert f.take([streamed(5)]) == ([], set())  # what REST recorded is not taken twice


def test_due_in_the_venues_time():
    f, _ = feed(3, 3 * MIN_MS)
    assert f.due() == {IID}  # nothing recorded yet
    f.learn("Bar", {"timeframe": "1m", "instrument_id": IID, "open_ts": MIN_NS})
    assert f.due() == {IID}  # bar 2 closed at 3 minutes
    f.learn("Bar", {"timeframe": "1m", "instrument_id": IID, "open_ts": 2 * MIN_NS})
    assert f.due() == set()


def test_without_history_a_new_namespace_records_the_bar_forming_now_once_it_closes():
    """With nothing recorded and no history asked for, the first bar is the one forming at the start (a `since` of
    now minus one bar, recomputed each poll, used to fall between bars and record nothing, ever)."""
    ex, now = Klines(4), [3 * MIN_MS + 30_000]  # the venue's bars up to now: bar 3 is forming
    f = BarFeed(ex, {IID: "BTC/USDT"}, "1m", MIN_NS, lambda: now[0] * 1_000_000)
    assert f.poll() == [] and f.due() == set()
    ex.rows, now[0] = Klines(5).rows, 4 * MIN_MS + 20_000  # bar 3 closed, bar 4 forming
    assert f.due() == {IID}
    assert [b[1]["open_ts"] // MIN_NS for b in f.poll()] == [3]
    ex.rows, now[0] = Klines(6).rows, 5 * MIN_MS + 20_000
    assert [b[1]["open_ts"] // MIN_NS for b in f.poll()] == [4]


def test_bars_the_venue_no_longer_serves_are_counted_not_skipped_silently():
    """A venue keeping a window of history answers a read from the next bar due with later bars: those missing are
    counted per instrument for the next Heartbeat (a bar_gap incident), once, and a hole inside an answer too."""
    f, ex = feed(20, 20 * MIN_MS)
    f.learn("Bar", {"timeframe": "1m", "instrument_id": IID, "open_ts": 2 * MIN_NS})
    ex.rows = ex.rows[10:15] + ex.rows[17:]  # the window begins at bar 10; bars 15 and 16 were never made
    assert [b[1]["open_ts"] // MIN_NS for b in f.poll()] == [10, 11, 12, 13, 14, 17, 18, 19]
    assert f.take_gaps() == {IID: 7 + 2}  # bars 3..9, then 15 and 16
    assert f.take_gaps() is None and f.poll() == [] and f.take_gaps() is None


def test_a_new_namespace_whose_history_the_venue_lacks_has_no_gap():
    """Warm-up bars from before the venue's first one are not a hole: the log's series starts at the first bar."""
    f, ex = feed(20, 20 * MIN_MS)
    ex.rows = ex.rows[15:]
    assert [b[1]["open_ts"] // MIN_NS for b in f.poll()] == [15, 16, 17, 18, 19]
    assert f.take_gaps() is None
