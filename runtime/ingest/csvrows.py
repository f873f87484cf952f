"""CSV history → event drafts: column mapping, row parsing and validation, resume planning. Pure: no I/O.

Columns are found by name, case-insensitively, through ALIASES, in the column names the file's layout gives
(runtime.ingest.layouts: a header row, yfinance's header rows, a Binance export's fixed columns, --columns).
Prices and quantities are parsed as Decimal straight from the text (never through float), at most 18 decimal
places and 20 integer digits (the schemas' decimal(38, 18)). Times are ISO-8601, MM/DD/YYYY or epoch numbers, or
follow --time-format (see runtime.times).

Bars: the time column is the bar OPEN time; the event's ts_event is its close (open + timeframe, or N calendar
months on for `NM`), when the bar becomes known. A `close_time` column (Binance: close - 1 ms, or 1 µs) must agree
with the timeframe. Rows must be in ascending time order (several trades or quotes may share a timestamp).
Exact duplicates are dropped and counted (RowStream): a bar repeating the time of the one before with the same
values, a trade repeating a trade id of its time with the same values, a quote repeating one of its time; the
same bar time or trade id with other values is an error naming both lines.

Resume and idempotence: a series is (instrument, kind, timeframe). Its extent in a namespace is folded from the
HistoryImported events there. A row older than the series' first imported time is refused (the log is
append-only: older history goes into a new namespace); a row within the extent is already present and skipped;
rows at exactly the last imported time are skipped as many times as the namespace already holds events of the
series at that time (ties at a batch or file boundary), later rows are imported.

InstrumentDefined: when the namespace has none for the instrument, the first step starts with one. Venue, base
and quote come from the options or from the instrument id ('BTCUSDT.BINANCE' → venue BINANCE, BTC/USDT for a
known quote suffix); price and size increments, unless given, are 10^-d where d is the largest number of
decimals (trailing zeros ignored) seen in the prices, resp. quantities, of the first batch.
"""
from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from eventstore.writer import Draft
from runtime.times import NS, bar_close, format_ns, parse_cell_time, parse_formatted, timeframe_months, timeframe_text
from schemas.decimals import EXACT, parse_decimal, text as shown
from schemas.errors import TapeError
from schemas.ids import split_symbol

SOURCE = "ingest:csv"
KIND_TYPES = {"bars": "Bar", "trades": "TradeTick", "quotes": "QuoteTick"}
ALIASES: dict[str, tuple[str, ...]] = {
    "time": ("time", "timestamp", "ts", "date", "datetime", "open_time", "transact_time"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
    "trades": ("trades", "trade_count", "number_of_trades", "num_trades", "count"),
    "price": ("price", "p"),
    "quantity": ("quantity", "qty", "size", "amount"),
    "side": ("side", "aggressor", "is_buyer_maker"),
    "trade_id": ("trade_id", "id", "agg_trade_id"),
    "close_time": ("close_time",),
    "bid": ("bid", "bid_price"),
    "bid_size": ("bid_size", "bid_qty"),
    "ask": ("ask", "ask_price"),
    "ask_size": ("ask_size", "ask_qty"),
}
# kind → (required columns, optional columns)
COLUMNS = {
    "bars": (("time", "open", "high", "low", "close", "volume"), ("trades", "close_time")),
    "trades": (("time", "price", "quantity"), ("side", "trade_id")),
    "quotes": (("time", "bid", "bid_size", "ask", "ask_size"), ()),
}
PRICE_COLUMNS = {"open", "high", "low", "close", "price", "bid", "ask"}
_BUY = {"buy", "b", "buyer", "bid"}
_SELL = {"sell", "s", "seller", "ask"}
_NO_SIDE = {"", "none", "unknown", "no_aggressor", "n/a", "na"}
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
FIX_ROW = "nothing was imported: correct or remove that row and run again"
TIME_FIX = "use ISO-8601, MM/DD/YYYY or epoch s/ms/us/ns, or pass --time-format (strptime, e.g. %d.%m.%Y %H:%M)"


class IngestError(TapeError):
    """A history file or ingest option that cannot be imported as is."""


@dataclass(frozen=True)
class CsvSpec:
    """What the rows of one file are: the instrument, the kind of rows and how to read their times."""

    label: str  # file name in messages
    instrument: str
    kind: str  # bars | trades | quotes
    timeframe: str | None = None
    timeframe_ns: int | None = None
    time_unit: str = "auto"
    time_format: str | None = None  # strptime format of the time cells, instead of the accepted forms

    @property
    def event_type(self) -> str:
        return KIND_TYPES[self.kind]

    @functools.cached_property
    def months(self) -> int:
        """Calendar months of a monthly timeframe (0 for a fixed length, whose close is open + timeframe_ns)."""
        return timeframe_months(self.timeframe) if self.timeframe else 0

    def close_of(self, open_ts: int) -> int:
        """The event time of a bar that opened at open_ts (the open itself for trades and quotes)."""
        if self.months:
            return bar_close(open_ts, self.timeframe or "")
        return open_ts + (self.timeframe_ns or 0)


@dataclass(slots=True)
class Row:
    """One parsed data row: where it is in the file, its event time and payload."""

    line: int  # 1-based line number in the file
    row: int  # 1-based data row number (header excluded)
    ts: int  # ts_event, ns
    payload: dict[str, Any]
    price_dp: int = 0
    size_dp: int = 0


def column_key(name: str) -> str:
    """A column name as ALIASES spells it: trimmed, lower case, spaces and dashes as underscores."""
    return re.sub(r"[\s\-]+", "_", name.strip().lstrip("\ufeff").lower())


def column_label(header: list[str] | tuple[str, ...], index: int) -> str:
    """How messages name a column: its header text quoted, or its position when the header cell is empty."""
    name = header[index].strip().lstrip("\ufeff")
    return repr(name) if name else f"{index + 1} (unnamed)"


class RowParser:
    """Maps column names to columns and turns data rows into Rows, naming line and column on any error."""

    def __init__(self, spec: CsvSpec, header: list[str] | tuple[str, ...], time_index: int | None = None):
        self.spec = spec
        keys = [column_key(h) for h in header]
        self.width = len(header)
        self.index: dict[str, int] = {}
        self.names: dict[str, str] = {}
        if time_index is not None:
            self.index["time"], self.names["time"] = time_index, column_label(header, time_index)
        required, optional = COLUMNS[spec.kind]
        missing = []
        for col in required + optional:
            if col in self.index:
                continue
            for alias in ALIASES[col]:
                if alias in keys:
                    i = keys.index(alias)
                    self.index[col], self.names[col] = i, column_label(header, i)
                    break
            else:
                if col in required:
                    missing.append(col)
        if missing:
            wanted = "; ".join(f"{c} ({'/'.join(ALIASES[c])})" for c in missing)
            raise IngestError(
                f"{spec.label} line 1: missing column(s) for {spec.kind}: {wanted}; columns are: {', '.join(header)}; "
                "rename them in the file, name them with --columns a,b,c (--no-header when line 1 is data), "
                "or pick the time with --time-column NAME"
            )
        self.side_is_maker_flag = "side" in self.index and keys[self.index["side"]] == "is_buyer_maker"

    def fail(self, line: int, col: str, message: str, fix: str = FIX_ROW) -> IngestError:
        """The one-line error of a bad cell: file, line, column, what is wrong, and the fix (nothing was imported)."""
        return IngestError(f"{self.spec.label} line {line}, column {self.names[col]}: {message}; {fix}")

    def _cell(self, cells: list[str], col: str) -> str:
        return cells[self.index[col]]

    def _decimal(self, cells: list[str], col: str, line: int, *, non_negative: bool = False) -> tuple[Decimal, int]:
        try:
            value, dp = parse_decimal(self._cell(cells, col))
        except ValueError as e:
            raise self.fail(line, col, str(e)) from None
        if non_negative and value < 0:
            raise self.fail(line, col, f"{self._cell(cells, col).strip()!r} is negative")
        return value, dp

    def _time(self, cells: list[str], line: int, col: str = "time") -> int:
        text = self._cell(cells, col)
        try:
            ns = read_time(text, self.spec)
        except ValueError as e:
            raise self.fail(line, col, str(e)) from None
        if ns is None:
            raise self.fail(line, col, f"{text!r} is not a time: {TIME_FIX}")
        if not -(2**63) <= ns < 2**63 - (self.spec.timeframe_ns or 0) - (32 * 86400 * NS if self.spec.months else 0):
            raise self.fail(line, col, f"{text.strip()!r} is out of range (years 1678..2262)")
        return ns

    def parse(self, cells: list[str], line: int, row: int) -> Row:
        """One data record as a Row; IngestError naming line and column for anything that cannot be imported."""
        if len(cells) != self.width:
            raise IngestError(
                f"{self.spec.label} line {line}: expected {self.width} columns, found {len(cells)}: quote cells that "
                f"hold a comma, or fix the row; {FIX_ROW}"
            )
        ts = self._time(cells, line)
        return getattr(self, f"_{self.spec.kind}")(cells, line, row, ts)

    def _close_time(self, cells: list[str], line: int, open_ts: int, close: int) -> None:
        """A bar's own close_time (Binance: the close less 1 ms, or 1 µs) must agree with --timeframe."""
        if not self._cell(cells, "close_time").strip():
            return
        stated = self._time(cells, line, "close_time")
        if 0 <= close - stated <= 1_000_000:
            return
        span = -(-(stated - open_ts) // NS) * NS  # the stated length, rounded up to a whole second
        hint = timeframe_text(span)
        raise self.fail(
            line, "close_time",
            f"the bar closes at {format_ns(stated)}, but --timeframe {self.spec.timeframe} closes it at "
            f"{format_ns(close)}", f"nothing was imported: pass --timeframe {hint}" if hint else "nothing was imported",
        )

    def _bars(self, cells: list[str], line: int, row: int, ts: int) -> Row:
        o, odp = self._decimal(cells, "open", line)
        h, hdp = self._decimal(cells, "high", line)
        lo, ldp = self._decimal(cells, "low", line)
        c, cdp = self._decimal(cells, "close", line)
        v, vdp = self._decimal(cells, "volume", line, non_negative=True)
        if h < lo:
            raise self.fail(line, "high", f"high {h} is below low {lo}")
        for col, value in (("open", o), ("close", c)):
            if value > h:
                raise self.fail(line, col, f"{col} {value} is above high {h}")
            if value < lo:
                raise self.fail(line, col, f"{col} {value} is below low {lo}")
        trades = None
        if "trades" in self.index:
            text = self._cell(cells, "trades").strip()
            if text:
                if not text.isdigit():
                    raise self.fail(line, "trades", f"{text!r} is not a trade count")
                trades = int(text)
        spec = self.spec
        close = spec.close_of(ts)
        if "close_time" in self.index:
            self._close_time(cells, line, ts, close)
        payload = {"instrument_id": spec.instrument, "timeframe": spec.timeframe, "open_ts": ts,
                   "open": o, "high": h, "low": lo, "close": c, "volume": v, "trades": trades}
        return Row(line, row, close, payload, max(odp, hdp, ldp, cdp), vdp)

    def _trades(self, cells: list[str], line: int, row: int, ts: int) -> Row:
        p, pdp = self._decimal(cells, "price", line)
        q, qdp = self._decimal(cells, "quantity", line, non_negative=True)
        side = "NO_AGGRESSOR"
        if "side" in self.index:
            side = self._side(self._cell(cells, "side"), line)
        trade_id = None
        if "trade_id" in self.index:
            trade_id = self._cell(cells, "trade_id").strip() or None
        payload = {"instrument_id": self.spec.instrument, "price": p, "quantity": q,
                   "aggressor_side": side, "trade_id": trade_id}
        return Row(line, row, ts, payload, pdp, qdp)

    def _side(self, text: str, line: int) -> str:
        t = text.strip().lower()
        if self.side_is_maker_flag:
            if t in _TRUE:
                return "SELLER"  # the buyer was the maker: the seller took liquidity
            if t in _FALSE:
                return "BUYER"
            raise self.fail(line, "side", f"{text!r} is not true/false")
        if t in _BUY:
            return "BUYER"
        if t in _SELL:
            return "SELLER"
        if t in _NO_SIDE:
            return "NO_AGGRESSOR"
        raise self.fail(line, "side", f"{text!r} is not a side (buy/sell, b/s, buyer/seller or empty)")

    def _quotes(self, cells: list[str], line: int, row: int, ts: int) -> Row:
        b, bdp = self._decimal(cells, "bid", line)
        bs, bsdp = self._decimal(cells, "bid_size", line, non_negative=True)
        a, adp = self._decimal(cells, "ask", line)
        az, azdp = self._decimal(cells, "ask_size", line, non_negative=True)
        if b > a:
            raise self.fail(line, "bid", f"bid {b} is above ask {a} (crossed quote)")
        payload = {"instrument_id": self.spec.instrument, "bid_price": b, "bid_size": bs,
                   "ask_price": a, "ask_size": az}
        return Row(line, row, ts, payload, max(bdp, adp), max(bsdp, azdp))


def read_time(text: str, spec: CsvSpec) -> int | None:
    """A time cell as the spec reads it: with its --time-format, else ISO-8601, MM/DD/YYYY or epoch (None if none)."""
    if spec.time_format:
        return parse_formatted(text, spec.time_format)
    return parse_cell_time(text, spec.time_unit)


def looks_like_time(text: str, spec: CsvSpec) -> bool:
    """Whether a cell reads as a time (or is shaped like one): tells a data line from a header line."""
    try:
        return read_time(text, spec) is not None
    except ValueError:
        return not spec.time_format


def csv_records(lines: Iterable[str], name: str = "the file") -> Iterator[tuple[int, list[str]]]:
    """The non-blank CSV records of a text with the line each ends on (a quoted cell may span lines); what the csv
    module cannot read is one line naming the file and line."""
    reader = csv.reader(lines)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise IngestError(f"{name} line {max(1, reader.line_num)}: {_csv_problem(str(e))}") from None
        if any(c.strip() for c in cells):
            yield reader.line_num, cells


def _csv_problem(message: str) -> str:
    if "new-line character" in message:
        return ("a carriage return inside a line: the file ends its lines with CR alone (old Mac text); convert the "
                "line endings to LF or CRLF (e.g. tr '\\r' '\\n')")
    if "field larger than field limit" in message:
        return (f"a field longer than {csv.field_size_limit():,} characters: not a CSV of market data, or a quote "
                "opened and never closed")
    return f"not readable as CSV ({message})"


class RowStream:
    """Rows of one file in file order: rows out of time order refused, exact duplicates dropped and counted."""

    def __init__(self, parser: RowParser, records: Iterable[tuple[int, list[str]]]):
        self.parser = parser
        self.records = records
        self.read = 0  # data records seen, duplicates included
        self.duplicates = 0
        self.first_duplicate: tuple[int, int] | None = None  # (line, the line it repeats)

    def __iter__(self) -> Iterator[Row]:
        parser, kind = self.parser, self.parser.spec.kind
        prev: Row | None = None
        seen: dict[Any, Row] = {}  # identity → row, among the rows at prev.ts
        for line, cells in self.records:
            self.read += 1
            row = parser.parse(cells, line, self.read)
            if prev is not None and row.ts < prev.ts:
                raise parser.fail(
                    row.line, "time",
                    f"{cells[parser.index['time']].strip()!r} is earlier than line {prev.line}; rows must be in "
                    "ascending time order (sort the file by time)",
                )
            if prev is None or row.ts != prev.ts:
                seen = {}
            prev = row
            identity = _identity(kind, row)
            if identity is None:
                yield row
                continue
            earlier = seen.get(identity)
            if earlier is None:
                seen[identity] = row
                yield row
            elif earlier.payload == row.payload:
                self.duplicates += 1
                if self.first_duplicate is None:
                    self.first_duplicate = (row.line, earlier.line)
            else:
                col, what = ("time", "bar time") if kind == "bars" else ("trade_id", "trade id")
                field_name, mine, theirs = first_difference(row.payload, earlier.payload)
                raise parser.fail(
                    row.line, col,
                    f"repeats the {what} of line {earlier.line} with other values ({field_name} {mine} here, "
                    f"{theirs} there): keep the right one",
                )


def _identity(kind: str, row: Row) -> Any:
    if kind == "bars":
        return "bar"
    if kind == "trades":
        return row.payload["trade_id"]  # trades without an id may repeat legitimately: never dropped
    return tuple(row.payload.values())


def first_difference(mine: dict[str, Any], theirs: dict[str, Any]) -> tuple[str, str, str]:
    """(field, this value, that value) of the first field two payloads disagree on, values as exact text."""
    for name, value in mine.items():
        other = theirs.get(name)
        if value != other:
            return name, shown(value, "none"), shown(other, "none")
    return "", "", ""


# ---- resume planning ---------------------------------------------------------------------------------------


def series_key(instrument: str, kind: str, timeframe: str | None) -> tuple[str, str, str | None]:
    return (instrument, kind, timeframe if kind == "bars" else None)


@dataclass
class SeriesState:
    """What a namespace already holds of one series: its time extent and the events at its last time."""

    first_ts: int | None = None
    last_ts: int | None = None
    tail: int = 0


def fold_history(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str | None], SeriesState]:
    """Series extents from the decoded HistoryImported events of a namespace."""
    out: dict[tuple[str, str, str | None], SeriesState] = {}
    for d in records:
        key = series_key(d["instrument_id"], d["kind"], d.get("timeframe"))
        s = out.setdefault(key, SeriesState())
        if d["rows"] <= 0:
            continue
        s.first_ts = d["first_ts"] if s.first_ts is None else min(s.first_ts, d["first_ts"])
        s.last_ts = d["last_ts"] if s.last_ts is None else max(s.last_ts, d["last_ts"])
    return out


@dataclass
class Planner:
    """Decides, row by row, whether to import or skip; counts what it saw."""

    spec: CsvSpec
    state: SeriesState
    read: int = 0
    skipped: int = 0
    _tail_left: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._tail_left = self.state.tail

    def admit(self, row: Row) -> bool:
        self.read += 1
        first, last = self.state.first_ts, self.state.last_ts
        if last is None or row.ts > last:
            return True
        assert first is not None
        if row.ts < first:
            s = self.spec
            series = f"{s.instrument} {s.kind}" + (f" {s.timeframe}" if s.kind == "bars" else "")
            raise IngestError(
                f"{s.label} line {row.line}: time {format_ns(row.ts)} is older than the {series} history this "
                f"namespace already has (from {format_ns(first)}); the log is append-only: import older history "
                "into a new namespace"
            )
        if row.ts == last and self._tail_left <= 0:
            return True
        if row.ts == last:
            self._tail_left -= 1
        self.skipped += 1
        return False


def plan_batches(rows: Iterable[Row], planner: Planner, size: int) -> Iterator[list[Row]]:
    """The rows to import, in batches of at most `size`; skipped rows never reach a batch."""
    batch: list[Row] = []
    for row in rows:
        if planner.admit(row):
            batch.append(row)
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


# ---- drafts ------------------------------------------------------------------------------------------------


def market_drafts(spec: CsvSpec, rows: list[Row]) -> list[Draft]:
    """One market event per row; ts_init = ts_event (imported history has no recording time of its own)."""
    t, key = spec.event_type, spec.instrument
    return [Draft(t, r.payload, r.ts, key, SOURCE, None, None, r.ts) for r in rows]


def history_draft(spec: CsvSpec, file_name: str, sha256: str, rows: list[Row]) -> Draft:
    """The HistoryImported event that closes a batch's step: the resume point."""
    payload = {
        "instrument_id": spec.instrument, "file_name": file_name, "sha256": sha256, "kind": spec.kind,
        "timeframe": spec.timeframe if spec.kind == "bars" else None, "rows": len(rows),
        "first_row": rows[0].row, "last_row": rows[-1].row, "first_ts": rows[0].ts, "last_ts": rows[-1].ts,
    }
    return Draft("HistoryImported", payload, rows[-1].ts, spec.instrument, SOURCE, None, None, rows[-1].ts)


@dataclass(frozen=True)
class InstrumentOptions:
    venue: str | None = None
    base: str | None = None
    quote: str | None = None
    price_increment: Decimal | None = None
    size_increment: Decimal | None = None


def _precision(increment: Decimal) -> int:
    exponent = EXACT.normalize(increment).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def instrument_identity(spec: CsvSpec, opts: InstrumentOptions) -> tuple[str, str, str, str]:
    """(symbol, venue, base, quote) of the instrument, from the options or its id; IngestError if unknown."""
    symbol, _, suffix = spec.instrument.partition(".")
    venue = opts.venue or suffix or "SIM"
    base, quote = opts.base, opts.quote
    if not (base and quote):
        pair = split_symbol(symbol)
        if pair is None:
            raise IngestError(
                f"cannot tell the base and quote currencies of {spec.instrument!r}: pass --base and --quote"
            )
        base, quote = base or pair[0], quote or pair[1]
    return symbol, venue, base, quote


def instrument_draft(spec: CsvSpec, opts: InstrumentOptions, first_batch: list[Row]) -> Draft:
    """InstrumentDefined from the options, the instrument id and the first batch's decimals."""
    symbol, venue, base, quote = instrument_identity(spec, opts)
    price_inc = opts.price_increment or Decimal(1).scaleb(-max(r.price_dp for r in first_batch))
    size_inc = opts.size_increment or Decimal(1).scaleb(-max(r.size_dp for r in first_batch))
    payload = {
        "instrument_id": spec.instrument, "venue": venue, "symbol": symbol, "kind": "SPOT",
        "base_currency": base, "quote_currency": quote, "settlement_currency": quote,
        "price_increment": price_inc, "size_increment": size_inc,
        "price_precision": _precision(price_inc), "size_precision": _precision(size_inc),
        "min_quantity": size_inc, "max_quantity": None, "min_notional": None,
        "maker_fee": Decimal(0), "taker_fee": Decimal(0), "multiplier": Decimal(1),
    }
    ts = first_batch[0].ts
    return Draft("InstrumentDefined", payload, ts, spec.instrument, SOURCE, None, None, ts)


def parse_increment(text: str | None, option: str) -> Decimal | None:
    """A --price-increment / --size-increment value: a positive decimal."""
    if text is None:
        return None
    try:
        value, _ = parse_decimal(text)
    except ValueError as e:
        raise IngestError(f"{option} {e}") from None
    if value <= 0:
        raise IngestError(f"{option} {text!r} must be positive")
    return value
