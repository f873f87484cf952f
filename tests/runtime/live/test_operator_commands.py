"""Operators command a running session end to end: `tape live` as a real process on the sandbox venue (paper), the
commands sent by `tape` processes through the namespace's control channel; asserted in the log the session wrote,
in what the commands print, and after a restart.

Each command is recorded (OperatorCommand) before what it does, in the same step; a refused one says why, in one
line, with exit code 2; a command to a namespace no session runs is refused before anything is sent; a restart
neither forgets the commands' effects nor carries a command out twice.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from killkit import NAMESPACE, ROOT, Live, Sandbox, folded, log_events, py_env, stop_session
from sandboxkit import write_history
from test_incidents import raised, wait_for

from eventstore.store import Log
from runtime.ops.status import status


def tape(store, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.cli", "--store", f"file:{store}", *args], cwd=ROOT,
                          env=py_env(), capture_output=True, text=True, timeout=120, check=False)


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, p.stderr
    return p.stdout


def refused(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    return p.stderr


def answered(events, command_id_from: str) -> list:
    """The events caused by the last OperatorCommand whose reason is `command_id_from`."""
    cmd = [e for e in events if e.name == "OperatorCommand" and e.data["reason"] == command_id_from][-1]
    return [e for e in events if e.envelope["causation_id"] == cmd.envelope["event_id"]]


def trading(store) -> str:
    log = Log.open(f"file:{store}")
    try:
        return status(log, NAMESPACE).trading_state
    finally:
        log.close()


def test_halt_cancel_all_resume_and_an_instrument_halt_are_recorded_before_they_act_and_survive_a_restart(tmp_path):
    store = tmp_path / "store"
    write_history(store, "hist", bars=3000)
    sb = Sandbox(store, "hist", speed="60", extra=("--seed", "3", "--loop")).start()
    live = Live(store, sb.url, strategy="market_maker", paper=True, alert_only=())
    try:
        p = live.spawn("--no-stream", "--heartbeat", "0.5")
        wait_for(p, store, lambda ev: any(e.name == "OrderAccepted" for e in ev))

        # the quotes working now are canceled (the strategy quotes again: a quote may fill first, so try again)
        for attempt in range(10):
            wait_for(p, store, lambda ev: folded(ev).orders.open())
            sent = tape(store, "live", "cancel-all", NAMESPACE, "--reason", f"cancel-{attempt}")
            if sent.returncode == 0:
                break
            assert "no open orders" in refused(sent)
        cancels = answered(log_events(store), f"cancel-{attempt}")
        assert cancels and {e.name for e in cancels} == {"CancelIntent"}
        assert ok(sent).count("cancel ") == len(cancels)
        ids = {e.data["client_order_id"] for e in cancels}
        events = wait_for(p, store, lambda ev: ids <= {e.data["client_order_id"] for e in ev
                                                       if e.name in ("OrderCanceled", "OrderFilled")})
        assert any(e.name == "OrderCanceled" and e.data["client_order_id"] in ids for e in events)

        out = ok(tape(store, "live", "halt", NAMESPACE, "--reason", "halt-1"))
        assert "halt recorded at seq" in out and "trading ACTIVE -> HALTED" in out
        events = log_events(store)
        cmd = [e for e in events if e.name == "OperatorCommand"][-1]
        assert (cmd.data["command"], cmd.data["scope"], cmd.data["reason"]) == ("halt", "account", "halt-1")
        assert "@" in cmd.data["by"] and cmd.data["command_id"] and cmd.data["position"] > 0
        effect = answered(events, "halt-1")
        assert [e.name for e in effect] == ["TradingStateChanged"] and effect[0].seq == cmd.seq + 1
        assert effect[0].data["reason"].startswith("operator halt by ") and effect[0].data["state"] == "HALTED"
        # halted: the strategy's next quotes are refused by the trading state rule
        events = wait_for(p, store, lambda ev: any(e.name == "RiskRejected" and e.seq > cmd.seq for e in ev))
        assert {e.data["rule"] for e in events if e.name == "RiskRejected" and e.seq > cmd.seq} == {"trading_state"}
        assert "already HALTED" in refused(tape(store, "live", "halt", NAMESPACE, "--reason", "halt-2"))

        ok(tape(store, "live", "resume", NAMESPACE, "--reason", "resume-1"))
        iid = next(e.data["instrument_id"] for e in events if e.name == "InstrumentDefined")
        out = ok(tape(store, "live", "halt", NAMESPACE, "--scope", f"instrument:{iid}", "--reason", "halt-iid"))
        assert "incident op-" in out
        events = log_events(store)
        op = next(e for e in answered(events, "halt-iid") if e.name == "IncidentRaised")
        assert (op.data["kind"], op.data["action"], op.data["scope_id"]) == ("operator_halt", "DENY", iid)
        listed = ok(tape(store, "incidents", "list", NAMESPACE))
        assert op.data["incident_id"] in listed and "operator_halt" in listed
        events = wait_for(p, store, lambda ev: any(e.name == "RiskRejected" and e.seq > op.seq for e in ev))
        assert {e.data["rule"] for e in events if e.name == "RiskRejected" and e.seq > op.seq} == {"incident"}
        assert trading(store) == "ACTIVE"

        before = sum(e.name == "OperatorCommand" for e in log_events(store))
        stop_session(p)
        p = live.run(3)  # every command above is unexpired: a restart that re-read them would act on them again
        assert p.returncode == 0, p.stderr[-2000:]
        events = log_events(store)
        assert sum(e.name == "OperatorCommand" for e in events) == before
        assert trading(store) == "ACTIVE"
        shown = ok(tape(store, "incidents", "show", NAMESPACE, op.data["incident_id"]))
        assert "open" in shown.splitlines()[0] and "raised" in shown

        # nobody runs the namespace now: refused before anything is sent
        why = refused(tape(store, "live", "resume", NAMESPACE, "--scope", f"instrument:{iid}", "--reason", "x"))
        assert "no session is running on live-kt" in why
        assert "unknown scope 'galaxy'" in refused(tape(store, "live", "halt", NAMESPACE, "--scope", "galaxy",
                                                        "--reason", "x"))
    finally:
        sb.stop()


def scrape(url: str) -> dict[tuple[str, str], float]:
    """(metric, its command or outcome label) → value, from the session's /metrics."""
    import re
    import urllib.request

    out = {}
    for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        m = re.match(r'^(tape_\w+)\{(.*)\} (\S+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            out[(m.group(1), labels.get("command") or labels.get("outcome") or "")] = float(m.group(3))
    return out


class Receiver:
    """A webhook receiver on loopback: what the session posted, as Slack bodies."""

    def __init__(self):
        got = self.got = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/SECRET-TOKEN"

    def texts(self) -> list[str]:
        return [b["text"] for b in self.got]


def test_a_resume_waits_for_the_halting_incident_to_be_resolved_or_acknowledged(tmp_path):
    store = tmp_path / "store"
    write_history(store, "hist", bars=3000)
    sb = Sandbox(store, "hist", speed="60", extra=("--seed", "3", "--loop")).start()
    live = Live(store, sb.url, paper=True, alert_only=())
    hook = Receiver()
    alerts = tmp_path / "alerts.toml"
    alerts.write_text(f'[[webhook]]\nurl = "{hook.url}"\nformat = "slack"\n')
    try:
        p = live.spawn("--no-stream", "--heartbeat", "0.2", "--alerts", str(alerts), "--metrics-port", "0")
        metrics_url = p.stderr.readline().split()[-1]  # "metrics on http://127.0.0.1:PORT/metrics"
        wait_for(p, store, lambda ev: sum(e.name == "Bar" for e in ev) >= 3)
        sb.fault("http_5xx_json", probability=1, target="GET /api/v3/klines")
        events = wait_for(p, store, lambda ev: raised(ev, "venue_unreachable"))
        down = raised(events, "venue_unreachable")[0].data["incident_id"]
        why = refused(tape(store, "live", "resume", NAMESPACE, "--reason", "too early"))
        assert f"incident {down} (venue_unreachable" in why and "tape incidents ack" in why
        assert trading(store) == "HALTED"
        assert "no open incident 'inc-nope'" in refused(tape(store, "incidents", "ack", NAMESPACE, "inc-nope",
                                                            "--reason", "x"))
        ok(tape(store, "incidents", "ack", NAMESPACE, down, "--reason", "venue is down, we know"))
        listed = ok(tape(store, "incidents", "list", NAMESPACE))
        assert down in listed and "acknowledged by" in listed
        out = ok(tape(store, "live", "resume", NAMESPACE, "--reason", "acknowledged"))
        assert "trading HALTED -> ACTIVE" in out
        scraped = scrape(metrics_url)
        assert scraped[("tape_operator_commands_total", "resume")] == 2.0
        assert scraped[("tape_operator_commands_refused_total", "resume")] == 1.0
        assert scraped[("tape_operator_commands_refused_total", "ack")] == 1.0
        assert scraped[("tape_alerts", "sent")] >= 2  # the raise and the halt, posted while the session runs
        sb.clear_faults()
        events = wait_for(p, store, lambda ev: any(e.name == "IncidentResolved" and e.data["incident_id"] == down
                                                   for e in ev))
        shown = ok(tape(store, "incidents", "show", NAMESPACE, down))
        lines = shown.splitlines()
        assert "resolved" in lines[0]
        assert [w for w in ("raised", "trading ACTIVE -> HALTED", "acknowledged by", "resolved:")
                if not any(w in line for line in lines[1:])] == []
        stop_session(p)  # a clean stop delivers what is queued
        texts = hook.texts()
        mine = [t for t in texts if down in t]
        assert len(mine) >= 3, texts  # raised, the halt naming it, resolved
        assert "venue_unreachable" in mine[0] and "HALT" in mine[0]
        assert any("HALTED" in t for t in texts) and any("ACTIVE" in t for t in texts)  # the halt and the resume
        assert all(NAMESPACE in t for t in texts)
        assert "SECRET-TOKEN" not in (store / NAMESPACE / "control.jsonl").read_text()
        assert not any("SECRET-TOKEN" in e.name + json.dumps(e.data, default=str) for e in log_events(store))
    finally:
        hook.server.shutdown()
        sb.stop()


def test_a_control_record_reaches_the_log_only_as_the_fields_a_command_has():
    from runtime.live.node import command_payload

    good = command_payload({"command": "ack", "incident_id": 5, "reason": None, "sent_ts": "7", "expires_ts": 9,
                            "extra": "ignored"}, 42)
    assert good == {"command": "ack", "scope": "account", "scope_id": "", "reason": "", "by": "", "command_id": "",
                    "incident_id": "5", "position": 42, "sent_ts": 7, "expires_ts": 9}
    assert command_payload({"command": "halt", "sent_ts": "yesterday"}, 1) is None
    assert command_payload({"command": "halt", "expires_ts": [1]}, 1) is None
