"""The research runtime end to end: determinism, rebuild from the log, the causal chain, risk in the loop."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from eventstore.store import Log
from handlers.risk.limits import parse_risk_config
from handlers.strategy import Strategy
from handlers.venues.sim.config import parse_venue_config
from runtime.backtest.runner import BacktestSpec, run_backtest
from runtime.backtest.runs import rebuild_run, run_report
from runtime.backtest.verify import spec_of
from runtime.cli.app import app
from runtime.configfiles import risk_file, venue_file

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "btcusdt-1m.csv"
IID = "BTCUSDT.BINANCE"


def _ingest(store: Path, rows: int = 3000) -> None:
    store.parent.mkdir(parents=True, exist_ok=True)
    csv = store.parent / f"bars-{rows}.csv"
    lines = EXAMPLE.read_text().splitlines()[: rows + 1]
    csv.write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(app, ["--store", f"file:{store}", "ingest", "csv", str(csv), "--namespace", "src",
                                 "--instrument", IID, "--kind", "bars", "--timeframe", "1m", "--base", "BTC",
                                 "--quote", "USDT"])
    assert r.exit_code == 0, r.output


@pytest.fixture
def store(tmp_path: Path) -> Path:
    s = tmp_path / "store"
    _ingest(s)
    return s


SPEC = dict(source="src", strategy="sma_cross", params={"fast": "5", "slow": "20", "quantity": "0.5"},
            venue=parse_venue_config({"taker_fee": "0.001", "maker_fee": "0.0005", "starting_balances": {"USDT": "100000"}}))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_same_inputs_give_byte_identical_run_logs(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "store", tmp_path / "b" / "store"
    _ingest(a)
    _ingest(b)
    ra = run_backtest(Log.open(f"file:{a}"), BacktestSpec(**SPEC), run_id="bt-x")
    rb = run_backtest(Log.open(f"file:{b}"), BacktestSpec(**SPEC), run_id="bt-x")
    assert ra.events_out > 100 and ra.statistics["fills"] > 10
    fa, fb = _files(a / "bt-x"), _files(b / "bt-x")
    assert fa.keys() == fb.keys() and fa == fb


class Churn(Strategy):
    """Orders that end every way — filled, expired, refused by the venue — and from bar 40 on, cancels of an order
    placed 40 bars before (on its instrument and on another one) and of the id one below it (an order or not)."""

    name = "churn"

    @dataclass(frozen=True)
    class Params:
        quantity: Decimal = Decimal("0.01")

    def __init__(self, params: Churn.Params, ctx: Any):
        super().__init__(params, ctx)
        self.placed: list[str] = []

    def on_bar(self, bar: dict[str, Any]) -> None:
        iid, q, close, cent = bar["instrument_id"], self.params.quantity, bar["close"], Decimal("0.01")
        n = len(self.placed) // 3
        self.placed.append((self.buy if n % 2 else self.sell)(iid, q))
        self.placed.append(self.buy(iid, q, order_type="LIMIT", price=(close / 2).quantize(cent),
                                    time_in_force="GTD", expire_ts=self.ctx.now + 3 * 60 * 10 ** 9))
        self.placed.append(self.sell(iid, q, order_type="LIMIT", price=(close * Decimal("0.99")).quantize(cent),
                                     post_only=True))  # crosses: the venue refuses it
        if n >= 40:
            old = self.placed[3 * (n - 40) + n % 3]
            stem, _, number = old.rpartition("-")
            self.ctx.cancel(iid, old, "long over")
            self.ctx.cancel("OTHER.X", old, "on another instrument")
            self.ctx.cancel(iid, f"{stem}-{int(number) - 1}", "the id below")


def test_archiving_finished_orders_changes_no_byte_of_a_run_log(tmp_path: Path, monkeypatch) -> None:
    """The venue and the queue answer for orders long over from their archives (handlers/archive.py): a run whose
    every order is kept whole, one with the default tail, and one with a tail of 5 and chunks of 7 rows write the
    same bytes."""
    import handlers.archive
    from handlers.queue import OutboundQueue
    from handlers.venues.sim.venue import SimulatedVenue

    spec = BacktestSpec(source="src", strategy="tests.runtime.backtest.test_backtest:Churn",
                        venue=parse_venue_config({"starting_balances": {"USDT": "1000000", "BTC": "100"}}))
    logs = {}
    for keep, chunk in ((10 ** 9, 4096), (None, 4096), (5, 7)):
        if keep is not None:
            monkeypatch.setattr(SimulatedVenue, "KEEP_FINISHED", keep)
            monkeypatch.setattr(OutboundQueue, "KEEP_SEEN", keep)
        else:
            monkeypatch.undo()
        monkeypatch.setattr(handlers.archive, "CHUNK", chunk)
        store = tmp_path / f"{keep}" / "store"
        _ingest(store, 1500)
        log = Log.open(f"file:{store}")
        run_backtest(log, spec, run_id="bt-x")
        logs[keep] = _files(store / "bt-x")
        if keep is None:
            events = list(log.replay("bt-x"))
    reasons = {e.data["reason"] for e in events if e.name == "OrderCancelRejected"}
    assert {"order already filled", "order already expired", "order already rejected", "unknown order"} <= reasons
    assert sum(e.name == "OrderSubmitted" for e in events) > 3000  # beyond the default tail of 1000
    assert logs[None] == logs[10 ** 9] and logs[5] == logs[10 ** 9]
    # negative control: an archive that forgets what it is given writes other bytes
    monkeypatch.setattr(handlers.archive.OrderArchive, "add", lambda self, cid, *cells: None)
    store = tmp_path / "forgetful" / "store"
    _ingest(store, 1500)
    run_backtest(Log.open(f"file:{store}"), spec, run_id="bt-x")
    assert _files(store / "bt-x") != logs[10 ** 9]


def test_default_run_id_is_a_content_address(store: Path) -> None:
    log = Log.open(f"file:{store}")
    r = run_backtest(log, BacktestSpec(**SPEC))
    assert r.run_id.startswith("bt-")
    with pytest.raises(Exception, match="already exists"):
        run_backtest(log, BacktestSpec(**SPEC))
    other = run_backtest(log, BacktestSpec(**{**SPEC, "params": {**SPEC["params"], "fast": "6"}}))
    assert other.run_id != r.run_id


def test_replaying_a_finished_run_rebuilds_what_it_reported(store: Path) -> None:
    log = Log.open(f"file:{store}")
    result = run_backtest(log, BacktestSpec(**SPEC), run_id="bt-r")
    reported = run_report(result)
    rebuilt = rebuild_run(log, "bt-r")
    assert rebuilt["positions"] == reported["positions"]
    assert rebuilt["balances"] == reported["balances"]
    assert rebuilt["round_trips"] == reported["round_trips"]
    assert rebuilt["statistics"] == reported["statistics"]
    assert reported["statistics"]["fees_paid"] > 0


def test_every_fill_follows_the_pipeline(store: Path) -> None:
    log = Log.open(f"file:{store}")
    run_backtest(log, BacktestSpec(**SPEC), run_id="bt-c")
    events = list(log.replay("bt-c"))
    by_id = {e.envelope["event_id"]: e for e in events}
    seen: dict[str, list[str]] = {}
    for e in events:
        cid = e.data.get("client_order_id")
        if cid:
            seen.setdefault(cid, []).append(e.name)
            assert e.envelope["correlation_id"] == cid
        cause = e.envelope["causation_id"]
        if cause and cause.startswith("bt-c:"):
            assert by_id[cause].seq < e.seq
    filled = [c for c, names in seen.items() if "OrderFilled" in names]
    assert filled
    for cid in filled:
        names = seen[cid]
        for before, after in [("OrderIntent", "RiskAccepted"), ("RiskAccepted", "OrderReleased"),
                              ("OrderReleased", "OrderSubmitted"), ("OrderSubmitted", "OrderFilled")]:
            assert names.index(before) < names.index(after), (cid, names)
    assert events[0].name == "RunStarted" and events[-1].name == "RunStopped"


def test_risk_rejections_stop_orders_in_the_loop(store: Path) -> None:
    log = Log.open(f"file:{store}")
    spec = BacktestSpec(**{**SPEC, "risk": parse_risk_config({"max_order_quantity": "0.1"})})
    r = run_backtest(log, spec, run_id="bt-risk")
    names = [e.name for e in log.replay("bt-risk")]
    assert "RiskRejected" in names and "OrderSubmitted" not in names
    rejected = next(e for e in log.replay("bt-risk", types=["RiskRejected"]))
    assert rejected.data["rule"] == "max_order_quantity"
    assert Decimal(rejected.data["limit"]) == Decimal("0.1") and Decimal(rejected.data["value"]) == Decimal("0.5")
    assert r.statistics["fills"] == 0


def test_market_maker_runs_through_the_pipeline(store: Path) -> None:
    log = Log.open(f"file:{store}")
    spec = BacktestSpec(source="src", strategy="market_maker", params={"spread": "0.0005", "quantity": "0.01"},
                        venue=parse_venue_config({"account_type": "margin", "leverage": "2", "starting_balances": {"USDT": "100000"}}))
    r = run_backtest(log, spec, run_id="bt-mm")
    names = {e.name for e in log.replay("bt-mm")}
    assert {"OrderCanceled", "OrderFilled", "CancelIntent"} <= names
    assert r.statistics["fills"] > 0


def test_cli_backtest_json_lists_round_trips(store: Path) -> None:
    args = ["--store", f"file:{store}", "backtest", "--source", "src", "--strategy", "sma_cross",
            "--param", "fast=5", "--param", "slow=20", "--param", "quantity=0.5", "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    trips = out["round_trips"]
    assert trips and {"entry_ts", "exit_ts", "quantity", "pnl"} <= set(trips[0])
    assert out["statistics"]["round_trips"] == len(trips)
    shown = CliRunner().invoke(app, ["--store", f"file:{store}", "runs", "show", out["run_id"], "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["statistics"] == out["statistics"]
    listed = CliRunner().invoke(app, ["--store", f"file:{store}", "runs", "list"])
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if out["run_id"] in line)
    assert "sma_cross" in row and "fast=5" in row and "src" in row
    missing = CliRunner().invoke(app, ["--store", f"file:{store}", "runs", "show", "src"])
    assert missing.exit_code == 2 and "not a run" in missing.stderr


def test_cli_backtest_bad_param_is_one_line(store: Path) -> None:
    r = CliRunner().invoke(app, ["--store", f"file:{store}", "backtest", "--source", "src", "--strategy",
                                 "sma_cross", "--param", "fast=abc"])
    assert r.exit_code == 2
    assert "fast" in r.stderr and "Traceback" not in r.output


def test_the_readme_example_configs_load_and_run(store: Path) -> None:
    """The example files parse once into typed configs; the run records their canonical form, which parses back
    to the same configs (what `--verify` re-runs with)."""
    examples = EXAMPLE.parent
    limits, queue = risk_file(examples / "risk.toml")
    venue = venue_file(examples / "venue.toml")
    assert (limits.max_order_quantity, limits.max_position, limits.order_rate_window) == (2, 2, 60)
    assert (queue.rate_per_second, queue.burst) == (5, 10)
    spec = BacktestSpec(source="src", strategy="sma_cross", params={"fast": "5", "slow": "20", "quantity": "0.5"},
                        risk=limits, queue=queue, venue=venue)
    log = Log.open(f"file:{store}")
    r = run_backtest(log, spec, run_id="bt-readme")
    assert r.statistics["fills"] > 0 and r.statistics["fees_paid"] > 0
    recorded = spec_of(r.started)
    assert (recorded.risk, recorded.queue, recorded.venue) == (limits, replace(queue, venue=venue.name), venue)


def test_cli_backtest_json_keeps_every_decimal_digit(store: Path, tmp_path: Path) -> None:
    """An 18-place value with 29 significant digits comes out of --json as it went in (no 28-digit rounding)."""
    exact = "12345678901.123456789012345678"
    venue = tmp_path / "venue.toml"
    venue.write_text(f'starting_balances = {{ USDT = "{exact}" }}\n')
    args = ["--store", f"file:{store}", "backtest", "--source", "src", "--strategy", "sma_cross", "--param",
            "fast=5", "--param", "slow=20", "--param", "quantity=0.5", "--venue", str(venue), "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["statistics"]["start_equity"] == exact
