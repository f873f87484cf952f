"""The one exact decimal text: no exponent, no trailing zeros, and never rounded (decimal(38,18) needs 38 digits)."""
from decimal import Decimal as D

from schemas.decimals import exact_text, plain, q18, text


def test_exact_text():
    assert exact_text(D("1.50E+3")) == "1500"
    assert exact_text(D("0.001000000000000000")) == "0.001"
    assert exact_text(D("100.500000000000000000")) == "100.5"
    assert exact_text(D("1E-18")) == "0.000000000000000001"
    assert exact_text(D("-0E-18")) == "0"


def test_38_digits_are_never_rounded():
    # the default 28-digit context gives 12345678901.12345678901234568
    big = D("12345678901.123456789012345678")
    assert exact_text(big) == "12345678901.123456789012345678"
    assert exact_text(D("12345678901234567890.123456789012345678")) == "12345678901234567890.123456789012345678"
    assert plain({"a": [big, b"\x01"]}) == {"a": ["12345678901.123456789012345678", "01"]}


def test_text_and_q18():
    assert text(None) == "" and text(None, "-") == "-" and text(D("2.50")) == "2.5" and text(3) == "3"
    assert q18(D("12345678901234567890.1234567890123456785")) == D("12345678901234567890.123456789012345678")
    assert q18(D("0.0000000000000000005")) == D(0) and q18(D("0.0000000000000000015")) == D("0.000000000000000002")
