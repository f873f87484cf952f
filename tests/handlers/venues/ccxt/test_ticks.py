"""TradeFeed and QuoteFeed over a fake exchange: each trade once in id order whatever the stream does; the book's
top only when it changed."""
from __future__ import annotations

from decimal import Decimal

import pytest

from handlers.venues.ccxt.ticks import PAGE, QuoteFeed, TradeFeed

IID, SYM = "BTCUSDT.BINANCE", "BTC/USDT"


def trade(i: int) -> dict:
    return {"id": str(i), "price": 100.0 + i / 100, "amount": 0.5, "side": "buy" if i % 2 else "sell",
            "timestamp": 1_700_000_000_000 + i}


class Venue:
    """fetch_trades from `fromId` (or the latest), `PAGE` at most; `down` refuses."""

    def __init__(self, last: int) -> None:
        self.last, self.down, self.calls = last, False, []

    def fetch_trades(self, symbol, since, limit, params):
        self.calls.append(dict(params))
        if self.down:
            raise ConnectionError("venue down")
        first = params.get("fromId", self.last - limit + 1)
        return [trade(i) for i in range(first, min(self.last, first + limit - 1) + 1)]


def ids(out) -> list[int]:
    return [int(p["trade_id"]) for _, p, _ in out]


def test_the_stream_is_taken_while_it_continues_the_cursor():
    feed = TradeFeed(Venue(10), {IID: SYM})
    got = feed.take([(SYM, trade(5)), (SYM, trade(6)), (SYM, trade(6)), (SYM, trade(7))])
    assert ids(got) == [5, 6, 7] and feed.behind == set()  # the first trade starts the series; a repeat is dropped
    name, payload, ts = got[0]
    assert name == "TradeTick" and ts == (1_700_000_000_000 + 5) * 1_000_000
    assert payload == {"instrument_id": IID, "price": Decimal("100.05"), "quantity": Decimal("0.5"),
                       "aggressor_side": "BUYER", "trade_id": "5"}


def test_a_jump_is_read_over_rest_from_the_cursor_and_the_stream_waits():
    venue = Venue(12)
    feed = TradeFeed(venue, {IID: SYM})
    feed.learn("TradeTick", {"instrument_id": IID, "trade_id": "4"})
    assert feed.take([(SYM, trade(7)), (SYM, trade(8))]) == [] and feed.behind == {IID}  # 5 and 6 were dropped
    assert ids(feed.poll(feed.behind)) == list(range(5, 13)) and feed.behind == set()  # caught up: a short page
    assert venue.calls == [{"fromId": 5}]
    assert ids(feed.take([(SYM, trade(12)), (SYM, trade(13))])) == [13]


def test_a_long_downtime_is_caught_up_page_by_page_never_skipped():
    venue = Venue(2 + 3 * PAGE)
    feed = TradeFeed(venue, {IID: SYM}, pages=2)
    feed.learn("TradeTick", {"instrument_id": IID, "trade_id": "1"})
    first = ids(feed.poll())
    assert first == list(range(2, 2 + 2 * PAGE))  # two pages this pass
    assert ids(feed.poll()) == list(range(2 + 2 * PAGE, 3 + 3 * PAGE))  # the rest the next


def test_nothing_recorded_starts_from_the_venues_latest_trade_and_a_failure_moves_nothing():
    venue = Venue(40)
    feed = TradeFeed(venue, {IID: SYM})
    venue.down = True
    assert feed.poll() == [] and feed.failures == 1 and feed.last_id == {}
    venue.down = False
    assert ids(feed.poll()) == [40]


def test_the_cursor_comes_back_from_the_log():
    feed = TradeFeed(Venue(10), {IID: SYM})
    for i in (3, 9, 8):
        feed.learn("TradeTick", {"instrument_id": IID, "trade_id": str(i)})
    feed.learn("TradeTick", {"instrument_id": "OTHER", "trade_id": "99"})
    assert feed.last_id == {IID: 9}


class Books:
    def __init__(self) -> None:
        self.tickers: dict = {}
        self.down = False

    def fetch_bids_asks(self, symbols):
        if self.down:
            raise ConnectionError("down")
        return self.tickers


@pytest.mark.parametrize("poll", [False, True])
def test_the_books_top_is_recorded_when_it_changed(poll):
    books = Books()
    feed = QuoteFeed(books, {IID: SYM}, lambda: 123)
    top = {"bid": 99.5, "bidVolume": 2.0, "ask": 100.5, "askVolume": 1.0}

    def read(tickers):
        books.tickers = tickers
        return feed.poll() if poll else feed.take(tickers)

    (name, q, ts), = read({SYM: top})
    assert (name, ts) == ("QuoteTick", 123)
    assert q == {"instrument_id": IID, "bid_price": Decimal("99.5"), "bid_size": Decimal("2.0"),
                 "ask_price": Decimal("100.5"), "ask_size": Decimal("1.0")}
    assert read({SYM: dict(top)}) == []  # the same top again
    assert read({SYM: dict(top, bid=None)}) == []  # one side empty: no quote
    assert len(read({SYM: dict(top, askVolume=3.0)})) == 1


def test_a_quote_read_that_fails_is_counted_and_records_nothing():
    books = Books()
    books.down = True
    feed = QuoteFeed(books, {IID: SYM}, lambda: 1)
    assert feed.poll() == [] and feed.failures == 1


def test_a_recorded_quote_learned_from_the_log_is_not_recorded_again():
    books = Books()
    books.tickers = {SYM: {"bid": 99.5, "bidVolume": 2.0, "ask": 100.5, "askVolume": 1.0}}
    feed = QuoteFeed(books, {IID: SYM}, lambda: 1)
    logged = {"envelope": {"seq": 7}, "instrument_id": IID, "bid_price": Decimal("99.500000000000000000"),
              "bid_size": Decimal(2), "ask_price": Decimal("100.5"), "ask_size": Decimal("1.000")}
    feed.learn("QuoteTick", logged)  # as the log gives it back: envelope and 18 places
    assert feed.poll() == []
