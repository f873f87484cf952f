"""`tape incidents`: every incident of a namespace and what happened around it, read from the log.

An incident's story is its IncidentRaised, the trading state changes and cancels it caused, the operators'
acknowledgements and commands, and its IncidentResolved — each with its seq, so `tape log dump --from-seq` shows
the surroundings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventstore.store import Log
from schemas.errors import TapeError

TYPES = ("IncidentRaised", "IncidentResolved", "TradingStateChanged", "OperatorCommand", "CommandRefused",
         "CancelIntent")


class IncidentNotFound(TapeError):
    """An incident id the namespace does not hold."""


@dataclass
class Step:
    """One thing that happened to an incident."""

    seq: int
    ts_event: int
    what: str


@dataclass
class IncidentStory:
    """An incident as the log tells it: raised, acted on, acknowledged, resolved."""

    incident_id: str
    kind: str
    severity: str
    scope: str
    scope_id: str
    action: str
    detail: str
    value: str
    threshold: str
    unit: str
    raised_seq: int
    raised_ts: int
    resolved_seq: int | None = None
    resolved_ts: int | None = None
    acknowledged_by: str | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.resolved_seq is None


def stories(log: Log, namespace: str) -> list[IncidentStory]:
    """Every incident of the namespace, in raising order."""
    if namespace not in log.namespaces():
        raise TapeError(f"no namespace {namespace!r} in {log.url}: `tape log namespaces` lists them")
    out: dict[str, IncidentStory] = {}
    by_event: dict[str, str] = {}  # event id of an IncidentRaised → its incident (what it caused is its)
    commands: dict[str, dict[str, Any]] = {}  # event id of an ack → the command
    for e in log.replay(namespace, types=TYPES):
        d, eid, cause = e.data, e.envelope["event_id"], e.envelope.get("causation_id")
        if e.name == "IncidentRaised":
            s = IncidentStory(d["incident_id"], d["kind"], d["severity"], d.get("scope") or "account",
                              d.get("scope_id") or "", d["action"], d["detail"], d.get("value") or "",
                              d.get("threshold") or "", d.get("unit") or "", e.seq, e.ts_event)
            out[s.incident_id] = s
            by_event[eid] = s.incident_id
            s.steps.append(Step(e.seq, e.ts_event, f"raised ({s.severity}, action {s.action}): {s.detail}"))
        elif e.name == "IncidentResolved" and d["incident_id"] in out:
            s = out[d["incident_id"]]
            s.resolved_seq, s.resolved_ts = e.seq, e.ts_event
            s.steps.append(Step(e.seq, e.ts_event, f"resolved: {d['detail']}"))
        elif e.name == "TradingStateChanged" and (d.get("incident_id") in out or cause in by_event):
            s = out[d.get("incident_id") or by_event[cause]]
            s.steps.append(Step(e.seq, e.ts_event, f"trading {d['previous']} -> {d['state']}"))
        elif e.name == "CancelIntent" and cause in by_event:
            s = out[by_event[cause]]
            s.steps.append(Step(e.seq, e.ts_event, f"cancel {d['client_order_id']} on {d['instrument_id']}"))
        elif e.name == "OperatorCommand" and d["command"] == "ack" and d.get("incident_id") in out:
            s = out[d["incident_id"]]
            commands[eid] = d
            if s.open:
                s.acknowledged_by = d.get("by") or "operator"
            s.steps.append(Step(e.seq, e.ts_event, f"acknowledged by {d.get('by') or 'operator'}"
                                                   f"{': ' + d['reason'] if d.get('reason') else ''}"))
        elif e.name == "CommandRefused" and cause in commands:
            s = out[commands[cause]["incident_id"]]
            s.acknowledged_by = None
            s.steps[-1].what += f" — refused: {d['reason']}"
    return list(out.values())


def story(log: Log, namespace: str, incident_id: str) -> IncidentStory:
    """One incident, or a one-line error naming the ones there are."""
    for s in stories(log, namespace):
        if s.incident_id == incident_id:
            return s
    raise IncidentNotFound(f"{namespace} holds no incident {incident_id!r}: `tape incidents list {namespace} --all` "
                           "lists them")
