"""Telling a file's layout from its first records (runtime.ingest.layouts)."""
from __future__ import annotations

import pytest

from runtime.ingest.csvrows import CsvSpec, IngestError
from runtime.ingest.layouts import LayoutOptions, detect_layout, read_rows

DAY = 86400 * 10**9


def spec(kind: str = "bars", **kw) -> CsvSpec:
    tf = "1d" if kind == "bars" else None
    return CsvSpec("f.csv", "X", kind, tf, DAY if tf else None, **kw)


def detect(text: str, kind: str = "bars", options: LayoutOptions | None = None, **kw):
    head = [(i, line.split(",")) for i, line in enumerate(text.splitlines(), 1)][:3]
    return detect_layout(head, spec(kind, **kw), options or LayoutOptions())


@pytest.mark.parametrize(
    "text, kind, name, columns, skip, time_index",
    [
        ("time,open,high,low,close,volume\n", "bars", "header", ("time", "open", "high", "low", "close", "volume"),
         1, None),
        (",Open,High,Low,Close,Volume\n2004-08-19,1,1,1,1,1\n", "bars", "pandas-index",
         ("", "Open", "High", "Low", "Close", "Volume"), 1, 0),
        (",Date,Open,High,Low,Close,Volume\n0,2004-08-19,1,1,1,1,1\n", "bars", "header",  # RangeIndex + a Date column
         ("", "Date", "Open", "High", "Low", "Close", "Volume"), 1, None),
        ("Price,Close,Open\nTicker,GOOG,GOOG\nDate,,\n", "bars", "yfinance", ("Date", "Close", "Open"), 3, 0),
        ("Ticker,GOOG,GOOG\nPrice,Close,Open\n2024-01-02,1,1\n", "bars", "yfinance", ("", "Close", "Open"), 2, 0),
        ("1704067200000,1,2,0.5,1.5,10,1704067259999,15,3,5,7.5,0\n", "bars", "binance-klines",
         ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trades",
          "taker_buy_base", "taker_buy_quote", "ignore"), 0, None),
        ("1,1.5,2,3,1704067200000,True,True\n", "trades", "binance-trades",
         ("trade_id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"), 0, None),
        ("1,1.5,2,3,1704067200000,false\n", "trades", "binance-trades",  # futures: no is_best_match
         ("trade_id", "price", "qty", "quote_qty", "time", "is_buyer_maker"), 0, None),
        ("7,1.5,2,1,3,1704067200000000,False,True\n", "trades", "binance-aggtrades",
         ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time", "is_buyer_maker",
          "is_best_match"), 0, None),
    ],
)
def test_known_layouts(text, kind, name, columns, skip, time_index):
    layout = detect(text, kind)
    assert (layout.name, layout.columns, layout.skip, layout.time_index) == (name, columns, skip, time_index)


def test_forced_time_unit_is_what_the_description_says():
    layout = detect("1704067200000,1,2,0.5,1.5,10,1704067259999,15,3,5,7.5,0\n", time_unit="us")
    assert layout.description == "Binance klines (no header row, times in µs)"


def test_columns_and_time_column():
    options = LayoutOptions(no_header=True, columns=("a", "When", "o", "h", "l", "c", "v"), time_column="when")
    layout = detect("x,2024-01-01,1,1,1,1,1\n", options=options)
    assert (layout.name, layout.skip, layout.time_index) == ("columns", 0, 1)
    assert layout.description == "no header row; columns from --columns; times from column 'When'"


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("", LayoutOptions(), "f.csv: empty file; there is nothing to import"),
        ("2024-01-01,1,1,1,1,1\n", LayoutOptions(),
         ("f.csv line 1: no header row (the line is data): name the columns with --no-header --columns "
          "time,open,high,low,close,volume[,…]")),
        ("2024-01-01,1,1,1,1,1\n", LayoutOptions(no_header=True),
         "f.csv: --no-header needs --columns naming every column (e.g. --columns time,open,high,low,close,volume)"),
        ("2024-01-01,1,1,1,1,1\n", LayoutOptions(no_header=True, columns=("time", "open")),
         "f.csv line 1: --columns names 2 columns, the line has 6: name each one (any name for a column to leave out)"),
        ("time,open,high,low,close,volume\n", LayoutOptions(time_column="start"),
         "--time-column 'start': f.csv has no such column; its columns are: time, open, high, low, close, volume"),
    ],
)
def test_layout_refusals_name_the_fix(text, options, message):
    with pytest.raises(IngestError) as e:
        detect(text, options=options)
    assert str(e.value) == message


def test_missing_columns_name_the_options_to_use():
    with pytest.raises(IngestError, match=r"^f.csv line 1: missing column\(s\) for bars: time .* columns are: Start, "
                                          r"open, high, low, close, volume; .* --columns a,b,c .* --time-column NAME$"):
        read_rows(["Start,open,high,low,close,volume\n", "2024-01-01,1,1,1,1,1\n"], spec())


def test_time_format_tells_a_header_from_data():
    s = spec(time_format="%d.%m.%Y")
    layout, stream = read_rows(["Tag,open,high,low,close,volume\n", "02.01.2024,1,1,1,1,1\n"], s,
                               LayoutOptions(time_column="Tag"))
    assert layout.name == "header" and [r.payload["open_ts"] for r in stream] == [1_704_153_600 * 10**9]
    with pytest.raises(IngestError, match=r"line 1: no header row"):
        read_rows(["02.01.2024,1,1,1,1,1\n"], s)
