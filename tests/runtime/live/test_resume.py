"""Startup is recovery: replaying a live namespace's inputs through a fresh engine rebuilds exactly the state the
killed session had — positions, orders, balances, and the strategy's, queue's and paper venue's own state — and so
does restoring any of its snapshots and replaying only the inputs after it."""
from __future__ import annotations

import dataclasses
import random
from collections import deque
from decimal import Decimal
from fractions import Fraction

import pytest

from eventstore.store import Log
from projections.snapshot import read_snapshot
from runtime.live.node import LiveNode, LiveSpec
from runtime.live.resume import RecoveryDiverged

MIN_MS = 60_000
T0_MS = 1_700_000_040_000


class MarketStub:
    """Just enough of a ccxt exchange for paper mode: one spot market and a seeded random walk of 1m bars."""

    def __init__(self, seed: int = 3, bars: int = 400) -> None:
        rng = random.Random(seed)
        px, self.rows = 100.0, []
        for i in range(bars):
            o = px
            px = round(max(1.0, px + rng.choice((-1, 1)) * rng.randint(0, 150) / 100), 2)
            self.rows.append([T0_MS + i * MIN_MS, o, max(o, px) + 0.1, min(o, px) - 0.1, px, 5.0])
        self.now_ms = T0_MS + 30 * MIN_MS
        self.options: dict = {}
        self.markets = {"BTC/USDT": {"id": "BTCUSDT", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT",
                                     "spot": True, "precision": {"price": 0.01, "amount": 0.001},
                                     "limits": {"amount": {"min": 0.001}, "cost": {"min": 5.0}},
                                     "maker": 0.001, "taker": 0.001}}

    def load_markets(self):
        return self.markets

    def fetch_ohlcv(self, symbol, timeframe, since, limit):
        return [r for r in self.rows if r[0] >= since and r[0] + MIN_MS <= self.now_ms][:limit]


def spec(**kw) -> LiveSpec:
    base = dict(namespace="live-t", venue="binance", symbols=("BTC/USDT",), strategy="sma_cross",
                params={"fast": "3", "slow": "8", "quantity": "0.5"}, paper=True, history_bars=20, poll_seconds=0,
                snapshot_every=50)
    base.update(kw)
    return LiveSpec(**base)


def node(store, market: MarketStub, *, use_snapshots: bool = True, snapshot_to_seq: int | None = None,
         **kw) -> LiveNode:
    return LiveNode(Log.open(f"file:{store}"), spec(**kw), market, clock=lambda: market.now_ms * 1_000_000,
                    use_snapshots=use_snapshots, snapshot_to_seq=snapshot_to_seq)


def run_minutes(n: LiveNode, market: MarketStub, minutes: int) -> None:
    for _ in range(minutes):
        market.now_ms += MIN_MS
        n.step()


def test_a_killed_paper_session_recovers_exactly(tmp_path):
    market = MarketStub()
    a = node(tmp_path, market)
    a.start()
    run_minutes(a, market, 150)
    assert a.engine.state.portfolio.fill_count > 5  # it traded
    crashed = a.engine.state.snapshot()
    strategy = a.engine.strategy.snapshot()
    a.writer.close()  # killed: no RunStopped, nothing else written
    whole = node(tmp_path, market, use_snapshots=False)
    assert whole.session.snapshot_seq is None and whole.session.recovered_inputs > 150
    assert whole.engine.state.snapshot() == crashed
    whole.writer.close()
    b = node(tmp_path, market)
    assert b.engine.state.snapshot() == crashed and b.engine.strategy.snapshot() == strategy
    assert b.session.snapshot_seq is not None and b.session.recovered_inputs < 50  # the tail after the snapshot
    # the resumed session goes on as one uninterrupted run would
    b.start()
    run_minutes(b, market, 100)
    b.engine.stop({"run_id": "live-t", "reason": "test"})
    b.writer.close()
    for kw in ({}, {"use_snapshots": False}):  # and a second recovery, from a snapshot or the whole log, agrees
        c = node(tmp_path, market, **kw)
        assert c.engine.state.snapshot() == b.engine.state.snapshot()
        c.writer.close()


def test_a_kill_between_a_step_and_its_snapshot_leaves_a_log_that_recovers(tmp_path, monkeypatch):
    """The step is committed, its snapshot is not: the replay must not expect one there, at the log's end (the
    next start) or in its middle (every later start, once the resumed session went on)."""
    from runtime.engine.loop import Engine

    class Killed(Exception):
        pass

    market = MarketStub()
    a = node(tmp_path, market)
    a.start()
    real, calls = Engine.take_snapshot, [0]

    def dies_at_the_third(self):
        calls[0] += 1
        if calls[0] == 3:
            raise Killed
        return real(self)

    monkeypatch.setattr(Engine, "take_snapshot", dies_at_the_third)
    with pytest.raises(Killed):
        run_minutes(a, market, 150)
    crashed = a.engine.state.snapshot()
    a.writer.close()
    monkeypatch.setattr(Engine, "take_snapshot", real)
    b = node(tmp_path, market)
    assert b.engine.state.snapshot() == crashed
    b.start()
    run_minutes(b, market, 120)
    b.writer.close()  # killed again, with a snapshot missing in the middle of the log now
    found = []
    for kw in ({}, {"use_snapshots": False}):
        c = node(tmp_path, market, **kw)
        c.writer.close()
        assert c.engine.state.snapshot() == b.engine.state.snapshot()
        found.append(everything(c))
    assert found[0] == found[1]  # from the latest snapshot or from seq 1: the very same handlers


def test_resuming_with_other_parameters_is_refused(tmp_path):
    market = MarketStub()
    a = node(tmp_path, market)
    a.start()
    run_minutes(a, market, 5)
    a.writer.close()
    from runtime.live.node import LiveError

    with pytest.raises(LiveError, match="resume it with the same ones"):
        node(tmp_path, market, params={"fast": "4", "slow": "8", "quantity": "0.5"})


def test_a_log_the_engine_does_not_derive_is_named(tmp_path, monkeypatch):
    """Negative control for the replay check: a strategy that now decides differently is caught at recovery."""
    from handlers.strategies.sma_cross import SmaCross

    market = MarketStub()
    a = node(tmp_path, market)
    a.start()
    run_minutes(a, market, 80)
    assert a.engine.state.portfolio.fill_count > 0
    a.writer.close()
    real = SmaCross.on_bar

    def twice(self, bar):
        real(self, bar)
        real(self, bar)

    monkeypatch.setattr(SmaCross, "on_bar", twice)
    with pytest.raises(RecoveryDiverged, match="replaying its inputs derived"):
        node(tmp_path, market, use_snapshots=False)  # the whole log (the tail after a snapshot may hold no order)


def test_a_second_session_on_the_namespace_is_refused(tmp_path):
    from eventstore.errors import LockedNamespace

    market = MarketStub()
    a = node(tmp_path, market)
    a.start()
    with pytest.raises(LockedNamespace):
        node(tmp_path, market)
    a.engine.stop({"run_id": "live-t", "reason": "test"})
    a.writer.close()
    b = node(tmp_path, market)  # once the first has stopped, the namespace resumes
    assert b.session.recovered_events > 0
    b.writer.close()


# ---- every snapshot restores what a replay from seq 1 rebuilds ------------------------------------------------

SKIP = {  # references and caches, not state: the engine's writer and clock, what the comparison covers apart
    "writer", "clock", "state", "_encoder", "on_emit", "_cause", "ctx", "_ctx", "exchange", "venue_now",
    "venue_time", "secrets", "config", "limits", "rules", "_instruments", "strategy", "risk",
    "_index",  # the rows an order archive has read for a question (handlers/archive.py): a cache
}


def plain(x, depth: int = 0):
    """Everything an object holds, as comparable data, whatever it keeps it in (attributes, slots, containers)."""
    assert depth < 30, "a cycle"
    if x is None or isinstance(x, (bool, int, str, Decimal, Fraction)):
        return x
    if isinstance(x, dict):
        return {str(k): plain(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple, deque)):
        return [plain(v, depth + 1) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted(plain(v, depth + 1) for v in x)
    if dataclasses.is_dataclass(x):
        return {f.name: plain(getattr(x, f.name), depth + 1) for f in dataclasses.fields(x) if f.name not in SKIP}
    if callable(x) and not hasattr(x, "__dict__"):
        return "<callable>"
    if not hasattr(x, "__dict__"):  # slots only (the indicators)
        names = sorted({n for cls in type(x).__mro__ for n in getattr(cls, "__slots__", ())})
        return {n: plain(getattr(x, n), depth + 1) for n in names if n not in SKIP}
    return {k: plain(v, depth + 1) for k, v in sorted(vars(x).items()) if k not in SKIP}


def everything(n: LiveNode) -> dict:
    e = n.engine
    return {"engine": plain(e), "queue": plain(e.queue), "venue": plain(e.venue), "strategy": plain(e.strategy),
            "state": e.state.snapshot(), "feed": dict(n.feed.last_open)}


def busy_namespace(store, market: MarketStub) -> list[int]:
    """A paper session whose handlers hold something at most step boundaries — quotes re-placed every bar behind a
    rate limit (orders and cancels held in the queue), a venue latency of 90 s (orders and cancels on their way) —
    killed without RunStopped; the seqs of its snapshots."""
    from handlers.queue import QueueConfig
    from handlers.venues.sim.config import VenueConfig

    a = node(store, market, **BUSY)
    a.start()
    run_minutes(a, market, 120)
    assert a.engine.state.portfolio.fill_count > 3
    a.writer.close()
    log = Log.open(f"file:{store}")
    seqs = [e.seq for e in log.replay("live-t", types=["SnapshotTaken"])]
    assert QueueConfig and VenueConfig
    return seqs


def busy() -> dict:
    from handlers.queue import QueueConfig
    from handlers.venues.sim.config import VenueConfig

    return dict(strategy="market_maker", params={"spread": "0.002", "quantity": "0.1", "max_inventory": "0.3"},
                queue=QueueConfig(rate_per_second=Decimal("0.05"), burst=2),
                paper_venue=VenueConfig(latency_ns=90_000_000_000), snapshot_every=40)


BUSY = busy()


def test_every_snapshot_restores_what_a_replay_from_the_start_rebuilds(tmp_path):
    market = MarketStub()
    seqs = busy_namespace(tmp_path, market)
    assert len(seqs) >= 10
    whole = node(tmp_path, market, use_snapshots=False, **BUSY)
    whole.writer.close()
    expected = everything(whole)
    held = timed = 0
    log = Log.open(f"file:{tmp_path}")
    for seq in seqs[::3] + seqs[-1:]:  # (a third of them: each restore replays the rest of the log)
        restored = node(tmp_path, market, snapshot_to_seq=seq, **BUSY)
        restored.writer.close()
        assert restored.session.snapshot_seq == seq
        parts = read_snapshot(next(iter(log.replay("live-t", from_seq=seq, to_seq=seq))).data, log.catalog,
                              log.registry("live-t")).handlers["parts"]
        held += bool(parts["queue"]["held"])
        timed += bool(parts["venue"]["timed"])
        assert everything(restored) == expected, f"restored from the snapshot at seq {seq}"
    assert held and timed  # the snapshots held something to restore


def session_facts(store) -> list:
    """Every event of the session, envelope and payload (less the hash chain, which the snapshots' bytes are part
    of); of what the session measures of itself (snapshots, heartbeats, incidents raised from them) the seq."""
    log = Log.open(f"file:{store}")
    return [(e.seq, e.name) if e.name in ("SnapshotTaken", "Heartbeat", "IncidentRaised", "IncidentResolved") else
            (e.seq, e.name, {k: v for k, v in e.data.items() if k != "envelope"},
             {k: v for k, v in e.envelope.items() if k != "prev_hash"}) for e in log.replay("live-t")]


def test_archived_orders_change_no_fact_and_every_snapshot_restores_them(tmp_path, monkeypatch):
    """With a tail of 3 finished orders (venue) and 3 ids (queue), and chunks of 5 rows, nearly every order of a
    busy paper session is archived: its log says what a session that keeps every order whole says, and each of its
    snapshots restores what a replay from the start rebuilds."""
    import handlers.archive
    from handlers.queue import OutboundQueue
    from handlers.venues.sim.venue import SimulatedVenue

    (tmp_path / "whole").mkdir()
    (tmp_path / "small").mkdir()
    market = MarketStub()
    monkeypatch.setattr(SimulatedVenue, "KEEP_FINISHED", 10 ** 9)
    monkeypatch.setattr(OutboundQueue, "KEEP_SEEN", 10 ** 9)
    busy_namespace(tmp_path / "whole", market)
    monkeypatch.setattr(SimulatedVenue, "KEEP_FINISHED", 3)
    monkeypatch.setattr(OutboundQueue, "KEEP_SEEN", 3)
    monkeypatch.setattr(handlers.archive, "CHUNK", 5)
    market = MarketStub()
    seqs = busy_namespace(tmp_path / "small", market)
    assert session_facts(tmp_path / "small") == session_facts(tmp_path / "whole")
    whole = node(tmp_path / "small", market, use_snapshots=False, **BUSY)
    whole.writer.close()
    expected = everything(whole)
    archived = 0
    log = Log.open(f"file:{tmp_path / 'small'}")
    for seq in seqs[1::4] + seqs[-1:]:
        restored = node(tmp_path / "small", market, snapshot_to_seq=seq, **BUSY)
        restored.writer.close()
        parts = read_snapshot(next(iter(log.replay("live-t", from_seq=seq, to_seq=seq))).data, log.catalog,
                              log.registry("live-t")).handlers["parts"]
        archived += bool(parts["venue"]["archive"]["chunks"] and parts["queue"]["seen_before"]["chunks"])
        assert everything(restored) == expected, f"restored from the snapshot at seq {seq}"
    assert archived  # the snapshots held sealed chunks of archived orders


@pytest.mark.parametrize("part", ["handlers.queue.OutboundQueue", "handlers.venues.sim.venue.SimulatedVenue"])
def test_a_part_left_out_of_the_restore_is_caught(tmp_path, monkeypatch, part):
    """Negative control: a component that keeps its state out of the restore makes the comparison above fail."""
    import importlib

    market = MarketStub()
    seqs = busy_namespace(tmp_path, market)
    module, _, cls = part.rpartition(".")
    monkeypatch.setattr(getattr(importlib.import_module(module), cls), "restore", lambda self, state: None)
    whole = node(tmp_path, market, use_snapshots=False, **BUSY)
    whole.writer.close()
    expected = everything(whole)
    caught = []
    for seq in seqs:
        try:
            restored = node(tmp_path, market, snapshot_to_seq=seq, **BUSY)
        except RecoveryDiverged:  # the replay of the tail derived other events
            caught.append(seq)
            continue
        restored.writer.close()
        if everything(restored) != expected:
            caught.append(seq)
    assert caught


# ---- incidents replay and survive a restart --------------------------------------------------------------------

def test_a_halting_incident_survives_a_restart_and_replays_at_the_same_seqs(tmp_path):
    """A drawdown limit a market maker soon reaches: the hard breach halts and cancels its quotes. Killed, the
    session restarts HALTED with the incident as the log holds it; a replay raises each incident at the same seq."""
    from handlers.risk.limits import RiskLimits

    market = MarketStub()
    kw = {**BUSY, "risk": RiskLimits(max_drawdown=Decimal("0.0000001"))}  # 0.10 USDT of 1,000,000
    a = node(tmp_path, market, **kw)
    a.start()
    run_minutes(a, market, 60)
    crashed = a.engine.state
    assert crashed.risk.trading_state == "HALTED"
    a.writer.close()
    log = Log.open(f"file:{tmp_path}")
    raised = [(e.seq, e.data["incident_id"], e.data["kind"]) for e in log.replay("live-t", types=["IncidentRaised"])]
    assert {"risk_breach_soft", "risk_breach_hard"} <= {k for _, _, k in raised}
    hard = next(e for e in log.replay("live-t", types=["IncidentRaised"]) if e.data["kind"] == "risk_breach_hard")
    assert hard.data["cancel_open"] and any(e.data["reason"] == f"incident {hard.data['incident_id']}"
                                            for e in log.replay("live-t", types=["CancelIntent"]))
    halts = [e.data["incident_id"] for e in log.replay("live-t", types=["TradingStateChanged"])]
    assert halts and halts[0] in {i for _, i, _ in raised}  # the halt names its incident
    for how in ({}, {"use_snapshots": False}):
        b = node(tmp_path, market, **kw, **how)
        b.writer.close()
        assert b.engine.state.risk.trading_state == "HALTED"
        assert b.engine.state.incidents.snapshot() == crashed.incidents.snapshot()
        assert b.engine.incidents.snapshot() == a.engine.incidents.snapshot()


def test_stale_market_data_is_raised_from_heartbeats_and_resolved_when_bars_resume(tmp_path):
    market = MarketStub()
    a = node(tmp_path, market, heartbeat_seconds=0)
    a.start()
    run_minutes(a, market, 5)
    rows = market.rows
    market.rows = [r for r in rows if r[0] + MIN_MS <= market.now_ms]  # the venue stops publishing bars
    run_minutes(a, market, 2)
    assert not a.engine.state.incidents.open  # the next bar is 60 s overdue: not yet (120 s)
    run_minutes(a, market, 2)
    open_ = a.engine.state.incidents.open
    assert [i.kind for i in open_.values()] == ["stale_data"] and next(iter(open_.values())).action == "DENY"
    market.rows = rows
    run_minutes(a, market, 1)
    assert not a.engine.state.incidents.open
    a.writer.close()
    log = Log.open(f"file:{tmp_path}")
    got = [e.name for e in log.replay("live-t", types=["IncidentRaised", "IncidentResolved"])]
    assert got == ["IncidentRaised", "IncidentResolved"]  # the warm-up's 20 bars of history raised nothing
