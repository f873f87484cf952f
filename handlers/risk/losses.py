"""How far equity has gone toward its loss limits: the one rule behind the risk engine's halt (backtests) and the
incident monitor's soft and hard breaches (live), so a backtest and a live session stop at the same equity.

A fraction f of the limits is reached when the day's loss reaches f x daily_loss_limit, or the drawdown from the
peak reaches f x max_drawdown — compared as equity at or below a floor (start − f·limit, peak·(1 − f·dd)), exact
in the 60-digit context, the floors recomputed only when the day's start or the peak changes (every step asks).
"""
from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

from handlers.risk.limits import RiskLimits
from schemas.decimals import ARITHMETIC as _CTX, ONE, Q18, ZERO, text

_Q4 = Decimal("0.0001")


class LossLimits:
    """The daily-loss and drawdown limits of one session, checked against the risk projection's equity."""

    def __init__(self, limits: RiskLimits):
        self.daily = limits.daily_loss_limit
        self.drawdown = limits.max_drawdown
        self._floors: dict[Decimal, tuple[Any, Any, Decimal | None, Decimal | None]] = {}  # f → start, peak, floors

    @property
    def enabled(self) -> bool:
        return self.daily is not None or self.drawdown is not None

    def reached(self, risk: Any, fraction: Decimal = ONE) -> str | None:
        """Why `fraction` of a loss limit is reached at the risk state's equity (the daily loss first), or None."""
        equity = risk.equity
        if equity is None or not self.enabled:
            return None
        start, peak = risk.day_start_equity, risk.peak_equity
        cached = self._floors.get(fraction)
        if cached is None or cached[0] is not start or cached[1] is not peak:
            loss_floor = _CTX.subtract(start, _CTX.multiply(fraction, self.daily)) \
                if start is not None and self.daily is not None else None
            dd_floor = _CTX.multiply(peak, _CTX.subtract(ONE, _CTX.multiply(fraction, self.drawdown))) \
                if peak is not None and peak > 0 and self.drawdown is not None else None
            cached = self._floors[fraction] = (start, peak, loss_floor, dd_floor)
        _, _, loss_floor, dd_floor = cached
        with localcontext(_CTX):
            if loss_floor is not None and equity <= loss_floor:
                return (f"daily_loss_limit: equity {text(equity)} is {text(start - equity)} below the day's start "
                        f"{text(start)}; {_limit(fraction, self.daily)}")
            if dd_floor is not None and equity <= dd_floor:
                dd = ((peak - equity) / peak).quantize(Q18)
                return (f"max_drawdown: equity {text(equity)} is {text(dd)} below the peak {text(peak)}; "
                        f"{_limit(fraction, self.drawdown)}")
        return None

    def level(self, risk: Any) -> Decimal | None:
        """The fraction of the nearer limit reached, to 4 places, for people (never compared: `reached` decides)."""
        equity = risk.equity
        if equity is None or not self.enabled:
            return None
        start, peak, level = risk.day_start_equity, risk.peak_equity, ZERO
        with localcontext(_CTX):
            if self.daily is not None and start is not None:
                level = max(level, (start - equity) / self.daily)
            if self.drawdown is not None and peak is not None and peak > 0:
                level = max(level, (peak - equity) / peak / self.drawdown)
        return level.quantize(_Q4)


def _limit(fraction: Decimal, limit: Any) -> str:
    # the whole limit's words are those of every halt recorded so far: a run's log must not change with this code
    return f"the limit is {text(limit)}" if fraction == ONE else f"{text(fraction)} of the limit {text(limit)} is reached"
