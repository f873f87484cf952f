"""The sandbox venue: a local exchange that speaks Binance spot (REST v3, market streams, the WebSocket API's user
data stream) well enough that the stock ccxt.binance and ccxt.pro.binance classes drive it unchanged.

Its market replays a namespace of the store; it matches orders (partial fills, fees), enforces Binance's client-id
rule (unique among open orders only) and injects faults on request, so tape's live runtime can be rehearsed and
killed against it. Start it with `tape sandbox serve`; point ccxt at it with handlers.venues.ccxt.urls.point_at.
Default credentials: API key `sandbox-key`, secret `sandbox-secret`.

Modules: config (settings), market (replay, clocks, candles), book (orders, matching, ledger), faults (the
scheduler), signing (HMAC checks), wire (Binance payloads), rest, ws, control (/sandbox/ endpoints), venue (the
assembly and its pump), server (the aiohttp app).
"""
