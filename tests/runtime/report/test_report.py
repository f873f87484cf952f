"""`tape report` and `tape runs compare` as a user sees them: the HTML page opened in a real headless Chromium (no
console error, no request leaving the file, zoom and hover work, the charts hold the run's own points, halts
shaded), the PNG files sized and drawn, the same run giving the same bytes, and bad input one line with exit 2.
Screenshots are kept in test-artifacts/ (TAPE_TEST_ARTIFACTS to put them elsewhere)."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from eventstore.store import Log
from runtime.cli.app import app
from runtime.figures import money
from schemas.names import PRICES

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "btcusdt-1m.csv"
ARTIFACTS = Path(os.environ.get("TAPE_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHARTS = {"equity", "drawdown", "monthly", "price-BTCUSDT.BINANCE", "position", "sharpe"}
READY = ("() => { const d = [...document.querySelectorAll('.js-plotly-plot')]; "
         "return d.length > 0 && d.every(p => p._fullLayout && p.querySelector('.main-svg')); }")


def tape(store: Path, *args: str, code: int = 0) -> Any:
    r = CliRunner().invoke(app, ["--store", f"file:{store}", *args])
    assert r.exit_code == code, r.output
    return r


@pytest.fixture(scope="module")
def browser(unavailable):
    """Headless Chromium (Debian's package, as a user has it) driven by Playwright."""
    exe = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if exe is None:
        unavailable("no chromium on this machine (Debian package `chromium`; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A report opened in the browser, with every console message, page error and request outside the file."""

    def __init__(self, browser: Any, path: Path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("request", lambda r: None if r.url.startswith("file:") else self.problems.append(
            f"request: {r.url}"))
        self.page.goto(path.as_uri())
        self.page.wait_for_function(READY, timeout=30_000)

    def traces(self) -> dict[str, list[dict[str, Any]]]:
        """Chart id → its traces: name, x, y (z for a heatmap)."""
        return self.page.evaluate("() => Object.fromEntries([...document.querySelectorAll('.js-plotly-plot')].map("
                                  "d => [d.id, d.data.map(t => ({name: t.name, type: t.type || 'scatter', x: t.x, "
                                  "y: t.y, z: t.z}))]))")

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


def ingest(store: Path, rows: int) -> None:
    csv = store.parent / f"btc-{rows}.csv"
    csv.write_text("\n".join(EXAMPLE.read_text().splitlines()[: rows + 1]) + "\n")
    tape(store, "ingest", "csv", str(csv), "--namespace", "src", "--instrument", "BTCUSDT.BINANCE", "--kind", "bars",
         "--timeframe", "1m", "--base", "BTC", "--quote", "USDT")


def backtest(store: Path, *extra: str, fast: str = "5", slow: str = "20") -> str:
    out = tape(store, "backtest", "--source", "src", "--strategy", "sma_cross", "--param", f"fast={fast}", "--param",
               f"slow={slow}", "--param", "quantity=0.5", *extra, "--json").stdout
    return str(json.loads(out)["run_id"])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """3,000 one-minute bars and a run that halts on its drawdown limit part way (a halt to shade)."""
    tmp = tmp_path_factory.mktemp("report")
    store = tmp / "store"
    ingest(store, 3000)
    return store


@pytest.fixture(scope="module")
def halting(store: Path) -> str:
    risk = store.parent / "risk.toml"
    risk.write_text("max_order_quantity = 2\nmax_drawdown = 0.003\n")
    venue = store.parent / "venue.toml"
    venue.write_text('starting_balances = { USDT = "100000" }\ntaker_fee = "0.0005"\n')
    return backtest(store, "--risk", str(risk), "--venue", str(venue))


def test_the_html_report_renders_offline_with_the_runs_own_points(browser, store: Path, halting: str,
                                                                   tmp_path: Path) -> None:
    shown = json.loads(tape(store, "runs", "show", halting, "--json").stdout)
    assert shown["interventions"]["halts"], "the fixture's run must halt (a halt to shade)"
    page_file = tmp_path / "r.html"
    tape(store, "report", halting, "--html", str(page_file))
    assert b"<script src=" not in page_file.read_bytes()  # and the browser below fetches nothing
    page = Page(browser, page_file)
    traces = page.traces()
    assert set(traces) == CHARTS, sorted(traces)
    equity = traces["equity"][0]
    curve = shown["equity_curve"]
    assert equity["name"] == "equity" and len(equity["x"]) == len(curve) == 3000  # every sample, none thinned
    assert equity["y"] == [float(p["equity"]) for p in curve]
    bh = traces["equity"][1]
    start = float(curve[0]["equity"])
    first, last = (float(shown["benchmark"]["instruments"]["BTCUSDT.BINANCE"][k]) for k in ("first_price",
                                                                                           "last_price"))
    assert bh["name"] == "buy and hold" and bh["y"][-1] == pytest.approx(start * last / first, rel=1e-12)
    fills = sum(len(t["y"]) for t in traces["price-BTCUSDT.BINANCE"][1:])
    assert fills == shown["statistics"]["fills"] > 0  # a marker per fill, entries and exits
    assert [t["name"] for t in traces["drawdown"]] == ["drawdown"]
    assert min(traces["drawdown"][0]["y"]) == pytest.approx(-shown["statistics"]["max_drawdown"], rel=1e-9)
    shapes = page.page.evaluate("() => document.getElementById('equity').layout.shapes.length")
    assert shapes == len(shown["interventions"]["halts"])  # each halt shaded
    text = page.page.inner_text("body")
    assert money(_decimal(shown["statistics"]["end_equity"]), "USDT") in text and "HALTED" in text
    # interactive: hovering shows the values under the pointer, dragging zooms the time axis
    drag = page.page.locator("#equity .nsewdrag")
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    page.page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.page.wait_for_selector("#equity .hoverlayer > *", state="attached", timeout=5000)
    before = page.page.evaluate("() => document.getElementById('equity')._fullLayout.xaxis.range.slice()")
    page.page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    page.page.mouse.down()
    page.page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5, steps=8)
    page.page.mouse.up()
    page.page.wait_for_function(f"() => document.getElementById('equity')._fullLayout.xaxis.range[0] != "
                                f"{json.dumps(before[0])}", timeout=5000)
    assert page.shot("report.png").stat().st_size > 50_000
    assert page.problems == []


def _decimal(value: Any) -> Any:
    from decimal import Decimal

    return Decimal(str(value))


def test_png_charts_are_drawn_and_the_same_run_gives_the_same_bytes(store: Path, halting: str,
                                                                    tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    out = tape(store, "report", halting, "--png", str(a), "--html", str(tmp_path / "a.html")).stdout
    tape(store, "report", halting, "--png", str(b), "--html", str(tmp_path / "b.html"))
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(f"{c}.png" for c in CHARTS) and all(f"wrote {a / f}" in out for f in files)
    for name in files:
        with Image.open(a / name) as im:
            assert im.format == "PNG" and im.width == 1100 and im.height >= 360, (name, im.size)
            px = np.asarray(im.convert("RGB")).reshape(-1, 3)
            inked = float((px != 255).any(axis=1).mean())
            colours = len(np.unique(px, axis=0))
            assert inked > 0.03 and colours > 20, (name, inked, colours)  # axes, lines and text drawn, not blank
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()


def test_runs_compare_sets_runs_side_by_side_and_overlays_their_equity(browser, store: Path, halting: str,
                                                                       tmp_path: Path) -> None:
    other = backtest(store, fast="3", slow="10")
    shown = {r: json.loads(tape(store, "runs", "show", r, "--json").stdout) for r in (halting, other)}
    out = tape(store, "runs", "compare", halting, other, "--html", str(tmp_path / "c.html")).stdout
    assert halting in out and other in out
    for r, rep in shown.items():
        assert money(_decimal(rep["statistics"]["end_equity"]), "USDT") in out, r
    as_json = json.loads(tape(store, "runs", "compare", halting, other, "--json").stdout)
    assert {r: v["statistics"] for r, v in as_json.items()} == {r: v["statistics"] for r, v in shown.items()}
    page = Page(browser, tmp_path / "c.html")
    lines = page.traces()["compare-equity"]
    assert [t["name"] for t in lines] == [halting, other]
    assert [t["y"] for t in lines] == [[float(p["equity"]) for p in shown[r]["equity_curve"]] for r in shown]
    page.shot("compare.png")
    assert page.problems == []


def test_bad_report_requests_are_one_line_exit_2(store: Path, halting: str, tmp_path: Path) -> None:
    cases = [(("report", "bt-nope"), "no namespace 'bt-nope'"), (("report", "src"), "src is not a run"),
             (("report", halting, "--html", str(tmp_path / "no" / "x.html")), "no directory"),
             (("report", halting, "--html", str(tmp_path)), "is a directory"),
             (("runs", "compare", halting), "needs two runs or more"),
             (("runs", "compare", halting, halting), "named twice")]
    for args, message in cases:
        r = tape(store, *args, code=2)
        err = r.stderr.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, (args, err)
    assert not (tmp_path / "no").exists()


def test_a_paper_sessions_report_is_its_log_up_to_now(browser, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "runtime" / "live"))
    sys.path.insert(0, str(ROOT / "tests" / "runtime" / "sandbox"))
    from killkit import NAMESPACE, Live
    from sandboxkit import Sandbox, write_history

    store = tmp_path / "store"
    write_history(store, "hist", bars=3000)
    sb = Sandbox(store, "hist", speed="600", extra=("--loop",)).start()
    try:
        live = Live(store, sb.url, paper=True)
        p = live.run(6)
        assert p.returncode == 0, p.stderr[-2000:]
    finally:
        sb.stop()
    page_file = tmp_path / "paper.html"
    tape(store, "report", NAMESPACE, "--html", str(page_file))
    page = Page(browser, page_file)
    traces = page.traces()
    recorded = sum(1 for _ in Log.open(f"file:{store}").replay(NAMESPACE, types=list(PRICES)))
    assert {"equity", "drawdown", "monthly", "position", "sharpe"} <= set(traces)
    assert len(traces["equity"][0]["y"]) == recorded > 10  # a sample per market event the session recorded
    assert "paper session" in page.page.inner_text("body")
    page.shot("paper.png")
    assert page.problems == []


def test_a_sweeps_page_holds_the_metric_of_every_point_in_its_heatmap(browser, store: Path, tmp_path: Path) -> None:
    args = ("sweep", "--source", "src", "--strategy", "sma_cross", "--param", "fast=3,5", "--param", "slow=10..20:10",
            "--param", "quantity=0.5", "--workers", "1", "--metric", "total_return")
    page_file = tmp_path / "sweep.html"
    points = json.loads(tape(store, *args, "--json", "--html", str(page_file)).stdout)["points"]
    page = Page(browser, page_file)
    (heat,) = page.traces()["sweep"]
    by = {(p["params"]["fast"], p["params"]["slow"]): p["statistics"]["total_return"] for p in points}
    assert heat["z"] == [[by[(f, s)] for f in ("3", "5")] for s in ("10", "20")]  # rows: slow, columns: fast
    text = page.page.inner_text("body")
    assert all(p["run_id"] in text for p in points)
    assert page.problems == []
    bad = tape(store, *args, "--heatmap", "fast,fast", code=2)
    assert "name two different parameters" in bad.stderr
