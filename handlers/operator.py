"""What an operator's command does to a session: a pure decision over the state, run by the engine as a handler.

A session records each OperatorCommand it reads from its control channel as an input (runtime/live/node.py); the
engine hands it here and emits what comes back in the same step, caused by the command, so a replay does the same:

  halt        the whole session (scope account, or the session's strategy or venue): trading HALTED; one
              instrument (scope instrument): an incident of kind OPERATOR with action DENY on it.
  reduce      the same with REDUCING / action REDUCE (only orders that reduce the position).
  resume      the whole session: trading ACTIVE again, refused while an incident that set the trading state is
              open and not acknowledged (Incidents.blocking); one instrument: the operator's incident on it resolved.
              Reducing from HALTED loosens too, so it is checked the same way.
  cancel_all  a CancelIntent for every open order in the scope.
  ack         the incident acknowledged (the fold of projections/incidents.py); a resume may then pass it.

A command that changes nothing (a halt of a halted session, an ack of no open incident, a cancel-all with no open
order, a scope the session does not hold) gets a CommandRefused naming why, so every command has a recorded answer.
"""
from __future__ import annotations

from typing import Any

from projections.incidents import OPERATOR

Emitted = tuple  # (name, payload): an event for the engine to emit
COMMANDS = ("halt", "reduce", "resume", "cancel_all", "ack")
SCOPES = ("account", "strategy", "venue", "instrument")
_TARGET = {"halt": "HALTED", "reduce": "REDUCING", "resume": "ACTIVE"}
_LOOSER = {("HALTED", "REDUCING"), ("HALTED", "ACTIVE"), ("REDUCING", "ACTIVE")}
_ACTION = {"halt": "DENY", "reduce": "REDUCE"}


class Operator:
    """Answers the operator's commands for one session (one strategy on one venue); remembers how far it has read
    the control channel, which a restart continues from."""

    def __init__(self, *, strategy_id: str, venue: str):
        self.strategy_id, self.venue = strategy_id, venue
        self.position = -1  # control-channel position of the last command recorded

    def command(self, data: dict[str, Any], state: Any) -> list[Emitted]:
        """The events an OperatorCommand causes (already folded into `state`: an ack is in the incidents)."""
        self.position = max(self.position, data.get("position", -1))
        command, scope, scope_id = data["command"], data.get("scope") or "account", data.get("scope_id") or ""
        wrong = self.scope_problem(scope, scope_id, state)
        if wrong is None and command not in COMMANDS:
            wrong = f"unknown command {command!r}: use one of {', '.join(COMMANDS)}"
        if wrong is not None:
            return [_refused(data, wrong)]
        who = f"operator {command.replace('_', '-')}{' by ' + data['by'] if data.get('by') else ''}"
        why = f"{who}: {data['reason']}" if data.get("reason") else who
        if command == "ack":
            return self._ack(data, state)
        if command == "cancel_all":
            return self._cancel_all(data, state, scope_id if scope == "instrument" else None, why)
        if scope == "instrument":
            return self._instrument(data, state, command, scope_id, why)
        return self._session(data, state, command, why)

    def scope_problem(self, scope: str, scope_id: str, state: Any) -> str | None:
        """Why the session cannot take a command for this scope, or None when it can."""
        if scope not in SCOPES:
            return f"unknown scope {scope!r}: use account, strategy, venue or instrument:ID"
        if scope == "instrument" and scope_id not in state.market.instruments:
            held = ", ".join(sorted(state.market.instruments)) or "none"
            return f"the session trades no instrument {scope_id!r} (it trades {held})"
        mine = {"strategy": self.strategy_id, "venue": self.venue}.get(scope)
        if mine is not None and scope_id not in ("", mine):
            return f"the session's {scope} is {mine}, not {scope_id!r}"
        return None

    # ---- the commands --------------------------------------------------------------------------------------------

    def _session(self, data: dict[str, Any], state: Any, command: str, why: str) -> list[Emitted]:
        now, target = state.risk.trading_state, _TARGET[command]
        if now == target:
            held = [i.scope_id for i in state.incidents.open.values() if i.kind == OPERATOR]
            more = (f"; operator halts on {', '.join(held)} are lifted with --scope instrument:ID"
                    if held and command == "resume" else "")
            return [_refused(data, f"trading is already {now}{more}")]
        if (now, target) in _LOOSER:
            blocking = state.incidents.blocking()
            if blocking:
                named = "; ".join(f"{i.incident_id} ({i.kind} on {i.scope_id}, {i.value} over {i.threshold})"
                                  for i in blocking)
                return [_refused(data, f"trading stays {now}: incident{'s' if len(blocking) > 1 else ''} {named} "
                                       "open and not acknowledged; wait for it to resolve or acknowledge it "
                                       "(tape incidents ack NS ID)")]
        return [("TradingStateChanged", {"state": target, "previous": now, "reason": why, "incident_id": None})]

    def _instrument(self, data: dict[str, Any], state: Any, command: str, iid: str, why: str) -> list[Emitted]:
        found = state.incidents.find(OPERATOR, iid)
        if command == "resume":
            if found is None:
                return [_refused(data, f"no operator halt or reduce on {iid} to resume")]
            return [("IncidentResolved", {"incident_id": found.incident_id, "detail": why})]
        action = _ACTION[command]
        if found is not None and found.action == action:
            return [_refused(data, f"{iid} is already under {found.incident_id} ({action})")]
        out: list[Emitted] = []
        if found is not None:
            out.append(("IncidentResolved", {"incident_id": found.incident_id, "detail": why}))
        out.append(("IncidentRaised", {
            "instrument_id": iid, "incident_id": f"op-{data.get('command_id') or data['sent_ts']}", "kind": OPERATOR,
            "severity": "WARNING", "detail": f"{why} ({'no new orders' if action == 'DENY' else 'reduce only'} on "
                                             f"{iid})", "action": action, "scope": "instrument", "scope_id": iid,
            "value": "", "threshold": "", "unit": "", "cancel_open": False}))
        return out

    def _cancel_all(self, data: dict[str, Any], state: Any, iid: str | None, why: str) -> list[Emitted]:
        orders = state.orders.open(iid)
        if not orders:
            return [_refused(data, f"no open orders{' on ' + iid if iid else ''}")]
        return [("CancelIntent", {"instrument_id": o.instrument_id, "strategy_id": o.strategy_id,
                                  "client_order_id": o.client_order_id, "reason": why}) for o in orders]

    def _ack(self, data: dict[str, Any], state: Any) -> list[Emitted]:
        iid = data.get("incident_id") or ""
        if iid not in state.incidents.open:
            return [_refused(data, f"no open incident {iid!r} (tape incidents list NS shows the open ones)")]
        return []

    # ---- snapshots ---------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {"position": self.position}

    def restore(self, state: dict[str, Any]) -> None:
        self.position = state["position"]


def _refused(data: dict[str, Any], reason: str) -> Emitted:
    return ("CommandRefused", {"command_id": data.get("command_id") or "", "command": data["command"],
                               "reason": reason})
