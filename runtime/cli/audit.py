"""`tape audit order|trades|verify`: what happened to an order, the fills of a run, and proof the log is intact."""
from __future__ import annotations

import csv
import json
import sys
from typing import Optional

import typer
from rich.markup import escape

from runtime.audit.chain import order_chain
from runtime.audit.integrity import verify
from runtime.audit.trades import TRADE_COLUMNS, list_trades, trade_namespaces
from runtime.cli import output
from runtime.cli.context import cli_context
from runtime.times import human_ns
from schemas.decimals import plain
from schemas.errors import TapeError

audit_app = typer.Typer(no_args_is_help=True, help="The audit trail: order chains, fills, hash-chain verification.")


@audit_app.command("order")
def audit_order(
    ctx: typer.Context,
    ident: str = typer.Argument(..., metavar="ID", help="Client order id, or the event id NS:SEQ of any event of "
                                "the order (a market event id finds the order it triggered)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", metavar="NS",
                                            help="Search only this namespace (default: bt-* and live-*)."),
    as_json: bool = typer.Option(False, "--json", help="The steps as a JSON list; the last entry is the summary."),
) -> None:
    """The causal chain of one order: trigger, intent, risk verdict, queue, venue responses, every fill.

    Each step shows its event time, the time the runtime recorded it (ts_init) and the latency from the step
    before on the runtime's clock (a trigger from another namespace, e.g. the source of a backtest, counts at
    its event time).
    """
    audit = order_chain(cli_context(ctx).open(), ident, namespace)
    if as_json:
        sys.stdout.write(json.dumps(audit.as_json(), indent=2, ensure_ascii=False) + "\n")
        return
    console = output.console()
    s = audit.summary
    console.print(f"order [bold]{escape(audit.client_order_id)}[/bold] in {escape(audit.namespace)}  "
                  f"{escape(s['instrument_id'] or '')} {s['side'] or ''}".rstrip())
    table = output.table("#", "step", "event", "type", "time (event)", "recorded (ts_init)", "latency", "detail",
                   right=("#", "latency"))
    for i, st in enumerate(audit.steps, 1):
        table.add_row(str(i), st.kind, st.event_id, st.type, output.time_cell(st.ts_event), output.time_cell(st.ts_init),
                      human_ns(st.latency_ns) if st.latency_ns is not None else "-", st.detail())
    console.print(table)
    fees = ", ".join(f"{plain(v)} {k}" for k, v in sorted(s["fees"].items())) or "0"
    line = (f"status [bold]{s['status']}[/bold]  filled {plain(s['filled_quantity'])}"
            f"{' of ' + plain(s['quantity']) if s['quantity'] is not None else ''}  "
            f"avg price {plain(s['avg_price']) if s['avg_price'] is not None else '-'}  fees {fees}  "
            f"fills {s['fills']}  total latency {human_ns(s['total_latency_ns'])}")
    if s["status"] == "RISK_REJECTED":
        line += f"  rule {s['rule']} limit {s['limit']} value {s['value']}"
    console.print(line)


@audit_app.command("trades")
def audit_trades(
    ctx: typer.Context,
    namespace: Optional[str] = typer.Argument(None, metavar="[NS]", help="Namespace (default: every bt-*/live-*)."),
    from_: Optional[str] = typer.Option(None, "--from", metavar="TIME", help="First fill time (inclusive)."),
    to: Optional[str] = typer.Option(None, "--to", metavar="TIME", help="End fill time (exclusive)."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV with a header row."),
    as_json: bool = typer.Option(False, "--json", help="A JSON list of fills."),
) -> None:
    """Fills (OrderFilled events) with exact prices, quantities and fees. TIME: ISO-8601 or epoch ns."""
    if as_csv and as_json:
        raise TapeError("--csv and --json exclude each other: choose one")
    from_ts, to_ts = output.time_option(from_, "--from"), output.time_option(to, "--to")
    log = cli_context(ctx).open()
    rows = list_trades(log, trade_namespaces(log, namespace), from_ts, to_ts)
    out = sys.stdout
    if as_csv:
        w = csv.DictWriter(out, fieldnames=TRADE_COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow(row)
        return
    if as_json:
        out.write(json.dumps(list(rows), indent=2, ensure_ascii=False) + "\n")
        return
    table = output.table("namespace", "time", "instrument", "side", "price", "quantity", "fee", "ccy", "liquidity",
                   "client order id", "trade id", "seq", right=("price", "quantity", "fee", "seq"))
    n = 0
    for row in rows:
        table.add_row(row["namespace"], row["time"], row["instrument_id"], row["side"], row["price"],
                      row["quantity"], row["fee"], row["fee_currency"], row["liquidity_side"],
                      row["client_order_id"], row["trade_id"], str(row["seq"]))
        n += 1
    console = output.console()
    console.print(table)
    console.print(f"{n} fill{'s' if n != 1 else ''}")


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    namespace: str = typer.Argument(..., metavar="NS"),
    as_json: bool = typer.Option(False, "--json", help="The result as one JSON object."),
) -> None:
    """Prove the log was not altered: every file of the store, hash chain, commit hashes, no committed event missing.

    On a file store every segment, index, the commit journal, the registry and namespace.json are read whole and
    each finding is printed with its file and byte offset (DAMAGE, or a note: a write a crash tore, an older
    format). Seqs in a gap between committed ranges are steps torn by a crash (never delivered): reported, not
    breaks. Exit 1 on any damage or break.
    """
    log = cli_context(ctx).open()
    if namespace not in log.namespaces():
        raise TapeError(f"no namespace {namespace!r} in {log.url}: `tape log namespaces` lists them")
    res = verify(log, namespace)
    if as_json:
        sys.stdout.write(json.dumps(res.as_dict(), indent=2) + "\n")
    else:
        out = sys.stdout
        for f in res.findings:
            out.write(f.text() + "\n")
        for t in res.torn:
            span = f"seq {t.first}" if t.first == t.last else f"seqs {t.first}..{t.last}"
            out.write(f"torn step: {span} ({_n(t.records, 'record')} never committed, skipped by every reader)\n")
        counts = f"{_n(res.events, 'event')}, {_n(res.commits, 'commit')}, {_n(len(res.torn), 'torn step')}"
        if res.ok:
            out.write(f"OK {namespace}: {counts}; hash chain intact up to seq {res.last_seq} "
                      f"(head {res.head.hex() or '-'})\n")
        elif res.brk is None:
            out.write(f"DAMAGED {namespace}: {_n(len(res.damage), 'finding')} in the store's files; {counts}; hash "
                      f"chain intact up to seq {res.last_seq}\n")
        else:
            if res.damage:
                out.write(f"DAMAGED {namespace}: {_n(len(res.damage), 'finding')} in the store's files\n")
            out.write(f"{res.brk.text(namespace)}\n")
            intact = res.brk.seq - 1 if res.brk.seq is not None else res.last_seq
            out.write(f"intact up to seq {intact} ({_n(res.commits, 'commit')} read, "
                      f"{_n(len(res.torn), 'torn step')})\n")
    if not res.ok:
        raise typer.Exit(1)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
