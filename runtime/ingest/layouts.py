"""Which layout a history file has, told from its first records: where the column names are and where data starts.

Known layouts, tried in this order:
  * `--columns a,b,c` names every column: with `--no-header` line 1 is data, without it line 1 is a header row
    replaced by these names.
  * Binance exports (data.binance.vision), which have no header row, told by their shape: klines (12 columns,
    integer open and close times), trades (7 columns, or 6 for futures: id, price, qty, quote_qty, time,
    is_buyer_maker[, is_best_match]) and aggregate trades (8 columns). Times are ms, or µs in newer exports:
    the epoch unit follows each number's magnitude (runtime.times.auto_unit).
  * yfinance's header rows: `Price,Close,High,…` then `Ticker,GOOG,…` (either order), then usually `Date,,,…`;
    the first column holds the times. One ticker per file.
  * A pandas file written with an unnamed index (`,Open,High,Low,Close,Volume`, the `backtesting` package's
    GOOG.csv): when no column name is a time, the unnamed first column is.
  * A header row naming the columns (csvrows.ALIASES).
`--time-column NAME` picks the time column by name in any layout.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from runtime.ingest.csvrows import (
    ALIASES,
    COLUMNS,
    CsvSpec,
    IngestError,
    RowParser,
    RowStream,
    column_key,
    csv_records,
    looks_like_time,
)
from runtime.times import auto_unit

HEAD_RECORDS = 3  # records read to tell the layout
UNIT_NAMES = {"s": "s", "ms": "ms", "us": "µs", "ns": "ns"}
BINANCE_KLINES = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trades",
                  "taker_buy_base", "taker_buy_quote", "ignore")
BINANCE_TRADES = ("trade_id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match")
BINANCE_AGG_TRADES = ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time",
                      "is_buyer_maker", "is_best_match")
_BOOLS = {"true", "false"}


@dataclass(frozen=True)
class LayoutOptions:
    """What the user said about the file's shape: no header row, the column names, the time column."""

    no_header: bool = False
    columns: tuple[str, ...] | None = None
    time_column: str | None = None


DEFAULT_LAYOUT = LayoutOptions()


@dataclass(frozen=True)
class Layout:
    """A file's layout: its name, a line for the output, the column names, and how many records precede data."""

    name: str  # header | pandas-index | yfinance | binance-klines | binance-trades | binance-aggtrades | columns
    description: str
    columns: tuple[str, ...]
    skip: int  # records (non-blank CSV lines) before the first data record
    time_index: int | None = None  # the time column when not found by name


def read_rows(lines: Iterable[str], spec: CsvSpec, options: LayoutOptions = DEFAULT_LAYOUT) -> tuple[Layout, RowStream]:
    """The file's layout, told from its first records, and a stream of its parsed rows."""
    records = csv_records(lines, spec.label)
    head = list(itertools.islice(records, HEAD_RECORDS))
    layout = detect_layout(head, spec, options)
    parser = RowParser(spec, layout.columns, layout.time_index)
    return layout, RowStream(parser, itertools.chain(head[layout.skip:], records))


def detect_layout(head: list[tuple[int, list[str]]], spec: CsvSpec, options: LayoutOptions) -> Layout:
    """The layout of a file from its first (line, cells) records; IngestError naming the fix if none fits."""
    if not head:
        raise IngestError(f"{spec.label}: empty file; there is nothing to import")
    line, first = head[0]
    if options.columns:
        layout = _named_columns(spec, options, line, first)
    else:
        layout = _binance(spec, first)
        if layout is None:
            if options.no_header:
                raise IngestError(
                    f"{spec.label}: --no-header needs --columns naming every column "
                    f"(e.g. --columns {','.join(_example(spec.kind))})"
                )
            layout = _yfinance(spec, head) or _header(spec, line, first)
    return _with_time_column(spec, layout, options.time_column)


def _example(kind: str) -> tuple[str, ...]:
    return COLUMNS[kind][0]


def _named_columns(spec: CsvSpec, options: LayoutOptions, line: int, first: list[str]) -> Layout:
    names = tuple(c.strip() for c in options.columns or ())
    if len(names) != len(first):
        raise IngestError(
            f"{spec.label} line {line}: --columns names {len(names)} columns, the line has {len(first)}: "
            "name each one (any name for a column to leave out)"
        )
    if options.no_header:
        return Layout("columns", "no header row; columns from --columns", names, 0)
    return Layout("columns", "header row replaced by --columns", names, 1)


def _binance(spec: CsvSpec, cells: list[str]) -> Layout | None:
    """A headerless Binance export, told by its width and which cells are epoch times and booleans."""
    c = [x.strip() for x in cells]

    def epoch(i: int) -> bool:
        return c[i].isdigit() and len(c[i]) >= 10

    def flag(i: int) -> bool:
        return c[i].lower() in _BOOLS

    shape: tuple[str, str, tuple[str, ...], int] | None = None
    if len(c) == 12 and epoch(0) and epoch(6) and all(_number(x) for x in c[1:6]):
        shape = ("binance-klines", "bars", BINANCE_KLINES, 0)
    elif len(c) in (6, 7) and c[0].isdigit() and epoch(4) and all(flag(i) for i in range(5, len(c))):
        shape = ("binance-trades", "trades", BINANCE_TRADES[: len(c)], 4)
    elif len(c) == 8 and c[0].isdigit() and epoch(5) and flag(6) and flag(7):
        shape = ("binance-aggtrades", "trades", BINANCE_AGG_TRADES, 5)
    if shape is None:
        return None
    name, kind, columns, time_at = shape
    what = {"binance-klines": "Binance klines", "binance-trades": "Binance trades",
            "binance-aggtrades": "Binance aggregate trades"}[name]
    if spec.kind != kind:
        raise IngestError(f"{spec.label} line 1: the file looks like {what} (no header row): use --kind {kind}")
    unit = spec.time_unit if spec.time_unit != "auto" else auto_unit(Decimal(c[time_at]))
    return Layout(name, f"{what} (no header row, times in {UNIT_NAMES[unit]})", columns, 0)


def _number(text: str) -> bool:
    return text.replace(".", "", 1).isdigit()


def _yfinance(spec: CsvSpec, head: list[tuple[int, list[str]]]) -> Layout | None:
    """yfinance's stacked header rows (Price / Ticker, then the index name), or None."""
    if len(head) < 2:
        return None
    a, b = head[0][1], head[1][1]
    if {a[0].strip().lower(), b[0].strip().lower()} != {"price", "ticker"}:
        return None
    prices, tickers = (a, b) if a[0].strip().lower() == "price" else (b, a)
    names = sorted({t.strip() for t in tickers[1:] if t.strip()})
    if len(names) > 1:
        raise IngestError(
            f"{spec.label}: a yfinance file of several tickers ({', '.join(names)}); save one ticker per file "
            "(yf.download('GOOG').to_csv(…)) and import each into its own instrument"
        )
    skip, index_name = 2, ""
    if len(head) > 2:
        cells = head[2][1]
        if cells[0].strip() and not any(x.strip() for x in cells[1:]) and not looks_like_time(cells[0], spec):
            skip, index_name = 3, cells[0].strip()
    columns = (index_name, *(p.strip() for p in prices[1:]))
    ticker = f", ticker {names[0]}" if names else ""
    return Layout("yfinance", f"yfinance ({skip} header rows{ticker})", columns, skip, 0)


def _header(spec: CsvSpec, line: int, first: list[str]) -> Layout:
    """A header row; or a pandas file's, whose unnamed first column is the index (the times)."""
    if looks_like_time(first[0], spec):
        raise IngestError(
            f"{spec.label} line {line}: no header row (the line is data): name the columns with --no-header "
            f"--columns {','.join(_example(spec.kind))}[,…]"
        )
    columns = tuple(first)
    keys = {column_key(x) for x in first}
    if not first[0].strip() and not keys & set(ALIASES["time"]):
        return Layout("pandas-index", "pandas index (the unnamed first column holds the times)", columns, 1, 0)
    return Layout("header", "header row", columns, 1)


def _with_time_column(spec: CsvSpec, layout: Layout, name: str | None) -> Layout:
    if name is None:
        return layout
    keys = [column_key(c) for c in layout.columns]
    if column_key(name) not in keys:
        shown = ", ".join(c or "(unnamed)" for c in layout.columns)
        raise IngestError(f"--time-column {name!r}: {spec.label} has no such column; its columns are: {shown}")
    index = keys.index(column_key(name))
    return Layout(layout.name, f"{layout.description}; times from column {layout.columns[index]!r}",
                  layout.columns, layout.skip, index)
