"""Operator commands sent to a running session, and their answers read back from the log.

`send` puts a command in the namespace's control channel (eventstore/control.py) and waits until the session has
recorded it: the OperatorCommand with the command's id, and what it did in the same step (a trading state change,
incidents raised or resolved, cancel intents — or a CommandRefused naming why nothing was done). A command carries
an expiry: a session that reads it later (it was down, or still recovering) does not act on it, so a command the
sender was told was not taken never takes effect afterwards.
"""
from __future__ import annotations

import getpass
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from eventstore.replay import Event
from eventstore.store import Log
from schemas.errors import TapeError

WAIT_SECONDS = 15.0
ANSWERS = ("TradingStateChanged", "IncidentRaised", "IncidentResolved", "CancelIntent", "CommandRefused")


class CommandError(TapeError):
    """A command that cannot be sent, or that no session took."""


@dataclass(frozen=True)
class Scope:
    """What a command applies to: the whole session (account, strategy, venue) or one instrument."""

    kind: str = "account"
    id: str = ""

    @classmethod
    def parse(cls, text: str) -> Scope:
        """`account`, `strategy[:ID]`, `venue[:ID]` or `instrument:ID`, or a one-line error naming them."""
        kind, _, ident = text.partition(":")
        if kind not in ("account", "strategy", "venue", "instrument") or (kind == "account" and ident):
            raise CommandError(f"unknown scope {text!r}: use account, strategy[:ID], venue[:ID] or instrument:ID "
                               "(e.g. instrument:BTCUSDT.BINANCE)")
        if kind == "instrument" and not ident:
            raise CommandError("scope instrument needs its id: instrument:ID, e.g. instrument:BTCUSDT.BINANCE "
                               "(tape status NS lists them)")
        return cls(kind, ident)


@dataclass
class Answer:
    """What the session recorded for a command: the OperatorCommand's seq and the events that followed from it."""

    seq: int
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def refused(self) -> str | None:
        for name, data in self.events:
            if name == "CommandRefused":
                return data["reason"]
        return None


def sender() -> str:
    """Who sends a command, as the log records it (user@host)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def send(log: Log, namespace: str, command: str, *, scope: Scope = Scope(), reason: str = "",
         incident_id: str | None = None, wait: float = WAIT_SECONDS) -> Answer:
    """Send a command to the session writing `namespace` and return what it recorded, or a one-line error."""
    if namespace not in log.namespaces():
        raise CommandError(f"no namespace {namespace!r} in {log.url}: `tape log namespaces` lists them")
    holder = log.writer_holder(namespace)
    if holder is None:
        raise CommandError(f"no session is running on {namespace} (nobody holds its writer): a command is taken "
                           "only by a running `tape live`; start it, then send the command")
    start = log.horizon(namespace) + 1
    now = time.time_ns()
    command_id = uuid.uuid4().hex
    log.control(namespace).send({
        "command_id": command_id, "command": command, "scope": scope.kind, "scope_id": scope.id,
        "incident_id": incident_id, "reason": reason, "by": sender(), "sent_ts": now,
        "expires_ts": now + int(wait * 1e9)})
    deadline = time.monotonic() + wait + 2.0  # the session decides by the expiry; the log then holds its answer
    while True:
        found = _answer(log, namespace, command_id, start)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise CommandError(f"no session on {namespace} recorded the command within {wait:g}s (writer: "
                               f"{holder}); it has expired and will not be carried out — is `tape live` running "
                               "and past its startup? (--wait S waits longer)")
        time.sleep(0.2)


def _answer(log: Log, namespace: str, command_id: str, start: int) -> Answer | None:
    """The recorded command with this id at or after seq `start` and what its step did, or None (not yet)."""
    answer: Answer | None = None
    cause = ""
    for e in log.replay(namespace, from_seq=start, types=("OperatorCommand",) + ANSWERS):
        if answer is None:
            if e.name == "OperatorCommand" and e.data.get("command_id") == command_id:
                answer, cause = Answer(e.seq), e.envelope["event_id"]
            continue
        if e.envelope.get("causation_id") == cause:
            answer.events.append((e.name, _fields(e)))
        elif e.name == "OperatorCommand":
            break  # its step is over
    return answer


def _fields(e: Event) -> dict[str, Any]:
    return {k: v for k, v in e.data.items() if k != "envelope"}
