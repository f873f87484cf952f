"""`tape live`: one session of the live runtime on a namespace — recover, reconcile, then trade until stopped.

Startup (runtime/live/resume.py): the latest snapshot is restored (projections, strategy, handlers) and the
namespace's inputs after it are replayed through the engine, which rebuilds all state and writes nothing; the
venue adapter learns from the log which orders it sent, which answers it read, which fills it folded. Then the
session starts: RunStarted, the instruments from the venue's markets, (live) the venue's balances as a reported
AccountState, and reconciliation — every send whose outcome the log does not hold is looked
up by client order id (never sent again), fills since the last recorded trade are read from the venue's trade
history — recorded as a ReconciliationReport. Then the loop: closed bars from the feed, the venue's answers and
fills, each one input → one committed step, every order sent only after the step that records it is committed;
every `heartbeat_seconds` a Heartbeat input with what the loop measured, the incident monitor's evidence; every
pass, the operators' commands from the namespace's control channel (eventstore/control.py), each recorded as an
OperatorCommand input and answered in its step (handlers/operator.py); a restart reads on after the last recorded.
SIGINT/SIGTERM stop the loop at a step boundary and write RunStopped. A second `tape live` on the namespace is
refused by the writer lock (file store) or fenced (Kafka).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from eventstore.errors import NamespaceBeingCreated
from eventstore.replay import Event
from eventstore.seek import last_event
from eventstore.store import Log
from eventstore.writer import own_fields
from handlers.incidents.config import IncidentConfig
from handlers.incidents.monitor import IncidentMonitor
from handlers.operator import Operator
from handlers.queue import OutboundQueue, QueueConfig
from handlers.risk.engine import RiskEngine
from handlers.risk.limits import RiskLimits
from handlers.strategy import Strategy, listens, load_strategy, params_as_strings, parse_params
from handlers.venues.ccxt.adapter import CcxtVenue, credentials_refused
from handlers.venues.ccxt.clock import ExchangeClock, VenueClock
from handlers.venues.ccxt.errors import one_line
from handlers.venues.ccxt.feed import BarFeed
from handlers.venues.ccxt.health import VenueHealth
from handlers.venues.ccxt.mapping import instrument_id, instrument_payload
from handlers.venues.ccxt.reconcile import balance_mismatches, blocking
from handlers.venues.ccxt.ticks import QuoteFeed, TradeFeed
from handlers.venues.sim.config import VenueConfig
from handlers.venues.sim.venue import SimulatedVenue
from projections.snapshot import Snapshot, read_snapshot
from projections.state import State
from runtime.backtest.runner import run_code_version
from runtime.engine.loop import HANDLER_STATE_VERSION, Engine
from runtime.live.resume import Replayed, ReplayWriter, replay_inputs
from runtime.replay.recovery import run_started
from schemas.decimals import as_logged, canonical_json
from schemas.errors import TapeError
from schemas.ids import order_id_prefix

SNAPSHOT_EVERY = 10_000
COMMAND_SECONDS = 0.25  # how often the loop reads its control channel (a Kafka read waits for a fetch)
UNHEALTHY = frozenset({"log_stall", "consumer_lag"})  # open incidents that let the dead-man's switch run out


class LiveError(TapeError):
    """A live session that cannot start as asked (namespace, venue, symbols, configs)."""


@dataclass(frozen=True)
class LiveSpec:
    """Everything that determines a live session; parsed once at the edge (the CLI)."""

    namespace: str
    venue: str  # ccxt id, e.g. "binance"
    symbols: tuple[str, ...]  # ccxt symbols, e.g. ("BTC/USDT",)
    strategy: str
    params: dict[str, str] = field(default_factory=dict)
    risk: RiskLimits = field(default_factory=RiskLimits)
    queue: QueueConfig = field(default_factory=QueueConfig)
    paper: bool = False
    paper_venue: VenueConfig = field(default_factory=VenueConfig)
    timeframe: str = "1m"
    timeframe_ns: int = 60_000_000_000
    history_bars: int = 0
    poll_seconds: float = 1.0
    visibility_window_ns: int = 30_000_000_000
    check_seconds: float = 5.0  # how often the loop compares the venue's open orders with the log's
    fills_seconds: float = 1.0  # how often it reads the venue's trade history (a rate-limited REST read: a read
    # each pass would keep the loop inside ccxt's rate limiter while bars wait)
    snapshot_every: int = SNAPSHOT_EVERY
    incidents: IncidentConfig = field(default_factory=IncidentConfig)
    heartbeat_seconds: float = 5.0  # how often the loop records what it measured (a Heartbeat input)
    stream_grace_seconds: float = 2.0  # a bar the stream has not closed this long after the clock did: read over REST

    @property
    def venue_name(self) -> str:
        return self.venue.upper()

    def configs(self) -> dict[str, Any]:
        """What RunStarted.config records: the same inputs must give the same derived events on replay."""
        return {"risk": self.risk.canonical(), "queue": self.queue.canonical(), "venue": self.venue,
                "symbols": list(self.symbols), "timeframe": self.timeframe,
                "paper_venue": self.paper_venue.canonical() if self.paper else None,
                "snapshot_every": self.snapshot_every, "incidents": self.incidents.canonical()}


class CommitClock:
    """The engine's writer, every commit timed: the slowest since the last heartbeat (and the metrics'); what is
    committed goes to the alerts (never before: an alert names only what the log holds)."""

    def __init__(self, writer: Any, metrics: Any = None, alerts: Any = None):
        self.writer, self.metrics, self.alerts = writer, metrics, alerts
        self.slowest = 0.0

    def append_steps(self, steps: list[Any]) -> int:
        t = time.perf_counter()
        out = self.writer.append_steps(steps)
        took = time.perf_counter() - t
        self.slowest = max(self.slowest, took)
        if self.metrics is not None:
            self.metrics.appended(took, sum(len(step) for step in steps))
        if self.alerts is not None:
            self.alerts.committed(steps)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)


@dataclass
class Session:
    """What a session did, for the CLI's last line."""

    namespace: str
    recovered_events: int = 0
    recovered_inputs: int = 0
    snapshot_seq: int | None = None  # the snapshot recovery started from (None: the log from seq 1)
    inputs: int = 0
    resolved_in_doubt: int = 0
    fills: int = 0
    bars_streamed: int = 0
    bars_polled: int = 0
    fill_reads: int = 0  # reads of the venue's trade history (each a rate-limited REST request per instrument)
    account_updates: int = 0  # updates the account stream announced (each a reason to read, never a record)
    trades: int = 0  # TradeTicks recorded (a strategy that hears trades)
    quotes: int = 0  # QuoteTicks recorded (a strategy that hears the book's top)


class LiveNode:
    """One live (or paper) session on one namespace of one store."""

    def __init__(self, log: Log, spec: LiveSpec, exchange: Any, *, clock: Callable[[], int] = time.time_ns,
                 venue_clock: VenueClock | None = None, secrets: tuple[str, ...] = (), stream: Any = None,
                 metrics: Any = None, use_snapshots: bool = True, snapshot_to_seq: int | None = None,
                 alerts: Any = None, deadman: Any = None, account: Any = None, ticks: Any = None):
        if not spec.namespace.startswith("live-"):
            raise LiveError(f"namespace {spec.namespace!r}: a live namespace is named live-NAME (e.g. live-btc)")
        self.log, self.spec, self.exchange, self.clock = log, spec, exchange, clock
        self.secrets = secrets
        self.strategy_cls = load_strategy(spec.strategy)
        self.params = parse_params(self.strategy_cls, spec.params)  # bad parameters fail before anything is written
        self._check_namespace()
        self.symbols = self._markets()
        self.venue_clock = venue_clock or ExchangeClock(exchange, clock)
        self.health = VenueHealth().watch(exchange)
        self.adapter = CcxtVenue(spec.venue_name, exchange, self.symbols, clock=clock, venue_now=self.venue_clock.now,
                                 visibility_window_ns=spec.visibility_window_ns, secrets=secrets,
                                 own_prefix=order_id_prefix(spec.namespace))
        self.feed = BarFeed(exchange, self.symbols, spec.timeframe, spec.timeframe_ns, self.venue_clock.now,
                            history=spec.history_bars)
        heard = listens(self.strategy_cls)
        self.trades = TradeFeed(exchange, self.symbols) if "TradeTick" in heard else None  # Binance: aggTrades
        self.quotes = QuoteFeed(exchange, self.symbols, self.venue_clock.now) if "QuoteTick" in heard else None
        self.use_snapshots, self.snapshot_to_seq = use_snapshots, snapshot_to_seq  # where recovery may start
        self.stream = stream  # a KlineStream (stream.py) or None: bars over REST only
        self.ticks = ticks  # a TickStream (stream.py) or None: the trades and quotes the strategy hears, over REST
        self.metrics = metrics  # runtime.ops.metrics.SessionMetrics or None
        self.alerts = alerts  # runtime.ops.alerts.Alerts or None: webhooks told of incidents and halts
        self.deadman = deadman  # handlers.venues.ccxt.deadman.DeadMansSwitch or None (paper, or no such venue API)
        self.account = account  # handlers.venues.ccxt.account_stream.AccountStream or None: fills read on a timer
        self._fills_due = False  # the account stream announced a change not read yet
        self._due_since: dict[str, float] = {}  # instrument → when (monotonic) its next bar became due
        self.session = Session(spec.namespace)
        self._next_check = 0.0
        self._next_fills = 0.0
        self._next_beat = 0.0
        self._next_commands = 0.0
        self._stream_down: float | None = None  # since when (monotonic) the stream is down
        self._lag = 0.0  # longest wait of an input for its step since the last heartbeat
        # a signed request before anything is written: refused credentials leave no half-started session
        self._opening = None if spec.paper else self.adapter.balances()
        self.writer = log.writer(spec.namespace, clock=clock)  # the lock: a second session is refused here
        try:
            self.control = log.control(spec.namespace)
            self._control_at = 0  # where the next read of the control channel starts
            self.engine = self._recover()
        except BaseException:
            self.writer.close()
            raise

    # ---- startup ---------------------------------------------------------------------------------------------

    def _markets(self) -> dict[str, str]:
        import ccxt

        try:
            markets = self.exchange.load_markets()
        except ccxt.AuthenticationError as e:
            raise credentials_refused(self.spec.venue_name, e, self.secrets) from None
        except ccxt.BaseError as e:
            raise LiveError(f"venue {self.spec.venue} is unreachable ({one_line(e, self.secrets)}); check the network "
                            "or --sandbox-url") from None
        out = {}
        for symbol in self.spec.symbols:
            market = markets.get(symbol)
            if market is None:
                raise LiveError(f"{self.spec.venue} lists no market {symbol!r}: use a symbol such as "
                                f"{next(iter(sorted(markets)), 'BTC/USDT')!r} (ccxt's unified form)")
            out[instrument_id(market, self.spec.venue_name)] = symbol
        return out

    def _check_namespace(self) -> None:
        if self.spec.namespace not in self.log.namespaces():
            return
        try:
            first = run_started(self.log, self.spec.namespace)
        except NamespaceBeingCreated:  # a first session killed as it created it on Kafka: this one finishes it
            return
        if first is None and self.log.horizon(self.spec.namespace) == 0:
            return  # created, nothing committed yet (a first session killed as it started): this one starts it
        if first is None:
            raise LiveError(f"namespace {self.spec.namespace} holds events but no RunStarted: it is not a live "
                            "namespace; choose another --namespace")
        mode = "PAPER" if self.spec.paper else "LIVE"
        if first["mode"] != mode:
            raise LiveError(f"namespace {self.spec.namespace} was written by a {first['mode'].lower()} run; a "
                            f"{mode.lower()} session needs a namespace of its own")
        same = (first["strategy"], dict(first["params"]), first["config"]) == (
            self.spec.strategy, params_as_strings(self.params), canonical_json(self.spec.configs()))
        if not same:
            raise LiveError(f"namespace {self.spec.namespace} runs {first['strategy']} with params "
                            f"{dict(first['params'])} and its own config; resume it with the same ones, or start a new "
                            "namespace to change them")

    def _engine(self, writer: Any, state: State) -> Engine:
        spec = self.spec
        venue: Any = SimulatedVenue(replace(spec.paper_venue, name=spec.venue_name), state) if spec.paper \
            else self.adapter
        monitor = IncidentMonitor(spec.incidents, strategy_id=self.strategy_cls.name, venue=spec.venue_name,
                                  limits=spec.risk)
        return Engine(writer=writer, state=state, strategy_cls=self.strategy_cls, params=self.params,
                      risk=RiskEngine(spec.risk, halts=False),
                      queue=OutboundQueue(replace(spec.queue, venue=spec.venue_name)),
                      venue=venue, strategy_id=self.strategy_cls.name, record_inputs=True, group=1,
                      snapshot_every=spec.snapshot_every, clock=self.clock,
                      snapshot_handlers=self._restorable, incidents=monitor,
                      operator=Operator(strategy_id=self.strategy_cls.name, venue=spec.venue_name))

    @property
    def _restorable(self) -> bool:
        """Snapshots carry everything a restart needs only when the strategy keeps its own state in them."""
        return self.strategy_cls.snapshot is not Strategy.snapshot

    def _snapshot(self) -> tuple[int, Snapshot] | None:
        """The namespace's latest snapshot that holds the handlers' state of this code's layout, and its seq."""
        if not self._restorable or not self.use_snapshots:
            return None
        ev = last_event(self.log, self.spec.namespace, "SnapshotTaken", to_seq=self.snapshot_to_seq)
        if ev is None:
            return None
        snap = read_snapshot(ev.data, self.log.catalog, self.log.registry(self.spec.namespace))
        if snap.handlers is None or snap.handlers["version"] != HANDLER_STATE_VERSION:
            return None  # written before handlers were snapshotted (or in another layout): replay from seq 1
        return ev.seq, snap

    def _recover(self) -> Engine:
        ns = self.spec.namespace
        exists = ns in self.log.namespaces()
        found_snapshot = self._snapshot() if exists else None
        from_seq = 1 if found_snapshot is None else found_snapshot[0] + 1
        replay = ReplayWriter(ns, self.log.catalog, self.log.registry(ns), iter(self.log.replay(ns, from_seq=from_seq)),
                              next_seq=from_seq)
        engine = self._engine(replay, State() if found_snapshot is None else found_snapshot[1].state)
        if found_snapshot is not None:
            seq, snap = found_snapshot
            if snap.strategy_state is not None:
                engine.strategy.restore(snap.strategy_state)
            engine.restore_handlers(snap.handlers)
            market = snap.state.market
            for name, last in (("Bar", market.last_bar), ("TradeTick", market.last_trade),
                               ("QuoteTick", market.last_quote)):
                for data in last.values():  # where the feeds resume, as the log says
                    self._learn(name, data)
            self.session.snapshot_seq = seq
        self.adapter.sending = False
        engine.snapshot_every = 0  # while the log replays, its own SnapshotTakens say where snapshots are

        def learn(e: Event) -> None:
            self.adapter.learn(e.name, e.data, e.envelope["ts_init"])
            self._learn(e.name, e.data)

        def session_start(e: Event, first: bool) -> None:
            engine.start(e.ts_event, own_fields(e.data), open_venue=first)

        def session_stop(e: Event) -> None:
            engine.stop(own_fields(e.data))

        found: Replayed = replay_inputs(self.log, ns, engine, learn=learn, session_start=session_start,
                                        session_stop=session_stop, from_seq=from_seq,
                                        sessions=0 if found_snapshot is None else 1) if exists else Replayed()
        engine.flush()
        engine.snapshot_every = self.spec.snapshot_every
        self.adapter.sending = True
        self.adapter.reports.clear()
        engine.writer = self.commits = CommitClock(self.writer, self.metrics, self.alerts)
        engine._next_seq = self.writer.next_seq
        if self.metrics is not None:  # from here on: what this session does, not what recovery re-derived
            engine.on_emit = lambda name, payload, ts: self.metrics.emitted(name, payload)
        self.session.recovered_events, self.session.recovered_inputs = found.events, found.inputs
        self._first_session = found.sessions == 0
        return engine

    def start(self) -> None:
        """RunStarted, instruments, balances, reconciliation: the session's first steps."""
        spec, engine = self.spec, self.engine
        now = self.venue_clock.now()
        started = {"run_id": spec.namespace, "mode": "PAPER" if spec.paper else "LIVE", "strategy": spec.strategy,
                   "params": params_as_strings(self.params), "config": canonical_json(spec.configs()),
                   "code_version": run_code_version(self.strategy_cls), "source_namespace": None,
                   "source_from_ts": None,
                   "source_to_ts": None, "seed": None}
        markets = self.exchange.markets
        for iid, symbol in sorted(self.symbols.items()):
            payload = instrument_payload(markets[symbol], spec.venue_name)
            known = engine.state.market.instruments.get(iid)
            if known is None or any(getattr(known, k) != v for k, v in payload.items() if hasattr(known, k)):
                self._input("InstrumentDefined", payload, now, "feed")
        engine.start(max(now, engine.now), started, open_venue=self._first_session)
        if not spec.paper:
            if self._first_session and self._opening is not None:
                self._input(*self._opening, source="report")
            self.reconcile()

    def reconcile(self) -> list[dict[str, Any]]:
        """Startup's check of the log against the venue: sends in doubt looked up by client order id, fills since
        the cursor, the venue's open orders against the log's, balances; recorded as a ReconciliationReport, and
        trading halted when the log no longer describes the account."""
        adapter = self.adapter
        doubted = len(adapter.in_doubt)
        self._settle_doubt()
        adapter.poll_fills()
        mismatches = adapter.check_orders()
        adapter.poll_fills()
        names = self._pump()
        balances, found, checked = self._compare_balances(self._opening)
        self._opening = None
        names += balances
        mismatches += found
        self.session.resolved_in_doubt += doubted - len(adapter.in_doubt)
        mismatches += [{"kind": "order_status", "client_order_id": d.client_order_id, "field": "status",
                        "local": "SUBMITTED", "venue": None} for d in adapter.in_doubt.values()]
        self._record_check(mismatches, orders=doubted + len(adapter.orders.open), fills=names.count("OrderFilled"),
                           balances=checked)
        return mismatches

    def _record_check(self, mismatches: list[dict[str, Any]], *, orders: int, fills: int, balances: int) -> None:
        """A ReconciliationReport of what a check compared and found; when something found means the log no
        longer describes the account, the incident monitor raises reconciliation_mismatch, which halts."""
        if self.metrics is not None:
            self.metrics.found(mismatches)
        stop = blocking(mismatches)
        self._input("ReconciliationReport", {
            "venue": self.spec.venue_name, "orders_checked": orders, "fills_checked": fills,
            "balances_checked": balances, "mismatches": mismatches,
            "resolved": not stop and not self.adapter.in_doubt}, self.venue_clock.now(), "report")

    def _settle_doubt(self) -> None:
        """Look the sends in doubt up until each is found or proved absent (past the visibility window), for at most
        the window and a second: a send in doubt may have filled, and until it is found the venue's balances hold
        what the log cannot explain yet — balances are compared only once the doubt is settled."""
        adapter = self.adapter
        adapter.resolve()
        deadline = time.monotonic() + self.spec.visibility_window_ns / 1e9 + 1.0
        while adapter.in_doubt and time.monotonic() < deadline:
            time.sleep(0.25)
            adapter.resolve()

    def _compare_balances(self, first: Any = None, attempts: int = 3) -> tuple[list[str], list[dict[str, Any]], int]:
        """The venue's balances against the log's, read when no new fill arrives around the read (a fill the
        trade history does not show yet would read as a difference: read again, up to `attempts` times). `first`:
        a read already made (the session's credential check; account reads are costly in the venue's rate limit).
        Returns the reports it fed in, the differences, and how many currencies were compared."""
        names: list[str] = []
        found: list[dict[str, Any]] = []
        checked = 0
        for _ in range(attempts):
            if self.adapter.in_doubt:  # the sends of this very check (its pump) may be in doubt too
                self._settle_doubt()
                first = None
            _, reported, _ = first if first is not None else self.adapter.balances()
            first = None
            self.adapter.poll_fills()
            fresh = self._pump()
            names += fresh
            if "OrderFilled" in fresh or self.adapter.in_doubt:
                found = []  # a balance read beside a fill not folded yet, or a send in doubt, proves nothing
                continue
            found = balance_mismatches(self.engine.state.portfolio.balances, reported)
            checked = len(reported["balances"])
            if not found:
                break
            time.sleep(0.5)
        return names, found, checked

    # ---- the loop --------------------------------------------------------------------------------------------

    def _input(self, name: str, payload: dict[str, Any], ts: int, source: str, taken: float | None = None) -> None:
        """One input, one committed step (its sends leave once it is committed); `taken`: when the loop took the
        input in (perf_counter), where tick-to-order starts."""
        m = self.metrics
        if m is not None:
            m.ordered = False
        t = time.perf_counter()
        if taken is not None and t - taken > self._lag:
            self._lag = t - taken
        self.engine.process(name, as_logged(payload), ts, source=f"{source}:{self.spec.venue_name}")
        self.session.inputs += 1
        if m is not None:
            done = time.perf_counter()
            m.input(name, payload, source, done - t)
            if name == "Bar" and m.ordered:
                m.tick_to_order.labels(self.spec.namespace).observe(done - (taken if taken is not None else t))

    def _pump(self) -> list[str]:
        """Feed the venue's answers in as inputs until none are left (an answer's step may send more)."""
        names = []
        while True:
            reports = self.adapter.drain()
            if not reports:
                return names
            for name, payload, ts in reports:
                self._input(name, payload, ts, "report")
                names.append(name)
                self.session.fills += name == "OrderFilled"

    def _learn(self, name: str, data: dict[str, Any]) -> None:
        """A recorded market event, folded into the feed that resumes after it."""
        self.feed.learn(name, data)
        if self.trades is not None:
            self.trades.learn(name, data)
        if self.quotes is not None:
            self.quotes.learn(name, data)

    def _read_fills(self) -> None:
        self.session.fill_reads += 1
        self.adapter.poll_fills()

    def step(self) -> None:
        """One pass: new closed bars, then the venue's answers, fills and in-doubt lookups."""
        self.venue_clock.sync()
        bars = self._bars()
        ticks = self._ticks()
        taken = time.perf_counter()
        for name, payload, ts in sorted(bars + ticks, key=lambda m: m[2]) if ticks else bars:  # in event time
            self._input(name, payload, ts, "feed", taken)
            self._pump()
        if not self.spec.paper:
            account = self.account
            updates = account.take() if account is not None else 0
            if updates:
                self.session.account_updates += updates
                self._fills_due = True  # the venue says the account changed: read it as soon as the floor allows
            if time.monotonic() >= self._next_fills and (
                    self._fills_due or account is None or not account.connected()):
                self._next_fills = time.monotonic() + self.spec.fills_seconds
                self._fills_due = False
                self._read_fills()
            if self.adapter.in_doubt:
                self.adapter.resolve()
            if time.monotonic() >= self._next_check:
                self._next_check = time.monotonic() + self.spec.check_seconds
                found = self.adapter.check_orders()
                self._read_fills()
                if found:
                    self._pump()
                    self._record_check(found, orders=len(self.adapter.orders.open), fills=0, balances=0)
            self._pump()
        if time.monotonic() >= self._next_commands:
            self._next_commands = time.monotonic() + COMMAND_SECONDS
            self.commands()
        if self.deadman is not None:
            self.deadman.refresh(self.healthy())
        if time.monotonic() >= self._next_beat:
            self._next_beat = time.monotonic() + self.spec.heartbeat_seconds
            self.heartbeat()
        if self.metrics is not None:
            d = self.deadman
            self.metrics.observe(self.engine.state, read_failures=self.feed.failures,
                                 stream_connected=self.streams_connected(),
                                 alerts=self.alerts, deadman_seconds=None if d is None else d.remaining())

    def streams_connected(self) -> dict[str, bool]:
        """Each websocket stream the session runs, and whether it delivers (REST covers one that does not)."""
        out = {}
        if self.stream is not None:
            out["bars"] = self.stream.connected()
        if self.ticks is not None:
            if self.ticks.trades:
                out["trades"] = self.ticks.trades_connected()
            if self.ticks.quotes:
                out["quotes"] = self.ticks.quotes_connected()
        if self.account is not None:
            out["account"] = self.account.connected()
        return out

    def commands(self) -> None:
        """The operators' commands sent since the last read, each an input recorded before it is acted on; one
        read after its expiry (the sender has been told no session took it), or damaged, is named on stderr."""
        try:
            records, self._control_at = self.control.read(self._control_at)
        except TapeError as e:  # the channel unreadable for now (a broker away): trading goes on, read again later
            _warn(f"{self.spec.namespace}: the control channel cannot be read ({e}); commands wait")
            return
        done = self.engine.operator.position
        for r in records:
            if r.position <= done:
                continue  # recorded before a restart
            command = r.data and command_payload(r.data, r.position)
            if command is None:
                _warn(f"{self.spec.namespace}: " + (r.problem or f"the control record at {r.position} is not a "
                                                    "command; it is skipped — send the command again"))
                continue
            if command.pop("expires_ts") < time.time_ns():
                _warn(f"{self.spec.namespace}: command {command['command']} {command['command_id']} read after its "
                      "expiry (the session was down or starting); not carried out — send it again")
                continue
            self._input("OperatorCommand", command, self.venue_clock.now(), "operator")
            self._pump()

    def healthy(self) -> bool:
        """Whether the venue's dead-man's switch is kept armed: not while the log cannot record in time or inputs
        wait too long (then the venue cancels the resting orders when the timer runs out, as if the process died)."""
        return not any(i.kind in UNHEALTHY for i in self.engine.state.incidents.open.values())

    def heartbeat(self) -> None:
        """What the loop measured since the last one, as a recorded input: the incident monitor's evidence (and
        event time moving on when no market data comes)."""
        now = time.monotonic()
        connected = None if self.stream is None else self.stream.connected()
        if connected is False:
            self._stream_down = self._stream_down if self._stream_down is not None else now
        else:
            self._stream_down = None
        failed, limited, banned = self.health.take()
        offset = (self.exchange.options or {}).get("timeDifference")
        self._input("Heartbeat", {
            "component": f"runtime:{self.spec.venue_name}", "stream_connected": connected,
            "stream_down_ns": 0 if self._stream_down is None else int((now - self._stream_down) * 1e9),
            "failed_reads": failed, "rate_limited": limited, "banned": banned,
            "clock_offset_ms": None if offset is None else int(offset), "append_ms": int(self.commits.slowest * 1000),
            "lag_ms": int(self._lag * 1000), "deadman_until": self._deadman_until(),
            "bar_gaps": self.feed.take_gaps()}, self.venue_clock.now(),
            "monitor")
        self.commits.slowest, self._lag = 0.0, 0.0

    def _deadman_until(self) -> int | None:
        d = self.deadman
        if d is None or not d.armed:
            return None
        return self.clock() + int(d.remaining() * 1e9)

    def _bars(self) -> list[tuple[str, dict[str, Any], int]]:
        """New closed bars: the stream's while it is connected and continues the log, REST for the rest (all of it
        while the stream is down; an instrument after a gap; a bar the stream has not closed within the grace)."""
        stream, feed = self.stream, self.feed
        if stream is None or not stream.connected():
            self._due_since.clear()
            bars = feed.poll()
            self.session.bars_polled += len(bars)
            return bars
        streamed = stream.drain()
        bars, gaps = feed.take(streamed)
        self.session.bars_streamed += len(bars)
        now = time.monotonic()
        due = feed.due()
        self._due_since = {iid: self._due_since.get(iid, now) for iid in due}
        late = gaps | {iid for iid, since in self._due_since.items() if now - since >= self.spec.stream_grace_seconds}
        if late:
            polled = feed.poll(late)
            self.session.bars_polled += len(polled)
            more, _ = feed.take(streamed)  # what the stream held past the gap, now that REST closed it
            self.session.bars_streamed += len(more)
            bars += polled + more
            for iid in late:
                self._due_since.pop(iid, None)
        return bars

    def _ticks(self) -> list[tuple[str, dict[str, Any], int]]:
        """New trades and the book's top, for a strategy that hears them: streamed while the stream is up and
        continues the log (ticks.py), REST for the rest."""
        out: list[tuple[str, dict[str, Any], int]] = []
        stream = self.ticks
        if self.trades is not None:
            if stream is not None and stream.trades_connected():
                out += self.trades.take(stream.drain_trades())
                if self.trades.behind:
                    out += self.trades.poll(sorted(self.trades.behind))
            else:
                out += self.trades.poll()
            self.session.trades += sum(1 for m in out if m[0] == "TradeTick")
        if self.quotes is not None:
            quotes = self.quotes.take(stream.drain_quotes()) if stream is not None and stream.quotes_connected() \
                else self.quotes.poll()
            self.session.quotes += len(quotes)
            out += quotes
        return out

    def run(self, stop: Callable[[], bool], *, max_seconds: float | None = None) -> Session:
        """Start, then step every poll interval until `stop()` (or max_seconds), then write RunStopped."""
        if self.stream is not None:
            self.stream.start(self.exchange.markets)
        if self.account is not None:
            self.account.start(self.exchange.markets)
        if self.ticks is not None:
            self.ticks.start(self.exchange.markets)
        self.start()
        began = time.monotonic()
        try:
            while not stop() and (max_seconds is None or time.monotonic() - began < max_seconds):
                self.step()
                if self.stream is not None and self.stream.connected():
                    self.stream.wait(self.spec.poll_seconds)  # a streamed bar (or account update) wakes the loop
                elif self.account is not None:
                    self.account.wait(self.spec.poll_seconds)
                else:
                    time.sleep(self.spec.poll_seconds)
        finally:
            self.engine.stop({"run_id": self.spec.namespace, "reason": "stopped" if stop() else "max runtime"})
            self.writer.close()
            self.control.close()
            if self.deadman is not None and self.deadman.armed:
                self.deadman.disarm()  # a clean stop keeps the resting orders, as the log says they are
            if self.alerts is not None:
                self.alerts.close(5.0)
            if self.stream is not None:
                self.stream.stop()
            if self.account is not None:
                self.account.stop()
            if self.ticks is not None:
                self.ticks.stop()
            if self.metrics is not None:
                self.metrics.close()
        return self.session


def _warn(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def command_payload(d: dict[str, Any], position: int) -> dict[str, Any] | None:
    """A control record as an OperatorCommand payload (and its expiry), or None when its fields are not what
    `tape live halt|…` writes: nothing a record says reaches the log unchecked."""
    try:
        text = {k: str(d.get(k) or "") for k in ("scope", "scope_id", "reason", "by", "command_id")}
        incident = d.get("incident_id")
        return {"command": str(d["command"]), **text, "scope": text["scope"] or "account",
                "incident_id": None if incident is None else str(incident), "position": position,
                "sent_ts": int(d.get("sent_ts") or 0), "expires_ts": int(d.get("expires_ts") or 0)}
    except (KeyError, TypeError, ValueError):
        return None
