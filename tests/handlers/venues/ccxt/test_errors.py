"""Which ccxt failures a read may simply ask again (history, markets, the clock): transport and the venue's own
troubles yes — a 5xx that ccxt raises as a plain ExchangeError included — a refusal of the request itself never."""
from __future__ import annotations

import ccxt
import pytest

from handlers.venues.ccxt.errors import read_again


@pytest.mark.parametrize("error, again", [
    (ccxt.RequestTimeout("t"), True), (ccxt.NetworkError("n"), True), (ccxt.ExchangeNotAvailable("503"), True),
    (ccxt.RateLimitExceeded("429"), True), (ccxt.DDoSProtection("418"), True),
    (ccxt.ExchangeError('{"code":-1008,"msg":"Server is currently overloaded"}'), True),
    (ccxt.OperationFailed("x"), True),
    (ccxt.BadSymbol("no such"), False), (ccxt.BadRequest("bad"), False), (ccxt.AuthenticationError("key"), False),
    (ccxt.PermissionDenied("no"), False), (ccxt.NotSupported("no"), False),
])
def test_a_read_is_asked_again_only_when_the_failure_is_not_a_refusal(error: Exception, again: bool) -> None:
    assert read_again(error) is again
