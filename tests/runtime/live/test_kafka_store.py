"""A live session whose store is Kafka (the tansu broker the tests start): it records, takes an operator's halt
through the namespace's Kafka control channel, survives SIGKILLs with nothing lost or doubled against the venue's
books, and a restart recovers its state — the halt included — from the topics alone."""
from __future__ import annotations

import random
import subprocess
import sys
import time

from killkit import NAMESPACE, ROOT, Live, Sandbox, kill_series, py_env, stop_session, verdict
from sandboxkit import write_history

from eventstore.errors import StoreError
from eventstore.store import Log
from runtime.ops.status import status
from schemas.ids import order_id_prefix


def events(url: str) -> list:
    log = Log.open(url)
    try:
        return list(log.replay(NAMESPACE)) if NAMESPACE in log.namespaces() else []
    except StoreError:
        return []
    finally:
        log.close()


def wait_for(p, url: str, test, timeout: float = 60.0) -> list:
    deadline = time.monotonic() + timeout
    got: list = []
    while time.monotonic() < deadline:
        assert p.poll() is None, p.stderr.read()[-2000:]
        got = events(url)
        if test(got):
            return got
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout} s: {[e.name for e in got][-15:]}")


def tape(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.cli", "--store", url, *args], cwd=ROOT, env=py_env(),
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_live_session_on_kafka_is_commanded_killed_and_recovered_from_the_topics(tmp_path, kafka_bootstrap):
    bootstrap = getattr(kafka_bootstrap, "bootstrap", kafka_bootstrap)
    url = f"kafka://{bootstrap}"
    store = tmp_path / "store"  # the sandbox's history; the session's own log is on the broker
    write_history(store, "hist", bars=3000)
    sb = Sandbox(store, "hist", speed="120", extra=("--seed", "8", "--loop", "--faults",
                                                     "accept_then_drop:0.1,visibility_lag:0.2:0.5")).start()
    live = Live(store, sb.url, strategy="market_maker", store_url=url)
    try:
        series = kill_series(live, 5, random.Random(8), low=2.0, high=4.0)
        assert series.kills >= 4, series.exited
        p = live.spawn("--no-stream", "--heartbeat", "0.5")
        wait_for(p, url, lambda ev: sum(e.name == "Bar" for e in ev[-50:]) >= 2)
        sent = tape(url, "live", "halt", NAMESPACE, "--reason", "kafka-halt")
        assert sent.returncode == 0, sent.stderr
        assert "trading ACTIVE -> HALTED" in sent.stdout
        got = wait_for(p, url, lambda ev: any(e.name == "OperatorCommand" and e.data["reason"] == "kafka-halt"
                                              for e in ev))
        cmd = [e for e in got if e.name == "OperatorCommand"][-1]
        effect = next(e for e in got if e.seq > cmd.seq)  # the same step (seqs may have gaps: steps torn by kills)
        assert effect.name == "TradingStateChanged" and effect.data["state"] == "HALTED"
        stop_session(p)
        sb.clear_faults()
        again = live.run(2 * live.window_s + 2)  # a clean restart: recovery from the topics, reconciliation
        assert again.returncode == 0, again.stderr[-2000:]
        log = Log.open(url)
        try:
            s = status(log, NAMESPACE)
        finally:
            log.close()
        assert s.trading_state == "HALTED" and "operator halt" in (s.trading_reason or "")
        got = events(url)
        v = verdict(sb, None, order_id_prefix(NAMESPACE), events=got)
        halts = [e for e in got if e.name == "TradingStateChanged" and e.data["state"] == "HALTED"]
        assert [h.data["reason"].startswith("operator halt") for h in halts] == [True]  # the one halt: ours
        broken = {k: n for k, n in v.broken().items() if k != "halted"}
        assert broken == {}, (broken, v.details)  # no order twice, no fill lost, state = the venue's
        assert v.orders >= 5
    finally:
        sb.stop()
