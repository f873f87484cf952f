"""The installed `tape` console script as a real process: errors, pipes, follow mode and a SIGKILLed import."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eventstore.store import Log

TAPE = Path(sys.executable).parent / "tape"
INSTR = ["--instrument", "BTCUSDT.BINANCE", "--kind", "trades"]

pytestmark = pytest.mark.skipif(not TAPE.exists(), reason="the tape console script is not installed in this venv")


def run(store, *args, **kw):
    return subprocess.run([str(TAPE), "--store", f"file:{store}", *args], capture_output=True, text=True, timeout=120, **kw)


def count(store, ns, type_):
    return sum(1 for _ in Log.open(f"file:{store}").replay(ns, types=[type_]).records())


def test_console_script_round_trip(store, write_trades):
    r = run(store, "ingest", "csv", str(write_trades(n=50)), "--namespace", "hist", *INSTR)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("trades.csv → hist: 50 rows read, 52 events written, 0 skipped")
    assert r.stderr == ""  # no progress bar when not on a terminal
    dump = run(store, "log", "dump", "hist", "--json", "--type", "TradeTick")
    assert dump.returncode == 0
    events = [json.loads(line) for line in dump.stdout.splitlines()]
    assert len(events) == 50 and all(isinstance(e["data"]["price"], str) for e in events)


def test_console_script_errors_are_one_line(tmp_path):
    r = run(tmp_path / "missing", "log", "namespaces")
    assert r.returncode == 2
    assert r.stderr.startswith("error: store ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stdout == ""
    r = run(tmp_path / "missing", "log", "dump", "x", "--from", "noon")
    assert r.returncode == 2 and r.stderr.startswith("error: --from: bad time 'noon'") and r.stderr.count("\n") == 1


def test_broken_pipe_is_quiet(store, write_trades):
    assert run(store, "ingest", "csv", str(write_trades(n=20000)), "--namespace", "hist", *INSTR).returncode == 0
    p = subprocess.run(f"'{TAPE}' --store 'file:{store}' log dump hist | head -n 3", shell=True, capture_output=True,
                       text=True, timeout=120)
    assert len(p.stdout.splitlines()) == 3
    assert p.stderr == ""


def test_follow_sees_new_events(store, write_trades, make_trades):
    rows = make_trades(30)
    assert run(store, "ingest", "csv", str(write_trades("a.csv", rows=rows[:20])), "--namespace", "hist", *INSTR).returncode == 0
    existing = count(store, "hist", "TradeTick") + 2  # + definition + HistoryImported
    follower = subprocess.Popen([str(TAPE), "--store", f"file:{store}", "log", "dump", "hist", "--json", "--follow",
                                 "--limit", str(existing + 10)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert follower.poll() is None  # still waiting for more
        assert run(store, "ingest", "csv", str(write_trades("b.csv", rows=rows)), "--namespace", "hist",
                   *INSTR).returncode == 0
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    seqs = [json.loads(line)["seq"] for line in out.splitlines()]
    assert seqs == list(range(1, existing + 11))


def test_sigkill_during_import_then_rerun_completes_without_duplicates(store, write_trades):
    n = 60000
    path = write_trades("big.csv", n=n)
    args = [str(TAPE), "--store", f"file:{store}", "ingest", "csv", str(path), "--namespace", "hist", *INSTR,
            "--batch-rows", "1000"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (store / "hist" / "namespace.json").exists() and count(store, "hist", "HistoryImported") >= 3:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the import finished before it could be killed: make the file larger"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    partial = count(store, "hist", "TradeTick")
    assert 3000 <= partial < n
    assert partial % 1000 == 0  # whole steps only: a torn step is never seen

    r = run(store, "ingest", "csv", str(path), "--namespace", "hist", *INSTR, "--batch-rows", "1000")
    assert r.returncode == 0, r.stderr
    assert f"{n} rows read" in r.stdout and f"{partial} skipped" in r.stdout
    ids = [e.data["trade_id"] for e in Log.open(f"file:{store}").replay("hist", types=["TradeTick"])]
    assert ids == [str(i) for i in range(1, n + 1)]
    hist = [e.data for e in Log.open(f"file:{store}").replay("hist", types=["HistoryImported"])]
    assert sum(h["rows"] for h in hist) == n
    assert count(store, "hist", "InstrumentDefined") == 1
    again = run(store, "ingest", "csv", str(path), "--namespace", "hist", *INSTR)
    assert f"0 events written, {n} skipped" in again.stdout
