"""A loopback venue for the dead-man's switch: records every request and answers as okx or kraken would, so the
real ccxt classes sign and send their cancel-all-after calls over HTTP."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import ccxt

from handlers.venues.ccxt.urls import point_at

KEY, SECRET, PASSWORD = "key-FAKE-1234", "c2VjcmV0LUZBS0UtNTY3OA==", "pass-FAKE"
OKX_OK = {"code": "0", "msg": "", "data": [{"triggerTime": "1587971460", "ts": "1587971400"}]}
KRAKEN_OK = {"error": [], "result": {"currentTime": "2023-03-24T17:41:56Z", "triggerTime": "2023-03-24T17:42:56Z"}}


class Venue:
    """A loopback HTTP server that records every request and answers with the venue's success JSON (or a 500)."""

    def __init__(self, ok: dict[str, Any]) -> None:
        self.ok = ok
        self.requests: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.fail_next = 0
        venue = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                venue.requests.append((self.command, self.path, body, dict(self.headers)))
                status, out = 200, venue.ok
                if venue.fail_next and self.command == "POST":
                    venue.fail_next -= 1
                    status, out = 500, {"code": "50001", "msg": "Service temporarily unavailable"}
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def posts(self) -> list[tuple[str, bytes, dict[str, str]]]:
        return [(path, body, headers) for method, path, body, headers in self.requests if method == "POST"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def okx_exchange(venue: Venue) -> Any:
    """ccxt.okx pointed at `venue`, markets loaded (the loopback answers every GET with an empty list), requests
    cleared. ccxt's rate limiter off: it spaces okx's cancel-all-after (cost 10) 1.1 s apart; the switch calls it
    every timeout/3 seconds in a session, far below that."""
    ex = ccxt.okx({"apiKey": KEY, "secret": SECRET, "password": PASSWORD, "timeout": 5000, "enableRateLimit": False})
    point_at(ex, venue.url)
    ex.load_markets()
    venue.requests.clear()
    return ex


def okx_timeouts(venue: Venue) -> list[int]:
    """The timeouts okx was sent, in order (each checked to be a signed cancel-all-after)."""
    out = []
    for path, body, headers in venue.posts():
        assert path == "/api/v5/trade/cancel-all-after"
        assert headers["OK-ACCESS-KEY"] == KEY and headers.get("OK-ACCESS-SIGN")  # a signed private request
        out.append(int(json.loads(body)["timeOut"]))
    return out
