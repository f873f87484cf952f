"""What a report draws over time, collected while a run is folded (runs.fold_run's observer): each instrument's
price, its position, the fills that changed it, the marks behind buy-and-hold, and the incidents."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from eventstore.replay import Event
from projections.state import State


@dataclass(frozen=True, slots=True)
class Fill:
    """One fill as a marker on the price: an entry opens or adds to the position, an exit reduces or closes it."""

    ts: int
    instrument_id: str
    side: str
    price: Decimal
    quantity: Decimal
    entry: bool


@dataclass(slots=True)
class Incident:
    """An incident from its raise to its resolution (None: still open at the end)."""

    incident_id: str
    kind: str
    severity: str
    scope_id: str
    detail: str
    from_ts: int
    to_ts: int | None = None


@dataclass(slots=True)
class Series:
    """(time, value) points of one line."""

    ts: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, ts: int, value: float) -> None:
        self.ts.append(ts)
        self.values.append(value)


class Timeline:
    """The observer: prices at each of an instrument's market events, positions at each fill, and at each equity
    sample the marks as multiples of each instrument's first mark (buy-and-hold in equal weights)."""

    def __init__(self) -> None:
        self.prices: dict[str, Series] = {}
        self.positions: dict[str, Series] = {}
        self.fills: list[Fill] = []
        self.incidents: list[Incident] = []
        self._growth = Series()  # Σ over the instruments marked so far of mark / first mark
        self._marked: list[int] = []  # how many instruments were marked at each sample
        self._first: dict[str, Decimal] = {}
        self._open: dict[str, Incident] = {}

    def __call__(self, kind: str, event: Event, state: State) -> None:
        if kind == "sample":
            self._sample(event, state)
        elif event.name == "OrderFilled":
            self._fill(event, state)
        elif event.name == "IncidentRaised":
            d = event.data
            inc = Incident(d["incident_id"], d["kind"], d["severity"], d.get("scope_id") or "", d.get("detail") or "",
                           event.ts_event)
            self._open[inc.incident_id] = inc
            self.incidents.append(inc)
        elif event.name == "IncidentResolved":
            inc = self._open.pop(event.data["incident_id"], None)
            if inc is not None:
                inc.to_ts = event.ts_event

    def _sample(self, event: Event, state: State) -> None:
        marks = state.market.last_price
        iid = event.data["instrument_id"]
        price = marks.get(iid)
        if price is not None:
            self.prices.setdefault(iid, Series()).add(event.ts_event, float(price))
            self._first.setdefault(iid, price)
        self._growth.add(event.ts_event, sum(float(marks[i] / first) if first > 0 else 1.0
                                             for i, first in self._first.items()))
        self._marked.append(len(self._first))

    def growth(self) -> Series:
        """At each sample, holding every instrument in equal weights from its first mark, as a multiple of the
        start (an instrument not yet marked counts as held flat): its last value is 1 + buy-and-hold's return."""
        n = len(self._first) or 1
        values = [(s + n - k) / n for s, k in zip(self._growth.values, self._marked, strict=True)]
        return Series(self._growth.ts, values)

    def _fill(self, event: Event, state: State) -> None:
        d: dict[str, Any] = event.data
        iid = d["instrument_id"]
        after = state.portfolio.positions[iid].quantity if iid in state.portfolio.positions else Decimal(0)
        signed = d["last_quantity"] if d["side"] == "BUY" else -d["last_quantity"]
        before = after - signed
        self.fills.append(Fill(event.ts_event, iid, d["side"], d["last_price"], d["last_quantity"],
                               abs(after) > abs(before)))
        self.positions.setdefault(iid, Series()).add(event.ts_event, float(after))
