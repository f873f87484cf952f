"""point_at: every REST and websocket base URL of binance (sync and ccxt.pro) rewritten, paths kept."""
import ccxt
import ccxt.pro
import pytest

from handlers.venues.ccxt.urls import VenueUrlError, point_at


def leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from leaves(v, f"{prefix}{k}.")
        elif isinstance(v, str):
            yield f"{prefix}{k}", v


def test_sync_binance_rest_urls_point_at_the_server_paths_kept():
    ex = ccxt.binance()
    before = dict(leaves(ex.urls["api"]))
    point_at(ex, "http://127.0.0.1:8765/")
    after = dict(leaves(ex.urls["api"]))
    assert after.keys() == before.keys()
    assert all(v.startswith("http://127.0.0.1:8765/") for v in after.values())
    assert after["public"] == "http://127.0.0.1:8765/api/v3" and after["sapi"] == "http://127.0.0.1:8765/sapi/v1"


def test_pro_binance_websocket_urls_too_and_after_sandbox_mode():
    ex = ccxt.pro.binance()
    ex.set_sandbox_mode(True)
    point_at(ex, "http://localhost:9000")
    ws = ex.urls["api"]["ws"]
    assert ws["spot"] == "ws://localhost:9000/ws" and ws["ws-api"]["spot"] == "ws://localhost:9000/ws-api/v3"
    assert all(v.startswith(("http://localhost:9000/", "ws://localhost:9000/")) for _, v in leaves(ex.urls["api"]))
    point_at(ex, "https://sandbox.example:443")
    assert ex.urls["api"]["ws"]["spot"] == "wss://sandbox.example:443/ws"


@pytest.mark.parametrize("url", ["127.0.0.1:8765", "ftp://x", "http://", ""])
def test_a_url_that_is_not_http_host_port_is_one_line(url):
    with pytest.raises(VenueUrlError) as e:
        point_at(ccxt.binance(), url)
    assert "use http://HOST:PORT" in str(e.value)
