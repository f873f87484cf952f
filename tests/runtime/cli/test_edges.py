"""Values and names checked at the edge, each a one-line error naming the thing and the fix (issue 13 §5): a
parameter that is no decimal the log can hold, a namespace name outside the one rule both backends share, a CSV the
csv module cannot read."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventstore.backend import valid_namespace
from eventstore.errors import StoreError
from runtime.cli.app import app

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "btcusdt-1m.csv"


def one_line(store: Path, *args: str) -> str:
    r = CliRunner().invoke(app, ["--store", f"file:{store}", *args])
    err = r.stderr.strip()
    assert r.exit_code == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in r.output, \
        (r.exit_code, r.output)
    return err


@pytest.fixture
def store(tmp_path: Path) -> Path:
    csv = tmp_path / "bars.csv"
    csv.write_text("\n".join(EXAMPLE.read_text().splitlines()[:301]) + "\n")
    r = CliRunner().invoke(app, ["--store", f"file:{tmp_path / 'store'}", "ingest", "csv", str(csv), "--namespace",
                                 "src", "--instrument", "BTCUSDT.BINANCE", "--kind", "bars", "--timeframe", "1m",
                                 "--base", "BTC", "--quote", "USDT"])
    assert r.exit_code == 0, r.output
    return tmp_path / "store"


@pytest.mark.parametrize("value, why", [("1e400", "too large"), ("nan", "is not a number"), ("inf", "is not a number"),
                                        ("-Infinity", "is not a number"), ("0." + "0" * 18 + "1", "18 decimal places")])
def test_a_parameter_that_is_no_decimal_of_the_log_is_one_line(store: Path, value: str, why: str) -> None:
    err = one_line(store, "backtest", "--source", "src", "--strategy", "sma_cross", "--param", f"quantity={value}")
    assert f"parameter quantity={value!r}" in err and why in err
    assert [n for n in (store).iterdir() if n.name.startswith("bt-")] == []  # refused before a run namespace exists


@pytest.mark.parametrize("name", ["a\tb", "a\nb", "a b", ".hidden", "_x", "a/b", "é", "x" * 201, ""])
def test_one_rule_for_a_namespace_name(store: Path, name: str) -> None:
    with pytest.raises(StoreError, match="invalid namespace"):
        valid_namespace(name)
    if name:
        err = one_line(store, "ingest", "csv", str(EXAMPLE), "--namespace", name, "--instrument", "X.Y", "--kind",
                       "bars", "--timeframe", "1m", "--base", "X", "--quote", "Y")
        assert "invalid namespace" in err
    for fine in ("bt-1a2b", "live-kt", "merged-00ff", "a.b_c-D9", "x" * 200):
        assert valid_namespace(fine) == fine


def test_csvs_the_csv_module_cannot_read_are_one_line_naming_file_and_line(store: Path, tmp_path: Path) -> None:
    cr = tmp_path / "mac.csv"
    cr.write_bytes(b"time,price,qty\r1704067200,1,2\r1704067260,1,2\r")
    err = one_line(store, "ingest", "csv", str(cr), "--namespace", "t", "--instrument", "A.B", "--kind", "trades",
                   "--base", "A", "--quote", "B")
    assert "mac.csv line 1" in err and "carriage return" in err and "LF" in err
    big = tmp_path / "big.csv"
    big.write_text("time,price,qty\n1704067200,1,2\n1704067260,1," + "9" * 200_000 + "\n")
    err = one_line(store, "ingest", "csv", str(big), "--namespace", "t", "--instrument", "A.B", "--kind", "trades",
                   "--base", "A", "--quote", "B")
    assert "big.csv line 3" in err and "131,072 characters" in err
