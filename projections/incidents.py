"""Open incidents: raised, acknowledged, resolved — the fold the risk rules, `tape status` and a resume read.

An incident is raised (IncidentRaised) with a kind, a scope (instrument, strategy, venue or account) and the id of
what it concerns, the measured value and the threshold, and the action taken. It stays open until IncidentResolved;
an operator may acknowledge it (OperatorCommand "ack") while it is open. An open incident whose action is DENY on
an instrument refuses new orders on that instrument (REDUCE on an instrument: those that do not reduce its
position); a halt or a reduce-only state of the whole session is the trading state's (the risk projection's), which
only an operator's resume lifts — allowed once every incident that set it is resolved or acknowledged (`blocking`).
An operator's halt or reduce of one instrument is an incident of its own kind (OPERATOR), lifted by the operator's
resume of that instrument (handlers/operator.py).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

STATE_ACTIONS = frozenset({"REDUCE", "HALT"})  # actions that change the trading state (lifted by a resume)
INSTRUMENT_ACTIONS = frozenset({"DENY", "REDUCE"})  # actions the risk rules read on an instrument-scoped incident
OPERATOR = "operator_halt"  # the kind of an operator's halt or reduce of one instrument


@dataclass
class Incident:
    """One incident as the log tells it."""

    incident_id: str
    kind: str
    scope: str
    scope_id: str
    severity: str
    action: str
    value: str
    threshold: str
    raised_ts: int
    acknowledged: bool = False


class Incidents:
    """The incidents open now, by id (raising order), and the instruments they deny orders on."""

    EVENTS = ("IncidentRaised", "IncidentResolved", "OperatorCommand")

    def __init__(self) -> None:
        self.open: dict[str, Incident] = {}

    def apply(self, name: str, data: dict[str, Any], ts: int) -> None:
        if name == "IncidentRaised":
            self.open[data["incident_id"]] = Incident(
                data["incident_id"], data["kind"], data.get("scope") or "account", data.get("scope_id") or "",
                data["severity"], data["action"], data.get("value") or "", data.get("threshold") or "", ts)
        elif name == "IncidentResolved":
            self.open.pop(data["incident_id"], None)
        elif name == "OperatorCommand" and data["command"] == "ack":
            found = self.open.get(data.get("incident_id") or "")
            if found is not None:
                found.acknowledged = True

    def restricting(self, instrument_id: str) -> Incident | None:
        """The open incident that restricts new orders on the instrument most (DENY before REDUCE), if any."""
        found = None
        for i in self.open.values():
            if i.scope == "instrument" and i.scope_id == instrument_id and i.action in INSTRUMENT_ACTIONS:
                if i.action == "DENY":
                    return i
                found = found or i
        return found

    def find(self, kind: str, scope_id: str) -> Incident | None:
        """The open incident of a kind on a scope id (a detector raises one at a time per scope)."""
        for i in self.open.values():
            if i.kind == kind and i.scope_id == scope_id:
                return i
        return None

    def blocking(self) -> list[Incident]:
        """Open incidents that set the trading state and no operator acknowledged: a resume waits for them."""
        return [i for i in self.open.values()
                if i.action in STATE_ACTIONS and not i.acknowledged and i.kind != OPERATOR]

    # ---- snapshot ------------------------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        return [{f.name: getattr(i, f.name) for f in fields(i)} for i in self.open.values()]

    @classmethod
    def restore(cls, rows: list[dict[str, Any]] | None) -> Incidents:
        out = cls()
        for row in rows or ():
            out.open[row["incident_id"]] = Incident(**row)
        return out
