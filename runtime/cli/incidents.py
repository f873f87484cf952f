"""`tape incidents list|show|ack NS`: the incidents of a namespace from its log, and acknowledging one."""
from __future__ import annotations

import json
import sys
from dataclasses import asdict

import typer

from runtime.cli import output
from runtime.cli.context import cli_context
from runtime.cli.live import command_answer
from runtime.ops.commands import WAIT_SECONDS
from runtime.ops.incidents import stories, story

incidents_app = typer.Typer(no_args_is_help=True, help="Incidents of a namespace: list, show, acknowledge.")


@incidents_app.command("list")
def list_command(
    ctx: typer.Context,
    namespace: str = typer.Argument(..., metavar="NS"),
    everything: bool = typer.Option(False, "--all", help="Resolved ones too (default: open ones)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The open incidents (or all): kind, scope, value over threshold, action, since when, acknowledged."""
    found = [s for s in stories(cli_context(ctx).open(), namespace) if everything or s.open]
    if as_json:
        sys.stdout.write(json.dumps([asdict(s) for s in found], sort_keys=True) + "\n")
        return
    if not found:
        sys.stdout.write(f"{namespace}: no {'' if everything else 'open '}incidents\n")
        return
    t = output.table("incident", "kind", "severity", "scope", "measured", "action", "raised", "state")
    for s in found:
        state = "open" if s.open else f"resolved at seq {s.resolved_seq:,}"
        if s.open and s.acknowledged_by:
            state = f"open, acknowledged by {s.acknowledged_by}"
        t.add_row(s.incident_id, s.kind, s.severity, f"{s.scope}:{s.scope_id}" if s.scope_id else s.scope,
                  f"{s.value} >= {s.threshold}" if s.threshold else "", s.action, output.time_cell(s.raised_ts),
                  state)
    output.console().print(t)


@incidents_app.command("show")
def show_command(
    ctx: typer.Context,
    namespace: str = typer.Argument(..., metavar="NS"),
    incident_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """One incident's story: raised, what it did, acknowledgements, resolution, each with its seq."""
    s = story(cli_context(ctx).open(), namespace, incident_id)
    if as_json:
        sys.stdout.write(json.dumps(asdict(s), sort_keys=True) + "\n")
        return
    out = sys.stdout.write
    out(f"{s.incident_id}: {s.kind} on {s.scope}{':' + s.scope_id if s.scope_id else ''} — "
        f"{'open' if s.open else 'resolved'}{', acknowledged by ' + s.acknowledged_by if s.acknowledged_by else ''}\n")
    if s.threshold:
        out(f"  measured {s.value} {s.unit} against a threshold of {s.threshold}; action {s.action}\n")
    for step in s.steps:
        out(f"  seq {step.seq:>10,}  {output.time_cell(step.ts_event)}  {step.what}\n")


@incidents_app.command("ack")
def ack_command(
    ctx: typer.Context,
    namespace: str = typer.Argument(..., metavar="NS"),
    incident_id: str = typer.Argument(..., metavar="ID"),
    reason: str = typer.Option(..., "--reason", metavar="TEXT", help="Why it is safe to go on (recorded)."),
    wait: float = typer.Option(WAIT_SECONDS, "--wait", min=0.5, metavar="S",
                               help="How long to wait for the session to record it."),
) -> None:
    """Acknowledge an open incident: a resume may then pass it (the running session records the ack)."""
    command_answer(ctx, namespace, "ack", incident_id=incident_id, reason=reason, wait=wait)
