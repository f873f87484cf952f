"""`tape ingest exchange` against the sandbox venue (the real ccxt library over HTTP, its klines endpoint): the bars
are the venue's, exactly, once each; a re-run resumes; SIGKILLs at random points under 5xx answers leave whole pages
and the re-run completes without a duplicate; gaps are reported, never filled; bad input is one line, exit 2."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "runtime" / "sandbox"))
from sandboxkit import CLI, MINUTE_NS, T0_NS, Sandbox, py_env, write_history  # noqa: E402

from eventstore.store import Log  # noqa: E402
from eventstore.writer import Draft  # noqa: E402


def tape(store: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, "--store", f"file:{store}", *args], env=py_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


def fetch(store: Path, sb: Sandbox, *extra: str, namespace: str = "ex") -> subprocess.CompletedProcess:
    return tape(store, "ingest", "exchange", "binance", "BTC/USDT", "--timeframe", "1m", "--since", "2024-01-01",
                "--namespace", namespace, "--sandbox-url", sb.url, *extra)


def bars(store: Path, namespace: str) -> list[tuple]:
    log = Log.open(f"file:{store}")
    try:
        return [(e.ts_event, *(e.data[k] for k in ("open_ts", "open", "high", "low", "close", "volume")))
                for e in log.replay(namespace, types=["Bar"])]
    finally:
        log.close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    write_history(store, "hist", bars=3000)
    return store


def test_the_bars_are_the_venues_exactly_and_a_rerun_resumes(store: Path) -> None:
    with Sandbox(store, "hist", speed="0") as sb:
        sb.post("/sandbox/step", {"events": 1500})  # the venue's market has reached bar 1,500
        p = fetch(store, sb, "--page-size", "400")
        assert p.returncode == 0, p.stderr
        assert "1,500 1m bars of BTCUSDT.BINANCE" in p.stdout and "in 4 pages" in p.stdout
        assert "instrument defined from the exchange's market" in p.stdout and "gap" not in p.stdout
        source = bars(store, "hist")
        assert bars(store, "ex") == source[:1500]  # open time, close time, OHLCV: exact, in order, once each
        sb.post("/sandbox/step", {"events": 700})
        again = fetch(store, sb)
        assert again.returncode == 0, again.stderr
        assert "resumed after the bar opening 2024-01-02T00:59:00Z" in again.stdout and "700 1m bars" in again.stdout
        assert bars(store, "ex") == source[:2200]
        nothing = fetch(store, sb)
        assert "no new closed 1m bars" in nothing.stdout and bars(store, "ex") == source[:2200]
    log = Log.open(f"file:{store}")
    (inst,) = [e.data for e in log.replay("ex", types=["InstrumentDefined"])]
    pages = [e.data for e in log.replay("ex", types=["HistoryImported"])]
    log.close()
    assert (inst["price_increment"], inst["size_increment"], inst["min_notional"]) == (
        Decimal("0.01"), Decimal("0.00001"), Decimal("10"))
    assert sum(p["rows"] for p in pages) == 2200 and pages[-1]["last_ts"] == source[2199][0]


def test_sigkills_at_random_points_under_5xx_answers_leave_whole_pages_and_the_rerun_completes(store: Path) -> None:
    faults = "http_5xx_json:0.3@GET /api/v3/klines"  # retried with backoff: pages come slowly, kills land mid-run
    with Sandbox(store, "hist", speed="0", extra=("--seed", "4", "--faults", faults)) as sb:
        rng = random.Random(21)
        argv = [sys.executable, "-c", CLI, "--store", f"file:{store}", "ingest", "exchange", "binance", "BTC/USDT",
                "--timeframe", "1m", "--since", "2024-01-01", "--namespace", "ex", "--sandbox-url", sb.url,
                "--page-size", "20"]
        kills = 0
        for _ in range(6):  # the venue's market grows by 500 bars a round: every round has pages to fetch
            sb.post("/sandbox/step", {"events": 500})
            proc = subprocess.Popen(argv, env=py_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(1.0, 2.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            proc.stderr.close()  # type: ignore[union-attr]
            held = bars(store, "ex") if "ex" in Log.open(f"file:{store}").namespaces() else []
            assert held == bars(store, "hist")[: len(held)]  # a committed prefix: whole pages, nothing torn
        assert kills >= 3
        sb.clear_faults()
        p = fetch(store, sb)
        assert p.returncode == 0, p.stderr
        assert bars(store, "ex") == bars(store, "hist")  # every bar once: none lost, none twice


def test_a_gap_at_the_venue_is_reported_and_not_filled(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_history(store, "hist", bars=1)
    log = Log.open(f"file:{store}")
    with log.writer("hist") as w:  # bars 1..99 and 110..199: ten minutes the venue never traded
        w.append([Draft("Bar", {"instrument_id": "BTCUSDT.BINANCE", "timeframe": "1m", "open_ts": T0_NS + i * MINUTE_NS,
                                "open": Decimal(42000), "high": Decimal(42001), "low": Decimal(41999),
                                "close": Decimal(42000), "volume": Decimal(1), "trades": 1},
                         T0_NS + (i + 1) * MINUTE_NS, "BTCUSDT.BINANCE", "test")
                  for i in [*range(1, 100), *range(110, 200)]])
    log.close()
    with Sandbox(store, "hist", speed="0") as sb:
        sb.post("/sandbox/step", {"events": 190})
        p = fetch(store, sb, "--page-size", "50")
        assert p.returncode == 0, p.stderr
    assert "gap: 10 bars missing from 2024-01-01T01:40:00Z to 2024-01-01T01:50:00Z" in p.stdout
    assert [b[1] for b in bars(store, "ex")] == [b[1] for b in bars(store, "hist")]


def test_bad_requests_are_one_line_exit_2(store: Path, tmp_path: Path) -> None:
    with Sandbox(store, "hist", speed="0") as sb:
        sb.post("/sandbox/step", {"events": 10})
        cases = [
            (("ingest", "exchange", "nosuchex", "BTC/USDT", "--timeframe", "1m", "--since", "2024-01-01",
              "--namespace", "ex"), "unknown venue 'nosuchex'"),
            (("ingest", "exchange", "coincheck", "BTC/JPY", "--timeframe", "1m", "--since", "2024-01-01",
              "--namespace", "ex"), "coincheck has no fetchOHLCV"),
            (("ingest", "exchange", "binance", "DOGE/EUR", "--timeframe", "1m", "--since", "2024-01-01",
              "--namespace", "ex", "--sandbox-url", sb.url), "does not list 'DOGE/EUR'"),
            (("ingest", "exchange", "binance", "BTC/USDT", "--timeframe", "7q", "--since", "2024-01-01",
              "--namespace", "ex", "--sandbox-url", sb.url), "bad timeframe"),
            (("ingest", "exchange", "binance", "BTC/USDT", "--timeframe", "1m", "--since", "2024-01-02",
              "--until", "2024-01-01", "--namespace", "ex", "--sandbox-url", sb.url), "must be after --since"),
            (("ingest", "exchange", "binance", "BTC/USDT", "--timeframe", "1m", "--since", "2024-01-01",
              "--namespace", "ex", "--sandbox-url", "http://127.0.0.1:9"), "did not answer"),
        ]
        for args, message in cases:
            p = tape(store, *args)
            err = p.stderr.strip()
            assert p.returncode == 2 and err.startswith("error: ") and message in err and "\n" not in err, (args, err)
    assert "ex" not in Log.open(f"file:{store}").namespaces()  # nothing written half way


def test_trades_are_the_venues_prints_once_each_and_a_rerun_resumes(store: Path) -> None:
    with Sandbox(store, "hist", speed="0") as sb:
        sb.post("/sandbox/step", {"events": 120})  # 120 bars' prints
        p = fetch(store, sb, "--trades", "--page-size", "100")
        assert p.returncode == 0, p.stderr
        assert "1m bars of BTCUSDT.BINANCE" in p.stdout and " trades of BTCUSDT.BINANCE" in p.stdout

        def prints() -> list[tuple]:
            rows = sb.get("/api/v3/aggTrades?symbol=BTCUSDT&fromId=0&limit=1000")
            return [(str(r["a"]), Decimal(r["p"]), Decimal(r["q"]), r["T"] * 1_000_000,
                     "SELLER" if r["m"] else "BUYER") for r in rows]

        def ticks() -> list[tuple]:
            log = Log.open(f"file:{store}")
            try:
                return [(e.data["trade_id"], e.data["price"], e.data["quantity"], e.ts_event, e.data["aggressor_side"])
                        for e in log.replay("ex", types=["TradeTick"])]
            finally:
                log.close()

        assert ticks() == prints() and len(ticks()) > 100  # each print once, exact, in time order
        sb.post("/sandbox/step", {"events": 60})
        again = fetch(store, sb, "--trades")
        assert again.returncode == 0, again.stderr
        assert "resumed after the trades at" in again.stdout
        assert ticks() == prints()  # the new prints, none twice
    assert "name what to fetch" in tape(store, "ingest", "exchange", "binance", "BTC/USDT", "--since", "2024-01-01",
                                        "--namespace", "ex").stderr
