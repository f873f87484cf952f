"""Incremental indicators against the brute-force answer over the window, on random exact values, and across a
snapshot and restore."""
from __future__ import annotations

import random
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest

from handlers.indicators import SMA, AverageCross, RollingMax, RollingMin, RollingSum
from schemas.decimals import ARITHMETIC


def values(seed: int, n: int = 400) -> list[Decimal]:
    rng = random.Random(seed)
    return [Decimal(rng.randint(-10 ** 9, 10 ** 9)).scaleb(-rng.choice((0, 2, 8, 18))) for _ in range(n)]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 3, 30])
def test_each_indicator_equals_the_brute_force_answer_over_its_window(seed: int, n: int) -> None:
    xs = values(seed)
    s, a, b, hi, lo = RollingSum(n), SMA(n), SMA(n + 2), RollingMax(n), RollingMin(n)
    cross = AverageCross(n, n + 2)
    with localcontext(ARITHMETIC):
        for i, x in enumerate(xs):
            for ind in (s, a, b, hi, lo):
                ind.add(x)
            assert cross.add(x) == a.above(b)
            window = xs[max(0, i + 1 - n):i + 1]
            assert s.total == sum(window, Decimal(0))
            full = i + 1 >= n
            assert (hi.value, lo.value) == ((max(window), min(window)) if full else (None, None))
            assert a.value == (ARITHMETIC.divide(sum(window), n) if full else None)
            wide = xs[max(0, i - 1 - n):i + 1]
            if i + 1 >= n + 2:  # compared exactly: as fractions, no rounding anywhere
                assert a.above(b) == (Fraction(sum(window)) / n > Fraction(sum(wide)) / (n + 2))
            else:
                assert a.above(b) is None


def test_an_indicator_restored_from_its_snapshot_goes_on_as_if_never_stopped() -> None:
    xs = values(9)
    for cls in (RollingSum, SMA, RollingMax, RollingMin):
        whole, part = cls(20), cls(20)
        for x in xs[:150]:
            whole.add(x)
            part.add(x)
        part = cls.restore(part.snapshot())
        for x in xs[150:]:
            whole.add(x)
            part.add(x)
        assert part.snapshot() == whole.snapshot()


def test_a_window_of_no_values_is_refused() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        SMA(0)
    with pytest.raises(ValueError, match="n >= 1"):
        RollingMax(0)
