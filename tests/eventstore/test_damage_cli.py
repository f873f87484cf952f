"""Damage as the user meets it: `tape log dump` and a writer (`tape ingest csv`) as real processes — the right
answer, or one line on stderr naming the file and byte, exit 2, never a traceback."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli.app import app

TAPE = Path(sys.executable).parent / "tape"
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
pytestmark = pytest.mark.skipif(not TAPE.exists(), reason="the tape console script is not installed in this venv")


def _csv(path: Path, first: int, n: int) -> Path:
    """n one-minute bars from minute `first` on, as a CSV file."""
    lines = ["time,open,high,low,close,volume"]
    for i in range(first, first + n):
        o, c = 100 + i % 7, 100 + (i * 3) % 7
        lines.append(f"{T0 + 60 * i},{o},{max(o, c) + 1},{min(o, c) - 1},{c}.5,{1 + i % 5}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(store: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(TAPE), "--store", f"file:{store}", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def _ingest(store: Path, csv: Path) -> subprocess.CompletedProcess:
    return _run(store, "ingest", "csv", str(csv), "--namespace", "hist", "--instrument", "BTCUSDT.BINANCE",
                "--kind", "bars", "--timeframe", "1m", "--base", "BTC", "--quote", "USDT")


@pytest.fixture
def hist(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    r = _ingest(store, _csv(tmp_path / "a.csv", 0, 400))
    assert r.returncode == 0, r.stderr
    return store


def _refused(r: subprocess.CompletedProcess, path: Path) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert str(path) in r.stderr and "byte" in r.stderr, r.stderr


@pytest.mark.parametrize("where", ["namespace.json", "registry"])
def test_a_flipped_byte_in_metadata_is_one_line_for_dump_and_for_a_writer(hist: Path, tmp_path: Path, where):
    nsd = hist / "hist"
    path = nsd / "namespace.json" if where == "namespace.json" else min((nsd / "_schemas").glob("*.avsc"))
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # not UTF-8 any more: today a UnicodeDecodeError traceback from every command
    path.write_bytes(bytes(data))
    _refused(_run(hist, "log", "dump", "hist"), path)
    _refused(_run(hist, "log", "dump", "hist", "--from", "2024-01-01T03:00:00Z"), path)
    before = {p: p.stat().st_size for p in nsd.rglob("*.log")}
    _refused(_ingest(hist, _csv(tmp_path / "b.csv", 400, 10)), path)
    assert {p: p.stat().st_size for p in nsd.rglob("*.log")} == before  # the writer appended nothing


def test_a_registry_file_with_an_edited_scale_is_refused_by_dump_and_audit(hist: Path):
    path = next(p for p in (hist / "hist" / "_schemas").glob("*.avsc") if '"tape.market.Bar"' in p.read_text())
    path.write_text(path.read_text().replace('"scale": 18', '"scale": 10', 1))
    _refused(_run(hist, "log", "dump", "hist", "--json"), path)
    r = _run(hist, "audit", "verify", "hist")
    assert r.returncode == 1 and f"DAMAGE {path} byte" in r.stdout, r.stdout


def test_a_writer_refuses_after_a_mid_segment_truncation(hist: Path, tmp_path: Path):
    seg = hist / "hist" / "market-0" / "00000000000000000000.log"
    os.truncate(seg, seg.stat().st_size // 2)
    size = seg.stat().st_size
    r = _ingest(hist, _csv(tmp_path / "b.csv", 400, 10))  # the import reads the namespace first, then writes
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert f"{seg} byte 0" in r.stderr and "cut short" in r.stderr, r.stderr
    assert seg.stat().st_size == size  # not truncated further, nothing appended; and every read names it:
    for args in (["log", "dump", "hist"], ["log", "dump", "hist", "--from", "2024-01-01T05:00:00Z"],
                 ["log", "dump", "hist", "--type", "Bar"], ["log", "dump", "hist", "--type", "HistoryImported"]):
        d = _run(hist, *args)
        assert d.returncode == 2 and str(seg) in d.stderr and "byte" in d.stderr, (args, d.stderr)


def test_index_byte_flips_never_change_a_dump_from_a_time(hist: Path):
    """`tape log dump --from T` (the read every `backtest --from` makes) over flipped index bytes, in-process."""
    runner = CliRunner()
    args = ["--store", f"file:{hist}", "log", "dump", "hist", "--json", "--from", "2024-01-01T04:10:00Z"]
    want = runner.invoke(app, args)
    assert want.exit_code == 0 and want.stdout.count("\n") > 100
    index = hist / "hist" / "market-0" / "00000000000000000000.index"
    original = index.read_bytes()
    rng = random.Random(17)
    for pos in sorted(rng.sample(range(len(original)), min(60, len(original)))):
        data = bytearray(original)
        data[pos] ^= rng.randrange(1, 256)
        index.write_bytes(bytes(data))
        r = runner.invoke(app, args)
        assert (r.exit_code, r.stdout) == (0, want.stdout) or (r.exit_code == 2 and str(index) in r.stderr), pos
    index.write_bytes(original)
