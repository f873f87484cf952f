"""Webhook alerts over real HTTP: a loopback receiver (http.server in a thread) takes, refuses, fails or hangs."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from eventstore.writer import Draft
from runtime.configfiles import ConfigFileError
from runtime.ops.alerts import AlertConfig, AlertConfigError, Alerts, Webhook, alert_file, parse_alerts
from schemas.errors import TapeError

NS = "live-okx"
SLACK = "/services/T0SECRET1/B0SECRET2/XXXXTOKEN3"
DISCORD = "/api/webhooks/123456789/DISCORDTOKEN4"
TOKENS = ("T0SECRET1", "B0SECRET2", "XXXXTOKEN3", "DISCORDTOKEN4", "123456789")


class Receiver:
    """Records every POST; answers by a per-path script of statuses (then 200; Discord-style paths 204), or hangs."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any], float]] = []
        self.script: dict[str, list[int]] = {}
        self.hang = False
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n))
                receiver.posts.append((self.path, body, time.monotonic()))
                if receiver.hang:
                    receiver.release.wait(10)
                    return
                script = receiver.script.get(self.path)
                status = script.pop(0) if script else (204 if "/webhooks/" in self.path else 200)
                out = b"" if status == 204 else (b"ok" if status == 200 else b"error")
                self.send_response(status)
                if out:
                    self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [b for p, b, _ in self.posts if p == path]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.01)


def config(*webhooks: Webhook, **settings: Any) -> AlertConfig:
    return AlertConfig(tuple(webhooks), **settings)


RAISED = {"instrument_id": None, "incident_id": "venue_unreachable-1", "kind": "venue_unreachable",
          "severity": "CRITICAL", "detail": "okx: 3 requests in a row & no answer", "action": "HALT", "scope": "venue",
          "scope_id": "okx", "value": "3.50", "threshold": "3", "unit": "requests in a row without an answer",
          "cancel_open": True}
HALTED = {"state": "HALTED", "previous": "ACTIVE", "reason": "incident venue_unreachable-1",
          "incident_id": "venue_unreachable-1"}
RESOLVED = {"incident_id": "venue_unreachable-1", "detail": "venue answers again"}
RESUMED = {"state": "ACTIVE", "previous": "HALTED", "reason": "operator resume", "incident_id": None}
TS = 1_704_067_200_000_000_000


def committed_steps(file_log) -> list[list[Draft]]:
    """The sequence as the loop hands it over: real Drafts, committed by the real writer (envelopes filled in)."""
    steps = [[Draft("IncidentRaised", dict(RAISED), TS, source="incidents"),
              Draft("TradingStateChanged", dict(HALTED), TS, source="incidents")],
             [Draft("IncidentResolved", dict(RESOLVED), TS + 1, source="incidents")],
             [Draft("TradingStateChanged", dict(RESUMED), TS + 2, source="operator")]]
    with file_log.writer(NS) as w:
        w.append_steps(steps)
    return steps


def test_a_raise_halt_resolve_resume_sequence_arrives_as_slack_and_discord_bodies(receiver, file_log):
    steps = committed_steps(file_log)
    alerts = Alerts(config(Webhook(1, receiver.base + SLACK, "slack"), Webhook(2, receiver.base + DISCORD,
                                                                                 "discord")), NS)
    assert alerts.committed(steps) == 8  # 4 events × 2 webhooks
    assert alerts.close(5.0) is True
    assert (alerts.sent, alerts.failed, alerts.dropped, alerts.retried) == (8, 0, 0, 0)

    slack = [b["text"] for b in receiver.bodies(SLACK)]
    discord = [b["content"] for b in receiver.bodies(DISCORD)]
    assert len(slack) == len(discord) == 4
    raised, halted, resolved, resumed = slack
    for needle in (f"[{NS}]", "CRITICAL", "incident raised: venue_unreachable", "on venue okx",
                   "value 3.50 vs threshold 3 requests in a row without an answer", "action HALT",
                   "open orders canceled", "incident venue_unreachable-1"):
        assert needle in raised
    assert "3 requests in a row &amp; no answer" in raised  # Slack's reserved characters escaped
    assert halted.startswith(f"[{NS}] trading HALTED, was ACTIVE") and "incident venue_unreachable-1" in halted
    assert resolved.startswith(f"[{NS}] incident resolved: venue_unreachable (venue_unreachable-1)")
    assert resumed.startswith(f"[{NS}] trading resumed (ACTIVE), was HALTED") and "operator resume" in resumed
    assert "value 3.50 vs threshold 3" in discord[0] and "3 requests in a row & no answer" in discord[0]
    assert all(b["allowed_mentions"] == {"parse": []} for b in receiver.bodies(DISCORD))
    assert discord[1:] == [halted, resolved.replace("&amp;", "&"), resumed]


def test_json_bodies_hold_the_event_fields_and_the_namespace_and_events_filters(receiver, file_log):
    steps = committed_steps(file_log)
    alerts = Alerts(config(Webhook(1, receiver.base + "/json", "json", ("raised",)),
                           Webhook(2, receiver.base + "/halts", "json", ("halted",))), NS)
    assert alerts.committed(steps) == 2
    assert alerts.close(5.0) is True
    [raised] = receiver.bodies("/json")  # the negative control: resolved, halted, resumed not sent here
    assert raised["namespace"] == NS and raised["alert"] == "raised" and raised["event"] == "IncidentRaised"
    assert raised["event_id"] == f"{NS}:1" and raised["seq"] == 1 and raised["ts_event"] == TS
    assert {k: raised[k] for k in RAISED} == RAISED  # every field as the event holds it: "3.50" stays "3.50"
    assert "envelope" not in raised and "prev_hash" not in json.dumps(raised)
    [halt] = receiver.bodies("/halts")  # only the halt: the resume back to ACTIVE is "resumed", filtered out
    assert halt["state"] == "HALTED" and halt["seq"] == 2
    assert alerts.sent == 2


def test_events_that_are_not_alerts_are_ignored_and_no_webhooks_is_a_no_op(receiver):
    step = [Draft("Bar", {"instrument_id": "BTCUSDT.OKX"}, TS), Draft("OrderFilled", {"price": "1"}, TS)]
    alerts = Alerts(config(Webhook(1, receiver.base + SLACK)), NS)
    assert alerts.committed([step]) == 0
    assert alerts.close(1.0) is True and receiver.posts == []
    none = Alerts(AlertConfig(), NS)
    assert none.committed([[Draft("IncidentRaised", dict(RAISED), TS)]]) == 0 and none.close(0) is True


def test_a_receiver_failing_twice_gets_the_message_after_retries_with_backoff(receiver):
    receiver.script[SLACK] = [500, 503]
    alerts = Alerts(config(Webhook(1, receiver.base + SLACK)), NS)
    alerts.committed([[Draft("IncidentRaised", dict(RAISED), TS)]])
    wait_for(lambda: alerts.sent == 1)
    assert len(receiver.posts) == 3 and alerts.retried == 2 and alerts.failed == 0
    t = [at for _, _, at in receiver.posts]
    assert t[1] - t[0] >= 0.45 and t[2] - t[1] >= 0.95  # 0.5 s, then doubled
    assert receiver.posts[0][1] == receiver.posts[2][1]  # the same body each time
    assert alerts.last_error == f"webhook 1 ({receiver.base}): HTTP 503"
    assert alerts.close(1.0) is True


def test_a_receiver_that_never_answers_does_not_block_committed(receiver):
    receiver.hang = True
    alerts = Alerts(config(Webhook(1, receiver.base + SLACK), timeout=1.0, attempts=1, queue_size=5), NS)
    step = [Draft("IncidentRaised", dict(RAISED, incident_id=f"x-{i}"), TS) for i in range(20)]
    start = time.perf_counter()
    queued = alerts.committed([step])
    took = time.perf_counter() - start
    assert took < 0.1, f"committed() took {took:.3f} s with the receiver hanging (request timeout 1 s)"
    assert queued == 5 and alerts.dropped == 15  # the bound: what did not fit is counted, not raised
    wait_for(lambda: alerts.failed == 1, timeout=5)  # the first request timed out
    assert "timed out" in alerts.last_error and alerts.last_error.startswith(f"webhook 1 ({receiver.base}): ")
    assert not any(t in alerts.last_error for t in TOKENS)
    start = time.perf_counter()
    assert alerts.close(0.2) is False  # a clean stop does not wait for the hanging receiver
    assert time.perf_counter() - start < 0.5
    wait_for(lambda: alerts.failed + alerts.dropped + alerts.sent == 20, timeout=5)
    assert alerts.committed([step[:1]]) == 0 and alerts.dropped == 20 - alerts.failed + 1  # after close: dropped


def test_a_refusing_receiver_is_final_and_the_error_never_names_the_token(receiver):
    receiver.script[DISCORD] = [404]
    alerts = Alerts(config(Webhook(1, receiver.base + DISCORD, "discord")), NS)
    alerts.committed([[Draft("IncidentResolved", dict(RESOLVED), TS)]])
    wait_for(lambda: alerts.failed == 1)
    assert alerts.retried == 0 and len(receiver.posts) == 1  # a 404 (revoked webhook) is not retried
    assert alerts.last_error == f"webhook 1 ({receiver.base}): HTTP 404 (check the webhook)"
    alerts.close(1.0)


def test_an_unreachable_receiver_is_retried_then_given_up_without_naming_the_token():
    r = Receiver()
    url = r.base + SLACK
    r.close()  # nothing listens on the port any more
    alerts = Alerts(config(Webhook(1, url), attempts=2, timeout=1.0), NS)
    alerts.committed([[Draft("TradingStateChanged", dict(HALTED), TS)]])
    wait_for(lambda: alerts.failed == 1)
    assert alerts.retried == 1 and alerts.sent == 0
    assert "refused" in alerts.last_error.lower() and "\n" not in alerts.last_error
    assert not any(t in alerts.last_error for t in TOKENS)
    assert alerts.close(0.5) is True


# ---- config ------------------------------------------------------------------------------------------------------

TOML = f"""
timeout = 2.5
attempts = 4

[[webhook]]
url = "https://hooks.slack.com{SLACK}"
format = "slack"

[[webhook]]
url_env = "TAPE_TEST_DISCORD"
format = "discord"
events = ["halted", "raised"]
"""


def test_a_toml_file_parses_into_typed_webhooks(tmp_path: Path):
    path = tmp_path / "alerts.toml"
    path.write_text(TOML)
    cfg = alert_file(path, environ={"TAPE_TEST_DISCORD": "https://discord.com" + DISCORD})
    assert cfg.timeout == 2.5 and cfg.attempts == 4 and cfg.queue_size == 1000
    slack, discord = cfg.webhooks
    assert (slack.index, slack.format, slack.events) == (1, "slack", ("raised", "resolved", "halted", "resumed"))
    assert (discord.index, discord.format, discord.events) == (2, "discord", ("raised", "halted"))
    assert discord.url == "https://discord.com" + DISCORD and discord.name == "webhook 2 (https://discord.com)"
    shown = repr(cfg) + json.dumps(cfg.canonical())
    assert not any(t in shown for t in TOKENS) and "https://hooks.slack.com" in shown


def test_a_json_file_too(tmp_path: Path):
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps({"webhook": [{"url": "http://127.0.0.1:9/hook", "format": "json"}]}))
    [hook] = alert_file(path).webhooks
    assert hook.format == "json" and hook.name == "webhook 1 (http://127.0.0.1:9)"


@pytest.mark.parametrize("data,message", [
    ({"webhooks": []}, "unknown key 'webhooks' (did you mean 'webhook'?)"),
    ({"webhook": [{"url": "https://hooks.slack.com" + SLACK, "fromat": "slack"}]},
     "[[webhook]] 1: unknown key 'fromat' (did you mean 'format'?)"),
    ({"webhook": [{"url": "https://hooks.slack.com" + SLACK, "format": "teams"}]},
     "format must be one of slack, discord, json, got 'teams'"),
    ({"webhook": [{"url": "https://x.example/a"}, {"url": "ftp://hooks.slack.com" + SLACK}]},
     "[[webhook]] 2: url must start with https:// (or http://)"),
    ({"webhook": [{"url": "hooks.slack.com" + SLACK}]}, "url must start with https://"),
    ({"webhook": [{"url": "https://" + SLACK}]}, "url has no host"),
    ({"webhook": [{"url": "https://hooks.slack.com:po" + SLACK}]}, "url has a bad port"),
    ({"webhook": [{"url": "https://hooks.slack.com" + SLACK, "events": ["rasied"]}]},
     "unknown event 'rasied' in events (did you mean 'raised'?)"),
    ({"webhook": [{"url": "https://hooks.slack.com" + SLACK, "events": []}]}, "events must be a non-empty list"),
    ({"webhook": [{"format": "slack"}]}, "set url (the webhook's URL) or url_env"),
    ({"webhook": [{"url_env": "TAPE_TEST_NOT_SET"}]}, "environment variable TAPE_TEST_NOT_SET is not set"),
    ({"webhook": "https://hooks.slack.com" + SLACK}, "webhook must be a list of tables"),
    ({"timeout": 0}, "timeout must be a number > 0"),
    ({"attempts": 1.5}, "attempts must be a whole number > 0"),
])
def test_a_bad_config_is_one_line_naming_the_source_and_never_the_token(data, message):
    with pytest.raises(AlertConfigError) as e:
        parse_alerts(data, "alert config alerts.toml", environ={})
    text = str(e.value)
    assert isinstance(e.value, TapeError) and text.startswith("alert config alerts.toml")
    assert message in text and "\n" not in text
    assert not any(t in text for t in TOKENS)


def test_a_file_that_is_not_toml_is_one_line(tmp_path: Path):
    path = tmp_path / "alerts.toml"
    path.write_text(f'[[webhook]]\nurl = "https://hooks.slack.com{SLACK}\n')  # the closing quote missing
    with pytest.raises(ConfigFileError) as e:
        alert_file(path)
    assert str(e.value).startswith(f"alert config {path}: not valid TOML") and "\n" not in str(e.value)
    assert not any(t in str(e.value) for t in TOKENS)
