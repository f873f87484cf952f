"""Halts and rejections of a run: when trading was stopped and why, and which orders risk or the venue refused.

A fold over the run's log (OrderIntent, RiskRejected, OrderRejected, TradingStateChanged), so a run's report and a
rebuild of it from the log say the same. A halt is a stretch of trading not ACTIVE (HALTED, or REDUCING: only orders
that reduce the position pass), from its TradingStateChanged to the next one back to ACTIVE or to the run's end.
Rejections are grouped by who refused (risk: the rule and its limit; venue: the reason code), each group counted with
its first and last time and the first reason as an example; listed one by one only when asked (`keep=True`).
A summary warns when more than a tenth of the order intents were refused or trading was not ACTIVE for more than a
tenth of the run's time: the figures then describe a strategy that could not do what it asked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REJECTED_WARNING = 0.10  # share of order intents refused above which the summary warns
HALTED_WARNING = 0.10  # share of the run's time not ACTIVE above which the summary warns


@dataclass(slots=True)
class Halt:
    """Trading not ACTIVE: in which state, from when and why, until when (None: still so at the run's end)."""

    state: str
    from_ts: int
    reason: str
    to_ts: int | None = None
    ended_by: str | None = None  # the reason of the change back to ACTIVE


@dataclass(frozen=True, slots=True)
class Rejection:
    """One refused order: when, on what, who refused it (risk or venue), by which rule and why."""

    ts: int
    instrument_id: str
    by: str
    rule: str
    limit: str
    reason: str


class Interventions:
    """Fold over a run's events: the halts, the rejections by who and rule, the order intents asked."""

    EVENTS = ("OrderIntent", "RiskRejected", "OrderRejected", "TradingStateChanged")

    def __init__(self, keep: bool = False) -> None:
        self.intents = 0
        self.rejected = 0
        self.halts: list[Halt] = []
        self.groups: dict[tuple[str, str, str], list[Any]] = {}  # (by, rule, limit) → [count, first, last, reason]
        self.listed: list[Rejection] | None = [] if keep else None

    def apply(self, name: str, data: dict[str, Any], ts: int) -> None:
        """Fold one event of the run (others are ignored)."""
        if name == "OrderIntent":
            self.intents += 1
        elif name == "RiskRejected":
            self._reject(Rejection(ts, data["instrument_id"], "risk", data["rule"], data["limit"], data["reason"]))
        elif name == "OrderRejected":
            self._reject(Rejection(ts, data["instrument_id"], "venue", data["reason_code"], "", data["reason"]))
        elif name == "TradingStateChanged":
            self._state(data["state"], data["reason"], ts)

    def _reject(self, r: Rejection) -> None:
        self.rejected += 1
        group = self.groups.get((r.by, r.rule, r.limit))
        if group is None:
            self.groups[(r.by, r.rule, r.limit)] = [1, r.ts, r.ts, r.reason]
        else:
            group[0] += 1
            group[2] = r.ts
        if self.listed is not None:
            self.listed.append(r)

    def _state(self, state: str, reason: str, ts: int) -> None:
        current = self.halts[-1] if self.halts and self.halts[-1].to_ts is None else None
        if current is not None:
            if current.state == state:
                return
            current.to_ts, current.ended_by = ts, reason
        if state != "ACTIVE":
            self.halts.append(Halt(state, ts, reason))

    def summary(self, start_ts: int | None, end_ts: int | None) -> dict[str, Any]:
        """Halts (with their durations within [start, end]), rejection groups (most first), shares and warnings."""
        span = (end_ts - start_ts) if start_ts is not None and end_ts is not None else 0
        halts, halted = [], 0
        for h in self.halts:
            until = h.to_ts if h.to_ts is not None else end_ts
            duration = max(0, (until or h.from_ts) - h.from_ts)
            halted += duration
            halts.append({"state": h.state, "from_ts": h.from_ts, "to_ts": h.to_ts, "duration_ns": duration,
                          "reason": h.reason, "ended_by": h.ended_by})
        groups = [{"by": by, "rule": rule, "limit": limit, "count": g[0], "first_ts": g[1], "last_ts": g[2],
                   "example": g[3]} for (by, rule, limit), g in self.groups.items()]
        groups.sort(key=lambda g: (-g["count"], g["by"], g["rule"], g["limit"]))
        rejected_share = self.rejected / self.intents if self.intents else None
        halted_share = halted / span if span > 0 else None
        warnings = []
        if rejected_share is not None and rejected_share > REJECTED_WARNING:
            top = groups[0]
            warnings.append(f"{self.rejected:,} of {self.intents:,} order intents ({rejected_share * 100:.1f} %) "
                            f"were refused, most by {top['by']} {top['rule']} ({top['count']:,}): the strategy did not "
                            "trade as it asked")
        if halted_share is not None and halted_share > HALTED_WARNING:
            first = halts[0]
            warnings.append(f"trading was not ACTIVE for {halted_share * 100:.1f} % of the run (first "
                            f"{first['state']}: {first['reason']}): orders it asked for then were refused")
        return {"order_intents": self.intents, "rejected": self.rejected, "rejected_share": rejected_share,
                "rejections": groups, "halts": halts, "halted_ns": halted, "halted_share": halted_share,
                "warnings": warnings}

    def rows(self) -> list[dict[str, Any]]:
        """Every rejection, in log order (only with `keep=True`)."""
        if self.listed is None:
            raise ValueError("Interventions(keep=True) lists the rejections; this fold only counted them")
        return [{"ts": r.ts, "instrument_id": r.instrument_id, "by": r.by, "rule": r.rule, "limit": r.limit,
                 "reason": r.reason} for r in self.listed]
