"""Point a ccxt exchange at another server (the sandbox venue): every REST and websocket base URL rewritten.

Only the scheme and host change; paths stay (`/api/v3`, `/sapi/v1`, `/ws`, `/ws-api/v3`), so the server sees the
venue's real paths. REST entries of `urls['api']` get `http(s)://HOST:PORT`; the websocket entries of ccxt.pro
classes (`urls['api']['ws']`, e.g. binance's `spot`, `margin` and `ws-api.spot`) get `ws(s)://HOST:PORT`. Call it
before the first request, and after `set_sandbox_mode(True)` if you use that (it replaces `urls['api']` with
`urls['test']`).
"""
from __future__ import annotations

import re
from typing import Any

from schemas.errors import TapeError

_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/]+", re.IGNORECASE)
_BASE = re.compile(r"^(https?)://([^/\s]+)/?$", re.IGNORECASE)


class VenueUrlError(TapeError):
    """A base URL ccxt cannot be pointed at."""


def point_at(exchange: Any, base_url: str) -> None:
    """Rewrite every REST and websocket entry of `exchange.urls['api']` to the server at `base_url`."""
    m = _BASE.match(base_url.strip())
    if m is None:
        raise VenueUrlError(f"venue URL {base_url!r}: use http://HOST:PORT (e.g. the line `tape sandbox serve` prints)")
    scheme, host = m.group(1).lower(), m.group(2)
    rest = f"{scheme}://{host}"
    ws = f"{'wss' if scheme == 'https' else 'ws'}://{host}"
    api = exchange.urls.get("api")
    if isinstance(api, str):
        exchange.urls["api"] = _rewrite(api, rest)
        return
    out = {}
    for key, value in (api or {}).items():
        out[key] = _rewrite_all(value, ws if key == "ws" else rest)
    exchange.urls["api"] = out


def _rewrite_all(value: Any, origin: str) -> Any:
    if isinstance(value, str):
        return _rewrite(value, origin)
    if isinstance(value, dict):
        return {k: _rewrite_all(v, origin) for k, v in value.items()}
    return value


def _rewrite(url: str, origin: str) -> str:
    return _ORIGIN.sub(origin, url, count=1)
