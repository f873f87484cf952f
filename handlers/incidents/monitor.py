"""The incident monitor: detectors as pure rules over the engine's state, the events it saw and event time.

The engine shows it every event (`observe`) and, after each step's risk evaluation, asks it for what changed
(`evaluate`), like the risk engine: a replay of the log shows it the same events at the same places, so it raises
and resolves the same incidents at the same seqs. What only the runtime can measure — the stream's connection,
venue requests without an answer, 429/418 answers, the clock offset, commit and input latency — reaches it as a
recorded `Heartbeat` input (runtime/live/node.py), which also moves event time forward when no market data comes.

Each measure is compared with its rule (handlers/incidents/config.py): at or above the threshold with no incident
open for that kind and scope → IncidentRaised and the rule's action (TradingStateChanged to REDUCING or HALTED
naming the incident; CancelIntent for the scope's open orders when `cancel_open`; DENY is read by the risk rules
from the open incidents); back below → IncidentResolved. A halt or reduce-only state is not lifted by a
resolution: only an operator's resume does that.

Measures: stale_data = seconds since an instrument's next market event was due (a bar's close + its period, a
tick's time), raised at a heartbeat (the node records it after the pass's bars, so a catch-up raises nothing);
bursts = venue rejections (not ROUTINE ones) / unknown outcomes within the window of event time;
risk_breach = the larger of the day's loss over daily_loss_limit and the drawdown over max_drawdown (4 places,
for people: whether the threshold's fraction of a limit is reached is decided exactly, by the rule the backtest's
risk engine halts by — handlers/risk/losses.py);
reconciliation_mismatch = blocking mismatches in the last ReconciliationReport; bar_gap = bars of an instrument the
venue no longer served (the Heartbeat's bar_gaps: a downtime past the venue's window of history), raised at that
heartbeat and resolved at the next; the rest from the last Heartbeat.
"""
from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Any

from handlers.incidents.config import IncidentConfig, Rule
from handlers.risk.limits import RiskLimits
from handlers.risk.losses import LossLimits
from handlers.venues.ccxt.reconcile import blocking, halt_reason
from schemas.decimals import exact_text
from schemas.names import PRICES

NS = 1_000_000_000
_PRICES = frozenset(PRICES)
ROUTINE = frozenset({"POST_ONLY_WOULD_TAKE", "RATE_LIMITED"})  # rejections a burst does not count: a quote that
# would cross is a market maker's daily bread, and 429/418 have rules of their own
BREACHES = frozenset({"risk_breach_soft", "risk_breach_hard"})
HEALTH = ("stream_connected", "stream_down_ns", "failed_reads", "rate_limited", "banned", "clock_offset_ms",
          "append_ms", "lag_ms", "bar_gaps")


class IncidentMonitor:
    """Raises and resolves incidents for one session (one strategy on one venue and account)."""

    def __init__(self, config: IncidentConfig, *, strategy_id: str, venue: str, limits: RiskLimits | None = None):
        self.rules: dict[str, Rule] = {r.kind: r for r in config.rules if r.enabled}
        self.strategy_id = strategy_id
        self.venue = venue
        self.limits = limits or RiskLimits()
        self.losses = LossLimits(self.limits)
        self.raised = 0  # incidents raised so far: the next id
        self.due: dict[str, int] = {}  # instrument → when its next market event is due (event time)
        self.rejects: deque[int] = deque()  # ts of venue rejections (inside the widest window)
        self.unknowns: deque[int] = deque()  # ts of unknown outcomes
        self.health: dict[str, Any] = {}  # the last Heartbeat's measures
        self.mismatches = 0  # blocking mismatches in the last ReconciliationReport
        self.mismatch_detail = ""  # what they are, in one line
        self._beat = False  # this step's input is a Heartbeat (reset by evaluate: never set between steps)

    # ---- what the engine shows it ----------------------------------------------------------------------------

    def observe(self, name: str, data: dict[str, Any], ts: int) -> None:
        if name in _PRICES:
            period = ts - data["open_ts"] if name == "Bar" else 0
            self.due[data["instrument_id"]] = ts + period
        elif name == "OrderRejected" and data.get("reason_code") not in ROUTINE:
            self.rejects.append(ts)
        elif name == "OrderOutcomeUnknown":
            self.unknowns.append(ts)
        elif name == "Heartbeat":
            self.health = {k: data.get(k) for k in HEALTH}
            self._beat = True
        elif name == "ReconciliationReport":
            found = blocking(data["mismatches"])
            self.mismatches, self.mismatch_detail = len(found), halt_reason(found) if found else ""

    # ---- the rules ---------------------------------------------------------------------------------------------

    def measures(self, state: Any, now: int) -> list[tuple[str, str, Decimal]]:
        """(kind, scope id, value) of every enabled rule that has something to measure now."""
        out: list[tuple[str, str, Decimal]] = []
        rules, venue = self.rules, self.venue
        if "stale_data" in rules:  # raised at a heartbeat (after the pass's bars: no alarm while catching up),
            for iid, due in sorted(self.due.items()):  # resolved at any step
                if self._beat or state.incidents.find("stale_data", iid) is not None:
                    out.append(("stale_data", iid, Decimal(max(0, now - due)) / NS))
        if "bar_gap" in rules and self._beat:  # per heartbeat: the bars its pass found missing, 0 resolves
            gaps = self.health.get("bar_gaps") or {}
            opened = {i.scope_id for i in state.incidents.open.values() if i.kind == "bar_gap"}
            out += [("bar_gap", iid, Decimal(gaps.get(iid, 0))) for iid in sorted(set(gaps) | opened)]
        for kind, times in (("reject_burst", self.rejects), ("unknown_burst", self.unknowns)):
            rule = rules.get(kind)
            if rule is not None:
                start = now - int(rule.window * NS)  # type: ignore[operator]
                while times and times[0] <= start:
                    times.popleft()
                out.append((kind, self.strategy_id if kind == "reject_burst" else venue, Decimal(len(times))))
        if "reconciliation_mismatch" in rules:
            out.append(("reconciliation_mismatch", venue, Decimal(self.mismatches)))
        breach = self.losses.level(state.risk)
        if breach is not None:
            out += [(k, venue, breach) for k in ("risk_breach_soft", "risk_breach_hard") if k in rules]
        h = self.health
        if h:
            if h.get("stream_connected") is not None:
                out.append(("stream_disconnected", venue, Decimal(h.get("stream_down_ns") or 0) / NS))
            offset = h.get("clock_offset_ms")
            for kind, value in (("venue_unreachable", h.get("failed_reads")), ("rate_limited", h.get("rate_limited")),
                                ("banned", h.get("banned")), ("log_stall", h.get("append_ms")),
                                ("consumer_lag", h.get("lag_ms")),
                                ("clock_skew", abs(offset) if offset is not None else None)):
                if value is not None:
                    out.append((kind, venue if kind not in ("log_stall", "consumer_lag") else "session",
                                Decimal(value)))
        return [m for m in out if m[0] in rules]

    def evaluate(self, state: Any, now: int) -> list[tuple[str, dict[str, Any]]]:
        """The incidents raised and resolved at this step, with their actions, as events."""
        out: list[tuple[str, dict[str, Any]]] = []
        trading = state.risk.trading_state
        measured, self._beat = self.measures(state, now), False
        for kind, scope_id, value in measured:
            rule = self.rules[kind]
            found = state.incidents.find(kind, scope_id)
            over = self.losses.reached(state.risk, rule.threshold) is not None if kind in BREACHES \
                else value >= rule.threshold
            if over and found is None:
                trading = self._raise(rule, scope_id, value, state, trading, out)
            elif not over and found is not None:
                out.append(("IncidentResolved", {
                    "incident_id": found.incident_id,
                    "detail": f"{kind} on {scope_id}: {exact_text(value)} {rule.unit}, below "
                              f"{exact_text(rule.threshold)} again"}))
        return out

    def _raise(self, rule: Rule, scope_id: str, value: Decimal, state: Any, trading: str,
               out: list[tuple[str, dict[str, Any]]]) -> str:
        self.raised += 1
        iid = f"{rule.kind}-{self.raised}"
        detail = (f"{rule.kind} on {scope_id}: {exact_text(value)} {rule.unit} (threshold "
                  f"{exact_text(rule.threshold)}); action {rule.action}")
        if rule.kind == "reconciliation_mismatch":
            detail += f" — {self.mismatch_detail}"
        out.append(("IncidentRaised", {
            "instrument_id": scope_id if rule.scope == "instrument" else None, "incident_id": iid, "kind": rule.kind,
            "severity": rule.severity, "detail": detail, "action": rule.action, "scope": rule.scope,
            "scope_id": scope_id, "value": exact_text(value), "threshold": exact_text(rule.threshold),
            "unit": rule.unit, "cancel_open": rule.cancel_open}))
        target = {"HALT": "HALTED", "REDUCE": "REDUCING"}.get(rule.action)
        if target is not None and (trading == "ACTIVE" or (target == "HALTED" and trading != "HALTED")):
            out.append(("TradingStateChanged", {"state": target, "previous": trading,
                                                "reason": f"incident {iid}: {detail}", "incident_id": iid}))
            trading = target
        if rule.cancel_open:
            for o in state.orders.open(scope_id if rule.scope == "instrument" else None):
                out.append(("CancelIntent", {"instrument_id": o.instrument_id, "strategy_id": o.strategy_id,
                                             "client_order_id": o.client_order_id, "reason": f"incident {iid}"}))
        return trading

    # ---- snapshots ---------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {"raised": self.raised, "due": dict(self.due), "rejects": list(self.rejects),
                "unknowns": list(self.unknowns), "health": dict(self.health), "mismatches": self.mismatches,
                "mismatch_detail": self.mismatch_detail}

    def restore(self, state: dict[str, Any]) -> None:
        self.raised, self.due, self.mismatches = state["raised"], dict(state["due"]), state["mismatches"]
        self.mismatch_detail = state["mismatch_detail"]
        self.rejects, self.unknowns = deque(state["rejects"]), deque(state["unknowns"])
        self.health = dict(state["health"])
