"""The pure CSV → rows → drafts logic of runtime.ingest."""
from decimal import Decimal

import pytest

from runtime.ingest.csvrows import (
    CsvSpec,
    IngestError,
    InstrumentOptions,
    Planner,
    SeriesState,
    fold_history,
    instrument_draft,
    plan_batches,
)
from runtime.ingest.layouts import read_rows
from schemas.decimals import parse_decimal
from schemas.ids import split_symbol

JAN1 = 1_704_067_200 * 10**9
MIN = 60 * 10**9


def rows(text: str, kind: str = "trades", **kw):
    tf = kw.pop("timeframe", "1m" if kind == "bars" else None)
    spec = CsvSpec("f.csv", "BTCUSDT.BINANCE", kind, tf, MIN if tf else None, **kw)
    return list(read_rows(text.splitlines(keepends=True), spec)[1])


def test_bar_columns_case_insensitive_aliases_and_close_time():
    (r,) = rows("Open_Time,O,H,L,C,Vol,Count\n2024-01-01T00:00:00Z,1.5,2.25,1.0,2.0,10.125,7\n", "bars")
    assert r.ts == JAN1 + MIN  # ts_event = open + timeframe
    assert r.payload["open_ts"] == JAN1
    assert r.payload["high"] == Decimal("2.25") and r.payload["volume"] == Decimal("10.125")
    assert r.payload["trades"] == 7 and r.payload["timeframe"] == "1m"
    assert (r.price_dp, r.size_dp, r.line, r.row) == (2, 3, 2, 1)


def test_trade_sides_and_ids():
    got = rows("ts,p,amount,side,id\n1,1,1,BUY,a\n2,1,1,s,b\n3,1,1,,\n")
    assert [r.payload["aggressor_side"] for r in got] == ["BUYER", "SELLER", "NO_AGGRESSOR"]
    assert [r.payload["trade_id"] for r in got] == ["a", "b", None]
    maker = rows("time,price,qty,is_buyer_maker\n1,1,1,true\n2,1,1,False\n")
    assert [r.payload["aggressor_side"] for r in maker] == ["SELLER", "BUYER"]


def test_quotes_and_blank_lines_and_row_numbers():
    got = rows("time,bid_price,bid_qty,ask_price,ask_qty\n\n1704067200,1.1,5,1.2,6\n\n1704067201,1.1,5,1.3,6\n",
               "quotes")
    assert [(r.line, r.row) for r in got] == [(3, 1), (5, 2)]
    assert got[1].payload == {"instrument_id": "BTCUSDT.BINANCE", "bid_price": Decimal("1.1"), "bid_size": Decimal(5),
                              "ask_price": Decimal("1.3"), "ask_size": Decimal(6)}
    assert got[0].ts == JAN1


def test_time_unit_forced():
    (r,) = rows("time,price,qty\n1704067200000,1,1\n", time_unit="us")
    assert r.ts == JAN1 // 1000


def test_decimals_exact_from_text():
    (r,) = rows("time,price,qty\n1,12345678901234567890.123456789012345678,0.000000000000000001\n")
    assert r.payload["price"] == Decimal("12345678901234567890.123456789012345678")
    assert r.payload["quantity"] == Decimal("1E-18")


@pytest.mark.parametrize(
    "text, message",
    [
        ("time,price,qty\n1,1,1\n2,abc,1\n", "f.csv line 3, column 'price': 'abc' is not a number"),
        ("time,price,qty\n1,1,1\n2,1,\n", "f.csv line 3, column 'qty': is empty"),
        ("time,price,qty\n1,1,-1\n", "f.csv line 2, column 'qty': '-1' is negative"),
        ("time,price,qty\n1,1e-19,1\n", "f.csv line 2, column 'price': '1e-19' has more than 18 decimal places"),
        ("time,price,qty\n1,NaN,1\n", "f.csv line 2, column 'price': 'NaN' is not a number"),
        ("time,price,qty\nsoon,1,1\n", "f.csv line 2, column 'time': 'soon' is not a time"),
        ("time,price,qty\n5,1,1\n4,1,1\n", "f.csv line 3, column 'time': '4' is earlier than line 2"),
        ("time,price,qty\n1,1,1,1\n", "f.csv line 2: expected 3 columns, found 4"),
        ("time,price,qty,side\n1,1,1,up\n", "f.csv line 2, column 'side': 'up' is not a side"),
        ("time,price\n1,1\n", "f.csv line 1: missing column(s) for trades: quantity"),
        ("1,1,1\n", "f.csv line 1: no header row"),
        ("", "f.csv: empty file"),
    ],
)
def test_malformed_trades(text, message):
    with pytest.raises(IngestError) as e:
        rows(text)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "line, message",
    [
        ("2024-01-01,1,2,3,1,1", "column 'high': high 2 is below low 3"),
        ("2024-01-01,5,4,1,2,1", "column 'open': open 5 is above high 4"),
        ("2024-01-01,2,4,1,0.5,1", "column 'close': close 0.5 is below low 1"),
    ],
)
def test_inconsistent_bars(line, message):
    with pytest.raises(IngestError, match=message):
        rows(f"time,open,high,low,close,volume\n{line}\n", "bars")


def test_bars_repeated_exactly_are_dropped_and_counted_other_values_refused():
    header = "time,open,high,low,close,volume\n"
    _, stream = read_rows([header, "2024-01-01,1,1,1,1,1\n", "2024-01-01,1.0,1,1,1,1.00\n",
                           "2024-01-02,1,1,1,1,1\n"], CsvSpec("f.csv", "X", "bars", "1d", 86400 * 10**9))
    assert [r.line for r in stream] == [2, 4]
    assert (stream.read, stream.duplicates, stream.first_duplicate) == (3, 1, (3, 2))
    with pytest.raises(IngestError, match=r"line 3, column 'time': repeats the bar time of line 2 with other values "
                                          r"\(close 2 here, 1 there\): keep the right one; nothing was imported"):
        rows(header + "2024-01-01,1,2,1,1,1\n2024-01-01,1,2,1,2,1\n", "bars")


def test_trades_may_tie_and_repeat_without_an_id_but_not_with_one():
    assert len(rows("time,price,qty\n1,1,1\n1,1,1\n")) == 2  # no trade id: two trades of the same size
    assert len(rows("time,price,qty,id\n1,1,1,a\n1,1,1,a\n1,1,1,b\n")) == 2
    with pytest.raises(IngestError, match="line 3, column 'id': repeats the trade id of line 2 .*price 2 here, 1 th"):
        rows("time,price,qty,id\n1,1,1,a\n1,2,1,a\n")


def test_parse_decimal_limits():
    assert parse_decimal("42000.01000000") == (Decimal("42000.01000000"), 2)
    assert parse_decimal("1.5e3")[0] == Decimal(1500)
    with pytest.raises(ValueError, match="too large"):
        parse_decimal("1" * 21)
    with pytest.raises(ValueError, match="not a number"):
        parse_decimal("1_000")


def _trades(ts_list):
    text = "time,price,qty\n" + "".join(f"{t},1,1\n" for t in ts_list)
    return rows(text, time_unit="ns")


def test_planner_skips_present_rows_and_tail_ties_and_refuses_older():
    state = SeriesState(first_ts=10, last_ts=20, tail=2)
    planner = Planner(CsvSpec("f.csv", "X", "trades"), state)
    got = [r.ts for b in plan_batches(_trades([10, 15, 20, 20, 20, 21, 22]), planner, 2) for r in b]
    assert got == [20, 21, 22]  # two events at 20 exist already; the third is new
    assert (planner.read, planner.skipped) == (7, 4)
    with pytest.raises(IngestError, match="older than the X trades history .* import older history into a new"):
        list(plan_batches(_trades([9, 30]), Planner(CsvSpec("f.csv", "X", "trades"), SeriesState(10, 20)), 10))


def test_batches_are_bounded():
    batches = list(plan_batches(_trades(range(1, 12)), Planner(CsvSpec("f.csv", "X", "trades"), SeriesState()), 5))
    assert [len(b) for b in batches] == [5, 5, 1]


def test_fold_history_per_series():
    hist = [
        {"instrument_id": "X", "kind": "bars", "timeframe": "1m", "rows": 5, "first_ts": 10, "last_ts": 50},
        {"instrument_id": "X", "kind": "bars", "timeframe": "1m", "rows": 5, "first_ts": 60, "last_ts": 90},
        {"instrument_id": "X", "kind": "bars", "timeframe": "1h", "rows": 1, "first_ts": 5, "last_ts": 5},
        {"instrument_id": "X", "kind": "trades", "timeframe": None, "rows": 1, "first_ts": 7, "last_ts": 8},
    ]
    folded = fold_history(hist)
    assert (folded[("X", "bars", "1m")].first_ts, folded[("X", "bars", "1m")].last_ts) == (10, 90)
    assert folded[("X", "bars", "1h")].last_ts == 5 and folded[("X", "trades", None)].last_ts == 8


def test_instrument_definition_infers_increments_and_currencies():
    batch = rows("time,price,qty\n1,42000.10,0.00100000\n2,42000.125,1.5\n")
    d = instrument_draft(CsvSpec("f.csv", "BTCUSDT.BINANCE", "trades"), InstrumentOptions(), batch)
    p = d.payload
    assert (p["venue"], p["symbol"], p["base_currency"], p["quote_currency"]) == ("BINANCE", "BTCUSDT", "BTC", "USDT")
    assert p["price_increment"] == Decimal("0.001") and p["price_precision"] == 3
    assert p["size_increment"] == Decimal("0.001") and p["size_precision"] == 3
    given = instrument_draft(CsvSpec("f.csv", "ABC", "trades"),
                             InstrumentOptions("SIM", "A", "B", Decimal("0.5"), Decimal(10)), batch)
    assert given.payload["price_increment"] == Decimal("0.5") and given.payload["size_precision"] == 0
    with pytest.raises(IngestError, match="--base and --quote"):
        instrument_draft(CsvSpec("f.csv", "ABC", "trades"), InstrumentOptions(), batch)


def test_split_symbol():
    assert split_symbol("ETH-BTC") == ("ETH", "BTC")
    assert split_symbol("SOLUSDC") == ("SOL", "USDC")
    assert split_symbol("FOO") is None
