"""What an import checks before it writes: the bars' spacing against --timeframe, and rows against the namespace.

Spacing. Each step between consecutive bar opens is a whole number k of timeframes (for `NM`, of calendar
months), within an hour for timeframes of a day or more (a daylight-saving shift in times written with an
offset). k = 1 is regular; k > 1 is a gap of k - 1 missing bars, except that for 1d bars the Saturdays and
Sundays of a market that closes are not counted as missing. A step shorter than the timeframe or off its
multiples, or a file of several steps where none is one timeframe, means the timeframe does not match the rows:
the import is refused with the counts and the step the rows do have. Gaps are reported, never refused.

Conflicts. A row inside the history the namespace already holds for its series (the planner skips it) must be
what the namespace holds there: the same values for the same time, the n-th row of a time against the n-th event
the namespace holds at that time. A row that differs, or that the namespace does not hold although its history
covers the time (the log is append-only: nothing can be inserted), is a conflict. Values the file leaves empty
(a bar's trade count, a trade id) are not compared.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runtime.ingest.csvrows import CsvSpec, IngestError, Row, first_difference
from runtime.times import DAY, MONTH, NS, add_months, format_ns, human_ns, timeframe_text

TOLERANCE = 3600 * NS  # for timeframes of a day or more: a daylight-saving shift
COMPARED = {
    "bars": ("open", "high", "low", "close", "volume", "trades"),
    "trades": ("price", "quantity", "aggressor_side", "trade_id"),
    "quotes": ("bid_price", "bid_size", "ask_price", "ask_size"),
}
OPTIONAL = {"trades", "trade_id"}  # compared only where the file states them
WHAT = {"bars": "bar", "trades": "trade", "quotes": "quote"}


@dataclass
class Spacing:
    """Counts the steps between bars: regular, gaps (and the bars they miss), steps off the timeframe."""

    spec: CsvSpec
    steps: int = 0
    regular: int = 0
    gaps: int = 0
    missing: int = 0
    first_gap: tuple[int, int] | None = None  # (line after the gap, open time of the first missing bar)
    off: int = 0
    first_off: tuple[int, int] | None = None  # (line, line before it)
    lengths: Counter[int] = field(default_factory=Counter)
    _prev: Row | None = None

    def observe(self, row: Row) -> None:
        """Take the next bar of the file (in file order, duplicates already dropped)."""
        prev, self._prev = self._prev, row
        if prev is None:
            return
        before, now = prev.payload["open_ts"], row.payload["open_ts"]
        delta = now - before
        self.steps += 1
        self.lengths[delta] += 1
        k, on_grid = self._multiple(before, now)
        if not on_grid:
            self.off += 1
            if self.first_off is None:
                self.first_off = (row.line, prev.line)
            return
        if k == 1:
            self.regular += 1
            return
        missing = [t for t in (self._after(before, i) for i in range(1, k)) if not self._closed(t)]
        if missing:
            self.gaps += 1
            self.missing += len(missing)
            if self.first_gap is None:
                self.first_gap = (row.line, missing[0])

    def _multiple(self, before: int, now: int) -> tuple[int, bool]:
        spec = self.spec
        delta = now - before
        if spec.months:
            k = (delta + MONTH // 2) // MONTH // spec.months
            return k, k >= 1 and abs(now - add_months(before, k * spec.months)) <= TOLERANCE
        tf = spec.timeframe_ns or 0
        k = (delta + tf // 2) // tf
        tolerance = TOLERANCE if tf >= DAY else 0
        return k, k >= 1 and abs(delta - k * tf) <= tolerance

    def _after(self, before: int, i: int) -> int:
        spec = self.spec
        return add_months(before, i * spec.months) if spec.months else before + i * (spec.timeframe_ns or 0)

    def _closed(self, open_ts: int) -> bool:
        """A Saturday or Sunday of daily bars: a day a market that closes has no bar, not a missing one."""
        return self.spec.timeframe_ns == DAY and not self.spec.months and (open_ts // DAY + 3) % 7 >= 5

    def verdict(self) -> None:
        """Refuse the import when --timeframe does not match the rows' spacing (gaps alone are fine)."""
        spec = self.spec
        if not self.off and (self.steps < 2 or self.regular):
            return
        common, count = self.lengths.most_common(1)[0]
        hint = timeframe_text(common)
        seen = f"the most common step is {hint or human_ns(common)} ({count} of {self.steps})"
        if self.off:
            assert self.first_off is not None
            line, before = self.first_off
            what = (f"{self.off} of {self.steps} steps between bars are shorter than {spec.timeframe} or not whole "
                    f"multiples of it (first: line {line} after line {before})")
        else:
            what = f"no two consecutive bars of the {self.steps + 1} are {spec.timeframe} apart"
        fix = f"pass --timeframe {hint}" if hint and hint != spec.timeframe else "check the file's times"
        raise IngestError(
            f"{spec.label}: --timeframe {spec.timeframe} does not match the rows' spacing: {what}; {seen}: {fix}; "
            "nothing was imported"
        )

    def summary(self) -> str:
        """The gaps as one line for the output; empty when there are none."""
        if not self.gaps:
            return ""
        assert self.first_gap is not None
        line, missing_at = self.first_gap
        closed = "; Saturdays and Sundays not counted" if self.spec.timeframe_ns == DAY and not self.spec.months else ""
        bars = "bar" if self.missing == 1 else "bars"
        return (f"gaps: {self.gaps} ({self.missing} {bars} missing{closed}; first: {format_ns(missing_at)}, "
                f"before line {line})")


@dataclass
class HistoryCheck:
    """Compares rows the namespace already holds with the events it holds for them; counts the conflicts."""

    spec: CsvSpec
    held: Callable[[int], Iterable[tuple[int, dict[str, Any]]]]  # (ts_event, data) of the series from a time on
    count: int = 0
    first: str | None = None  # the first conflict, described
    _events: Iterator[tuple[int, dict[str, Any]]] | None = None
    _next: tuple[int, dict[str, Any]] | None = None
    _ts: int | None = None
    _group: list[dict[str, Any]] = field(default_factory=list)
    _position: int = 0

    def check(self, row: Row) -> None:
        """Take a row the planner skips as already present; a difference from the namespace is a conflict."""
        if self._events is None:
            self._events = iter(self.held(row.ts))
            self._next = next(self._events, None)
        if row.ts != self._ts:
            self._ts, self._position, self._group = row.ts, 0, self._collect(row.ts)
        position = self._position
        self._position += 1
        if position >= len(self._group):
            self._conflict(row, f"the namespace has no {WHAT[self.spec.kind]} {self._when(row)} although its "
                                "history covers that time")
            return
        held = self._group[position]
        mine = {k: row.payload[k] for k in COMPARED[self.spec.kind]
                if not (k in OPTIONAL and row.payload.get(k) is None)}
        theirs = {k: held.get(k) for k in mine}
        if mine != theirs:
            name, here, there = first_difference(mine, theirs)
            self._conflict(row, f"the {WHAT[self.spec.kind]} {self._when(row)} has {name} {here} in the file, "
                                f"{there} in the namespace")

    def _collect(self, ts: int) -> list[dict[str, Any]]:
        group = []
        while self._next is not None and self._next[0] <= ts:
            if self._next[0] == ts:
                group.append(self._next[1])
            assert self._events is not None
            self._next = next(self._events, None)
        return group

    def _when(self, row: Row) -> str:
        if self.spec.kind == "bars":
            return f"of {format_ns(row.payload['open_ts'])}"
        return f"at {format_ns(row.ts)}"

    def _conflict(self, row: Row, what: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"line {row.line}: {what}"

    def verdict(self, namespace: str) -> None:
        """Refuse the import when any row conflicts with the namespace (unless the caller skips conflicts)."""
        if not self.count:
            return
        s = self.spec
        series = f"{s.instrument} {s.kind}" + (f" {s.timeframe}" if s.kind == "bars" else "")
        raise IngestError(
            f"{s.label}: {self.count} row(s) conflict with the {series} history of namespace {namespace!r} (first: "
            f"{self.first}); the log is append-only: import the file into a new namespace, or pass "
            "--skip-conflicts to import only the rows after that history and keep the namespace's values"
        )
