"""The summary a trader reads: annualised with the data's calendar (or the periods given, recorded and reproduced),
halts and rejections counted and warned about, money at 2 places, and the equity curve in --json."""
from __future__ import annotations

import json
import math
import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventstore.store import Log
from runtime.cli.app import app
from runtime.times import format_ns, human_ns

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "btcusdt-1m.csv"
SMA = ("--strategy", "sma_cross", "--param", "fast=5", "--param", "slow=20")
HOLIDAYS = ((1, 1), (1, 15), (2, 19), (3, 29), (5, 27), (7, 4), (9, 2), (11, 28), (12, 25))


def tape(store: Path, *args: str, code: int = 0):
    r = CliRunner().invoke(app, ["--store", f"file:{store}", *args])
    assert r.exit_code == code, r.output
    return r


def exchange_days(first: date, last: date) -> list[date]:
    """Weekdays less nine holidays a year (each on the first weekday from its date)."""
    closed = set()
    for year in range(first.year, last.year + 1):
        for month, day in HOLIDAYS:
            d = date(year, month, day)
            while d.weekday() >= 5:
                d += timedelta(days=1)
            closed.add(d)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)
            if (first + timedelta(days=i)).weekday() < 5 and first + timedelta(days=i) not in closed]


def ingest_daily(store: Path, days: list[date]) -> None:
    """Daily bars of a stock on the given days (a wave on a trend, so that a crossover trades)."""
    rows, prev = ["date,open,high,low,close,volume"], Decimal(100)
    for i, d in enumerate(days):
        close = (Decimal(100 + 10 * math.sin(i / 9) + i * 0.05)).quantize(Decimal("0.01"))
        rows.append(f"{d.isoformat()},{prev},{max(prev, close) + 1},{min(prev, close) - 1},{close},1000000")
        prev = close
    csv = store.parent / "goog-1d.csv"
    csv.write_text("\n".join(rows) + "\n")
    tape(store, "ingest", "csv", str(csv), "--namespace", "stocks", "--instrument", "GOOG.NASDAQ", "--kind", "bars",
         "--timeframe", "1d", "--base", "GOOG", "--quote", "USD")


def ingest_minutes(store: Path, rows: int = 3000) -> None:
    """One-minute bars of a 24/7 market (the example's first rows)."""
    lines = EXAMPLE.read_text().splitlines()[: rows + 1]
    csv = store.parent / f"btc-{rows}.csv"
    csv.write_text("\n".join(lines) + "\n")
    tape(store, "ingest", "csv", str(csv), "--namespace", "src", "--instrument", "BTCUSDT.BINANCE", "--kind",
         "bars", "--timeframe", "1m", "--base", "BTC", "--quote", "USDT")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def run_config(store: Path, run: str) -> dict:
    started = next(iter(Log.open(f"file:{store}").replay(run, types=["RunStarted"])))
    return json.loads(started.data["config"])


def test_daily_bars_of_weekdays_are_annualised_with_the_trading_days_seen(store: Path) -> None:
    days = exchange_days(date(2022, 1, 3), date(2023, 12, 29))
    ingest_daily(store, days)
    out = json.loads(tape(store, "backtest", "--source", "stocks", *SMA, "--param", "quantity=100", "--json").stdout)
    s = out["statistics"]
    assert s["fills"] > 10 and s["samples"] == len(days) == 502
    # by hand: each bar's close (the next midnight) on a UTC day of its own; 501 days after the first in 724
    ppy = 365 * (len(days) - 1) / (days[-1] - days[0]).days
    assert s["periods_per_year"] == pytest.approx(ppy, rel=1e-12) and 252 < ppy < 253  # not 365
    assert "252.6 trading days a year (502 days with data in 725 calendar days) × 1 sample a trading day" \
        in s["periods_per_year_basis"]
    growth = float(Decimal(s["end_equity"]) / Decimal(s["start_equity"]))
    assert s["annualized_return"] == pytest.approx(growth ** (ppy / (len(days) - 1)) - 1, rel=1e-12)
    assert s["risk_free_rate"] == 0.0 and "statistics" not in run_config(store, out["run_id"])
    bench = out["benchmark"]["instruments"]["GOOG.NASDAQ"]
    assert Decimal(bench["first_price"]) > 0 and bench["first_ts"] == s["start_ts"]


def test_a_24_7_minute_source_has_525600_periods_a_year(store: Path) -> None:
    ingest_minutes(store)
    s = json.loads(tape(store, "backtest", "--source", "src", *SMA, "--param", "quantity=0.5", "--json").stdout)[
        "statistics"]
    assert s["periods_per_year"] == 525600 and s["trading_days_per_year"] == 365
    assert s["samples_per_trading_day"] == 1440 and "1,440 samples a trading day" in s["periods_per_year_basis"]


def test_periods_per_year_and_risk_free_rate_given_are_recorded_and_reproduced(store: Path) -> None:
    ingest_minutes(store)
    base = ("backtest", "--source", "src", *SMA, "--param", "quantity=0.5", "--json")
    inferred = json.loads(tape(store, *base).stdout)
    given = json.loads(tape(store, *base, "--periods-per-year", "252", "--risk-free-rate", "0.03").stdout)
    s = given["statistics"]
    assert given["run_id"] != inferred["run_id"]
    assert (s["periods_per_year"], s["periods_per_year_basis"], s["risk_free_rate"]) == (252, "given", 0.03)
    assert s["sharpe"] != inferred["statistics"]["sharpe"]
    assert s["total_return"] == inferred["statistics"]["total_return"]
    growth = float(Decimal(s["end_equity"]) / Decimal(s["start_equity"]))
    assert s["annualized_return"] == pytest.approx(growth ** (252 / (s["samples"] - 1)) - 1, rel=1e-12)
    assert run_config(store, given["run_id"])["statistics"] == {"periods_per_year": "252", "risk_free_rate": "0.03"}
    assert "statistics" not in run_config(store, inferred["run_id"])  # no option, no key: ids as they were
    shown = json.loads(tape(store, "runs", "show", given["run_id"], "--json").stdout)
    assert shown["statistics"] == s
    human = tape(store, "runs", "show", given["run_id"]).stdout
    assert "annualised with 252 periods a year, given (--periods-per-year" in human and "risk-free rate 3.00 %" in human
    verified = tape(store, "replay", given["run_id"], "--verify").stdout
    assert verified.startswith("identical"), verified
    bad = tape(store, *base, "--periods-per-year", "0", code=2)
    assert "periods_per_year must be > 0" in bad.stderr


def halting_run(store: Path, tmp: Path) -> tuple[str, str]:
    ingest_minutes(store)
    risk = tmp / "risk.toml"
    risk.write_text("max_order_quantity = 2\nmax_drawdown = 0.003\n")
    venue = tmp / "venue.toml"
    venue.write_text('starting_balances = { USDT = "100000" }\ntaker_fee = "0.0005"\n')
    args = ("backtest", "--source", "src", *SMA, "--param", "quantity=0.5", "--risk", str(risk), "--venue", str(venue))
    run = json.loads(tape(store, *args, "--json").stdout)["run_id"]
    return run, tape(store, *args).stdout


def test_halts_and_rejections_are_in_the_summary_with_counts_and_a_warning(store: Path, tmp_path: Path) -> None:
    run, human = halting_run(store, tmp_path)
    report = json.loads(tape(store, "runs", "show", run, "--json").stdout)
    iv = report["interventions"]
    halt = iv["halts"][0]
    assert halt["state"] == "HALTED" and halt["reason"].startswith("max_drawdown") and halt["to_ts"] is None
    assert halt["duration_ns"] == report["statistics"]["end_ts"] - halt["from_ts"] > 0
    events = list(Log.open(f"file:{store}").replay(run, types=["RiskRejected", "OrderIntent"]))
    refused = [e for e in events if e.name == "RiskRejected"]
    assert iv["rejected"] == len(refused) > 0 and iv["order_intents"] == len(events) - len(refused)
    assert iv["rejections"][0]["rule"] == "trading_state" and iv["rejections"][0]["count"] == len(refused)
    assert iv["halted_share"] > 0.1 and iv["rejected_share"] > 0.1 and len(iv["warnings"]) == 2
    assert f"halt: HALTED at {format_ns(halt['from_ts'])} for {human_ns(halt['duration_ns'])}, to the end: " \
           "max_drawdown" in human
    assert f"rejections: {len(refused):,} of {iv['order_intents']:,} order intents" in human
    assert re.search(rf"^\s+{len(refused):,}\s+risk trading_state HALTED, .* e\.g\. trading is HALTED", human, re.M)
    assert human.count("warning:") == 2 and "of the run (first HALTED: max_drawdown" in human


def test_runs_show_rejections_lists_each_one(store: Path, tmp_path: Path) -> None:
    run, _ = halting_run(store, tmp_path)
    refused = list(Log.open(f"file:{store}").replay(run, types=["RiskRejected"]))
    listed = tape(store, "runs", "show", run, "--rejections").stdout
    rows = [line for line in listed.splitlines() if re.match(r"^\d{4}-\d\d-\d\dT", line)]
    assert len(rows) == len(refused) > 0
    first = rows[0].split(maxsplit=5)
    assert first[1:5] == ["BTCUSDT.BINANCE", "risk", "trading_state", "HALTED"]
    assert first[5].strip() == refused[0].data["reason"] and first[0].startswith("20")
    assert f"{len(refused):,} rejections of" in listed
    as_json = json.loads(tape(store, "runs", "show", run, "--rejections", "--json").stdout)
    assert [r["reason"] for r in as_json["rejected"]] == [e.data["reason"] for e in refused]


def test_the_human_summary_reads_as_money_percentages_and_plain_numbers(store: Path) -> None:
    ingest_minutes(store)
    human = tape(store, "backtest", "--source", "src", *SMA, "--param", "quantity=0.5").stdout
    assert "instrument=" not in human and "fast=5 long_only=True quantity=0.5 slow=20" in human
    run_id = human.split()[1]  # a hash: its digits and letters may read like an exponent ("4e6")
    assert not re.search(r"\d[eE][+-]?\d", human.replace(run_id, "")), human  # no float in exponent form
    assert not re.search(r"\.\d{3,} USDT", human), human  # no money beyond 2 places
    for label in ("start equity", "end equity", "fees", "traded notional"):
        assert re.search(rf"^{label}\s+-?\d{{1,3}}(,\d{{3}})*\.\d\d USDT", human, re.M), (label, human)
    assert re.search(r"^total return\s+[+-]\d+\.\d\d %", human, re.M)
    assert re.search(r"^buy and hold\s+[+-]\d+\.\d\d %\s+BTCUSDT\.BINANCE 42,022\.38 → ", human, re.M)
    assert re.search(r"^period\s+2024-01-01T00:01:00Z → 2024-01-03T02:00:00Z\s+\(2d 1h 59m; 3,000 samples\)", human,
                     re.M)
    assert re.search(r"^exposure\s+\d+\.\d\d %", human, re.M)
    assert "starting balance 1,000,000.00 USDT (default)" in human  # the defaults that applied
    assert "volume cap 100 % of each event's volume (default)" in human and "(from the instrument definitions)" in human
    assert "market orders fill at the next event's first price (default); latency 0 (default)" in human
    assert re.search(r"^open at the end: (none \(flat\)|BTCUSDT\.BINANCE long 0\.5 at [\d,]+\.\d\d, mark [\d,.]+, "
                     r"open PnL [+-][\d,]+\.\d\d USDT)$", human, re.M)
    assert "halts: none" in human and "rejections: none of" in human and "warning" not in human


def test_json_keeps_full_precision_and_carries_the_equity_curve(store: Path) -> None:
    ingest_minutes(store)
    out = json.loads(tape(store, "backtest", "--source", "src", *SMA, "--param", "quantity=0.5", "--json").stdout)
    s, curve = out["statistics"], out["equity_curve"]
    assert len(curve) == s["samples"] and set(curve[0]) == {"time", "ts", "equity", "drawdown"}
    assert curve[0]["time"] == "2024-01-01T00:01:00Z" and curve[0]["ts"] == s["start_ts"]
    assert curve[-1]["equity"] == s["end_equity"] and len(s["end_equity"].split(".")[1]) > 2  # full precision
    assert max(row["drawdown"] for row in curve) == pytest.approx(s["max_drawdown"], rel=1e-15)
    assert all(row["drawdown"] >= 0 for row in curve)
    shown = json.loads(tape(store, "runs", "show", out["run_id"], "--json").stdout)
    assert shown["equity_curve"] == curve and shown["benchmark"] == out["benchmark"]
    assert shown["interventions"] == out["interventions"] and shown["venue"] == out["venue"]


def test_the_settings_that_applied_defaults_included_are_recorded_in_run_started(store: Path, tmp_path: Path) -> None:
    run, _ = halting_run(store, tmp_path)  # its venue file gives the starting balance and the taker fee
    (started,) = [e.data for e in Log.open(f"file:{store}").replay(run, types=["RunStarted"])]
    applied = json.loads(started["applied"])
    shown = json.loads(tape(store, "runs", "show", run, "--json").stdout)["venue"]
    assert applied == json.loads(json.dumps(shown, default=str))  # what the summary prints is what was recorded
    assert applied["starting_balances"] == {"USDT": "100000"} and applied["fee_rates_from"] == "venue config"
    assert "starting_balances" not in applied["defaults"] and "fees" not in applied["defaults"]
    assert {"volume_participation", "market_fill", "latency_ns", "account_type"} <= set(applied["defaults"])
