"""`tape live --metrics-port`: a real Prometheus server scrapes a paper session against the sandbox venue, and what
it stores equals what the log holds; the Grafana dashboard asks only for metrics the runtime exports."""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))
from killkit import NAMESPACE, Live, Sandbox, folded, log_events, stop_session
from sandboxkit import ROOT, write_history

DASHBOARD = ROOT / "deploy" / "grafana" / "tape.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition: (name, sorted labels) → value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(found: dict, name: str, **labels: str) -> float:
    want = tuple(sorted({"namespace": NAMESPACE, **labels}.items()))
    return found[(name, want)]


class Prometheus:
    """The Debian `prometheus` binary on loopback, scraping one target every second."""

    def __init__(self, tmp: Path, target: str):
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
                          f"  - job_name: tape\n    static_configs:\n      - targets: ['{target}']\n")
        self.argv = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{self.port}"]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Prometheus:  # noqa: PYI034
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                get(f"http://127.0.0.1:{self.port}/-/ready")
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def query(self, expr: str) -> list[dict]:
        q = urllib.parse.urlencode({"query": expr})
        body = json.loads(get(f"http://127.0.0.1:{self.port}/api/v1/query?{q}"))
        assert body["status"] == "success", body
        return body["data"]["result"]


@pytest.fixture
def prometheus_binary(unavailable):
    if shutil.which("prometheus") is None:
        unavailable("no prometheus binary on this machine (Debian package `prometheus`; .ci/run installs it)")


def test_prometheus_scrapes_a_paper_session_and_its_numbers_are_the_logs(tmp_path, prometheus_binary):
    store = tmp_path / "store"
    write_history(store, "hist", bars=3000)
    sb = Sandbox(store, "hist", speed="120", extra=("--loop",)).start()
    live = Live(store, sb.url, strategy="market_maker", paper=True)
    port = free_port()
    p = live.spawn("--metrics-port", str(port), "--max-seconds", "40")
    try:
        with Prometheus(tmp_path, f"127.0.0.1:{port}") as prom:
            time.sleep(8)
            sb.post("/sandbox/speed", {"speed": 0})  # the market stops: the session's numbers stand still
            time.sleep(2.5)
            found = samples(get(f"http://127.0.0.1:{port}/metrics"))
            events = log_events(store)
            state = folded(events)
            feed = sum(1 for e in events if (e.envelope["source"] or "").startswith("feed:"))
            assert feed > 5 and value(found, "tape_inputs_total", source="feed") == feed
            assert value(found, "tape_events_recorded_total") == len(events)  # a fresh namespace: all this session's
            fills = sum(e.name == "OrderFilled" for e in events)
            assert value(found, "tape_fills_total") == fills
            iid = "BTCUSDT.BINANCE"
            assert value(found, "tape_open_orders", instrument=iid) == state.orders.open_count(iid)
            assert value(found, "tape_position", instrument=iid) == float(state.portfolio.position_quantity(iid))
            assert value(found, "tape_equity", currency="USDT") == float(state.portfolio.equity("USDT"))
            assert value(found, "tape_trading_state", state="ACTIVE") == 1
            assert value(found, "tape_step_seconds_count") >= feed
            assert value(found, "tape_stream_connected", stream="bars") == 1  # paper: no account stream
            assert not [s for s in found if s[0] == "tape_stream_connected" and ("stream", "account") in s[1]]

            time.sleep(2.5)  # two more scrapes of the standing numbers
            assert prom.query('up{job="tape"}')[0]["value"][1] == "1"
            stored = prom.query(f'tape_inputs_total{{namespace="{NAMESPACE}",source="feed"}}')
            assert float(stored[0]["value"][1]) == feed
            assert float(prom.query('tape_equity{currency="USDT"}')[0]["value"][1]) == \
                float(state.portfolio.equity("USDT"))
            p99 = prom.query('histogram_quantile(0.99, sum by (le) (rate(tape_step_seconds_bucket[30s])))')
            assert p99 and p99[0]["value"][1] not in ("NaN", "+Inf")
    finally:
        stop_session(p)
        sb.stop()


def names_in(dashboard: dict) -> set[str]:
    """The metric names every query of a Grafana dashboard asks for (panels and template variables)."""
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    exprs += [v["definition"] for v in dashboard.get("templating", {}).get("list", [])]
    return {m for e in exprs for m in re.findall(r"\b(tape_[a-z_]+)\b", e)}


def exported() -> set[str]:
    """What a session exports, every sample name (counters' _total, histograms' _bucket/_count/_sum)."""
    from runtime.ops.metrics import SessionMetrics

    m = SessionMetrics("live-x")
    out = set()
    for fam in m.registry.collect():
        out |= {fam.name} | {s.name for s in fam.samples}
        if fam.type == "histogram":
            out |= {f"{fam.name}_bucket", f"{fam.name}_count", f"{fam.name}_sum"}
        if fam.type == "counter":
            out.add(f"{fam.name}_total")
    return out


def test_the_dashboard_asks_only_for_metrics_the_runtime_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    asked, have = names_in(dashboard), exported()
    assert len(asked) >= 15, asked
    assert asked - have == set(), asked - have
    dashboard["panels"][0]["targets"][0]["expr"] = "tape_no_such_metric"  # the check catches a wrong name
    assert names_in(dashboard) - have == {"tape_no_such_metric"}


def test_a_metrics_port_in_use_is_one_line_and_writes_nothing(tmp_path):
    store = tmp_path / "store"
    write_history(store, "hist", bars=300)
    sb = Sandbox(store, "hist", speed="120", extra=("--loop",)).start()
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            live = Live(store, sb.url, paper=True)
            p = subprocess.run(live.argv("--metrics-port", str(taken.getsockname()[1]), "--max-seconds", "1"),
                               env=live.env(), cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--metrics-port" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr and not (store / NAMESPACE).exists()
    finally:
        sb.stop()
