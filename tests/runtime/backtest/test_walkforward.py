"""Walk-forward sweeps (`tape sweep --train … --test …`): consecutive windows along the history, each window's grid
fitted on its training span and its best point run on the span after — every one an ordinary run that
`tape sweep` and `tape backtest` over the same span make too — and the test returns chained out of sample."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_sweep import ingested, tape  # noqa: E402

from runtime.backtest.walkforward import windows  # noqa: E402
from runtime.times import format_ns  # noqa: E402
from schemas.errors import TapeError  # noqa: E402

H = 3_600 * 10**9


def test_windows_move_on_by_the_test_span_and_stop_before_the_end() -> None:
    got = windows(0, 100 * H, 48 * H, 12 * H)
    assert [(w.train_from, w.train_to, w.test_to) for w in got] == [
        (0, 48 * H, 60 * H), (12 * H, 60 * H, 72 * H), (24 * H, 72 * H, 84 * H), (36 * H, 84 * H, 96 * H)]
    assert len(windows(0, 100 * H, 48 * H, 12 * H, 24 * H)) == 2
    with pytest.raises(TapeError, match="shorter than one window"):
        windows(0, 10 * H, 8 * H, 4 * H)
    with pytest.raises(TapeError, match="positive durations"):
        windows(0, 10 * H, 0, 4 * H)


def test_each_window_is_the_sweep_of_its_training_span_and_the_backtest_of_its_test_span(tmp_path: Path) -> None:
    store = ingested(tmp_path, 4000)  # 2.8 days of minutes
    grid = ("--strategy", "sma_cross", "--param", "fast=3,5", "--param", "slow=20,30", "--param", "quantity=0.5")
    p = tape(store, "sweep", "--source", "src", *grid, "--train", "1d", "--test", "12h", "--workers", "2", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    wins = out["windows"]
    assert len(wins) == 3 and all(w["test_run"] for w in wins)
    w = wins[1]
    assert w["train_to"] - w["train_from"] == 24 * H and w["test_to"] - w["train_to"] == 12 * H
    fitted = json.loads(tape(store, "sweep", "--source", "src", *grid, "--from", format_ns(w["train_from"]), "--to",
                             format_ns(w["train_to"]), "--json").stdout)["points"]
    assert {p["status"] for p in fitted} == {"reused"}  # the walk made these runs: read back
    assert (fitted[0]["params"], fitted[0]["run_id"]) == (w["best"], w["train_run"])  # the best of the grid
    best = [a for k, v in w["best"].items() for a in ("--param", f"{k}={v}")]
    again = tape(store, "backtest", "--source", "src", "--strategy", "sma_cross", *best, "--from",
                 format_ns(w["train_to"]), "--to", format_ns(w["test_to"]), "--json")
    shown = json.loads(again.stdout)
    assert shown["run_id"] == w["test_run"] and "ran before" in again.stderr
    assert shown["statistics"] == w["test_statistics"]
    chained = math.prod(1 + x["test_statistics"]["total_return"] for x in wins) - 1
    assert out["out_of_sample"]["return"] == pytest.approx(chained, rel=1e-12)
    human = tape(store, "sweep", "--source", "src", *grid, "--train", "1d", "--test", "12h")
    assert "out of sample: 3 of 3 windows tested" in human.stdout
    bad = tape(store, "sweep", "--source", "src", *grid, "--train", "1d")
    assert bad.returncode == 2 and "both --train and --test" in bad.stderr
    short = tape(store, "sweep", "--source", "src", *grid, "--train", "3d", "--test", "1d")
    assert short.returncode == 2 and "shorter than one window" in short.stderr
