"""`tape status`: is a namespace healthy and what is it holding — answered from the log alone, no server needed.

The state is the namespace's recovery (latest snapshot + tail, the same fold a restart uses); the facts around it
are the last events of a few types, read backwards from the end of their topics (eventstore.seek), so a status of
a long live log costs about what a restart's restore costs. Whether a writer holds the namespace right now comes
from the store (the file store's lock; unknown on Kafka). Health is a list of findings, each one line: halted or
reducing, an incident open, a session that ended without RunStopped (a crash), a reconciliation left unresolved,
sends unanswered for a minute, market data older than it should be.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from eventstore.replay import Event
from eventstore.seek import last_event
from eventstore.store import Log
from projections.portfolio import UnmarkedCurrency
from projections.state import State
from runtime.replay.recovery import recover
from runtime.times import parse_timeframe
from schemas.errors import TapeError

NS = 1_000_000_000
UNANSWERED_NS = 60 * NS  # a send with no answer for this long (in the log's time) is worth a look
STALE_BARS = 3  # market data is stale when the last bar is this many timeframes older than the last event


@dataclass(frozen=True)
class Holding:
    """One instrument: position, mark, and the market data behind the mark."""

    instrument_id: str
    quantity: Decimal
    mark: Decimal | None
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    last_bar_close_ts: int | None  # event time of the last bar's close


@dataclass(frozen=True)
class OpenOrder:
    client_order_id: str
    instrument_id: str
    side: str
    order_type: str
    quantity: Decimal
    filled: Decimal
    price: Decimal | None
    status: str
    ts_submitted: int


@dataclass(frozen=True)
class Status:
    """What `tape status` shows; `findings` empty means healthy."""

    namespace: str
    mode: str | None  # LIVE, PAPER, BACKTEST (RunStarted.mode); None: not a run (imported history)
    strategy: str | None
    params: dict[str, str]
    session: str  # running, stopped, ended without RunStopped, no session
    writer: str  # who holds the namespace now, as far as the store can tell
    last_seq: int
    last_event: str | None
    last_ts_event: int | None
    last_recorded_ns: int | None  # ts_init of the last event: when the runtime made or received it
    trading_state: str
    trading_reason: str | None
    balances: dict[str, Decimal]
    equity: dict[str, Decimal]  # per currency the portfolio can value itself in
    fees: dict[str, Decimal]
    holdings: list[Holding]
    open_orders: list[OpenOrder]
    reconciliation: dict[str, Any] | None  # the last ReconciliationReport: ts_event, resolved, mismatch kinds
    incidents: list[dict[str, Any]] = field(default_factory=list)  # open ones (projections/incidents.py)
    findings: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.findings


def status(log: Log, namespace: str) -> Status:
    """The status of `namespace` as its log holds it now."""
    if namespace not in log.namespaces():
        raise TapeError(f"no namespace {namespace!r} in {log.url}: `tape log namespaces` lists them")
    rec = recover(log, namespace)
    state: State = rec.state
    started = last_event(log, namespace, "RunStarted")
    stopped = last_event(log, namespace, "RunStopped")
    halt = last_event(log, namespace, "TradingStateChanged")
    report = last_event(log, namespace, "ReconciliationReport")
    last = _last(log, namespace, rec.last_seq)
    holder = log.writer_holder(namespace)
    session = _session(started, stopped, holder)
    findings = _findings(state, session, report, last)
    # valued where positions are marked: the instruments' quote currencies (else what the balances hold)
    currencies = sorted({i.quote_currency for i in state.market.instruments.values()} or state.portfolio.balances)
    equity = {}
    for c in currencies:
        try:
            equity[c] = state.portfolio.equity(c)
        except UnmarkedCurrency:
            continue  # no rate to value the portfolio in this currency
    return Status(
        namespace=namespace,
        mode=started.data["mode"] if started else None,
        strategy=started.data["strategy"] if started else None,
        params=dict(started.data["params"]) if started else {},
        session=session,
        writer=f"pid {holder}" if isinstance(holder, int) else ("none" if holder is None else str(holder)),
        last_seq=rec.last_seq,
        last_event=last.name if last else None,
        last_ts_event=last.ts_event if last else None,
        last_recorded_ns=last.envelope["ts_init"] if last else None,
        trading_state=state.risk.trading_state,
        trading_reason=halt.data.get("reason") if halt and halt.data.get("state") == state.risk.trading_state else None,
        balances={k: v for k, v in sorted(state.portfolio.balances.items()) if v},
        equity=equity,
        fees={k: v for k, v in sorted(state.portfolio.fees.items()) if v},
        holdings=_holdings(state),
        open_orders=[OpenOrder(o.client_order_id, o.instrument_id, o.side, o.order_type, o.quantity,
                               o.filled_quantity, o.price, o.status, o.ts_submitted)
                     for o in sorted(state.orders.open(), key=lambda o: o.ts_submitted)],
        reconciliation=None if report is None else {
            "ts_event": report.ts_event, "seq": report.seq, "resolved": report.data["resolved"],
            "mismatches": sorted({m["kind"] for m in report.data["mismatches"]}),
            "mismatch_count": len(report.data["mismatches"])},
        incidents=state.incidents.snapshot(),
        findings=findings,
    )


def _last(log: Log, namespace: str, seq: int) -> Event | None:
    if seq <= 0:
        return None
    for e in log.replay(namespace, from_seq=seq, to_seq=seq):
        return e
    return None


def _session(started: Event | None, stopped: Event | None, holder: Any) -> str:
    if started is None:
        return "no session"
    if stopped is not None and stopped.seq > started.seq:
        return "stopped"
    if holder is None:
        return "ended without RunStopped"  # nobody writes and the last session did not stop: it was killed
    if holder == "unknown":
        return "running, or ended without RunStopped (this store cannot tell)"
    return "running"


def _holdings(state: State) -> list[Holding]:
    out = []
    for iid in sorted(set(state.portfolio.positions) | set(state.market.last_bar)):
        if iid not in state.market.instruments:
            continue
        bar = state.market.last_bar.get(iid)
        close_ts = bar["open_ts"] + parse_timeframe(bar["timeframe"]) if bar is not None else None
        out.append(Holding(iid, state.portfolio.position_quantity(iid), state.portfolio.mark(iid),
                           state.portfolio.unrealized_pnl(iid), state.portfolio.realized_pnl(iid), close_ts))
    return out


def _findings(state: State, session: str, report: Event | None, last: Event | None) -> list[str]:
    out = []
    if state.risk.trading_state != "ACTIVE":
        out.append(f"trading is {state.risk.trading_state}")
    for i in state.incidents.open.values():
        out.append(f"incident {i.incident_id} open ({i.severity}, action {i.action}"
                   f"{', acknowledged' if i.acknowledged else ''}): {i.kind} on {i.scope_id} at {i.value} "
                   f"(threshold {i.threshold})")
    if session == "ended without RunStopped":
        out.append("the last session ended without RunStopped (killed or crashed): the next start recovers it")
    if report is not None and not report.data["resolved"]:
        kinds = sorted({m["kind"] for m in report.data["mismatches"]})
        out.append(f"the last reconciliation (seq {report.seq}) is unresolved: {', '.join(kinds) or 'sends in doubt'}")
    if last is not None:
        unanswered = [o.client_order_id for o in state.orders.open()
                      if o.status == "SUBMITTED" and last.ts_event - o.ts_submitted >= UNANSWERED_NS]
        if unanswered:
            out.append(f"{len(unanswered)} order(s) sent and not acknowledged for over {UNANSWERED_NS // NS} s: "
                       f"{', '.join(unanswered[:3])}")
    if last is not None and session == "running":
        for iid, bar in sorted(state.market.last_bar.items()):
            tf = parse_timeframe(bar["timeframe"])
            behind = last.ts_event - (bar["open_ts"] + tf)
            if behind >= STALE_BARS * tf:
                out.append(f"{iid}: the last bar closed {behind / NS:,.0f} s before the last event (stale market data)")
    return out
