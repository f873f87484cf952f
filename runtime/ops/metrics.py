"""Prometheus metrics of a live or paper session, served on `tape live … --metrics-port P`.

What the loop did (inputs, venue answers by kind, rejects by reason, step and log-append latency, tick-to-order) is
counted where it happens; what the state holds (positions, equity, PnL, open orders, trading state, the age of the
last bar, the stream's connection, venue reads that failed) is set from the state after every pass, so a scrape sees
a step boundary's values. Names follow Prometheus conventions: `tape_…_total` counters, base units (`_seconds`),
labels for the instrument, currency, kind or reason. A registry per session (no process-global state): tests and a
second session in one process never share numbers.
"""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from handlers.incidents.config import DEFAULTS as INCIDENT_RULES
from projections.portfolio import UnmarkedCurrency
from schemas.names import VENUE_REPORTS

TRADING_STATES = ("ACTIVE", "REDUCING", "HALTED")
KINDS = tuple(INCIDENT_RULES)  # every incident kind has its open gauge (0 when none is open)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class SessionMetrics:
    """The metrics of one session; `serve` exposes them over HTTP on a thread of prometheus_client's."""

    def __init__(self, namespace: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r, ns = self.registry, ["namespace"]
        self.namespace = namespace
        self.inputs = Counter("tape_inputs", "Inputs processed (one committed step each), by source.",
                              ns + ["source"], registry=r)
        self.events = Counter("tape_events_recorded", "Events appended to the namespace's log.", ns, registry=r)
        self.reports = Counter("tape_venue_reports", "Answers from the venue entered as inputs, by event type.",
                               ns + ["type"], registry=r)
        self.rejects = Counter("tape_rejects", "Orders refused, by who refused (risk, venue) and reason.",
                               ns + ["by", "reason"], registry=r)
        self.fills = Counter("tape_fills", "Fills recorded.", ns, registry=r)
        self.unknown = Counter("tape_unknown_outcomes", "Sends or cancels whose answer was lost in transit.", ns,
                               registry=r)
        self.mismatches = Counter("tape_reconciliation_mismatches", "Differences found between the log and the venue, "
                                  "by kind.", ns + ["kind"], registry=r)
        self.step = Histogram("tape_step_seconds", "Wall time of one step: the input, what it caused, the commit.",
                              ns, buckets=LATENCY_BUCKETS, registry=r)
        self.append = Histogram("tape_log_append_seconds", "Wall time of one append (commit) to the log.", ns,
                                buckets=LATENCY_BUCKETS, registry=r)
        self.tick_to_order = Histogram("tape_tick_to_order_seconds", "A bar taken in by the loop to the orders it "
                                       "caused sent (the step committed, its requests answered).", ns,
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.open_orders = Gauge("tape_open_orders", "Orders open in the log's state, by instrument.",
                                 ns + ["instrument"], registry=r)
        self.position = Gauge("tape_position", "Position quantity, by instrument (base units).", ns + ["instrument"],
                              registry=r)
        self.exposure = Gauge("tape_exposure", "Position quantity × mark, by instrument (quote currency).",
                              ns + ["instrument"], registry=r)
        self.equity = Gauge("tape_equity", "Equity of the account, by currency.", ns + ["currency"], registry=r)
        self.realized = Gauge("tape_realized_pnl", "Realized PnL net of fees, by currency.", ns + ["currency"],
                              registry=r)
        self.unrealized = Gauge("tape_unrealized_pnl", "Unrealized PnL at the marks, by currency.", ns + ["currency"],
                                registry=r)
        self.drawdown = Gauge("tape_drawdown_ratio", "Equity below its peak this session, as a fraction of the peak.",
                              ns + ["currency"], registry=r)
        self.trading = Gauge("tape_trading_state", "1 for the trading state in force, 0 for the others.",
                             ns + ["state"], registry=r)
        self.bar_age = Gauge("tape_last_market_event_age_seconds", "Seconds since the last bar of an instrument was "
                             "received (the runtime's clock).", ns + ["instrument"], registry=r)
        self.stream = Gauge("tape_stream_connected", "1 while a websocket stream of the venue is connected: bars, "
                            "trades, quotes (market data), account (the private stream).", ns + ["stream"], registry=r)
        self.read_failures = Counter("tape_venue_read_failures", "Market data reads from the venue that got no "
                                     "answer (down, 5xx, 429/418).", ns, registry=r)
        self.incidents = Counter("tape_incidents_raised", "Incidents raised, by kind and severity.",
                                 ns + ["kind", "severity"], registry=r)
        self.open_incidents = Gauge("tape_incidents_open", "Incidents open in the log's state, by kind.",
                                    ns + ["kind"], registry=r)
        self.commands = Counter("tape_operator_commands", "Operator commands recorded, by command.",
                                ns + ["command"], registry=r)
        self.refused = Counter("tape_operator_commands_refused", "Operator commands recorded and refused (nothing "
                               "done, CommandRefused), by command.", ns + ["command"], registry=r)
        self.alerts = Gauge("tape_alerts", "Webhook alert messages this session, by outcome (sent, failed, dropped, "
                            "pending).", ns + ["outcome"], registry=r)
        self.deadman = Gauge("tape_deadman_armed_seconds", "Seconds until the venue's dead-man's switch cancels every "
                             "open order unless re-armed (0: not armed).", ns, registry=r)
        self._failures = 0
        self.ordered = False  # an OrderSubmitted was emitted since the flag was last cleared
        self._peak: dict[str, Decimal] = {}
        self._bar_seen: dict[str, float] = {}  # instrument → monotonic time its last bar was received
        self.server: Any = None

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics on addr:port (0: any free port); the port it listens on."""
        self.server, _ = start_http_server(port, addr=addr, registry=self.registry)
        return self.server.server_port

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # ---- where things happen -----------------------------------------------------------------------------------

    def input(self, name: str, payload: dict[str, Any], source: str, seconds: float) -> None:
        """One step done: its input and how long it took."""
        ns = self.namespace
        self.inputs.labels(ns, source.split(":")[0]).inc()
        self.step.labels(ns).observe(seconds)
        if name == "Bar":
            self._bar_seen[payload["instrument_id"]] = time.monotonic()

    def appended(self, seconds: float, events: int) -> None:
        """One commit to the log: how long it took and how many events it held."""
        self.append.labels(self.namespace).observe(seconds)
        self.events.labels(self.namespace).inc(events)

    def emitted(self, name: str, payload: dict[str, Any]) -> None:
        """Every event the engine records (inputs too): the venue's answers, a real venue's entering as inputs and
        the paper venue's derived in the step, are counted the same way."""
        ns = self.namespace
        if name in VENUE_REPORTS or name == "OrderFilled":
            self.reports.labels(ns, name).inc()
        if name == "OrderFilled":
            self.fills.labels(ns).inc()
        elif name == "OrderRejected":
            self.rejects.labels(ns, "venue", payload.get("reason_code") or "OTHER").inc()
        elif name == "RiskRejected":
            self.rejects.labels(ns, "risk", payload.get("rule") or "risk").inc()
        elif name == "OperatorCommand":
            self.commands.labels(ns, payload["command"]).inc()
        elif name == "CommandRefused":
            self.refused.labels(ns, payload["command"]).inc()
        elif name == "OrderOutcomeUnknown":
            self.unknown.labels(ns).inc()
        elif name == "OrderSubmitted":
            self.ordered = True
        elif name == "IncidentRaised":
            self.incidents.labels(ns, payload["kind"], payload["severity"]).inc()

    def found(self, mismatches: list[dict[str, Any]]) -> None:
        for m in mismatches:
            self.mismatches.labels(self.namespace, m["kind"]).inc()

    # ---- what the state holds, after a pass ----------------------------------------------------------------------

    def observe(self, state: Any, *, stream_connected: dict[str, bool], read_failures: int, alerts: Any = None,
                deadman_seconds: float | None = None) -> None:
        ns = self.namespace
        if alerts is not None:
            for outcome in ("sent", "failed", "dropped", "pending"):
                self.alerts.labels(ns, outcome).set(getattr(alerts, outcome))
        if deadman_seconds is not None:
            self.deadman.labels(ns).set(max(0.0, deadman_seconds))
        pf, market = state.portfolio, state.market
        for iid in sorted(market.instruments):
            qty = pf.position_quantity(iid)
            mark = pf.mark(iid)
            self.position.labels(ns, iid).set(float(qty))
            self.exposure.labels(ns, iid).set(float(qty * mark) if mark is not None else 0.0)
            self.open_orders.labels(ns, iid).set(state.orders.open_count(iid))
            if iid in self._bar_seen:
                self.bar_age.labels(ns, iid).set(time.monotonic() - self._bar_seen[iid])
        for currency in sorted({i.quote_currency for i in market.instruments.values()}):
            try:
                equity = pf.equity(currency)
                realized, unrealized = pf.net_realized_pnl(currency=currency), pf.unrealized_pnl(currency=currency)
            except UnmarkedCurrency:
                continue  # no rate to value the account in this currency (yet)
            peak = self._peak[currency] = max(self._peak.get(currency, equity), equity)
            self.equity.labels(ns, currency).set(float(equity))
            self.realized.labels(ns, currency).set(float(realized))
            self.unrealized.labels(ns, currency).set(float(unrealized))
            self.drawdown.labels(ns, currency).set(float((peak - equity) / peak) if peak > 0 else 0.0)
        for s in TRADING_STATES:
            self.trading.labels(ns, s).set(1 if state.risk.trading_state == s else 0)
        open_by_kind: dict[str, int] = dict.fromkeys(KINDS, 0)
        for i in state.incidents.open.values():
            open_by_kind[i.kind] = open_by_kind.get(i.kind, 0) + 1
        for kind, n in open_by_kind.items():
            self.open_incidents.labels(ns, kind).set(n)
        for stream, up in stream_connected.items():  # the streams the session runs
            self.stream.labels(ns, stream).set(1 if up else 0)
        if read_failures > self._failures:
            self.read_failures.labels(ns).inc(read_failures - self._failures)
            self._failures = read_failures
