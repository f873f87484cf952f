"""Binance's request signing, checked as the venue does: API key, HMAC-SHA256 signature, timestamp window.

REST: the signature is the hex HMAC-SHA256, keyed by the secret, of the query string concatenated (no separator)
with the body, `signature=` itself removed; the key travels in the X-MBX-APIKEY header. WebSocket API: the same
HMAC over the request's params (apiKey included) sorted by name and joined as k=v&k=v. A request is valid when
`timestamp < server time + 1 s` and `server time - timestamp <= recvWindow` (default 5000, at most 60000).
Errors never echo the secret or the signature.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60000


class SignatureRejected(Exception):
    """A signed request the venue refuses: `reason` is key, signature, timestamp, recv_window or missing."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Credentials:
    """The one API key the venue accepts and its secret."""

    api_key: str
    secret: str

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.api_key!r}, secret=<hidden>)"

    def sign(self, payload: str) -> str:
        """Hex HMAC-SHA256 of `payload` with the secret: what a client sends as `signature`."""
        return hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()

    def check_rest(self, api_key: str | None, query: str, body: str, params: Mapping[str, str],
                   server_ms: int) -> None:
        """Raise SignatureRejected unless a REST request carries our key, a valid signature and a fresh timestamp."""
        if not api_key:
            raise SignatureRejected("missing_key")
        if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
            raise SignatureRejected("key")
        signature = params.get("signature")
        if not signature:
            raise SignatureRejected("missing", "signature")
        payload = _without_signature(query) + _without_signature(body)
        if not hmac.compare_digest(signature.lower().encode(), self.sign(payload).encode()):
            raise SignatureRejected("signature")
        check_timestamp(params, server_ms)

    def check_ws(self, params: Mapping[str, object], server_ms: int) -> None:
        """Raise SignatureRejected unless WebSocket API params carry our key, a valid signature, a fresh timestamp."""
        api_key = params.get("apiKey")
        if not isinstance(api_key, str) or not api_key:
            raise SignatureRejected("missing", "apiKey")
        if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
            raise SignatureRejected("key")
        signature = params.get("signature")
        if not isinstance(signature, str) or not signature:
            raise SignatureRejected("missing", "signature")
        rest = {k: v for k, v in params.items() if k != "signature"}
        payload = "&".join(f"{k}={_text(v)}" for k, v in sorted(rest.items()))
        if not hmac.compare_digest(signature.lower().encode(), self.sign(payload).encode()):
            raise SignatureRejected("signature")
        check_timestamp({k: _text(v) for k, v in rest.items()}, server_ms)


def check_timestamp(params: Mapping[str, str], server_ms: int) -> None:
    """Binance's rule: timestamp < server + 1000 and server - timestamp <= recvWindow."""
    raw = params.get("timestamp")
    if raw is None or raw == "":
        raise SignatureRejected("missing", "timestamp")
    try:
        ts = int(raw)
        recv = float(params.get("recvWindow") or DEFAULT_RECV_WINDOW_MS)
    except ValueError:
        raise SignatureRejected("malformed", "timestamp") from None
    if ts > 10**15:  # microseconds are accepted too
        ts //= 1000
    if recv > MAX_RECV_WINDOW_MS or recv <= 0:
        raise SignatureRejected("recv_window")
    if not (ts < server_ms + 1000 and server_ms - ts <= recv):
        raise SignatureRejected("timestamp")


def signed_query(credentials: Credentials, params: Mapping[str, object]) -> str:
    """A query string with its signature appended, as a Binance client builds it (for tests and tools)."""
    query = urlencode({k: _text(v) for k, v in params.items()})
    return f"{query}&signature={credentials.sign(query)}"


def _without_signature(raw: str) -> str:
    if "signature=" not in raw:
        return raw
    parts = [p for p in raw.split("&") if not p.startswith("signature=")]
    return "&".join(parts)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
