from decimal import Decimal

import pytest

from runtime.times import (
    BadTime,
    add_months,
    auto_unit,
    bar_close,
    format_ns,
    parse_cell_time,
    parse_epoch,
    parse_formatted,
    parse_time,
    parse_timeframe,
    timeframe_months,
    timeframe_text,
)

JAN1 = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-01-01", JAN1),
        ("2024-01-01T00:00:00", JAN1),
        ("2024-01-01T00:00:00Z", JAN1),
        ("2024-01-01 00:00", JAN1),
        ("2024-01-01T02:00:00+02:00", JAN1),
        ("2023-12-31T19:00:00-0500", JAN1),
        ("2024-01-01T01:30+01:30", JAN1),
        ("2024-01-01T00:00:00.5Z", JAN1 + 500_000_000),
        ("2024-01-01T00:00:00.123456789", JAN1 + 123_456_789),
        ("2024-01-01T00:00:00,000001", JAN1 + 1_000),
        (str(JAN1), JAN1),
        ("0", 0),
        ("  1704067200000000001 ", JAN1 + 1),
    ],
)
def test_parse_time_accepts_iso_and_epoch_ns(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01", "2024-02-30", "2024-01-01T25:00", "1.5", "",
                                  "2024-01-01T00:00+24:00",
                                  "2024-01-01T00:00:00.1234567891"])
def test_parse_time_rejects_with_value_and_formats(text):
    with pytest.raises(BadTime) as e:
        parse_time(text)
    msg = str(e.value)
    assert repr(text) in msg and "ISO-8601" in msg and "nanoseconds" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "text, unit, expected",
    [
        ("1704067200", "auto", JAN1),
        ("1704067200.25", "auto", JAN1 + 250_000_000),
        ("1704067200000", "auto", JAN1),
        ("1704067200000000", "auto", JAN1),
        ("1704067200000000000", "auto", JAN1),
        ("1704067200000", "us", JAN1 // 1000),
        ("1704067200", "ms", JAN1 // 1000),
        ("5", "ns", 5),
    ],
)
def test_epoch_units(text, unit, expected):
    assert parse_epoch(text, unit) == expected


def test_auto_unit_boundaries():
    assert [auto_unit(Decimal(v)) for v in ("99999999999", "1e11", "1e14", "1e17")] == ["s", "ms", "us", "ns"]


def test_sub_nanosecond_epoch_is_an_error():
    with pytest.raises(ValueError, match="below a nanosecond"):
        parse_epoch("1.5", "ns")


def test_cell_time_iso_or_none():
    assert parse_cell_time("2024-01-01T00:00:00Z") == JAN1
    assert parse_cell_time("not a time") is None


def test_timeframes():
    assert parse_timeframe("1m") == 60 * 10**9
    assert parse_timeframe("4h") == 4 * 3600 * 10**9
    assert parse_timeframe("1d") == 86400 * 10**9
    assert parse_timeframe("1w") == 7 * 86400 * 10**9
    assert parse_timeframe("1M") == 2_629_746 * 10**9  # the average month, for rates and ages; bar_close is exact
    for bad in ("0M", "0m", "m", "1.5h", "1y", "1mo"):
        with pytest.raises(BadTime, match="s, m, h, d, w or M"):
            parse_timeframe(bad)


def test_monthly_bars_close_a_calendar_month_later():
    assert (timeframe_months("1M"), timeframe_months("3M"), timeframe_months("1m")) == (1, 3, 0)
    feb1, mar1 = parse_time("2024-02-01"), parse_time("2024-03-01")
    assert bar_close(parse_time("2024-01-01"), "1M") == feb1
    assert bar_close(feb1, "1M") == mar1  # 29 days: a leap year
    assert bar_close(parse_time("2023-12-01T05:00:00Z"), "3M") == parse_time("2024-03-01T05:00:00Z")
    assert add_months(parse_time("2024-01-31"), 1) == parse_time("2024-02-29")  # clamped to the month's last day
    assert bar_close(JAN1, "1w") == JAN1 + 7 * 86400 * 10**9


def test_timeframe_text_names_a_length():
    assert [timeframe_text(n * 10**9) for n in (60, 3600, 86400, 604800, 2_678_400, 90)] == \
        ["1m", "1h", "1d", "1w", "1M", "90s"]


@pytest.mark.parametrize(
    "text, expected",
    [("01/02/2024", JAN1 + 86400 * 10**9), ("1/1/2024", JAN1), ("12/31/2023 23:59", JAN1 - 60 * 10**9),
     ("01/01/2024 00:00:01", JAN1 + 10**9)],
)
def test_cell_time_us_dates(text, expected):
    assert parse_cell_time(text) == expected


def test_cell_time_day_first_dates_name_the_format_to_pass():
    with pytest.raises(ValueError, match=r"'25/01/2024' is not a MM/DD/YYYY date; .* --time-format %d/%m/%Y"):
        parse_cell_time("25/01/2024")


def test_formatted_times():
    assert parse_formatted("02.01.2024 00:00", "%d.%m.%Y %H:%M") == JAN1 + 86400 * 10**9
    assert parse_formatted("2024-01-01 02:00:00.25+0200", "%Y-%m-%d %H:%M:%S.%f%z") == JAN1 + 250_000_000
    with pytest.raises(ValueError, match=r"'2024-01-01' does not match --time-format '%d.%m.%Y'"):
        parse_formatted("2024-01-01", "%d.%m.%Y")


def test_format_ns_round_trips():
    for ns in (JAN1, JAN1 + 1, JAN1 + 500_000_000, JAN1 + 123_456_000):
        assert parse_time(format_ns(ns)) == ns
    assert format_ns(JAN1) == "2024-01-01T00:00:00Z"
    assert format_ns(JAN1 + 500_000_000) == "2024-01-01T00:00:00.500Z"
    assert format_ns(JAN1 + 1) == "2024-01-01T00:00:00.000000001Z"


def test_a_time_past_what_nanoseconds_hold_is_refused_by_name() -> None:
    import pytest

    from runtime.cli.output import time_option
    from runtime.times import parse_time
    from schemas.errors import TapeError

    assert parse_time("2262-04-11T00:00:00") > 0
    for text in ("9999-12-31T23:59:59", "3000-01-01", str(1 << 63)):
        with pytest.raises(TapeError, match="beyond what a time can be"):
            time_option(text, "--to")
