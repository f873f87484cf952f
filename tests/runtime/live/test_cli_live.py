"""`tape live` refuses bad input in one line, exit code 2, with nothing written."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "btcusdt-1m.csv"


def tape(store: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.cli", "--store", f"file:{store}", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live(venue: str = "binance", namespace: str = "live-x", *extra: str) -> list[str]:
    return ["live", "--venue", venue, "--namespace", namespace, "--strategy", "sma_cross", "--symbol", "BTC/USDT",
            *extra]


def one_line_error(p: subprocess.CompletedProcess, text: str) -> None:
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1 and text in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


@pytest.fixture
def env(py_env):
    return {**py_env, "TAPE_BINANCE_API_KEY": "k-visible-nowhere", "TAPE_BINANCE_SECRET": "s-visible-nowhere"}


def test_unknown_venue(tmp_path, env):
    one_line_error(tape(tmp_path, *live("nosuchvenue"), env=env), "unknown venue 'nosuchvenue'")
    assert not (tmp_path / "live-x").exists()


def test_a_malformed_incident_file(tmp_path, env):
    bad = tmp_path / "incidents.toml"
    bad.write_text('[stale_dat]\nthreshold = 5\n')
    p = tape(tmp_path / "store", *live("binance", "live-x", "--paper", "--incidents", str(bad)), env=env)
    one_line_error(p, "unknown 'stale_dat' (did you mean 'stale_data'?)")
    assert not (tmp_path / "store" / "live-x").exists()


def test_missing_credentials(tmp_path, py_env):
    env = {k: v for k, v in py_env.items() if not k.startswith("TAPE_BINANCE")}
    one_line_error(tape(tmp_path, *live(), env=env), "set TAPE_BINANCE_API_KEY and TAPE_BINANCE_SECRET")


def test_unreachable_venue_never_echoes_the_key(tmp_path, env):
    p = tape(tmp_path, *live("binance", "live-x", "--sandbox-url", f"http://127.0.0.1:{free_port()}"), env=env)
    one_line_error(p, "is unreachable")
    assert "visible-nowhere" not in p.stderr + p.stdout
    assert not (tmp_path / "live-x").exists()


def test_a_backtest_namespace_is_not_a_live_one(tmp_path, env):
    args = ["ingest", "csv", str(EXAMPLE), "--namespace", "src", "--instrument", "BTCUSDT.BINANCE", "--kind", "bars",
            "--timeframe", "1m", "--base", "BTC", "--quote", "USDT"]
    assert tape(tmp_path, *args, env=env).returncode == 0
    bt = ["backtest", "--source", "src", "--strategy", "sma_cross", "--param", "quantity=0.1", "--run-id", "live-bt"]
    assert tape(tmp_path, *bt, env=env).returncode == 0
    one_line_error(tape(tmp_path, *live("binance", "live-bt", "--paper"), env=env),
                   "was written by a backtest run")


def test_a_symbol_the_venue_does_not_list_and_a_wrong_secret_against_the_sandbox(tmp_path, py_env):
    """Against a real venue server (the sandbox): each a one-line error, exit 2, the secret never echoed, and
    nothing written."""
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sandbox"))
    from sandboxkit import Sandbox, write_history

    write_history(tmp_path, "hist", bars=50)
    with Sandbox(tmp_path, "hist") as sb:
        ok = {**py_env, "TAPE_BINANCE_API_KEY": "sandbox-key", "TAPE_BINANCE_SECRET": "sandbox-secret"}
        p = tape(tmp_path, *live("binance", "live-x", "--sandbox-url", sb.url), "--symbol", "DOGE/USDT", env=ok)
        one_line_error(p, "lists no market 'DOGE/USDT'")
        bad = {**ok, "TAPE_BINANCE_SECRET": "wrong-secret-visible-nowhere"}
        p = tape(tmp_path, *live("binance", "live-x", "--sandbox-url", sb.url), env=bad)
        one_line_error(p, "credentials refused")
        assert "visible-nowhere" not in p.stderr + p.stdout
    assert not (tmp_path / "live-x").exists()
