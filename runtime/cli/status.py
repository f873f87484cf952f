"""`tape status NS`: is it healthy and what is it holding, from the log alone."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.text import Text

from runtime.cli import output
from runtime.cli.context import cli_context
from runtime.ops.status import Status, status
from schemas.decimals import plain, text


def status_command(
    ctx: typer.Context,
    namespace: str = typer.Argument(..., metavar="NS", help="A live, paper or backtest namespace."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (Decimals as exact strings)."),
    check: bool = typer.Option(False, "--check", help="Exit 1 when anything is found (for cron and probes)."),
) -> None:
    """Trading state, session, last event, positions, open orders, equity, the last reconciliation, findings."""
    s = status(cli_context(ctx).open(), namespace)
    if as_json:
        sys.stdout.write(json.dumps({**plain(asdict(s)), "healthy": s.healthy}, sort_keys=True) + "\n")
    else:
        show(s, time.time_ns())
    if check and not s.healthy:
        raise typer.Exit(1)


def _age(ns: int | None, now: int) -> str:
    if ns is None:
        return ""
    seconds = (now - ns) / 1e9
    if seconds < 0:
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def view(s: Status, now: int) -> Group:
    """The status for people: a header, holdings, open orders, findings (one renderable: `status` prints it,
    `top` redraws it)."""
    lines: list[Any] = []
    say = lines.append
    run = f"{s.mode.lower()} {s.strategy} {' '.join(f'{k}={v}' for k, v in sorted(s.params.items()) if v)}" \
        if s.mode else "not a run (no RunStarted)"
    say(f"{s.namespace}: {'healthy' if s.healthy else 'NOT HEALTHY'} — {run}")
    say(f"  session        {s.session} (writer: {s.writer})")
    say(f"  trading        {s.trading_state}" + (f" — {s.trading_reason}" if s.trading_reason else ""))
    if s.last_event:
        age = _age(s.last_recorded_ns, now) if s.mode in ("LIVE", "PAPER") else ""  # a backtest records event time
        say(f"  last event     seq {s.last_seq:,} {s.last_event} at {output.time_cell(s.last_ts_event)}"
            + (f", recorded {age}" if age else ""))
    if s.equity:
        say("  equity         " + ", ".join(f"{text(v)} {c}" for c, v in s.equity.items()))
    if s.balances:
        say("  balances       " + ", ".join(f"{text(v)} {c}" for c, v in s.balances.items()))
    if s.fees:
        say("  fees paid      " + ", ".join(f"{text(v)} {c}" for c, v in s.fees.items()))
    r = s.reconciliation
    if r is not None:
        found = ", ".join(r["mismatches"]) if r["mismatches"] else "nothing"
        say(f"  reconciliation seq {r['seq']:,} at {output.time_cell(r['ts_event'])}: found {found}, "
            f"{'resolved' if r['resolved'] else 'UNRESOLVED'}")
    if s.holdings:
        t = output.table("instrument", "position", "mark", "unrealized", "realized", "last bar close",
                         right=("position", "mark", "unrealized", "realized"))
        for h in s.holdings:
            t.add_row(h.instrument_id, text(h.quantity), text(h.mark, "-"), text(h.unrealized_pnl),
                      text(h.realized_pnl), output.time_cell(h.last_bar_close_ts))
        say(t)
    if s.open_orders:
        t = output.table("open order", "instrument", "side", "type", "quantity", "filled", "price", "status",
                         "submitted", right=("quantity", "filled", "price"))
        for o in s.open_orders:
            t.add_row(o.client_order_id, o.instrument_id, o.side, o.order_type, text(o.quantity), text(o.filled),
                      text(o.price, "-"), o.status, output.time_cell(o.ts_submitted))
        say(t)
    else:
        say("  open orders    none")
    for f in s.findings:
        say(f"  ! {f}")
    return Group(*(Text(x) if isinstance(x, str) else x for x in lines))


def show(s: Status, now: int) -> None:
    output.console().print(view(s, now))


def top_command(
    ctx: typer.Context,
    namespace: str = typer.Argument(..., metavar="NS", help="A live, paper or backtest namespace."),
    interval: float = typer.Option(1.0, "--interval", min=0.05, metavar="S", help="Seconds between redraws."),
    iterations: int | None = typer.Option(None, "--iterations", min=1, metavar="N",
                                             help="Stop after N redraws (default: until Ctrl-C)."),
) -> None:
    """`tape status`, redrawn as the log grows, until Ctrl-C."""
    log = cli_context(ctx).open()
    first = status(log, namespace)  # a bad namespace fails here, in one line, before the screen is taken
    drawn = 0
    try:
        with Live(view(first, time.time_ns()), console=output.console(), auto_refresh=False,
                  screen=False) as screen:
            drawn = 1
            while iterations is None or drawn < iterations:
                time.sleep(interval)
                screen.update(view(status(log, namespace), time.time_ns()), refresh=True)
                drawn += 1
    except KeyboardInterrupt:
        pass
