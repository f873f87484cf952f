"""The ccxt exchange object of a venue id, made one way for every user of a real venue (`tape live`, `tape ingest
exchange`): the rate limiter on, ccxt's own transport retries off (a retried POST would be a second order), spot
markets only, and pointed at a sandbox when asked."""
from __future__ import annotations

from typing import Any

from runtime.live.credentials import Credentials
from runtime.live.node import LiveError


def exchange_class(venue: str, *, pro: bool = False) -> type:
    """The ccxt class of a venue id (ccxt.pro's, for websockets), or a one-line error naming the ids to use."""
    import ccxt

    if pro:
        import ccxt.pro
    module = ccxt.pro if pro else ccxt
    cls = getattr(module, venue, None) if venue in module.exchanges else None
    if cls is None and not pro:
        raise LiveError(f"unknown venue {venue!r}: use a ccxt exchange id such as binance, bybit, okx, kraken")
    if cls is None:
        raise LiveError(f"venue {venue!r} has no websocket streams in ccxt.pro: run with --no-stream (REST polling)")
    return cls


def exchange_for(venue: str, credentials: Credentials | None, sandbox_url: str | None, *, pro: bool = False) -> Any:
    """The ccxt exchange object of a venue id: rate limiter on, ccxt's own retries off, pointed at a sandbox."""
    cls = exchange_class(venue, pro=pro)
    # spot markets only: no signed currency or margin catalogues at startup (live-runtime.md, infra.md §4)
    config: dict[str, Any] = {"enableRateLimit": True, "options": {
        "warnOnFetchOpenOrdersWithoutSymbol": False, "adjustForTimeDifference": True,
        "fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False}}
    if credentials is not None:
        config.update(apiKey=credentials.api_key, secret=credentials.secret)
        if credentials.password:
            config["password"] = credentials.password
    exchange = cls(config)
    exchange.options["maxRetriesOnFailure"] = 0  # a transport retry of a POST would be a second order
    if sandbox_url:
        from handlers.venues.ccxt.urls import point_at

        point_at(exchange, sandbox_url)
    return exchange
