"""import_csv end to end into a file log: every accepted layout with its exact events, all-or-nothing imports,
conflicts with the namespace, duplicates, the bars' spacing, compressed files and determinism."""
from __future__ import annotations

import gzip
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from eventstore.store import Log
from runtime.ingest import importer
from runtime.ingest.csvrows import CsvSpec, IngestError, InstrumentOptions
from runtime.ingest.importer import existing_namespaces, import_csv
from runtime.ingest.layouts import LayoutOptions
from runtime.times import parse_time, parse_timeframe

S, MIN, DAY = 10**9, 60 * 10**9, 86400 * 10**9
JAN1 = parse_time("2024-01-01")
BTC = InstrumentOptions()
GOOG = InstrumentOptions(base="GOOG", quote="USD")

KLINES_MS = (
    "1704067200000,42283.58000000,42298.62000000,42261.02000000,42298.61000000,35.92724000,1704067259999,"
    "1518844.53321120,1327,17.98796000,760460.96447040,0\n"
    "1704067260000,42298.62000000,42320.00000000,42298.61000000,42320.00000000,21.07851000,1704067319999,"
    "891638.66574030,1021,11.21018000,474251.39815950,0\n"
)
BAR_HEADER = "time,open,high,low,close,volume\n"


def klines(n: int) -> str:
    """n one-minute Binance klines from 2024-01-01, times in ms."""
    t0 = 1_704_067_200_000
    return "".join(f"{t0 + i * 60_000},1.5,2.5,1.25,2,10,{t0 + i * 60_000 + 59_999},15,3,5,7.5,0\n" for i in range(n))


@pytest.fixture
def log(tmp_path: Path):
    log = Log.open(f"file:{tmp_path / 'store'}")
    yield log
    log.close()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(log: Log, path: Path, kind: str = "bars", timeframe: str | None = "1m", *, ns: str = "hist",
        instrument: str = "BTCUSDT.BINANCE", opts: InstrumentOptions = BTC, layout: LayoutOptions | None = None,
        time_format: str | None = None, **kw):
    spec = CsvSpec(path.name, instrument, kind, timeframe, parse_timeframe(timeframe) if timeframe else None,
                   "auto", time_format)
    return import_csv(log, path, ns, spec, opts, layout=layout or LayoutOptions(), **kw)


def market(log: Log, ns: str = "hist", name: str = "Bar"):
    return [e for e in log.replay(ns, types=[name])]


def bars(log: Log, ns: str = "hist"):
    """(open_ts, ts_event, open, high, low, close, volume, trades) of every bar."""
    return [(e.data["open_ts"], e.ts_event, e.data["open"], e.data["high"], e.data["low"], e.data["close"],
             e.data["volume"], e.data["trades"]) for e in market(log, ns)]


def bar_lines(n: int, *, start: int = 0, step: int = 1, close: dict[int, str] | None = None) -> str:
    close = close or {}
    minutes = [start + i * step for i in range(n)]
    return BAR_HEADER + "".join(
        f"2024-01-01T{m // 60:02d}:{m % 60:02d}:00Z,1,2,0.5,{close.get(i, '1.5')},10\n" for i, m in enumerate(minutes)
    )


# ---- the layouts --------------------------------------------------------------------------------------------


def test_binance_klines_without_header_times_in_ms(log, tmp_path):
    result = run(log, write(tmp_path, "BTCUSDT-1m-2024-01-01.csv", KLINES_MS))
    assert result.layout.name == "binance-klines"
    assert result.layout.description == "Binance klines (no header row, times in ms)"
    assert bars(log) == [
        (JAN1, JAN1 + MIN, Decimal("42283.58"), Decimal("42298.62"), Decimal("42261.02"), Decimal("42298.61"),
         Decimal("35.92724"), 1327),
        (JAN1 + MIN, JAN1 + 2 * MIN, Decimal("42298.62"), Decimal(42320), Decimal("42298.61"), Decimal(42320),
         Decimal("21.07851"), 1021),
    ]


def test_binance_klines_in_microseconds_by_magnitude(log, tmp_path):
    text = ("1704067200000000,1.5,2.5,1.25,2,10,1704067259999999,15,3,5,7.5,0\n"
            "1704067260000000,2,2,2,2,0,1704067319999999,0,0,0,0,0\n")
    result = run(log, write(tmp_path, "us.csv", text))
    assert result.layout.description == "Binance klines (no header row, times in µs)"
    assert bars(log) == [(JAN1, JAN1 + MIN, Decimal("1.5"), Decimal("2.5"), Decimal("1.25"), Decimal(2),
                          Decimal(10), 3),
                         (JAN1 + MIN, JAN1 + 2 * MIN, Decimal(2), Decimal(2), Decimal(2), Decimal(2), Decimal(0), 0)]


def test_binance_kline_close_time_must_agree_with_the_timeframe(log, tmp_path):
    with pytest.raises(IngestError) as e:
        run(log, write(tmp_path, "k.csv", KLINES_MS), timeframe="1h")
    assert str(e.value) == (
        "k.csv line 1, column 'close_time': the bar closes at 2024-01-01T00:00:59.999Z, but --timeframe 1h closes "
        "it at 2024-01-01T01:00:00Z; nothing was imported: pass --timeframe 1m"
    )
    assert "hist" not in existing_namespaces(log)


def test_binance_trades_and_aggregate_trades_without_header(log, tmp_path):
    trades = ("3346453431,42283.58000000,0.00200000,84.56716000,1704067200007,True,True\n"
              "3346453432,42283.59000000,0.00350000,147.99256500,1704067200015,False,True\n")
    result = run(log, write(tmp_path, "BTCUSDT-trades-2024-01-01.csv", trades), "trades", None)
    assert result.layout.description == "Binance trades (no header row, times in ms)"
    got = [(e.ts_event, e.data["price"], e.data["quantity"], e.data["aggressor_side"], e.data["trade_id"])
           for e in market(log, name="TradeTick")]
    assert got == [(JAN1 + 7_000_000, Decimal("42283.58"), Decimal("0.002"), "SELLER", "3346453431"),
                   (JAN1 + 15_000_000, Decimal("42283.59"), Decimal("0.0035"), "BUYER", "3346453432")]
    agg = "2977292584,42283.58000000,0.00200000,3346453431,3346453432,1704067200007123,True,True\n"
    result = run(log, write(tmp_path, "BTCUSDT-aggTrades-2024-01-01.csv", agg), "trades", None, ns="agg")
    assert result.layout.description == "Binance aggregate trades (no header row, times in µs)"
    (tick,) = market(log, "agg", "TradeTick")
    assert (tick.ts_event, tick.data["trade_id"], tick.data["aggressor_side"]) == (JAN1 + 7_123_000,
                                                                                   "2977292584", "SELLER")


def test_binance_klines_refused_as_trades_with_the_kind_to_use(log, tmp_path):
    with pytest.raises(IngestError, match=r"^k.csv line 1: the file looks like Binance klines \(no header row\): "
                                          r"use --kind bars$"):
        run(log, write(tmp_path, "k.csv", KLINES_MS), "trades", None)


GOOG_PANDAS = (",Open,High,Low,Close,Volume\n"
               "2004-08-19,100.0,104.06,95.96,100.34,22351900\n"
               "2004-08-20,101.01,109.08,100.5,108.31,11428600\n"
               "2004-08-23,110.75,113.48,109.05,109.4,9137200\n")


def test_pandas_index_with_empty_header_as_backtesting_goog_csv(log, tmp_path):
    result = run(log, write(tmp_path, "GOOG.csv", GOOG_PANDAS), timeframe="1d", instrument="GOOG.NASDAQ", opts=GOOG)
    assert result.layout.name == "pandas-index"
    aug19 = parse_time("2004-08-19")
    assert bars(log) == [
        (aug19, aug19 + DAY, Decimal(100), Decimal("104.06"), Decimal("95.96"), Decimal("100.34"),
         Decimal(22351900), None),
        (aug19 + DAY, aug19 + 2 * DAY, Decimal("101.01"), Decimal("109.08"), Decimal("100.5"), Decimal("108.31"),
         Decimal(11428600), None),
        (aug19 + 4 * DAY, aug19 + 5 * DAY, Decimal("110.75"), Decimal("113.48"), Decimal("109.05"), Decimal("109.4"),
         Decimal(9137200), None),
    ]
    assert result.gaps == ""  # Friday → Monday: a weekend, not a gap


def test_pandas_index_bad_time_names_the_unnamed_column(log, tmp_path):
    with pytest.raises(IngestError, match=r"^GOOG.csv line 3, column 1 \(unnamed\): 'Aug 20' is not a time: "):
        run(log, write(tmp_path, "GOOG.csv", ",Open,High,Low,Close,Volume\n2004-08-19,1,1,1,1,1\nAug 20,1,1,1,1,1\n"),
            timeframe="1d", instrument="GOOG.NASDAQ", opts=GOOG)


YFINANCE = ("Price,Close,High,Low,Open,Volume\n"
            "Ticker,GOOG,GOOG,GOOG,GOOG,GOOG\n"
            "Date,,,,,\n"
            "2024-01-02,139.2220458984375,140.1770782470703,137.31129455566406,138.01736450195312,20071900\n"
            "2024-01-03,140.01736450195312,141.0,138.5,139.0,18974300\n")


def test_yfinance_header_rows(log, tmp_path):
    result = run(log, write(tmp_path, "GOOG.csv", YFINANCE), timeframe="1d", instrument="GOOG.NASDAQ", opts=GOOG)
    assert result.layout.description == "yfinance (3 header rows, ticker GOOG)"
    jan2 = JAN1 + DAY
    assert bars(log) == [
        (jan2, jan2 + DAY, Decimal("138.01736450195312"), Decimal("140.1770782470703"), Decimal("137.31129455566406"),
         Decimal("139.2220458984375"), Decimal(20071900), None),
        (jan2 + DAY, jan2 + 2 * DAY, Decimal(139), Decimal(141), Decimal("138.5"), Decimal("140.01736450195312"),
         Decimal(18974300), None),
    ]
    hist = [e.data for e in log.replay("hist", types=["HistoryImported"])]
    assert [(h["first_row"], h["last_row"]) for h in hist] == [(1, 2)]  # data rows, header rows excluded


def test_yfinance_of_several_tickers_is_refused(log, tmp_path):
    text = "Price,Close,Close\nTicker,AAPL,MSFT\nDate,,\n2024-01-02,1,2\n"
    with pytest.raises(IngestError, match=r"^m.csv: a yfinance file of several tickers \(AAPL, MSFT\); save one"):
        run(log, write(tmp_path, "m.csv", text), timeframe="1d")


def test_us_dates_and_monthly_bars(log, tmp_path):
    text = "Date,Open,High,Low,Close,Volume\n01/01/2024,1,2,0.5,1.5,10\n02/01/2024,1.5,3,1,2,20\n03/01/2024,2,2,2,2,0\n"
    result = run(log, write(tmp_path, "m.csv", text), timeframe="1M")
    feb1, mar1, apr1 = parse_time("2024-02-01"), parse_time("2024-03-01"), parse_time("2024-04-01")
    assert [(o, t) for o, t, *_ in bars(log)] == [(JAN1, feb1), (feb1, mar1), (mar1, apr1)]
    assert bars(log)[1][2:6] == (Decimal("1.5"), Decimal(3), Decimal(1), Decimal(2))
    assert result.gaps == ""
    assert [e.data["timeframe"] for e in market(log)] == ["1M"] * 3


def test_weekly_bars(log, tmp_path):
    text = BAR_HEADER + "2024-01-01,1,2,0.5,1.5,10\n2024-01-08,1,2,0.5,1.5,10\n2024-01-22,1,2,0.5,1.5,10\n"
    result = run(log, write(tmp_path, "w.csv", text), timeframe="1w")
    assert [(o, t) for o, t, *_ in bars(log)] == [(JAN1, JAN1 + 7 * DAY), (JAN1 + 7 * DAY, JAN1 + 14 * DAY),
                                                  (JAN1 + 21 * DAY, JAN1 + 28 * DAY)]
    assert result.gaps == "gaps: 1 (1 bar missing; first: 2024-01-15T00:00:00Z, before line 4)"


def test_no_header_with_named_columns_time_column_and_time_format(log, tmp_path):
    path = write(tmp_path, "raw.csv", "x,02.01.2024 00:00,1,2,0.5,1.5,10\ny,03.01.2024 00:00,1,2,0.5,1.25,4\n")
    layout = LayoutOptions(no_header=True, columns=("tag", "start", "o", "h", "l", "c", "v"), time_column="start")
    result = run(log, path, timeframe="1d", layout=layout, time_format="%d.%m.%Y %H:%M")
    assert result.layout.description == "no header row; columns from --columns; times from column 'start'"
    assert [(o, c) for o, _, _, _, _, c, _, _ in bars(log)] == [(JAN1 + DAY, Decimal("1.5")),
                                                                 (JAN1 + 2 * DAY, Decimal("1.25"))]


def test_columns_replace_a_header_row(log, tmp_path):
    path = write(tmp_path, "h.csv", "Zeit,Eroeffnung,Hoch,Tief,Schluss,Menge\n2024-01-01,1,2,0.5,1.5,10\n")
    layout = LayoutOptions(columns=("time", "open", "high", "low", "close", "volume"))
    result = run(log, path, timeframe="1d", layout=layout)
    assert result.layout.description == "header row replaced by --columns"
    assert bars(log)[0][5] == Decimal("1.5")


# ---- all or nothing -----------------------------------------------------------------------------------------


def test_a_bad_row_in_the_middle_imports_nothing(log, tmp_path):
    text = bar_lines(10, close={6: "x"})
    with pytest.raises(IngestError) as e:
        run(log, write(tmp_path, "bad.csv", text), batch_rows=2)  # 3 batches would have been written before it
    assert str(e.value) == ("bad.csv line 8, column 'close': 'x' is not a number; nothing was imported: correct or "
                            "remove that row and run again")
    assert "hist" not in existing_namespaces(log)
    run(log, write(tmp_path, "good.csv", bar_lines(3)))
    horizon = log.horizon("hist")
    with pytest.raises(IngestError, match="bad.csv line 8, column 'close'"):
        run(log, tmp_path / "bad.csv", batch_rows=2)  # an existing namespace gains nothing either
    assert log.horizon("hist") == horizon


# ---- against the namespace ----------------------------------------------------------------------------------


def test_different_values_for_times_present_are_a_conflict(log, tmp_path):
    run(log, write(tmp_path, "a.csv", bar_lines(5)))
    before = log.horizon("hist")
    changed = write(tmp_path, "b.csv", bar_lines(7, close={2: "1.6", 4: "1.7"}))
    with pytest.raises(IngestError) as e:
        run(log, changed)
    assert str(e.value) == (
        "b.csv: 2 row(s) conflict with the BTCUSDT.BINANCE bars 1m history of namespace 'hist' (first: line 4: "
        "the bar of 2024-01-01T00:02:00Z has close 1.6 in the file, 1.5 in the namespace); the log is append-only: "
        "import the file into a new namespace, or pass --skip-conflicts to import only the rows after that history "
        "and keep the namespace's values"
    )
    assert log.horizon("hist") == before
    result = run(log, changed, skip_conflicts=True)
    assert (result.rows_read, result.imported, result.skipped, result.conflicts) == (7, 2, 3, 2)
    assert result.first_conflict.startswith("line 4: the bar of 2024-01-01T00:02:00Z has close 1.6")
    assert [c for *_, c, _, _ in bars(log)] == [Decimal("1.5")] * 7  # the namespace keeps its values


def test_a_row_inside_the_history_that_the_namespace_lacks_is_a_conflict(log, tmp_path):
    run(log, write(tmp_path, "gap.csv", BAR_HEADER + "2024-01-01T00:00:00Z,1,2,0.5,1.5,10\n"
                                                     "2024-01-01T00:02:00Z,1,2,0.5,1.5,10\n"))
    with pytest.raises(IngestError, match=r"1 row\(s\) conflict .* \(first: line 3: the namespace has no bar of "
                                          r"2024-01-01T00:01:00Z although its history covers that time\)"):
        run(log, write(tmp_path, "full.csv", bar_lines(3)))


def test_same_file_again_is_skipped_without_conflict(log, tmp_path):
    path = write(tmp_path, "a.csv", bar_lines(5))
    run(log, path)
    again = run(log, path)
    assert (again.rows_read, again.imported, again.skipped, again.conflicts, again.events_written) == (5, 0, 5, 0, 0)


def test_trades_of_one_time_are_compared_in_order(log, tmp_path):
    run(log, write(tmp_path, "t1.csv", "time,price,qty,id\n1704067200000,1,1,a\n1704067200000,2,1,b\n"), "trades", None)
    with pytest.raises(IngestError, match=r"first: line 3: the trade at 2024-01-01T00:00:00Z has price 3 in the file, "
                                          r"2 in the namespace"):
        run(log, write(tmp_path, "t2.csv", "time,price,qty,id\n1704067200000,1,1,a\n1704067200000,3,1,b\n"),
            "trades", None)


# ---- duplicates, spacing ------------------------------------------------------------------------------------


def test_exact_duplicates_are_counted_and_skipped(log, tmp_path):
    text = BAR_HEADER + "".join(f"2024-01-01T00:0{m}:00Z,1,2,0.5,1.5,10\n" for m in (0, 1, 1, 2, 2, 2, 3))
    result = run(log, write(tmp_path, "d.csv", text))
    assert (result.rows_read, result.imported, result.duplicates, result.first_duplicate) == (7, 4, 3, (4, 3))
    assert [o for o, *_ in bars(log)] == [JAN1 + i * MIN for i in range(4)]


def test_timeframe_shorter_than_the_rows_is_refused_with_counts(log, tmp_path):
    with pytest.raises(IngestError) as e:
        run(log, write(tmp_path, "m.csv", bar_lines(5)), timeframe="1h")
    assert str(e.value) == (
        "m.csv: --timeframe 1h does not match the rows' spacing: 4 of 4 steps between bars are shorter than 1h or "
        "not whole multiples of it (first: line 3 after line 2); the most common step is 1m (4 of 4): pass "
        "--timeframe 1m; nothing was imported"
    )
    assert "hist" not in existing_namespaces(log)


def test_timeframe_that_fits_no_step_is_refused(log, tmp_path):
    text = BAR_HEADER + "".join(f"2024-01-0{d},1,2,0.5,1.5,10\n" for d in (1, 2, 3, 4))
    with pytest.raises(IngestError, match=r"--timeframe 1h does not match the rows' spacing: no two consecutive bars "
                                          r"of the 4 are 1h apart; the most common step is 1d \(3 of 3\): pass "
                                          r"--timeframe 1d; nothing was imported"):
        run(log, write(tmp_path, "d.csv", text), timeframe="1h")


def test_gaps_are_reported_with_counts(log, tmp_path):
    text = BAR_HEADER + "".join(f"2024-01-01T00:{m:02d}:00Z,1,2,0.5,1.5,10\n" for m in (0, 1, 4, 5, 9))
    result = run(log, write(tmp_path, "g.csv", text))
    assert result.imported == 5
    assert result.gaps == "gaps: 2 (5 bars missing; first: 2024-01-01T00:02:00Z, before line 4)"


def test_daily_gaps_leave_weekends_out(log, tmp_path):
    # Fri 5th → Mon 8th (a weekend), Mon 8th → Thu 11th (Tue, Wed missing), Fri 12th → Tue 16th (Mon missing)
    text = BAR_HEADER + "".join(f"2024-01-{d:02d},1,2,0.5,1.5,10\n" for d in (4, 5, 8, 11, 12, 16))
    result = run(log, write(tmp_path, "d.csv", text), timeframe="1d")
    assert result.gaps == ("gaps: 2 (3 bars missing; Saturdays and Sundays not counted; first: 2024-01-09T00:00:00Z, "
                           "before line 5)")
    text = BAR_HEADER + "2024-01-12,1,2,0.5,1.5,10\n2024-01-16,1,2,0.5,1.5,10\n2024-01-17,1,2,0.5,1.5,10\n"
    result = run(log, write(tmp_path, "holiday.csv", text), timeframe="1d", ns="holiday")
    assert result.gaps == ("gaps: 1 (1 bar missing; Saturdays and Sundays not counted; first: 2024-01-15T00:00:00Z, "
                           "before line 3)")  # the Monday, not the Saturday


# ---- compressed files, determinism ----------------------------------------------------------------------------


def test_gzip_and_zip_files(log, tmp_path):
    gz = tmp_path / "BTCUSDT-1m.csv.gz"
    gz.write_bytes(gzip.compress(KLINES_MS.encode(), mtime=0))
    result = run(log, gz, ns="gz")
    assert result.file == "BTCUSDT-1m.csv.gz" and result.layout.name == "binance-klines"
    zipped = tmp_path / "BTCUSDT-1m-2024-01.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("BTCUSDT-1m-2024-01.csv", KLINES_MS)
    result = run(log, zipped, ns="zip")
    assert result.file == "BTCUSDT-1m-2024-01.zip (BTCUSDT-1m-2024-01.csv)"
    assert bars(log, "gz") == bars(log, "zip") and len(bars(log, "zip")) == 2
    assert bars(log, "zip")[1][5] == Decimal(42320)
    (hist,) = [e.data for e in log.replay("zip", types=["HistoryImported"])]
    assert hist["file_name"] == "BTCUSDT-1m-2024-01.zip"


def test_zip_bad_row_names_the_member_and_imports_nothing(log, tmp_path):
    zipped = tmp_path / "k.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("readme.txt", "hi")
        z.writestr("k.csv", KLINES_MS.replace("42320.00000000,21", "abc,21"))
    with pytest.raises(IngestError, match=r"^k.zip \(k.csv\) line 2, column 'close': 'abc' is not a number"):
        run(log, zipped)
    assert "hist" not in existing_namespaces(log)


def test_zip_of_several_csv_files_is_refused(log, tmp_path):
    zipped = tmp_path / "two.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("a.csv", KLINES_MS)
        z.writestr("b.csv", KLINES_MS)
    with pytest.raises(IngestError, match=r"^two.zip: the zip holds a.csv, b.csv; import an archive of one CSV file"):
        run(log, zipped)


def test_a_cut_gzip_file_is_one_line_error_and_imports_nothing(log, tmp_path):
    gz = tmp_path / "cut.csv.gz"
    gz.write_bytes(gzip.compress(klines(500).encode())[:-30])
    with pytest.raises(IngestError, match=r"^cut.csv.gz line \d+: the gzip file is damaged or cut short"):
        run(log, gz)
    assert "hist" not in existing_namespaces(log)


def test_kept_rows_and_rows_read_again_write_the_same_bytes(tmp_path, monkeypatch):
    path = write(tmp_path, "a.csv", bar_lines(50, close={10: "1.75"}))

    def store(name: str) -> dict[Path, bytes]:
        root = tmp_path / name
        log = Log.open(f"file:{root}")
        run(log, path, batch_rows=7)
        log.close()
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.name != ".lock"}

    kept = store("kept")
    monkeypatch.setattr(importer, "CACHE_ROWS", 3)  # too small: the write pass parses the file again
    again = store("again")
    assert len(kept) > 5 and kept == again
