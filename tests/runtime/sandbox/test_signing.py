"""Signatures as Binance checks them: the documented HMAC example, REST query + body, WebSocket API params, time."""
import pytest

from runtime.sandbox.signing import Credentials, SignatureRejected, check_timestamp, signed_query

# the example key pair and request of binance-spot-api-docs rest-api.md ("SIGNED endpoint examples")
DOC = Credentials("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
                  "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j")
DOC_QUERY = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
TS = 1499827319559


def params(query: str) -> dict:
    return dict(p.split("=", 1) for p in query.split("&"))


def test_the_documented_example_signs_and_checks():
    assert DOC.sign(DOC_QUERY) == DOC_SIGNATURE
    q = f"{DOC_QUERY}&signature={DOC_SIGNATURE}"
    DOC.check_rest(DOC.api_key, q, "", params(q), TS + 100)  # in the query
    DOC.check_rest(DOC.api_key, "", q, params(q), TS + 100)  # in the body
    head, tail = DOC_QUERY[:40], DOC_QUERY[40:]  # split between query and body: concatenated without separator
    sig = DOC.sign(head + tail)
    DOC.check_rest(DOC.api_key, head, f"{tail}&signature={sig}", {**params(DOC_QUERY), "signature": sig}, TS)


@pytest.mark.parametrize("change, reason", [
    (lambda q, k: (q.replace("price=0.1", "price=0.2"), k), "signature"),
    (lambda q, k: (q, "other-key"), "key"),
    (lambda q, k: (q, ""), "missing_key"),
])
def test_a_changed_request_or_key_is_refused(change, reason):
    q, key = change(f"{DOC_QUERY}&signature={DOC_SIGNATURE}", DOC.api_key)
    with pytest.raises(SignatureRejected) as e:
        DOC.check_rest(key, q, "", params(q), TS)
    assert e.value.reason == reason
    assert DOC.secret not in str(e.value) and DOC.secret not in repr(DOC)


def test_timestamp_window():
    check_timestamp({"timestamp": str(TS), "recvWindow": "5000"}, TS + 5000)
    check_timestamp({"timestamp": str(TS)}, TS - 999)  # less than 1 s ahead of the server
    for server, recv in [(TS + 5001, "5000"), (TS - 1000, "5000"), (TS + 6001, None)]:
        with pytest.raises(SignatureRejected) as e:
            check_timestamp({"timestamp": str(TS), **({"recvWindow": recv} if recv else {})}, server)
        assert e.value.reason == "timestamp"
    with pytest.raises(SignatureRejected) as e:
        check_timestamp({"timestamp": str(TS), "recvWindow": "60001"}, TS)
    assert e.value.reason == "recv_window"


def test_websocket_api_params_are_signed_sorted():
    creds = Credentials("k", "s")
    body = {"apiKey": "k", "timestamp": TS, "recvWindow": 10000}
    sig = creds.sign("apiKey=k&recvWindow=10000&timestamp=1499827319559")
    creds.check_ws({**body, "signature": sig}, TS)
    with pytest.raises(SignatureRejected) as e:
        creds.check_ws({**body, "signature": sig[:-1] + "0"}, TS)
    assert e.value.reason == "signature"


def test_signed_query_is_what_a_client_sends():
    q = signed_query(DOC, params(DOC_QUERY))
    assert q == f"{DOC_QUERY}&signature={DOC_SIGNATURE}"
