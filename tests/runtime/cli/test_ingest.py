"""`tape ingest csv`: idempotence, resume, refusals and determinism, through the CLI in-process."""
from collections import Counter
from pathlib import Path

import pytest

from eventstore.store import Log

INSTR = ["--instrument", "BTCUSDT.BINANCE"]
JAN1 = 1_704_067_200 * 10**9


def ingest(tape, path, ns="hist", *extra):
    return tape("ingest", "csv", str(path), "--namespace", ns, *INSTR, "--kind", "trades", *extra)


def events(store: Path, ns="hist", types=None):
    return list(Log.open(f"file:{store}").replay(ns, types=types))


def trade_ids(store, ns="hist"):
    return [e.data["trade_id"] for e in events(store, ns, ["TradeTick"])]


def test_ingest_twice_adds_nothing(tape, store, write_trades):
    path = write_trades(n=1200)
    first = ingest(tape, path, "hist", "--batch-rows", "500")
    assert first.exit_code == 0, first.output
    assert "1200 rows read, 1204 events written, 0 skipped" in first.stdout  # + 1 definition + 3 HistoryImported
    before = events(store)
    again = ingest(tape, path, "hist", "--batch-rows", "500")
    assert again.exit_code == 0
    assert "1200 rows read, 0 events written, 1200 skipped" in again.stdout
    assert len(events(store)) == len(before) == 1204
    assert trade_ids(store) == [str(i) for i in range(1, 1201)]
    counts = Counter(e.name for e in events(store))
    assert counts == {"TradeTick": 1200, "HistoryImported": 3, "InstrumentDefined": 1}


def test_truncated_copy_then_full_file_resumes_even_inside_a_tie(tape, store, write_trades, make_trades):
    rows = make_trades(3000, tie_every=4)  # groups of 4 trades share one timestamp
    cut = 1702  # inside a group: rows 1700..1703 share a time
    assert rows[cut - 1][0] == rows[cut][0]
    part = write_trades("part.csv", rows=rows[:cut])
    full = write_trades("full.csv", rows=rows)
    assert ingest(tape, part).exit_code == 0
    r = ingest(tape, full)
    assert r.exit_code == 0, r.output
    assert f"3000 rows read, {3000 - cut + 1} events written, {cut} skipped" in r.stdout
    ids = trade_ids(store)
    assert ids == [str(i) for i in range(1, 3001)]  # complete, in order, no duplicates
    hist = [e.data for e in events(store, types=["HistoryImported"])]
    assert [(h["file_name"], h["first_row"], h["last_row"]) for h in hist] == [("part.csv", 1, cut),
                                                                                ("full.csv", cut + 1, 3000)]


def test_older_rows_are_refused(tape, store, write_trades, make_trades):
    rows = make_trades(100)
    assert ingest(tape, write_trades("new.csv", rows=rows[50:])).exit_code == 0
    r = ingest(tape, write_trades("old.csv", rows=rows))
    assert r.exit_code == 2
    assert r.stderr.startswith("error: old.csv line 2: time ") and r.stderr.count("\n") == 1
    assert "older than the BTCUSDT.BINANCE trades history" in r.stderr and "new namespace" in r.stderr
    assert len(trade_ids(store)) == 50
    assert ingest(tape, write_trades("old.csv", rows=rows), "older").exit_code == 0  # fine in a new namespace


def test_malformed_row_names_file_line_and_column(tape, store, write_text):
    path = write_text("data.csv", "time,open,high,low,close,volume\n" + "".join(
        f"2024-01-01T00:{i:02d}:00Z,1,2,0.5,1.5,10\n" for i in range(15)) + "2024-01-01T00:15:00Z,1,2,0.5,abc,10\n")
    r = tape("ingest", "csv", str(path), "--namespace", "b", *INSTR, "--kind", "bars", "--timeframe", "1m")
    assert r.exit_code == 2
    assert r.stderr == ("error: data.csv line 17, column 'close': 'abc' is not a number; nothing was imported: correct "
                        "or remove that row and run again\n")
    assert r.stdout == ""
    assert "b" not in Log.open(f"file:{store}").namespaces() if store.exists() else True  # nothing written


def test_out_of_order_rows(tape, write_text):
    path = write_text("ooo.csv", "time,price,qty\n1704067200,1,1\n1704067202,1,1\n1704067201,1,1\n")
    r = ingest(tape, path)
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ooo.csv line 4, column 'time': '1704067201' is earlier than line 3")
    assert "ascending time order" in r.stderr


def test_bars_close_time_and_instrument_definition(tape, store, write_text):
    path = write_text("bars.csv", "date,open,high,low,close,volume\n"
                                  "2024-01-01,100.10,101.5,99.25,100,3.125\n2024-01-02,100,101,99,100.5,2\n")
    r = tape("ingest", "csv", str(path), "--namespace", "d", *INSTR, "--kind", "bars", "--timeframe", "1d",
             "--venue", "BNC", "--base", "XBT", "--quote", "USD")
    assert r.exit_code == 0, r.output
    evs = events(store, "d")
    assert [e.name for e in evs] == ["InstrumentDefined", "Bar", "Bar", "HistoryImported"]
    idef, bar = evs[0].data, evs[1]
    assert (idef["venue"], idef["base_currency"], idef["quote_currency"]) == ("BNC", "XBT", "USD")
    assert str(idef["price_increment"].normalize()) == "0.01" and idef["size_precision"] == 3
    assert bar.data["open_ts"] == JAN1 and bar.ts_event == JAN1 + 86400 * 10**9
    assert evs[3].data["timeframe"] == "1d" and evs[3].data["last_ts"] == JAN1 + 2 * 86400 * 10**9
    # a second timeframe is its own series; the instrument is not defined twice
    r = tape("ingest", "csv", str(path), "--namespace", "d", *INSTR, "--kind", "bars", "--timeframe", "1h")
    assert r.exit_code == 0
    assert Counter(e.name for e in events(store, "d")) == {"InstrumentDefined": 1, "Bar": 4, "HistoryImported": 2}


def test_bars_need_timeframe(tape, write_text):
    path = write_text("b.csv", "time,o,h,l,c,v\n1,1,1,1,1,1\n")
    r = tape("ingest", "csv", str(path), "--namespace", "x", *INSTR, "--kind", "bars")
    assert r.exit_code == 2 and r.stderr == "error: --timeframe is required for --kind bars (e.g. --timeframe 1m)\n"
    r = tape("ingest", "csv", str(path), "--namespace", "x", *INSTR, "--kind", "candles")
    assert r.exit_code == 2 and "--kind 'candles'" in r.stderr


def test_same_file_into_two_fresh_stores_is_byte_identical(tape, tmp_path, write_trades):
    path = write_trades(n=700)
    for name in ("a", "b"):
        r = tape("ingest", "csv", str(path), "--namespace", "hist", *INSTR, "--kind", "trades", "--batch-rows", "300",
                 store_url=f"file:{tmp_path / name}")
        assert r.exit_code == 0

    def files(root: Path):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.name != ".lock"}

    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert len(a) > 5 and a.keys() == b.keys()
    assert a == b


def test_unwritable_store_is_one_line_error(tape, tmp_path, write_trades):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = tape("ingest", "csv", str(write_trades(n=5)), "--namespace", "hist", *INSTR, "--kind", "trades",
             store_url=f"file:{blocker}/store")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: cannot create ") and r.stderr.count("\n") == 1
    assert "writable" in r.stderr


def test_missing_file_and_bad_options(tape, tmp_path):
    r = ingest(tape, tmp_path / "none.csv")
    assert r.exit_code == 2 and r.stderr.endswith("none.csv: no such file\n")
    r = tape("ingest", "csv", str(tmp_path / "none.csv"), "--namespace", "x", *INSTR, "--kind", "trades",
             "--price-increment", "-1")
    assert r.exit_code == 2 and r.stderr == "error: --price-increment '-1' must be positive\n"


@pytest.mark.parametrize("unit, expected", [("auto", JAN1), ("us", JAN1 // 1000)])
def test_time_unit_option(tape, store, write_text, unit, expected):
    path = write_text("u.csv", "time,price,qty\n1704067200000,1,1\n")
    assert ingest(tape, path, "u", "--time-unit", unit).exit_code == 0
    assert [e.ts_event for e in events(store, "u", ["TradeTick"])] == [expected]


def test_time_out_of_range(tape, write_text):
    path = write_text("big.csv", "time,price,qty\n1704067200000000,1,1\n")
    r = ingest(tape, path, "u", "--time-unit", "ms")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: big.csv line 2, column 'time': '1704067200000000' is out of range (years "
                               "1678..2262); nothing was imported") and r.stderr.count("\n") == 1


def bars_cli(tape, path, ns, *extra, timeframe="1m"):
    return tape("ingest", "csv", str(path), "--namespace", ns, *INSTR, "--kind", "bars", "--timeframe", timeframe,
                *extra)


def test_output_names_the_layout_and_reports_duplicates_and_gaps(tape, store, write_text):
    path = write_text("k.csv", "".join(f"{1704067200000 + m * 60000},1,2,0.5,1.5,10,{1704067259999 + m * 60000},"
                                       f"15,3,5,7.5,0\n" for m in (0, 1, 1, 4)))
    r = bars_cli(tape, path, "k")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("k.csv → k: 4 rows read, 5 events written, 0 skipped")
    assert r.stdout.splitlines()[1:] == [
        "layout: Binance klines (no header row, times in ms)",
        "duplicates: 1 exact duplicate row(s) skipped (first: line 3, the same as line 2)",
        "gaps: 1 (2 bars missing; first: 2024-01-01T00:02:00Z, before line 4)",
    ]


def test_no_header_columns_time_column_and_time_format_options(tape, store, write_text):
    path = write_text("raw.csv", "a,02.01.2024,1,2,0.5,1.5,10\nb,03.01.2024,1,2,0.5,1.5,10\n")
    r = bars_cli(tape, path, "raw", "--no-header", "--columns", "tag,start,open,high,low,close,volume",
                 "--time-column", "start", "--time-format", "%d.%m.%Y", timeframe="1d")
    assert r.exit_code == 0, r.output
    assert "\nlayout: no header row; columns from --columns; times from column 'start'\n" in r.stdout
    day = 86400 * 10**9
    assert [e.data["open_ts"] for e in events(store, "raw", ["Bar"])] == [JAN1 + day, JAN1 + 2 * day]
    r = bars_cli(tape, path, "raw2", "--no-header", "--columns", "tag,start,open,high,low,close,volume",
                 "--time-column", "start", "--time-format", "Y-m-d", timeframe="1d")
    assert r.exit_code == 2
    assert r.stderr == "error: --time-format 'Y-m-d' has no % directive: use strptime codes, e.g. %m/%d/%Y\n"


def test_monthly_timeframe_and_us_dates(tape, store, write_text):
    path = write_text("m.csv", "Date,Open,High,Low,Close,Volume\n"
                               "01/01/2024,1,2,0.5,1.5,10\n02/01/2024,1,2,0.5,1.5,10\n")
    r = bars_cli(tape, path, "m", timeframe="1M")
    assert r.exit_code == 0, r.output
    assert [e.ts_event for e in events(store, "m", ["Bar"])] == [1_706_745_600 * 10**9, 1_709_251_200 * 10**9]


def test_conflict_is_one_line_and_skip_conflicts_imports_the_rest(tape, store, write_text):
    rows = "".join(f"2024-01-01T00:0{m}:00Z,1,2,0.5,1.5,10\n" for m in range(3))
    assert bars_cli(tape, write_text("a.csv", "time,open,high,low,close,volume\n" + rows), "c").exit_code == 0
    changed = write_text("b.csv", "time,open,high,low,close,volume\n" + rows.replace("0.5,1.5", "0.5,1.25", 1)
                         + "2024-01-01T00:03:00Z,1,2,0.5,1.5,10\n")
    r = bars_cli(tape, changed, "c")
    assert r.exit_code == 2 and r.stdout == "" and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: b.csv: 1 row(s) conflict with the BTCUSDT.BINANCE bars 1m history of "
                               "namespace 'c' (first: line 2: the bar of 2024-01-01T00:00:00Z has close 1.25 in the "
                               "file, 1.5 in the namespace)")
    r = bars_cli(tape, changed, "c", "--skip-conflicts")
    assert r.exit_code == 0, r.output
    assert "4 rows read, 2 events written, 2 skipped" in r.stdout
    assert r.stdout.splitlines()[-1].startswith("conflicts: 1 row(s) differ from the namespace's history, left out "
                                                "(--skip-conflicts; first: line 2: the bar of")


def test_timeframe_mismatch_is_one_line_error(tape, store, write_text):
    path = write_text("d.csv", "time,open,high,low,close,volume\n" + "".join(
        f"2024-01-0{d},1,2,0.5,1.5,10\n" for d in (1, 2, 3)))
    r = bars_cli(tape, path, "d", timeframe="1m")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert "--timeframe 1m does not match the rows' spacing" in r.stderr and "pass --timeframe 1d" in r.stderr
