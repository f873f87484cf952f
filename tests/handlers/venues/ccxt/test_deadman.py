"""DeadMansSwitch over the real ccxt classes and HTTP: okx and kraken pointed at a loopback server that records requests."""
from __future__ import annotations

import urllib.parse
from typing import Any

import ccxt
import pytest
from deadmankit import KEY, KRAKEN_OK, OKX_OK, PASSWORD, SECRET, Clock, Venue, okx_exchange, okx_timeouts

from handlers.venues.ccxt.deadman import DeadMansSwitch, DeadMansSwitchError
from handlers.venues.ccxt.urls import point_at


@pytest.fixture
def okx():
    venue = Venue(OKX_OK)
    yield okx_exchange(venue), venue
    venue.close()


def test_okx_arms_with_the_timeout_then_rearms_only_every_third_of_it(okx):
    ex, venue = okx
    clock = Clock()
    switch = DeadMansSwitch(ex, 60, clock=clock, secrets=(KEY, SECRET, PASSWORD))
    assert switch.available and switch.armed_until is None
    assert switch.refresh(True) is True
    assert okx_timeouts(venue) == [60]  # seconds on the wire: POST /api/v5/trade/cancel-all-after {"timeOut": 60}
    assert switch.armed_until == 1060.0 and switch.armed
    clock.now += 19.9  # not yet due (every 20 s): no request at all
    assert switch.refresh(True) is False
    assert okx_timeouts(venue) == [60]
    clock.now += 0.1
    assert switch.refresh(True) is True
    assert okx_timeouts(venue) == [60, 60] and switch.armed_until == 1080.0
    assert switch.arms == 2 and switch.errors == 0 and switch.last_error is None


def test_okx_unhealthy_stops_refreshing_so_the_venue_cancels_at_expiry(okx):
    ex, venue = okx
    clock = Clock()
    switch = DeadMansSwitch(ex, 30, clock=clock)
    switch.refresh(True)
    for _ in range(5):
        clock.now += 10
        assert switch.refresh(False) is False
    assert okx_timeouts(venue) == [30]
    assert switch.armed_until == 1030.0 and not switch.armed  # the venue's timer ran out: it canceled everything
    assert switch.refresh(True) is True  # healthy again: armed again at once (it was overdue)
    assert okx_timeouts(venue) == [30, 30] and switch.armed_until == clock.now + 30


def test_okx_disarm_sends_zero(okx):
    ex, venue = okx
    switch = DeadMansSwitch(ex, 60, clock=Clock())
    switch.refresh(True)
    assert switch.disarm() is True
    assert okx_timeouts(venue) == [60, 0]
    assert switch.armed_until is None and not switch.armed
    assert switch.refresh(True) is True  # armed again at once after a disarm
    assert okx_timeouts(venue) == [60, 0, 60]


def test_okx_a_500_is_counted_and_kept_on_one_line_never_raised(okx):
    ex, venue = okx
    clock = Clock()
    switch = DeadMansSwitch(ex, 60, clock=clock, secrets=(KEY, SECRET, PASSWORD))
    venue.fail_next = 2
    assert switch.refresh(True) is False
    assert switch.errors == 1 and switch.arms == 0 and switch.armed_until is None
    assert switch.last_error and "\n" not in switch.last_error and "500" in switch.last_error
    assert not any(s in switch.last_error for s in (KEY, SECRET, PASSWORD))
    assert switch.refresh(True) is False  # the retry is not due yet: no request
    assert len(venue.posts()) == 1
    clock.now += 1.0
    assert switch.disarm() is False and switch.errors == 2  # a failed disarm: counted, not raised
    assert switch.refresh(True) is True  # the venue is back: armed
    assert okx_timeouts(venue) == [60, 0, 60] and switch.armed_until == clock.now + 60


def test_okx_an_unreachable_venue_is_counted_not_raised():
    ex = ccxt.okx({"apiKey": KEY, "secret": SECRET, "password": PASSWORD, "timeout": 2000, "enableRateLimit": False})
    ex.markets = {}  # markets "loaded": the call goes straight to the endpoint
    venue = Venue(OKX_OK)
    point_at(ex, venue.url)
    venue.close()  # nothing listens on the port any more
    switch = DeadMansSwitch(ex, 60, clock=Clock())
    assert switch.refresh(True) is False
    assert switch.errors == 1 and switch.last_error.startswith(("NetworkError", "RequestTimeout", "ExchangeNotAvailable"))


def test_kraken_arms_and_disarms_with_its_own_endpoint():
    venue = Venue(KRAKEN_OK)
    try:
        ex = ccxt.kraken({"apiKey": KEY, "secret": SECRET, "timeout": 5000, "enableRateLimit": False})
        ex.markets = {}  # markets "loaded": the call goes straight to the endpoint
        point_at(ex, venue.url)
        switch = DeadMansSwitch(ex, 90, clock=Clock())
        assert switch.available and switch.refresh(True) and switch.disarm()
        posts = venue.posts()
        assert [p for p, _, _ in posts] == ["/0/private/CancelAllOrdersAfter"] * 2
        assert [urllib.parse.parse_qs(b.decode())["timeout"] for _, b, _ in posts] == [["90"], ["0"]]
        assert all(h["API-Key"] == KEY for _, _, h in posts)
    finally:
        venue.close()


def test_binance_has_no_switch_and_refresh_does_nothing():
    class Refusing(ccxt.binance):
        def cancel_all_orders_after(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("binance has no cancel-all-after: it must not be called")

    switch = DeadMansSwitch(Refusing({"apiKey": KEY, "secret": SECRET}), 60, clock=Clock())
    assert switch.available is False
    assert switch.refresh(True) is False and switch.disarm() is False
    assert switch.armed_until is None and switch.errors == 0 and switch.last_error is None


@pytest.mark.parametrize("venue,timeout,fix", [("okx", 5, "use 10 to 120 s"), ("okx", 121, "use 10 to 120 s"),
                                               ("kraken", 0, "whole number of seconds"),
                                               ("kraken", 1.5, "whole number of seconds")])
def test_a_timeout_the_venue_would_refuse_is_one_line_at_construction(venue, timeout, fix):
    with pytest.raises(DeadMansSwitchError) as e:
        DeadMansSwitch(getattr(ccxt, venue)(), timeout)
    assert fix in str(e.value) and venue in str(e.value) and "\n" not in str(e.value)
