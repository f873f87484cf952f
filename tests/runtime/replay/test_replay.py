"""`tape replay`: the state at an instant on golden logs, what changed over a period, and --verify of a run."""
from __future__ import annotations

import decimal
import json
from decimal import Decimal
from pathlib import Path

import pytest
from snapkit import MINUTE, T0, account, bar, fill, instrument, submitted
from typer.testing import CliRunner

from eventstore.store import Log
from eventstore.writer import Draft
from handlers.venues.sim.config import parse_venue_config
from projections.snapshot import snapshot_payload
from projections.state import State
from runtime.backtest.runner import BacktestSpec, run_backtest
from runtime.cli.app import app
from runtime.replay.history import period, state_at
from runtime.replay.recovery import recover

D = Decimal
IID = "BTCUSDT.SIM"
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "btcusdt-1m.csv"


def m(k: int, extra: int = 0) -> int:
    return T0 + k * MINUTE + extra


GOLDEN = [
    ("InstrumentDefined", instrument(IID), m(0)),
    ("AccountState", account(USDT="10000"), m(1)),
    ("OrderSubmitted", submitted("o1", IID, "BUY", D(1)), m(2)),
    ("OrderFilled", fill("o1", IID, "BUY", D(1), D(100), D("0.1"), "USDT", "f1"), m(3)),
    ("Bar", bar(IID, D(110), m(4)), m(4)),
    ("OrderSubmitted", submitted("o2", IID, "SELL", D("0.4"), "LIMIT", D(120)), m(5)),
    ("OrderAccepted", {"instrument_id": IID, "client_order_id": "o2", "venue_order_id": "v2"}, m(5, 1)),
    ("Bar", bar(IID, D(120), m(6)), m(6)),
    ("OrderFilled", fill("o2", IID, "SELL", D("0.4"), D(120), D("0.048"), "USDT", "f2"), m(7)),
    ("TradeTick", {"instrument_id": IID, "price": D(90), "quantity": D(1), "aggressor_side": "SELLER",
                   "trade_id": "x"}, m(8)),
    ("TradingStateChanged", {"state": "HALTED", "previous": "ACTIVE", "reason": "operator halt",
                             "incident_id": None}, m(9)),
]
SNAPSHOT_AFTER = 5  # the snapshotted variant has a SnapshotTaken of the state after the first 5 events


def _write(log: Log, ns: str, with_snapshot: bool) -> None:
    with log.writer(ns, fsync="never") as w:
        state = State()
        for i, (name, data, ts) in enumerate(GOLDEN, start=1):
            w.append([Draft(name, dict(data), ts, data.get("instrument_id") or data.get("venue") or "", "test")])
            with decimal.localcontext(prec=60):
                state.apply(name, data, ts)
            if with_snapshot and i == SNAPSHOT_AFTER:
                payload = snapshot_payload(state, log.catalog, w.registry, last_seq=i, max_ts=ts)
                w.append([Draft("SnapshotTaken", payload, ts, "", "runtime")])


@pytest.fixture
def golden(tmp_path: Path):
    log = Log.open(f"file:{tmp_path / 'store'}")
    _write(log, "gold", False)
    _write(log, "gold-snap", True)
    return tmp_path / "store", log


def _cli(store: Path, *args: str):
    return CliRunner().invoke(app, ["--store", f"file:{store}", *args])


def _at(store: Path, ns: str, ts: int) -> dict:
    r = _cli(store, "replay", ns, "--at", str(ts), "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _pos(view: dict) -> dict | None:
    return next((p for p in view["positions"] if p["instrument_id"] == IID), None)


def _dec(view_part: dict) -> dict:
    return {k: D(v) if v is not None else None for k, v in view_part.items()}


@pytest.mark.parametrize("ns", ["gold", "gold-snap"])
def test_state_at_instants_of_a_golden_log(golden, ns):
    store, _ = golden
    # strictly before the first fill: no position, the order still working
    v = _at(store, ns, m(3))
    assert v["positions"] == [] and _dec(v["balances"]) == {"USDT": D(10000)}
    assert [(o["client_order_id"], o["status"]) for o in v["open_orders"]] == [("o1", "SUBMITTED")]
    # one ns after it: long 1 @ 100, marked at the fill price (no market data yet)
    v = _at(store, ns, m(3, 1))
    p = _pos(v)
    assert (D(p["quantity"]), D(p["avg_price"]), D(p["mark"]), D(p["unrealized_pnl"])) == (1, 100, 100, 0)
    assert _dec(v["balances"]) == {"USDT": D("9899.9"), "BTC": D(1)} and v["open_orders"] == []
    # the bar at 110 moves the mark
    v = _at(store, ns, m(4, 1))
    p = _pos(v)
    assert (D(p["mark"]), D(p["unrealized_pnl"])) == (110, 10)
    assert D(v["risk"]["equity"]) == D("10009.9") and v["risk"]["currency"] == "USDT"
    # strictly before the second fill: mark 120, the limit order accepted and working
    v = _at(store, ns, m(7))
    p = _pos(v)
    assert (D(p["quantity"]), D(p["mark"]), D(p["unrealized_pnl"])) == (1, 120, 20)
    assert [(o["client_order_id"], o["status"], D(o["price"])) for o in v["open_orders"]] == [("o2", "ACCEPTED", 120)]
    # after it: 0.6 left at avg 100, 8 realized, 12 open; USDT 9899.9 + 48 - 0.048
    v = _at(store, ns, m(8))
    p = _pos(v)
    assert (D(p["quantity"]), D(p["avg_price"]), D(p["realized_pnl"]), D(p["unrealized_pnl"])) == (D("0.6"), 100, 8, 12)
    assert _dec(v["balances"]) == {"USDT": D("9947.852"), "BTC": D("0.6")}
    assert D(v["risk"]["equity"]) == D("10019.852")
    # a trade at 90 marks the rest down; trading still active
    v = _at(store, ns, m(9))
    assert D(_pos(v)["unrealized_pnl"]) == D(-6) and D(v["risk"]["equity"]) == D("10001.852")
    assert D(v["risk"]["peak_equity"]) == D("10019.9") and v["risk"]["trading_state"] == "ACTIVE"
    v = _at(store, ns, m(10))
    assert v["risk"]["trading_state"] == "HALTED"


def test_at_starts_from_the_latest_snapshot_before_the_instant(golden):
    _, log = golden
    before = state_at(log, "gold-snap", m(4))  # the snapshot holds the bar at m(4): not usable strictly before it
    assert before["snapshot_seq"] is None and before["folded"] == 4
    after = state_at(log, "gold-snap", m(5))
    assert after["snapshot_seq"] == SNAPSHOT_AFTER + 1 and after["folded"] == 0
    later = state_at(log, "gold-snap", m(10))
    assert later["snapshot_seq"] == SNAPSHOT_AFTER + 1 and later["folded"] == len(GOLDEN) - SNAPSHOT_AFTER
    full = state_at(log, "gold", m(10))
    drop = ("namespace", "snapshot_seq", "folded", "last_seq")
    assert {k: v for k, v in later.items() if k not in drop} == {k: v for k, v in full.items() if k not in drop}


def test_at_text_output(golden):
    store, _ = golden
    r = _cli(store, "replay", "gold-snap", "--at", "2024-01-01T00:08:00Z")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "strictly before" in out and f"snapshot at seq {SNAPSHOT_AFTER + 1}" in out
    line = next(x for x in out.splitlines() if x.startswith(IID))
    assert line.split()[1:6] == ["0.6", "100", "120", "12", "8"]
    assert "9947.852" in out and "trading ACTIVE" in out and "equity 10019.852 USDT" in out


@pytest.mark.parametrize("ns", ["gold", "gold-snap"])
def test_period_reports_what_changed(golden, ns):
    _, log = golden
    rep = period(log, ns, m(4), m(8))
    assert rep["events_in_period"] == 5 and rep["fills"] == 1
    assert rep["orders_opened"] == ["o2"] and rep["orders_filled"] == ["o2"]
    assert rep["orders_closed"] == [{"client_order_id": "o2", "status": "FILLED", "instrument_id": IID}]
    assert rep["realized_pnl"] == {"USDT": D(8)} and rep["fees"] == {"USDT": D("0.048")}
    assert rep["balances"] == {"USDT": (D("9899.9"), D("9947.852"), D("47.952")), "BTC": (D(1), D("0.6"), D("-0.4"))}
    (p,) = rep["positions"]
    assert p["quantity"] == (1, D("0.6")) and p["avg_price"] == (100, 100)
    assert p["unrealized_pnl"] == (0, 12) and p["realized_pnl"] == 8  # marked at the fill price at --from, 120 at --to
    assert rep["trading_state"] == ("ACTIVE", "ACTIVE") and rep["trading_state_changes"] == []
    halt = period(log, ns, m(8), m(10))
    assert halt["fills"] == 0 and halt["trading_state"] == ("ACTIVE", "HALTED")
    assert [(c["previous"], c["state"], c["reason"]) for c in halt["trading_state_changes"]] == \
        [("ACTIVE", "HALTED", "operator halt")]


def test_period_cli(golden):
    store, _ = golden
    r = _cli(store, "replay", "gold-snap", "--from", str(m(4)), "--to", str(m(8)))
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "5 events in the period" in out and "fills: 1; orders opened 1, closed 1 (filled 1)" in out
    assert "realized PnL over the period: +8 USDT" in out and "+47.952" in out and "1 -> 0.6" in out
    r = _cli(store, "replay", "gold", "--from", str(m(8)), "--to", str(m(10)))
    assert "ACTIVE -> HALTED (operator halt)" in r.stdout


def test_replay_usage_errors_are_one_line(golden):
    store, _ = golden
    for args in (["replay", "gold"], ["replay", "gold", "--at", "x"], ["replay", "nope", "--at", "2024-01-01"],
                 ["replay", "gold", "--at", str(m(1)), "--verify"], ["replay", "gold", "--verify"],
                 ["replay", "gold", "--from", str(m(5)), "--to", str(m(4))]):
        r = _cli(store, *args)
        assert r.exit_code == 2, (args, r.output)
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr


# ---- --verify ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    store = root / "store"
    csv = root / "bars.csv"
    csv.write_text("\n".join(EXAMPLE.read_text().splitlines()[:1501]) + "\n")
    r = _cli(store, "ingest", "csv", str(csv), "--namespace", "src", "--instrument", "BTCUSDT.BINANCE", "--kind", "bars",
             "--timeframe", "1m", "--base", "BTC", "--quote", "USDT")
    assert r.exit_code == 0, r.output
    r = _cli(store, "backtest", "--source", "src", "--strategy", "sma_cross", "--param", "fast=5", "--param", "slow=20",
             "--param", "quantity=0.5", "--run-id", "bt-v", "--snapshot-every", "300")
    assert r.exit_code == 0, r.output
    return store


def test_verify_an_untouched_run_is_identical(run_store):
    r = _cli(run_store, "replay", "bt-v", "--verify")
    n = Log.open(f"file:{run_store}").stats("bt-v").events
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"identical: {n} events"


def test_verify_catches_a_changed_strategy_parameter(run_store):
    r = _cli(run_store, "replay", "bt-v", "--verify", "--param", "fast=6")
    assert r.exit_code == 1, r.output
    lines = r.stdout.splitlines()
    assert "note: params.fast: recorded 5, recomputed 6 (overridden with --param)" in lines
    div = next(x for x in lines if x.startswith("divergence at seq "))
    seq = int(div.split()[3])
    assert seq > 1 and ": recorded " in div and ", recomputed " in div
    r = _cli(run_store, "replay", "bt-v", "--verify", "--param", "fast=6", "--json")
    out = json.loads(r.stdout)
    d = out["divergence"]
    assert out["identical"] is False and d["seq"] == seq and d["path"] and d["recorded"] != d["recomputed"]
    assert out["events"] == seq - 1  # every event before it compared equal
    # the recorded event at that seq is what the report says
    log = Log.open(f"file:{run_store}")
    ev = next(iter(log.replay("bt-v", from_seq=seq, to_seq=seq)))
    assert ev.name in d["type"]


def test_verify_notes_a_changed_code_version_without_failing(run_store, monkeypatch):
    import runtime.backtest.runner as research

    monkeypatch.setattr(research, "code_version", lambda: "0+changed")
    r = _cli(run_store, "replay", "bt-v", "--verify")
    assert r.exit_code == 0, r.output
    assert "note: code_version differs" in r.stdout and "recomputed 0+changed" in r.stdout
    assert r.stdout.splitlines()[-1].startswith("identical: ")


def test_verify_catches_a_tampered_recorded_event(tmp_path, run_store):
    """A verify compares against the log as recorded: a fill price changed in the store is found (seq and field)."""
    import shutil

    store = tmp_path / "copy"
    shutil.copytree(run_store, store)
    log = Log.open(f"file:{store}")
    fill_ev = next(iter(log.replay("bt-v", types=["OrderFilled"])))
    # rewrite the run with one fill price changed (same seqs, a new chain): what an altered history looks like
    events = list(log.replay("bt-v"))
    shutil.rmtree(store / "bt-v")
    log = Log.open(f"file:{store}")
    with log.writer("bt-v", fsync="never") as w:
        for e in events:
            data = {k: v for k, v in e.data.items() if k != "envelope"}
            if e.seq == fill_ev.seq:
                data["last_price"] += 1
            env = e.envelope
            w.append([Draft(e.name, data, e.ts_event, e.key, env["source"], env["causation_id"], env["correlation_id"],
                            env["ts_init"])])
    r = _cli(store, "replay", "bt-v", "--verify", "--json")
    assert r.exit_code == 1
    d = json.loads(r.stdout)["divergence"]
    assert d["seq"] == fill_ev.seq and d["path"] == "last_price"
    assert D(d["recorded"]) == D(d["recomputed"]) + 1


def test_at_on_a_run_uses_its_snapshots_and_equals_the_full_fold(run_store):
    log = Log.open(f"file:{run_store}")
    last = list(log.replay("bt-v"))[-1].ts_event
    for at in (T0 + 1, m(400), m(777), m(1234), last + 1):
        a = state_at(log, "bt-v", at)
        b = state_at(log, "bt-v", at, use_snapshots=False)
        drop = ("snapshot_seq", "folded")
        assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
        if at > m(600):
            assert a["snapshot_seq"] and a["folded"] < b["folded"]


def test_verify_refuses_what_is_not_a_backtest_run(golden):
    store, _ = golden
    r = _cli(store, "replay", "gold", "--verify")
    assert r.exit_code == 2 and "not a run" in r.stderr


def test_recover_of_a_run_equals_the_engine_state(tmp_path):
    store = tmp_path / "store"
    csv = tmp_path / "bars.csv"
    csv.write_text("\n".join(EXAMPLE.read_text().splitlines()[:801]) + "\n")
    assert _cli(store, "ingest", "csv", str(csv), "--namespace", "src", "--instrument", "BTCUSDT.BINANCE", "--kind",
                "bars", "--timeframe", "1m", "--base", "BTC", "--quote", "USDT").exit_code == 0
    log = Log.open(f"file:{store}")
    spec = BacktestSpec(source="src", strategy="market_maker", params={"spread": "0.0005", "quantity": "0.01"},
                        venue=parse_venue_config({"account_type": "margin", "leverage": "2", "starting_balances": {"USDT": "100000"}}),
                        snapshot_every=250)
    result = run_backtest(log, spec, run_id="bt-mm")
    rec = recover(log, "bt-mm")
    assert rec.snapshot_seq and rec.state.snapshot() == result.state.snapshot()
