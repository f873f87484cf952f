"""Runs a trader can trust: pinned to the source they read, with a status, replaced when incomplete, shown when
complete, removed on request — through `tape` as a user runs it (subprocesses where a run is killed or interrupted).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from eventstore.store import Log

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "btcusdt-1m.csv"
IID = "BTCUSDT.BINANCE"
BT = ("backtest", "--source", "src", "--strategy", "sma_cross", "--param", "fast=5", "--param", "slow=20",
      "--param", "quantity=0.5")


def tape(store: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "runtime.cli", "--store", f"file:{store}", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env=env, check=False)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def one_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, (p.stdout, p.stderr)
    return p.stderr


def ingest(store: Path, first: int, last: int, namespace: str = "src", iid: str = IID) -> None:
    lines = EXAMPLE.read_text().splitlines()
    csv = store.parent / f"bars-{namespace}-{first}-{last}.csv"
    csv.write_text("\n".join([lines[0], *lines[1 + first:1 + last]]) + "\n")
    tape(store, "ingest", "csv", str(csv), "--namespace", namespace, "--instrument", iid, "--kind", "bars",
         "--timeframe", "1m", "--base", iid[:3], "--quote", "USDT")


def run_id(p: subprocess.CompletedProcess) -> str:
    return json.loads(p.stdout)["run_id"]


def statuses(store: Path) -> dict[str, str]:
    out = {}
    for line in tape(store, "runs", "list").stdout.splitlines():
        if line.strip().startswith("bt-"):
            run, status = line.split()[:2]
            out[run] = status
    return out


@pytest.fixture
def store(tmp_path: Path) -> Path:
    s = tmp_path / "store"
    s.parent.mkdir(parents=True, exist_ok=True)
    ingest(s, 0, 3000)
    return s


def test_a_run_reads_the_source_as_it_was_and_a_grown_source_is_another_run(store: Path) -> None:
    first = tape(store, *BT, "--json")
    run = run_id(first)
    shown = json.loads(tape(store, "runs", "show", run, "--json").stdout)
    assert shown["statistics"] == json.loads(first.stdout)["statistics"] and shown["source_to_seq"] > 0
    ingest(store, 3000, 4000)  # the source grows after the run
    assert json.loads(tape(store, "runs", "show", run, "--json").stdout)["statistics"] == shown["statistics"]
    verified = tape(store, "replay", run, "--verify")
    assert "diverge" not in verified.stdout.lower(), verified.stdout
    grown = tape(store, *BT, "--json")
    assert run_id(grown) != run  # the same command over more data: another run, its own numbers
    assert json.loads(grown.stdout)["statistics"] != shown["statistics"]


def test_the_run_id_is_the_content_address_of_the_source_it_read(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n / "store" for n in "abc")
    for s in (a, b, c):
        s.parent.mkdir(parents=True)
    ingest(a, 0, 3000)
    ingest(c, 0, 3000)  # the same file into another store: the same content, the same run
    ingest(b, 0, 1500)  # the same bars in two imports: another history (another import record between them)
    ingest(b, 1500, 3000)
    ra, rb, rc = (run_id(tape(s, *BT, "--json")) for s in (a, b, c))
    assert ra == rc and rb != ra


def test_a_complete_run_is_shown_again_not_rerun_unless_forced(store: Path) -> None:
    first = tape(store, *BT, "--json")
    again = tape(store, *BT, "--json")
    assert run_id(again) == run_id(first) and "content address" in again.stderr
    assert json.loads(again.stdout)["statistics"] == json.loads(first.stdout)["statistics"]
    forced = tape(store, *BT, "--json", "--force")
    assert "replacing run" in forced.stderr and run_id(forced) == run_id(first)
    assert statuses(store) == {run_id(first): "complete"}


STRATEGY = '''
    import os
    import time

    from handlers.strategies.sma_cross import SmaCross


    class Slow(SmaCross):
        """sma_cross that takes its time (and fails at a chosen bar): a run long enough to kill."""

        name = "slow"

        def on_bar(self, bar):
            self.n = getattr(self, "n", 0) + 1
            if self.n == int(os.environ.get("FAIL_AT", "0")):
                raise RuntimeError(f"strategy broke at bar {self.n}")
            time.sleep(float(os.environ.get("BAR_SLEEP", "0")))
            super().on_bar(bar)
'''


def slow_env(tmp_path: Path, **extra: str) -> dict:
    (tmp_path / "slowstrat.py").write_text(textwrap.dedent(STRATEGY))
    return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", **extra}


SLOW = ("backtest", "--source", "src", "--strategy", "slowstrat:Slow", "--param", "fast=5", "--param", "slow=20",
        "--param", "quantity=0.5", "--snapshot-every", "200")


def test_a_killed_run_is_interrupted_has_no_statistics_and_the_same_command_replaces_it(store, tmp_path) -> None:
    env = slow_env(tmp_path, BAR_SLEEP="0.002")
    p = subprocess.Popen([sys.executable, "-m", "runtime.cli", "--store", f"file:{store}", *SLOW, "--json"], cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    log = Log.open(f"file:{store}")
    while time.monotonic() < deadline:
        runs = [ns for ns in log.namespaces() if ns.startswith("bt-")]
        if runs:
            break
        time.sleep(0.05)
    time.sleep(1.5)  # the run takes 6 s or more
    assert p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.communicate()
    (run,) = runs
    assert statuses(store) == {run: "interrupted"}
    why = one_line(tape(store, "runs", "show", run, check=False))
    assert "is interrupted" in why and "no RunStopped" in why
    done = tape(store, *SLOW, "--json", env={**env, "BAR_SLEEP": "0"})
    assert run_id(done) == run and "replacing run" in done.stderr
    assert statuses(store) == {run: "complete"}
    log.close()


def test_ctrl_c_keeps_what_was_committed_marked_interrupted(store, tmp_path) -> None:
    env = slow_env(tmp_path, BAR_SLEEP="0.002")
    p = subprocess.Popen([sys.executable, "-m", "runtime.cli", "--store", f"file:{store}", *SLOW], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.startswith("interrupted: run bt-") and "marked interrupted" in err and "Traceback" not in err
    (run,) = statuses(store)
    assert statuses(store)[run] == "interrupted"
    log = Log.open(f"file:{store}")
    last = list(log.replay(run))[-1]
    assert (last.name, last.data["reason"]) == ("RunStopped", "interrupted")
    log.close()


def test_a_failed_run_says_why_and_is_replaced_by_the_same_command(store, tmp_path) -> None:
    env = slow_env(tmp_path, FAIL_AT="500")
    failed = tape(store, *SLOW, env=env, check=False)
    assert failed.returncode != 0
    (run,) = statuses(store)
    listed = tape(store, "runs", "list").stdout
    assert "failed: strategy broke at bar 500" in listed
    assert "is failed (strategy broke at bar 500)" in one_line(tape(store, "runs", "show", run, check=False))
    ok = tape(store, *SLOW, "--json", env={**env, "FAIL_AT": "0"})
    assert run_id(ok) == run and statuses(store) == {run: "complete"}


def test_bad_inputs_are_refused_before_a_run_namespace_exists(store: Path) -> None:
    before = Log.open(f"file:{store}").namespaces()
    assert "no namespace 'srcx'" in one_line(tape(store, "backtest", "--source", "srcx", "--strategy", "sma_cross",
                                                  check=False))
    assert "fast < slow" in one_line(tape(store, *BT, "--param", "fast=30", check=False))
    assert "no market events" in one_line(tape(store, *BT, "--from", "2030-01-01", check=False))
    assert Log.open(f"file:{store}").namespaces() == before


def test_runs_rm_deletes_the_run_and_its_read_model_rows(store: Path) -> None:
    import sqlalchemy as sa

    run = run_id(tape(store, *BT, "--json"))
    tape(store, "db", "upgrade")
    tape(store, "project", run)
    db = sa.create_engine(f"sqlite:///{store / 'tape.sqlite'}")

    def rows() -> int:
        with db.connect() as c:
            return c.execute(sa.text("select count(*) from orders where namespace = :n"), {"n": run}).scalar()

    assert rows() > 0
    assert tape(store, "runs", "rm", run).stdout == f"removed {run}\n"
    assert rows() == 0 and run not in Log.open(f"file:{store}").namespaces()
    assert "no run" in one_line(tape(store, "runs", "rm", run, check=False))
    assert "is not a run" in one_line(tape(store, "runs", "rm", "src", check=False))
    assert "src" in Log.open(f"file:{store}").namespaces()
