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
