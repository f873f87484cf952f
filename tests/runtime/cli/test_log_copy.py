"""`tape log copy`: a namespace moves between stores with the same record bytes, and resumes."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from eventstore.store import Log
from eventstore.writer import Draft
from runtime.cli.app import app

T0 = 1_700_000_000_000_000_000


def _write(log: Log, ns: str, start: int, n: int) -> None:
    with log.writer(ns) as w:
        for i in range(start, start + n):
            w.append([Draft("TradeTick", {"instrument_id": "X.SIM", "price": Decimal(i) / 8, "quantity": Decimal("0.1"),
                                          "aggressor_side": "BUYER", "trade_id": str(i)}, T0 + i, "X.SIM", "test")])


def _values(log: Log, ns: str) -> list[tuple[int, bytes]]:
    return [(e.seq, e.value) for e in log.replay(ns)]


def test_copy_file_to_file_is_byte_identical_and_resumes(tmp_path: Path) -> None:
    src, dst = f"file:{tmp_path / 'a'}", f"file:{tmp_path / 'b'}"
    _write(Log.open(src), "hist", 0, 30)
    r = CliRunner().invoke(app, ["log", "copy", src, dst, "--namespace", "hist"])
    assert r.exit_code == 0, r.output
    assert "30 events copied" in r.stdout
    _write(Log.open(src), "hist", 30, 12)
    r = CliRunner().invoke(app, ["log", "copy", src, dst, "--namespace", "hist"])
    assert "12 events copied" in r.stdout
    assert _values(Log.open(src), "hist") == _values(Log.open(dst), "hist")
    seg = "hist/market-0/00000000000000000000.log"
    assert (tmp_path / "a" / seg).read_bytes() == (tmp_path / "b" / seg).read_bytes()


def test_copy_to_kafka_and_back(tmp_path: Path, kafka_bootstrap) -> None:
    bootstrap = getattr(kafka_bootstrap, "bootstrap", kafka_bootstrap)
    src, mid, dst = f"file:{tmp_path / 'a'}", f"kafka://{bootstrap}", f"file:{tmp_path / 'c'}"
    ns = f"copy-{tmp_path.name[-8:]}".replace("_", "-")
    _write(Log.open(src), ns, 0, 25)
    for a, b in ((src, mid), (mid, dst)):
        r = CliRunner().invoke(app, ["log", "copy", a, b, "--namespace", ns])
        assert r.exit_code == 0, r.output
    assert _values(Log.open(src), ns) == _values(Log.open(dst), ns)


def test_copy_of_a_missing_namespace_is_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["log", "copy", f"file:{tmp_path}", f"file:{tmp_path / 'x'}", "--namespace", "nope"])
    assert r.exit_code == 2 and "nope" in r.stderr and "Traceback" not in r.output


# `tape log copy` that SIGKILLs itself as it is about to append its k-th commit record: the data batches of that
# commit are written, the record that would commit them is not (the worst point for a resume)
KILLED_BEFORE_COMMIT = (
    "import os, signal, sys\n"
    "from eventstore import partition\n"
    "k, n = int(os.environ['KILL_AT_COMMIT']), [0]\n"
    "append = partition.Partition.append\n"
    "def dying(self, records):\n"
    "    if self.path.name == '_commits':\n"
    "        n[0] += 1\n"
    "        if n[0] == k:\n"
    "            os.kill(os.getpid(), signal.SIGKILL)\n"
    "    return append(self, records)\n"
    "partition.Partition.append = dying\n"
    "if os.environ.get('NO_DISCARD'):  # the negative control: a destination that keeps what a kill left\n"
    "    from eventstore import filelog\n"
    "    filelog.FileLog.discards_uncommitted = False\n"
    "from runtime.cli.app import main\n"
    "sys.argv[0] = 'tape'\n"
    "main()\n")


def test_a_copy_killed_between_its_data_and_its_commit_resumes_and_ends_byte_identical(tmp_path: Path) -> None:
    """SIGKILLs of `tape log copy` file → file with a commit's batches written and its record not, again and again:
    every re-run resumes (the uncommitted tail is the copy's own: cut, written again), and the copy ends byte for
    byte the copy that was never interrupted."""
    import os
    import subprocess
    import sys

    rows = ["time,open,high,low,close,volume"]
    for i in range(30_000):
        p = 100 + (i * 37) % 23
        rows.append(f"{1_704_067_260 + 60 * i},{p},{p + 1},{p - 1},{p}.5,{1 + i % 5}")
    csv = tmp_path / "bars.csv"
    csv.write_text("\n".join(rows) + "\n")
    src, ref, dst = (f"file:{tmp_path / d}" for d in ("src", "ref", "dst"))
    r = CliRunner().invoke(app, ["--store", src, "ingest", "csv", str(csv), "--namespace", "h", "--instrument",
                                 "X.SIM", "--kind", "bars", "--timeframe", "1m", "--base", "X", "--quote", "USD",
                                 "--batch-rows", "1000"])  # 30 commits
    assert r.exit_code == 0, r.output
    assert CliRunner().invoke(app, ["log", "copy", src, ref, "--namespace", "h"]).exit_code == 0
    root = Path(__file__).resolve().parents[3]
    argv = [sys.executable, "-c", KILLED_BEFORE_COMMIT, "log", "copy", src, dst, "--namespace", "h"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    horizons = []
    for k in (1, 4, 2, 7, 3):  # each run dies at its k-th commit record
        p = subprocess.run(argv, cwd=root, env={**env, "KILL_AT_COMMIT": str(k)}, capture_output=True, text=True,
                           timeout=120, check=False)
        assert p.returncode == -9, p.stderr[-2000:]  # it died where it was told to, not refusing to resume
        horizons.append(Log.open(dst).horizon("h"))
        seg = tmp_path / "dst" / "h" / "market-0" / "00000000000000000000.log"
        assert sum(1 for _ in Log.open(dst).replay("h")) == horizons[-1] and seg.stat().st_size > 0
    assert horizons == sorted(horizons) and horizons[0] == 0 < horizons[-1]  # each run went further
    r = CliRunner().invoke(app, ["log", "copy", src, dst, "--namespace", "h"])
    assert r.exit_code == 0, r.output
    assert _values(Log.open(dst), "h") == _values(Log.open(src), "h")
    logs = sorted(p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("*.log"))
    assert logs == sorted(p.relative_to(tmp_path / "dst") for p in (tmp_path / "dst").rglob("*.log"))
    for p in logs:  # segments and journal, byte for byte (indexes are derived: rebuilt where a run resumed)
        assert (tmp_path / "ref" / p).read_bytes() == (tmp_path / "dst" / p).read_bytes(), p


def test_the_resume_test_catches_a_copy_that_keeps_what_a_kill_left(tmp_path: Path) -> None:
    """Negative control: with the uncommitted tail kept (no discard), the run after a kill refuses — what the test
    above would catch."""
    import os
    import subprocess
    import sys

    src, dst = f"file:{tmp_path / 'src'}", f"file:{tmp_path / 'dst'}"
    _write(Log.open(src), "h", 0, 40)  # 40 commits
    root = Path(__file__).resolve().parents[3]
    argv = [sys.executable, "-c", KILLED_BEFORE_COMMIT, "log", "copy", src, dst, "--namespace", "h"]
    env = {**os.environ, "PYTHONPATH": str(root), "NO_DISCARD": "1"}
    died = subprocess.run(argv, cwd=root, env={**env, "KILL_AT_COMMIT": "3"}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert died.returncode == -9, died.stderr[-2000:]
    again = subprocess.run(argv, cwd=root, env={**env, "KILL_AT_COMMIT": "0"}, capture_output=True, text=True,
                           timeout=120, check=False)
    assert again.returncode == 2 and "uncommitted records after seq" in again.stderr, again.stderr[-2000:]
