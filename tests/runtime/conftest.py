"""Fixtures for the `tape` CLI tests: a store path, CSV writers and a runner bound to the store."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

from runtime.cli.app import app

T0_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z in ms


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def tape(store: Path):
    """Run the CLI in-process against the test store; returns the typer Result."""
    runner = CliRunner()

    def run(*args: str, store_url: str | None = None):
        return runner.invoke(app, ["--store", store_url or f"file:{store}", *args], catch_exceptions=False)

    return run


def trades_rows(n: int, *, seed: int = 7, tie_every: int = 0) -> list[tuple[int, str, str, str, int]]:
    """(ms time, price, qty, side, trade id) rows in ascending time; ties when tie_every > 0."""
    rnd = random.Random(seed)
    t = T0_MS
    rows = []
    for i in range(n):
        if not (tie_every and i % tie_every):
            t += rnd.randint(1, 50)
        price = f"{42000 + rnd.randint(-50000, 50000) / 100:.2f}"
        qty = f"{rnd.randint(1, 10**8) / 10**8:.8f}"
        rows.append((t, price, qty, rnd.choice(["buy", "sell"]), i + 1))
    return rows


@pytest.fixture
def make_trades():
    """trades_rows, for tests that cut or reorder rows themselves."""
    return trades_rows


@pytest.fixture
def write_trades(tmp_path: Path) -> Callable[..., Path]:
    def write(name: str = "trades.csv", n: int = 100, *, rows=None, header="timestamp,price,qty,side,trade_id", **kw):
        rows = rows if rows is not None else trades_rows(n, **kw)
        path = tmp_path / name
        with open(path, "w") as f:
            f.write(header + "\n")
            for r in rows:
                f.write(",".join(str(c) for c in r) + "\n")
        return path

    return write


@pytest.fixture
def write_text(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
