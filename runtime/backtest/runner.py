"""The research runtime: a slice of a source namespace → the engine with the simulated venue → a run namespace."""
from __future__ import annotations

import decimal
import gc
import hashlib
import importlib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from eventstore.store import Log
from handlers.queue import OutboundQueue, QueueConfig
from handlers.risk.engine import RiskEngine
from handlers.risk.limits import RiskLimits
from handlers.strategy import load_strategy, params_as_strings, parse_params, strategy_code
from handlers.venues.sim.config import VenueConfig
from handlers.venues.sim.venue import SimulatedVenue
from projections.interventions import Interventions
from projections.performance import Annualisation, BuyAndHold, EquityCurve, RoundTrips, statistics
from projections.state import State
from runtime.engine.loop import Engine
from runtime.replay.columns import Cached, source_rows
from schemas.decimals import ARITHMETIC, canonical_json
from schemas.errors import TapeError
from schemas.names import PRICES

MARKET_INPUTS = list(PRICES)
GROUP_COMMIT = 1000
COMPLETE = "end of source slice"  # RunStopped.reason of a run that read its whole slice
INTERRUPTED = "interrupted"  # … of one stopped by Ctrl-C (a run killed outright has no RunStopped at all)
FAILED = "failed"  # … of one that raised: "failed: why"
SNAPSHOT_EVERY = 100_000  # a backtest writes a SnapshotTaken every this many events folded (0: never)


CODE_PACKAGES = ("handlers", "projections", "runtime", "schemas", "eventstore")


def code_version() -> str:
    """Hash of the code that decides (handlers, projections, runtime, schemas, eventstore): a run records what
    produced it. Each package is found where Python imports it from, wherever it is installed."""
    h = hashlib.sha256()
    for pkg in CODE_PACKAGES:
        root = Path(importlib.import_module(pkg).__path__[0])
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".avsc") and "__pycache__" not in path.parts:
                h.update(f"{pkg}/{path.relative_to(root).as_posix()}".encode())
                h.update(path.read_bytes())
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("tape")
    except PackageNotFoundError:
        v = "0"
    return f"{v}+{h.hexdigest()[:12]}"


def run_code_version(strategy_cls: type) -> str:
    """The code a run records: tape's (code_version) and, for a strategy from outside tape, its file's hash."""
    own = strategy_code(strategy_cls)
    return code_version() + (f"+strategy.{own}" if own else "")


@dataclass
class BacktestSpec:
    """Everything that determines a backtest: the same spec gives a byte-identical run log."""

    source: str
    strategy: str
    params: dict[str, str] = field(default_factory=dict)
    from_ts: int | None = None
    to_ts: int | None = None
    risk: RiskLimits = field(default_factory=RiskLimits)
    queue: QueueConfig = field(default_factory=QueueConfig)
    venue: VenueConfig = field(default_factory=VenueConfig)
    seed: int = 0
    snapshot_every: int = SNAPSHOT_EVERY
    source_to_seq: int | None = None  # the source's horizon the run reads (None: the source's last seq now)
    source_hash: str | None = None  # the hash chain's value there (pinned() fills both)
    annualisation: Annualisation = field(default_factory=Annualisation)  # read by the statistics, not the engine

    def configs(self) -> dict[str, Any]:
        """The configs in their canonical form: what RunStarted.config records and `--verify` parses back (the
        statistics' settings only when given, so a run without them keeps the config and id it always had)."""
        out = {"risk": self.risk.canonical(), "queue": self.queue.canonical(), "venue": self.venue.canonical(),
               "snapshot_every": self.snapshot_every}
        if self.annualisation.canonical():
            out["statistics"] = self.annualisation.canonical()
        return out

    def run_id(self, version: str) -> str:
        """Content address of the run: the source's content read (name, horizon, hash chain there), slice,
        strategy, params, configs and code version."""
        spec = {"source": self.source, "strategy": self.strategy, "params": self.params, "from_ts": self.from_ts,
                "to_ts": self.to_ts, "seed": self.seed, **self.configs()}
        if self.source_to_seq is not None:
            spec.update(source_to_seq=self.source_to_seq, source_hash=self.source_hash)
        text = canonical_json({"spec": spec, "code": version})
        return "bt-" + hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class BacktestResult:
    run_id: str
    namespace: str
    state: State
    curve: EquityCurve
    trips: RoundTrips
    statistics: dict[str, Any]
    events_in: int
    events_out: int
    currency: str
    started: dict[str, Any] | None = None
    interventions: Interventions = field(default_factory=Interventions)
    benchmark: BuyAndHold = field(default_factory=BuyAndHold)
    opening_balances: dict[str, Any] = field(default_factory=dict)  # the venue's account when the run began
    cached: Cached = field(default_factory=lambda: Cached("off"))  # how the source was read (columns or log)


def applied_venue(venue: VenueConfig, instruments: Mapping[str, Any], opening: Mapping[str, Any]) -> dict[str, Any]:
    """The simulated venue's settings as they applied, each marked as given or a default: what people need to know
    to read a run's figures (starting balances, fee rates per instrument, volume cap, fill rule, latency, account),
    printed by the summary and recorded in RunStarted.applied."""
    default = VenueConfig()
    fees = {}
    for iid, inst in sorted(instruments.items()):
        fees[iid] = {"maker": venue.maker_fee if venue.maker_fee is not None else inst.maker_fee,
                     "taker": venue.taker_fee if venue.taker_fee is not None else inst.taker_fee}
    given = {"starting_balances": venue.starting_balances is not None,
             "fees": venue.maker_fee is not None or venue.taker_fee is not None,
             **{k: getattr(venue, k) != getattr(default, k)
                for k in ("volume_participation", "market_fill", "latency_ns", "account_type", "leverage")}}
    return {"name": venue.name, "starting_balances": dict(sorted(opening.items())),
            "fee_rates": fees, "fee_rates_from": "venue config" if given["fees"] else "instrument definitions",
            "volume_participation": venue.volume_participation, "market_fill": venue.market_fill,
            "latency_ns": venue.latency_ns, "account_type": venue.account_type, "leverage": venue.leverage,
            "defaults": sorted(k for k, v in given.items() if not v)}


def report_currency(state: State, venue: VenueConfig) -> str:
    """The currency a run's equity and statistics are in: the venue config's report_currency, else the first
    instrument's quote currency."""
    if venue.report_currency:
        return venue.report_currency
    for inst in state.market.instruments.values():
        return inst.quote_currency
    raise TapeError("the source has no InstrumentDefined event: ingest the instrument (tape ingest) first")


def pinned(log: Log, spec: BacktestSpec) -> BacktestSpec:
    """The spec with the source's horizon it reads: what is committed now (a new run), or — a run re-run — the
    horizon it recorded, refused when the source no longer holds that history."""
    if spec.source not in log.namespaces():
        raise TapeError(f"no namespace {spec.source!r} in {log.url}: `tape log namespaces` lists them")
    if spec.source_to_seq is not None:
        found = log.chain_at(spec.source, spec.source_to_seq)
        if found != spec.source_hash:
            raise TapeError(f"source {spec.source} no longer holds the history the run read (its record at seq "
                            f"{spec.source_to_seq:,} is {'missing' if found is None else 'another'}): it was "
                            "rewritten or replaced; the run cannot be reproduced from it")
        return spec
    horizon = log.horizon(spec.source)
    if horizon == 0:
        raise TapeError(f"source {spec.source} holds no events: ingest history into it first (tape ingest)")
    return replace(spec, source_to_seq=horizon, source_hash=log.chain_at(spec.source, horizon))


def run_backtest(log: Log, spec: BacktestSpec, *, run_id: str | None = None,
                 progress: Callable[[int, int], None] | None = None, into: Log | None = None, cache: bool = True,
                 build_progress: Callable[[int], None] | None = None) -> BacktestResult:
    """Replay the source slice of `log` through the engine, write everything to the run's namespace (in `into`,
    default the same store), compute statistics. Everything that can refuse the run does so before its namespace
    exists; a run that fails or is interrupted part way records why (RunStopped) after its last whole step. The
    source is read from its columns file (runtime/replay/columns.py: built on first use, `build_progress` counting
    its events) unless `cache` is off; the run is the same byte for byte either way."""
    strategy_cls = load_strategy(spec.strategy)
    version = run_code_version(strategy_cls)
    spec = pinned(log, spec)
    run_id = run_id or spec.run_id(version)
    target = into if into is not None else log
    if run_id in target.namespaces():
        raise RunExists(run_id)
    params = parse_params(strategy_cls, spec.params)
    started = {"run_id": run_id, "mode": "BACKTEST", "strategy": spec.strategy, "params": params_as_strings(params),
               "config": canonical_json(spec.configs()), "code_version": version, "source_namespace": spec.source,
               "source_from_ts": spec.from_ts, "source_to_ts": spec.to_ts, "seed": spec.seed,
               "source_to_seq": spec.source_to_seq, "source_hash": spec.source_hash}
    state = State()
    with decimal.localcontext(ARITHMETIC):
        # instrument definitions come from the whole source up to the slice's end, then the slice itself
        source = source_rows(log, started, cache=cache, progress=build_progress)
        for _seq, ts, name, data in source.definitions:
            state.apply(name, data, ts)
        rows, cached = source.market, source.cached
        first = next(rows, None)
        if first is None:
            raise TapeError(f"no market events in {spec.source} for the chosen slice: check --from/--to and the "
                            "namespace")
        currency = report_currency(state, spec.venue)
    venue = SimulatedVenue(spec.venue, state)
    started["applied"] = canonical_json(applied_venue(spec.venue, state.market.instruments, venue.opening_balances()))
    writer = target.writer(run_id, fsync="never")
    try:  # the strategy checks its parameters as it is made: refused, the new namespace goes with it
        with decimal.localcontext(ARITHMETIC):
            engine = Engine(writer=writer, state=state, strategy_cls=strategy_cls, params=params,
                            risk=RiskEngine(spec.risk), queue=OutboundQueue(replace(spec.queue, venue=venue.name)),
                            venue=venue, strategy_id=strategy_cls.name,
                            record_inputs=False, group=GROUP_COMMIT, snapshot_every=spec.snapshot_every)
    except BaseException:
        writer.close()
        target.delete(run_id)
        raise
    with decimal.localcontext(ARITHMETIC), writer, ExitStack() as stack:
        curve = EquityCurve()
        trips = RoundTrips()
        interventions = Interventions()
        benchmark = BuyAndHold()
        n = 0
        try:
            engine.start(first[1], started)
            engine.flush()  # the run's header at once: a run killed before its first group commit is still a run
            portfolio = state.portfolio
            opening = dict(portfolio.balances)
            risk = state.risk
            marks = state.market.last_price
            folds = {"OrderFilled": trips.apply, **{name: interventions.apply for name in Interventions.EVENTS}}
            engine.on_emit = lambda name, data, ts: folds[name](name, data, ts) if name in folds else None
            prefix = f"{spec.source}:"
            process = engine.process
            stack.enter_context(no_cycle_collection())
            fills, exposed = -1, False
            for seq, ts, name, data in chain((first,), rows):  # the hot loop
                process(name, data, ts, prefix + str(seq))
                # the risk state keeps equity current incrementally (exactly equal to portfolio.equity)
                equity = risk.equity if risk.currency == currency and risk.equity is not None \
                    else portfolio.equity(currency)
                if portfolio.fill_count != fills:  # positions move only on fills
                    fills, exposed = portfolio.fill_count, portfolio.in_market()
                curve.add(ts, equity, exposed)
                if len(marks) != len(benchmark.first):
                    benchmark.observe(marks, ts)
                n += 1
                if progress is not None and n % 5000 == 0:
                    progress(n, ts)
        except KeyboardInterrupt:
            engine.abort({"run_id": run_id, "reason": INTERRUPTED})
            raise RunInterrupted(run_id, n) from None
        except Exception as e:  # recorded as the run's end, then raised on
            engine.abort({"run_id": run_id, "reason": f"{FAILED}: {' '.join(str(e).split()) or type(e).__name__}"})
            raise
        engine.stop({"run_id": run_id, "reason": COMPLETE})
    stats = statistics(curve, trips, periods_per_year=spec.annualisation.periods_per_year,
                       risk_free_rate=spec.annualisation.risk_free_rate)
    return BacktestResult(run_id, run_id, state, curve, trips, stats, n, engine.events, currency, started,
                          interventions, benchmark, opening, cached)


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """The loop without the cyclic collector: what exists before it is frozen out of every pass and the loop makes
    no cycles of its own, so each pass would only rescan the growing equity curve (5 % of a backtest, more the
    longer it runs); reference counting still frees everything else at once."""
    enabled = gc.isenabled()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()


class RunExists(TapeError):
    """The run's namespace exists: the same inputs (the run id is their content address) ran before."""

    def __init__(self, run_id: str):
        super().__init__(f"run {run_id} already exists: `tape runs show {run_id}`, or pass --run-id NAME for a new run")
        self.run_id = run_id


class RunInterrupted(TapeError):
    """Ctrl-C during a run: what was committed is kept, marked interrupted."""

    def __init__(self, run_id: str, events_in: int):
        super().__init__(f"interrupted: run {run_id} kept what it committed after {events_in:,} source events, marked "
                         "interrupted; the same command replaces it")
        self.run_id, self.events_in = run_id, events_in
