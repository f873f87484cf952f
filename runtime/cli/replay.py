"""`tape replay`: the state at any instant, what changed over a period, and re-running a backtest to verify it."""
from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any, List, Optional

import typer

from runtime.cli import output
from runtime.cli.context import cli_context
from schemas.decimals import exact_text, plain, text
from schemas.errors import TapeError

SHOW_ORDERS = 20


def _d(value: Any) -> str:
    return text(value, "-")


def _signed(value: Decimal) -> str:
    shown = exact_text(value)
    return shown if shown.startswith("-") or shown == "0" else "+" + shown


def replay(
    ctx: typer.Context,
    namespace: str = typer.Argument(..., metavar="NS", help="Namespace (or backtest run) to replay."),
    at: Optional[str] = typer.Option(None, "--at", metavar="TIME",
                                     help="State at TIME: events with ts_event strictly before TIME."),
    from_: Optional[str] = typer.Option(None, "--from", metavar="TIME", help="Period start (inclusive)."),
    to: Optional[str] = typer.Option(None, "--to", metavar="TIME", help="Period end (exclusive)."),
    verify: bool = typer.Option(False, "--verify", help="Re-run the backtest RUN and compare every event."),
    param: Optional[List[str]] = typer.Option(None, "--param", metavar="K=V",
                                              help="With --verify: override a recorded strategy parameter."),
    no_snapshots: bool = typer.Option(False, "--no-snapshots", help="Fold from seq 1, ignoring snapshots."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (Decimals as exact strings)."),
) -> None:
    """State at an instant (--at), changes over a period (--from/--to), or --verify a backtest run.

    TIME is ISO-8601 (naive = UTC) or integer epoch ns. The state at TIME folds, in seq order, exactly the
    events with ts_event < TIME (for a backtest run: its events and its source's market events); it starts
    from the latest snapshot taken before TIME. --verify exits 0 when every event is identical, 1 at the first
    divergence.
    """
    modes = sum([at is not None, from_ is not None or to is not None, verify])
    if modes != 1:
        raise TapeError("choose one of --at TIME, --from TIME/--to TIME, or --verify")
    if param and not verify:
        raise TapeError("--param applies to --verify only")
    log = cli_context(ctx).open()
    if verify:
        _verify(log, namespace, output.params_option(param or []), as_json)
        return
    from runtime.replay.history import period, state_at

    if namespace not in log.namespaces():
        raise TapeError(f"no namespace {namespace!r} in {log.url}: `tape log namespaces` lists them")
    if at is not None:
        view = state_at(log, namespace, output.time_option(at, "--at"), use_snapshots=not no_snapshots)
        if as_json:
            sys.stdout.write(json.dumps(plain(view), indent=2) + "\n")
        else:
            _print_state(view)
        return
    report = period(log, namespace, output.time_option(from_, "--from"), output.time_option(to, "--to"),
                    use_snapshots=not no_snapshots)
    if as_json:
        sys.stdout.write(json.dumps(plain(report), indent=2) + "\n")
    else:
        _print_period(report)


def _origin(view: dict[str, Any]) -> str:
    snap = f"snapshot at seq {view['snapshot_seq']} + " if view["snapshot_seq"] else "from seq 1, "
    src = f" (with source {view['source']} inputs)" if view.get("source") else ""
    return f"{snap}{view['folded']:,} events folded{src}; last seq {view['last_seq']}"


def _print_state(view: dict[str, Any]) -> None:
    console = output.console()
    when = output.time_cell(view["at"]) if view["at"] is not None else "end of log"
    console.print(f"[bold]{view['namespace']}[/bold] at {when} (events strictly before): {_origin(view)}")
    pos = output.table("instrument", "quantity", "avg price", "mark", "unrealized PnL", "realized PnL", "ccy", "fills",
                 right=("quantity", "avg price", "mark", "unrealized PnL", "realized PnL", "fills"))
    for p in view["positions"]:
        pos.add_row(p["instrument_id"], _d(p["quantity"]), _d(p["avg_price"]), _d(p["mark"]), _d(p["unrealized_pnl"]),
                    _d(p["realized_pnl"]), p["currency"], str(p["fills"]))
    console.print("positions" if view["positions"] else "positions: none")
    if view["positions"]:
        console.print(pos)
    bal = output.table("currency", "balance", right=("balance",))
    for cur, amount in view["balances"].items():
        bal.add_row(cur, _d(amount))
    console.print("balances" if view["balances"] else "balances: none")
    if view["balances"]:
        console.print(bal)
    orders = output.table("client order id", "instrument", "side", "type", "quantity", "filled", "price", "status", "submitted",
                    right=("quantity", "filled", "price"))
    for o in view["open_orders"]:
        orders.add_row(o["client_order_id"], o["instrument_id"], o["side"], o["order_type"], _d(o["quantity"]),
                       _d(o["filled_quantity"]), _d(o["price"]), o["status"], output.time_cell(o["ts_submitted"]))
    console.print(f"open orders: {len(view['open_orders'])} (of {view['orders_total']} orders, "
                  f"{view['fills_total']} fills)")
    if view["open_orders"]:
        console.print(orders)
    r = view["risk"]
    console.print(f"risk: trading {r['trading_state']}; equity {_d(r['equity'])} {r['currency'] or ''}, peak "
                  f"{_d(r['peak_equity'])}, day start {_d(r['day_start_equity'])}; {r['awaiting_verdict']} intent(s) "
                  f"awaiting risk, {r['accepted_not_submitted']} accepted not yet submitted")


def _print_period(rep: dict[str, Any]) -> None:
    console = output.console()
    frm = output.time_cell(rep["from"]) if rep["from"] is not None else "start"
    to = output.time_cell(rep["to"]) if rep["to"] is not None else "end of log"
    console.print(f"[bold]{rep['namespace']}[/bold] from {frm} to {to} (ts_event in [from, to)): "
                  f"{rep['events_in_period']:,} events in the period")
    console.print(f"state at --from: {_origin(rep)}".replace("; last seq", "; last seq at --to"))
    types = ", ".join(f"{k} {v}" for k, v in rep["events_by_type"].items())
    console.print(f"events: {types or 'none'}")
    console.print(f"fills: {rep['fills']}; orders opened {len(rep['orders_opened'])}, closed {len(rep['orders_closed'])} "
                  f"(filled {len(rep['orders_filled'])}); open orders {rep['open_orders'][0]} -> {rep['open_orders'][1]}")
    realized = ", ".join(f"{_signed(v)} {c}" for c, v in rep["realized_pnl"].items()) or "0"
    fees = ", ".join(f"{_d(v)} {c}" for c, v in rep["fees"].items()) or "0"
    console.print(f"realized PnL over the period: {realized}; fees: {fees}")
    cur, eq0, eq1 = rep["equity"]
    if eq0 is not None or eq1 is not None:
        console.print(f"equity: {_d(eq0)} -> {_d(eq1)} {cur or ''}")
    if rep["positions"]:
        t = output.table("instrument", "quantity", "avg price", "unrealized PnL", "realized in period",
                   right=("quantity", "avg price", "unrealized PnL", "realized in period"))
        for p in rep["positions"]:
            t.add_row(p["instrument_id"], f"{_d(p['quantity'][0])} -> {_d(p['quantity'][1])}",
                      f"{_d(p['avg_price'][0])} -> {_d(p['avg_price'][1])}",
                      f"{_d(p['unrealized_pnl'][0])} -> {_d(p['unrealized_pnl'][1])}", _signed(p["realized_pnl"]))
        console.print("positions")
        console.print(t)
    else:
        console.print("positions: unchanged")
    if rep["balances"]:
        t = output.table("currency", "before", "after", "change", right=("before", "after", "change"))
        for c, (b, a, d) in rep["balances"].items():
            t.add_row(c, _d(b), _d(a), _signed(d))
        console.print("balances")
        console.print(t)
    else:
        console.print("balances: unchanged")
    if rep["orders_closed"]:
        t = output.table("client order id", "instrument", "closed as")
        shown = rep["orders_closed"][:SHOW_ORDERS]
        for o in shown:
            t.add_row(o["client_order_id"], o["instrument_id"], o["status"])
        more = len(shown) < len(rep["orders_closed"])
        console.print("orders closed" + (f" (first {len(shown)}; --json lists all)" if more else ""))
        console.print(t)
    ts0, ts1 = rep["trading_state"]
    changes = rep["trading_state_changes"]
    if changes:
        console.print(f"trading state {ts0} -> {ts1}: " + "; ".join(
            f"{output.time_cell(c['ts'])} {c['previous']} -> {c['state']} ({c['reason']})" for c in changes))
    else:
        console.print(f"trading state: {ts1} (unchanged)")


def _verify(log: Any, run: str, overrides: dict[str, str], as_json: bool) -> None:
    from runtime.backtest.verify import verify_run

    res = verify_run(log, run, overrides)
    d = res.divergence
    if as_json:
        out = {"run": res.run, "identical": res.identical, "events": res.events, "notes": res.notes,
               "recorded_events": res.recorded_events, "recomputed_events": res.recomputed_events,
               "divergence": None if d is None else {"seq": d.seq, "type": d.type, "path": d.path,
                                                     "recorded": d.recorded, "recomputed": d.recomputed}}
        sys.stdout.write(json.dumps(plain(out), indent=2) + "\n")
    else:
        for note in res.notes:
            sys.stdout.write(f"note: {note}\n")
        if d is None:
            sys.stdout.write(f"identical: {res.events} events\n")
        else:
            sys.stdout.write(f"divergence at seq {d.seq} ({d.type}): {d.path}: recorded {_show(d.recorded)}, "
                             f"recomputed {_show(d.recomputed)}\n")
            sys.stdout.write(f"{res.events} events identical before it; recorded {res.recorded_events} events, "
                             f"recomputed {res.recomputed_events}\n")
    if d is not None:
        raise typer.Exit(1)


def _show(value: Any) -> str:
    v = plain(value)
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)
