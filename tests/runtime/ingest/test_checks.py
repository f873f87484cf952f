"""The bars' spacing against the timeframe and rows against the namespace's history (runtime.ingest.checks)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from runtime.ingest.checks import HistoryCheck, Spacing
from runtime.ingest.csvrows import CsvSpec, IngestError, Row
from runtime.times import parse_time, parse_timeframe

H, DAY = 3600 * 10**9, 86400 * 10**9


def bar_spec(tf: str) -> CsvSpec:
    return CsvSpec("f.csv", "X", "bars", tf, parse_timeframe(tf))


def spacing(tf: str, opens: list[str]) -> Spacing:
    s = Spacing(bar_spec(tf))
    for line, text in enumerate(opens, 2):
        s.observe(Row(line, line - 1, 0, {"open_ts": parse_time(text)}))
    return s


def test_monthly_steps_follow_the_calendar():
    s = spacing("1M", ["2024-01-01", "2024-02-01", "2024-03-01", "2024-05-01"])
    assert (s.steps, s.regular, s.gaps, s.missing) == (3, 2, 1, 1)
    assert s.summary() == "gaps: 1 (1 bar missing; first: 2024-04-01T00:00:00Z, before line 5)"
    s.verdict()
    with pytest.raises(IngestError, match=r"--timeframe 1M does not match .* 1 of 2 steps .* \(first: line 4 after "
                                          r"line 3\)"):
        spacing("1M", ["2024-01-01", "2024-02-01", "2024-02-15"]).verdict()


def test_daily_steps_allow_a_daylight_saving_hour():
    # New York midnight written in UTC: 05:00 in winter, 04:00 after 10 March
    s = spacing("1d", ["2024-03-08T05:00:00Z", "2024-03-11T04:00:00Z", "2024-03-12T04:00:00Z"])
    assert (s.off, s.regular, s.gaps) == (0, 1, 0)  # Fri → Mon is a weekend
    assert spacing("1h", ["2024-03-08T05:00:00Z", "2024-03-08T06:30:00Z", "2024-03-08T07:30:00Z"]).off == 1


def test_two_bars_alone_are_not_judged():
    spacing("1m", ["2024-01-01", "2024-01-02"]).verdict()  # one step: a gap, not a mismatch


def trade(line: int, ts: int, price: str, trade_id: str | None = None) -> Row:
    return Row(line, line - 1, ts, {"instrument_id": "X", "price": Decimal(price), "quantity": Decimal(1),
                                    "aggressor_side": "NO_AGGRESSOR", "trade_id": trade_id})


def test_history_check_compares_position_by_position_and_only_what_the_file_states():
    held = [(1, {"price": Decimal("1.000000000000000000"), "quantity": Decimal(1), "aggressor_side": "NO_AGGRESSOR",
                 "trade_id": "a"}),
            (2, {"price": Decimal(2), "quantity": Decimal(1), "aggressor_side": "NO_AGGRESSOR", "trade_id": "b"})]
    asked: list[int] = []

    def events(ts: int):
        asked.append(ts)
        return iter(held)

    check = HistoryCheck(CsvSpec("f.csv", "X", "trades"), events)
    check.check(trade(2, 1, "1"))  # no trade id in the file: not compared
    check.check(trade(3, 2, "2", "b"))
    assert (check.count, asked) == (0, [1])  # the namespace is read once, from the first row's time
    check.check(trade(4, 2, "2", "c"))  # a second trade at 2: the namespace has one
    assert check.count == 1
    assert check.first == ("line 4: the namespace has no trade at 1970-01-01T00:00:00.000000002Z although its history "
                           "covers that time")
    with pytest.raises(IngestError, match=r"^f.csv: 1 row\(s\) conflict with the X trades history of namespace 'n'"):
        check.verdict("n")
