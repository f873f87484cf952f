"""The research runtime: a slice of a source namespace → the engine with the simulated venue → a run namespace."""
from __future__ import annotations

import decimal
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from eventstore.store import Log
from handlers.queue import OutboundQueue
from handlers.risk import RiskEngine
from handlers.strategy import load_strategy, params_as_strings, parse_params
from handlers.venues.sim.venue import SimulatedVenue
from projections.performance import EquityCurve, RoundTrips, statistics
from projections.state import State
from runtime.engine.loop import Engine
from schemas.decimals import ARITHMETIC, canonical_json
from schemas.errors import TapeError
from schemas.names import PRICES

MARKET_INPUTS = list(PRICES)
GROUP_COMMIT = 1000
SNAPSHOT_EVERY = 100_000  # a backtest writes a SnapshotTaken every this many events folded (0: never)


def code_version() -> str:
    """Hash of the code that decides (handlers, projections, runtime, schemas): a run records what produced it."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in ("handlers", "projections", "runtime", "schemas", "eventstore"):
        for path in sorted((root / pkg).rglob("*")):
            if path.suffix in (".py", ".avsc") and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root)).encode())
                h.update(path.read_bytes())
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("tape")
    except PackageNotFoundError:
        v = "0"
    return f"{v}+{h.hexdigest()[:12]}"


@dataclass
class BacktestSpec:
    """Everything that determines a backtest: the same spec gives a byte-identical run log."""

    source: str
    strategy: str
    params: dict[str, str] = field(default_factory=dict)
    from_ts: int | None = None
    to_ts: int | None = None
    risk: dict[str, Any] = field(default_factory=dict)
    venue: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    snapshot_every: int = SNAPSHOT_EVERY

    def run_id(self, version: str) -> str:
        """Content address of the run: source, slice, strategy, params, configs and code version."""
        text = canonical_json({"spec": self.__dict__, "code": version})
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


def _report_currency(state: State, venue: dict[str, Any]) -> str:
    if venue.get("report_currency"):
        return str(venue["report_currency"])
    for inst in state.market.instruments.values():
        return inst.quote_currency
    raise TapeError("the source has no InstrumentDefined event: ingest the instrument (tape ingest) first")


def run_backtest(log: Log, spec: BacktestSpec, *, run_id: str | None = None,
                 progress: Callable[[int, int], None] | None = None) -> BacktestResult:
    """Replay the source slice through the engine, write everything to the run's namespace, compute statistics."""
    version = code_version()
    run_id = run_id or spec.run_id(version)
    if run_id in log.namespaces():
        raise TapeError(f"run {run_id} already exists: `tape runs show {run_id}`, or pass --run-id NAME for a new run")
    strategy_cls = load_strategy(spec.strategy)
    params = parse_params(strategy_cls, spec.params)
    state = State()
    venue = SimulatedVenue(spec.venue, state)
    writer = log.writer(run_id, fsync="never")
    with decimal.localcontext(ARITHMETIC), writer:
        engine = Engine(writer=writer, state=state, strategy_cls=strategy_cls, params=params,
                        risk=RiskEngine(spec.risk), queue=OutboundQueue({**spec.risk.get("queue", {}), "venue": venue.name}),
                        venue=venue, strategy_id=strategy_cls.name,
                        record_inputs=False, group=GROUP_COMMIT, snapshot_every=spec.snapshot_every)
        # instrument definitions come from the whole source up to the slice's end, then the slice itself
        for e in log.replay(spec.source, types=["InstrumentDefined"], to_ts=spec.to_ts):
            state.apply("InstrumentDefined", e.data, e.ts_event)
        first = next(iter(log.replay(spec.source, types=MARKET_INPUTS, from_ts=spec.from_ts, to_ts=spec.to_ts)), None)
        if first is None:
            raise TapeError(f"no market events in {spec.source} for the chosen slice: check --from/--to and the namespace")
        currency = _report_currency(state, spec.venue)
        started = {"run_id": run_id, "mode": "BACKTEST", "strategy": spec.strategy,
                   "params": params_as_strings(params),
                   "config": canonical_json({"risk": spec.risk, "venue": spec.venue,
                                             "snapshot_every": spec.snapshot_every}), "code_version": version,
                   "source_namespace": spec.source, "source_from_ts": spec.from_ts, "source_to_ts": spec.to_ts,
                   "seed": spec.seed}
        engine.start(first.ts_event, started)
        curve = EquityCurve()
        trips = RoundTrips()
        portfolio = state.portfolio
        risk = state.risk
        n = 0
        engine.on_emit = lambda name, data, ts: trips.apply(name, data, ts) if name == "OrderFilled" else None
        replay = log.replay(spec.source, types=MARKET_INPUTS, from_ts=spec.from_ts, to_ts=spec.to_ts)
        decode = replay.codec.decode_data
        names: dict[bytes, str] = {}
        prefix = f"{spec.source}:"
        process = engine.process
        for seq, ts, _key, type_b, value in replay.records():  # the hot loop: records, not Event objects
            name = names.get(type_b)
            if name is None:
                name = names[type_b] = type_b.rpartition(b".")[2].decode()
            process(name, decode(value), ts, prefix + str(seq))
            # the risk state keeps equity current incrementally (exactly equal to portfolio.equity)
            equity = risk.equity if risk.currency == currency and risk.equity is not None else portfolio.equity(currency)
            curve.add(ts, equity, portfolio.in_market())
            n += 1
            if progress is not None and n % 5000 == 0:
                progress(n, ts)
        engine.stop({"run_id": run_id, "reason": "end of source slice"})
    stats = statistics(curve, trips, state)
    return BacktestResult(run_id, run_id, state, curve, trips, stats, n, engine.events, currency, started)

