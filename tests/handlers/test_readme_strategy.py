"""The README's example strategy, run as a user runs it: its text copied to a file, given to `tape backtest` as
./file.py:Class from the user's directory; an edited file is a new run; its snapshot restores."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from eventstore.store import Log
from projections.snapshot import read_snapshot

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "btcusdt-1m.csv"


def readme_strategy() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Writing a strategy"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def tape(cwd: Path, store: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.cli", "--store", f"file:{store}", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_readme_strategy_runs_from_a_file_trades_with_limits_and_restores(tmp_path: Path) -> None:
    (tmp_path / "dip_buyer.py").write_text(readme_strategy())
    store = tmp_path / "store"
    csv = tmp_path / "btc.csv"
    csv.write_text("\n".join(EXAMPLE.read_text().splitlines()[:3001]) + "\n")
    p = tape(tmp_path, store, "ingest", "csv", str(csv), "--namespace", "src", "--instrument", "BTCUSDT.BINANCE",
             "--kind", "bars", "--timeframe", "1m", "--base", "BTC", "--quote", "USDT")
    assert p.returncode == 0, p.stderr
    args = ("backtest", "--source", "src", "--strategy", "./dip_buyer.py:DipBuyer", "--param", "window=30",
            "--param", "patience=5", "--snapshot-every", "2000", "--json")
    p = tape(tmp_path, store, *args)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    run = out["run_id"]
    log = Log.open(f"file:{store}")
    events = list(log.replay(run))
    names = [e.name for e in events]
    submitted = [e.data for e in events if e.name == "OrderSubmitted"]
    fills = [e.data for e in events if e.name == "OrderFilled"]
    assert {o["order_type"] for o in submitted} == {"LIMIT"} and {f["side"] for f in fills} == {"BUY", "SELL"}
    assert "OrderCanceled" in names and out["statistics"]["round_trips"] > 3
    started = events[0].data
    assert started["strategy"] == "./dip_buyer.py:DipBuyer" and "+strategy." in started["code_version"]

    # the snapshot carries the strategy's state, and restore continues from exactly it
    from handlers.strategy import load_strategy, parse_params

    cls = load_strategy(str(tmp_path / "dip_buyer.py") + ":DipBuyer")
    snaps = [e for e in events if e.name == "SnapshotTaken"]
    assert snaps
    snap = read_snapshot(snaps[-1].data, log.catalog, log.registry(run))
    fresh = cls(parse_params(cls, {"window": "30", "patience": "5"}), None)
    fresh.restore(snap.strategy_state)
    assert fresh.snapshot() == snap.strategy_state and fresh.averages

    p = tape(tmp_path, store, *args)  # the same command: the stored result
    assert p.returncode == 0 and json.loads(p.stdout)["run_id"] == run and "ran before" in p.stderr
    with open(tmp_path / "dip_buyer.py", "a") as f:
        f.write("\n# an edit: the same trades, other code\n")
    p = tape(tmp_path, store, *args)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["run_id"] != run  # other code, another run — never the old code's result


def test_a_strategy_that_cannot_be_loaded_is_named_in_one_line(tmp_path: Path) -> None:
    store = tmp_path / "store"
    csv = tmp_path / "btc.csv"
    csv.write_text("\n".join(EXAMPLE.read_text().splitlines()[:50]) + "\n")
    assert tape(tmp_path, store, "ingest", "csv", str(csv), "--namespace", "src", "--instrument", "BTCUSDT.BINANCE",
                "--kind", "bars", "--timeframe", "1m", "--base", "BTC", "--quote", "USDT").returncode == 0
    (tmp_path / "broken.py").write_text("import nothing_of_that_name\n")
    (tmp_path / "mine.py").write_text("class NotAStrategy:\n    pass\n")
    for spec, want in (("./missing.py:X", "no file"), ("./broken.py:X", "ModuleNotFoundError"),
                       ("mine:NotAStrategy", "not a tape Strategy"), ("mine:Absent", "has no class 'Absent'")):
        p = tape(tmp_path, store, "backtest", "--source", "src", "--strategy", spec)
        assert p.returncode != 0 and want in p.stderr and "Traceback" not in p.stderr, (spec, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
