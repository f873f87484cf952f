"""The event loop of runtime-model.txt, one and the same for research and live.

Market Event → State Update → Strategy Evaluation → Trading Intent → Risk Validation → Outbound Queue →
Venue Adapter → Venue → Execution Events → State Update.

Every arrow is an event. One input is one step: the input (when this namespace records it) and every event it
causes are appended as one unit. Events are applied to state the moment they are emitted and routed to the
next component in FIFO order, so the order of the log is the order of processing, and a replay of the log
through `State.apply` rebuilds exactly the state the engine had.

After each step's risk evaluation, an incident monitor (`incidents`, live sessions: handlers/incidents/) sees
every event the engine folded and may raise or resolve incidents and act on them, as events of the same step.
An operator's command (an OperatorCommand input, live sessions) is answered by `operator` (handlers/operator.py)
the same way: what it does follows it in its step.

Snapshots (`snapshot_every` N > 0): after the step during which the count of events folded into the state
(events emitted, plus inputs folded without being recorded here) reaches N more than at the last snapshot,
the engine writes a SnapshotTaken as a step of its own: the state (projections/snapshot.py) as it stands at
that step boundary, with last_seq = the seq of the last event folded and ts_event = the latest ts_event
folded. The strategy's own state rides along through its optional snapshot() hook. With `snapshot_handlers`
(live namespaces) it also carries what the handlers hold between steps — the engine's clock, pending timers and
intents awaiting release, the outbound queue, the venue — as versioned plain data (HANDLER_STATE_VERSION), so a
restart restores the snapshot and replays only the inputs after it (runtime/live/resume.py). A backtest's snapshots
leave it out: its inputs live in its source, and a replay re-runs them.
"""
from __future__ import annotations

import heapq
from collections import deque
from decimal import Decimal
from typing import Any, Callable, Iterable

from eventstore.writer import Draft, Writer, own_fields
from handlers.strategy import Strategy
from projections.state import State
from runtime.engine.ports import Emitted, Queue, Risk, Venue
from schemas.ids import client_order_id, event_id, order_id_prefix
from schemas.names import STRATEGY_CALLBACKS, VENUE_REPORTS

MARKET_CALLBACKS = STRATEGY_CALLBACKS
ORDER_EVENTS = frozenset(VENUE_REPORTS)
HANDLER_STATE_VERSION = 3  # the layout of handler_state()'s parts; a snapshot of another version is not restored


class Engine:
    """Processes inputs one step at a time; commits every `group` steps (1 = write-ahead per step, for live)."""

    def __init__(self, *, writer: Writer, state: State, strategy_cls: type[Strategy], params: Any, risk: Risk,
                 queue: Queue, venue: Venue, strategy_id: str, record_inputs: bool, group: int = 1,
                 snapshot_every: int = 0, clock: Callable[[], int] | None = None, snapshot_handlers: bool = False,
                 incidents: Any = None, operator: Any = None):
        self.writer = writer
        self.clock = clock  # live: ts_init is when the runtime made or received the event; else its event time
        self.namespace = writer.namespace
        self.state = state
        self.risk = risk
        self.queue = queue
        self.venue = venue
        self.strategy_id = strategy_id
        self.record_inputs = record_inputs
        self.group = group
        self.prefix = order_id_prefix(self.namespace)
        self.now = 0
        self._steps: list[list[Draft]] = []
        self._step: list[Draft] = []
        self._next_seq = writer.next_seq
        self._routing: deque[tuple[str, dict[str, Any], int, str]] = deque()
        self._cause: str | None = None
        self._timers: list[tuple[int, int, str]] = []
        self._timer_n = 0
        self.orders: dict[str, dict[str, Any]] = {}  # client_order_id → submitted order (for routing only)
        self.strategy = strategy_cls(params, _StrategyContext(self))
        self._hears = {name: getattr(self.strategy, cb) for name, cb in MARKET_CALLBACKS.items()}
        self._from_venue = f"venue:{venue.name}"
        self.events = 0
        self.snapshot_every = snapshot_every
        self.snapshot_handlers = snapshot_handlers
        self.incidents = incidents  # handlers.incidents.monitor.IncidentMonitor, or None (no detectors)
        self._watch = incidents.observe if incidents is not None else None
        self.operator = operator  # handlers.operator.Operator (live sessions), or None: commands are not answered
        self.inputs = 0  # inputs folded into state without being recorded in this namespace
        self.max_ts = 0  # largest ts_event folded
        self.last_input: str | None = None  # event id of the last such input (e.g. 'src:1234')
        self._snapshot_at = 0  # events + inputs at the last snapshot
        self._encoder: Any = None  # projections.snapshot.StateEncoder, created at the first snapshot
        self.on_emit: Callable[[str, dict[str, Any], int], None] | None = None  # observers: reports, metrics

    # ---- emission ------------------------------------------------------------------------------------------

    def emit(self, name: str, payload: dict[str, Any], ts: int | None = None, *, source: str,
             correlation_id: str | None = None) -> str:
        """Record an event in the current step, apply it to state, and queue it for routing."""
        seq = self._next_seq
        self._next_seq += 1
        eid = event_id(self.namespace, seq)
        ts = self.now if ts is None else ts
        key = payload.get("instrument_id") or payload.get("venue") or ""
        if correlation_id is None:
            correlation_id = payload.get("client_order_id")
        ts_init = self.clock() if self.clock is not None else self.now
        self._step.append(Draft(name, payload, ts, key, source, self._cause, correlation_id, ts_init))
        self.state.apply(name, payload, ts)
        if self._watch is not None:
            self._watch(name, payload, ts)
        if ts > self.max_ts:
            self.max_ts = ts
        self._routing.append((name, payload, ts, eid))
        self.events += 1
        if self.on_emit is not None:
            self.on_emit(name, payload, ts)
        return eid

    def _emit_all(self, items: Iterable[Emitted], source: str) -> None:
        for item in items:
            self.emit(item[0], item[1], item[2] if len(item) > 2 else None, source=source)

    # ---- the loop ------------------------------------------------------------------------------------------

    def start(self, now: int, run_started: dict[str, Any] | None = None, *, open_venue: bool = True) -> None:
        """First step of a session: RunStarted, the venue's opening state (not when a session resumes a namespace
        whose venue state the log already holds), the strategy's on_start."""
        self.now = now
        if run_started is not None:
            self.emit("RunStarted", run_started, source="runtime")
        if open_venue:
            self._emit_all(self.venue.start(now), self._from_venue)
        self.strategy.on_start()
        self._drain()
        self._end_step()

    def process(self, name: str, data: dict[str, Any], ts: int, event_id: str | None = None, *,
                source: str = "input") -> None:
        """One input event (market data, or a venue's execution report in live) → one step; `source` names the
        component that observed it when this namespace records it (a feed, a venue adapter)."""
        if ts > self.now:
            self.now = ts
        if self._timers and self._timers[0][0] <= ts:
            self._fire_timers(ts)
        if self.record_inputs or event_id is None:
            self._cause = None
            self.emit(name, data, ts, source=source)
        else:
            self.state.apply(name, data, ts)
            if self._watch is not None:
                self._watch(name, data, ts)
            self.inputs += 1
            self.last_input = event_id
            if ts > self.max_ts:
                self.max_ts = ts
            # the routing queue is empty between steps: route the input at once (the order _drain would give)
            self._cause = event_id
            self._route(name, data, ts, event_id)
        if self._routing:
            self._drain()
        released = self.queue.release_due(self.now)
        if released:
            self._emit_all(released, "queue")
        verdicts = self.risk.evaluate(self.state, self.now)
        if verdicts:
            self._emit_all(verdicts, "risk")
        if self.incidents is not None:
            found = self.incidents.evaluate(self.state, self.now)
            if found:
                self._emit_all(found, "incidents")
        if self._routing:
            self._drain()
        if self._step or (self.snapshot_every and self.events + self.inputs - self._snapshot_at >= self.snapshot_every):
            self._end_step()

    def _fire_timers(self, ts: int) -> None:
        while self._timers and self._timers[0][0] <= ts:
            due, _, name = heapq.heappop(self._timers)
            self.now = max(self.now, due)
            self._cause = None
            self.emit("Timer", {"name": name, "scheduled_ts": due}, due, source=f"strategy:{self.strategy_id}")
            self._drain()
        self.now = max(self.now, ts)

    def _drain(self) -> None:
        routing = self._routing
        while routing:
            name, data, ts, event_id = routing.popleft()
            self._cause = event_id
            self._route(name, data, ts, event_id)

    def _route(self, name: str, data: dict[str, Any], ts: int, event_id: str) -> None:
        hear = self._hears.get(name)
        if hear is not None:
            out = self.venue.on_market(name, data, ts)
            if out:
                self._emit_all(out, self._from_venue)
            hear(data)
        elif name == "OrderIntent":
            self._emit_all([self.risk.check(data, event_id, self.state, self.now)], "risk")
        elif name == "RiskAccepted":
            order = self.orders.get(data["client_order_id"])
            if order is not None:
                self._emit_all(self.queue.offer({**order, "intent_id": data["intent_id"]}, self.now), "queue")
        elif name == "CancelIntent":
            self._emit_all(self.queue.offer_cancel(data, self.now), "queue")
        elif name == "OrderReleased":
            cid = data["client_order_id"]
            if data.get("action", "SUBMIT") == "SUBMIT":
                order = self.orders.pop(cid)  # the intent is needed until it is sent, not after
                submitted = {k: order[k] for k in SUBMITTED_FIELDS}
                submitted["venue"] = self.venue.name
                self.emit("OrderSubmitted", submitted, source=self._from_venue)
            else:  # a released cancel
                self._emit_all(self.venue.cancel(data["instrument_id"], cid, self.now), self._from_venue)
        elif name == "OrderSubmitted":
            self._emit_all(self.venue.submit(data, self.now), self._from_venue)
        elif name == "OrderFilled":
            self._emit_all(self.queue.on_execution(name, data, self.now), "queue")
            self.strategy.on_fill(data)
        elif name in ORDER_EVENTS:
            self._emit_all(self.queue.on_execution(name, data, self.now), "queue")
            self.strategy.on_order(name, data)
        elif name == "RiskRejected":
            if data.get("rule") != "duplicate_client_order_id":  # that one names an order still on its way
                self.orders.pop(data["client_order_id"], None)
            self.strategy.on_order(name, data)
        elif name == "Timer":
            self.strategy.on_timer(data["name"], data["scheduled_ts"])
        elif name == "OperatorCommand" and self.operator is not None:
            self._emit_all(self.operator.command(data, self.state), "operator")

    def _end_step(self) -> None:
        if self._step:
            self._steps.append(self._step)
            self._step = []
        if len(self._steps) >= self.group:
            self.flush()
        if self.snapshot_every and self.events + self.inputs - self._snapshot_at >= self.snapshot_every:
            self.take_snapshot()
            if len(self._steps) >= self.group:
                self.flush()

    def flush(self) -> None:
        """Commit pending steps, then let the venue adapter send what they recorded (write-ahead)."""
        steps = self._steps
        if steps:
            self.writer.append_steps(steps)
            self._steps = []
        self.venue.after_commit(steps)

    def take_snapshot(self) -> int:
        """Write a SnapshotTaken of the state as it stands (call at a step boundary); returns its seq."""
        from projections.snapshot import snapshot_payload

        assert not self._step, "a snapshot is taken between steps"
        seq = self._next_seq
        if self._encoder is None:
            from projections.snapshot import StateEncoder, state_type

            self._encoder = StateEncoder(state_type(self.writer.catalog))
        payload = snapshot_payload(self.state, self.writer.catalog, self.writer.registry, last_seq=seq - 1,
                                   max_ts=self.max_ts, input_event_id=None if self.record_inputs else self.last_input,
                                   strategy_id=self.strategy_id, strategy_state=self.strategy.snapshot(),
                                   handlers=self.handler_state() if self.snapshot_handlers else None,
                                   encoder=self._encoder)
        self._next_seq += 1
        self._steps.append([Draft("SnapshotTaken", payload, self.max_ts, "", "runtime", None, None, self.now)])
        self.events += 1
        self._snapshot_at = self.events + self.inputs
        if self.on_emit is not None:
            self.on_emit("SnapshotTaken", payload, self.max_ts)
        return seq

    def note_snapshot(self) -> None:
        """A replay passed a SnapshotTaken of the log: count it as take_snapshot did (replays do not decide
        snapshots — a session killed between a step and its snapshot leaves the log without one — the log does)."""
        self._next_seq += 1
        self.events += 1
        self._snapshot_at = self.events + self.inputs

    def handler_state(self) -> dict[str, Any]:
        """What the handlers hold between steps, as plain data, for a snapshot taken now (counting itself)."""
        engine = {"now": self.now, "max_ts": self.max_ts, "events": self.events + 1, "timer_n": self._timer_n,
                  "timers": [list(t) for t in sorted(self._timers)],
                  "orders": [own_fields(o) for o in self.orders.values()]}  # intents awaiting release
        parts = {"engine": engine, "queue": self.queue.snapshot(), "venue": self.venue.snapshot()}
        if self.incidents is not None:
            parts["incidents"] = self.incidents.snapshot()
        if self.operator is not None:
            parts["operator"] = self.operator.snapshot()
        return {"version": HANDLER_STATE_VERSION, "parts": parts}

    def restore_handlers(self, handlers: dict[str, Any]) -> None:
        """Continue from what handler_state() gave (the projections and the strategy are restored by the caller)."""
        parts = handlers["parts"]
        engine = parts["engine"]
        self.now, self.max_ts, self.events = engine["now"], engine["max_ts"], engine["events"]
        self._timer_n = engine["timer_n"]
        self._timers = [(t, n, name) for t, n, name in engine["timers"]]
        heapq.heapify(self._timers)
        self.orders = {o["client_order_id"]: o for o in engine["orders"]}
        self._snapshot_at = self.events + self.inputs
        self.queue.restore(parts["queue"])
        self.venue.restore(parts["venue"])
        if self.incidents is not None:
            self.incidents.restore(parts["incidents"])
        if self.operator is not None and "operator" in parts:  # a snapshot from before commands were answered
            self.operator.restore(parts["operator"])

    def stop(self, run_stopped: dict[str, Any] | None = None) -> None:
        self.strategy.on_stop()
        self._drain()
        if run_stopped is not None:
            run_stopped.setdefault("events", self.events + 1)
            self._cause = None
            self.emit("RunStopped", run_stopped, source="runtime")
        self._end_step()
        self.flush()

    def abort(self, run_stopped: dict[str, Any]) -> None:
        """End a session that raised part way through a step: that step is dropped (a step is atomic: never half
        committed), the whole steps before it are committed, then a RunStopped of its own says why."""
        self._step = []
        self._routing.clear()
        self.flush()
        run_stopped.setdefault("events", self.writer.next_seq)  # every event of the log, this one included
        ts_init = self.clock() if self.clock is not None else self.now
        self._steps = [[Draft("RunStopped", run_stopped, self.now, "", "runtime", None, None, ts_init)]]
        self.flush()

    # ---- used by the strategy context -----------------------------------------------------------------------

    def next_client_order_id(self) -> str:
        return client_order_id(self.prefix, self._next_seq)

    def set_timer(self, name: str, ts: int) -> None:
        self._timer_n += 1
        heapq.heappush(self._timers, (ts, self._timer_n, name))


SUBMITTED_FIELDS = ("instrument_id", "client_order_id", "strategy_id", "side", "order_type", "quantity", "price",
                    "trigger_price", "time_in_force", "expire_ts", "post_only", "reduce_only")


class _StrategyContext:
    """The strategy's window on the engine: state to read, intents to emit, timers to set."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self.strategy_id = engine.strategy_id
        self.state = engine.state

    @property
    def now(self) -> int:
        return self._engine.now

    def submit(self, instrument_id: str, side: str, quantity: Decimal, *, order_type: str = "MARKET",
               price: Decimal | None = None, trigger_price: Decimal | None = None, time_in_force: str = "GTC",
               expire_ts: int | None = None, post_only: bool = False, reduce_only: bool = False,
               tags: dict[str, str] | None = None) -> str:
        e = self._engine
        cid = e.next_client_order_id()
        intent = {"instrument_id": instrument_id, "strategy_id": self.strategy_id, "client_order_id": cid,
                  "side": side, "order_type": order_type, "quantity": quantity, "price": price,
                  "trigger_price": trigger_price, "time_in_force": time_in_force, "expire_ts": expire_ts,
                  "post_only": post_only, "reduce_only": reduce_only, "tags": tags}
        e.orders[cid] = intent
        e.emit("OrderIntent", intent, source=f"strategy:{self.strategy_id}", correlation_id=cid)
        return cid

    def cancel(self, instrument_id: str, client_order_id: str, reason: str = "") -> None:
        self._engine.emit("CancelIntent", {"instrument_id": instrument_id, "strategy_id": self.strategy_id,
                                           "client_order_id": client_order_id, "reason": reason},
                          source=f"strategy:{self.strategy_id}", correlation_id=client_order_id)

    def set_timer(self, name: str, ts: int) -> None:
        self._engine.set_timer(name, ts)
