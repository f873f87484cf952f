"""Kill-test kit: `tape live` as a real process against the sandbox venue, SIGKILLed, and the invariants checked
against the venue's own books (through the real ccxt library) and a full replay of the log.

A session runs the CLI through a small launcher that can arm a failpoint (SIGKILL at the Nth call of a named
point of the send and recovery paths) or swap in a deliberately broken variant (the negative controls), both as
patches applied in the test's launcher: nothing of either is in the runtime's code.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sandbox"))
from sandboxkit import KEY, ROOT, SECRET, Sandbox, py_env  # noqa: E402

from schemas.ids import order_id_prefix

SYMBOL = "BTC/USDT"
NAMESPACE = "live-kt"
SPAWNED: list[subprocess.Popen] = []  # every session a test started: reaped after it (conftest.py), failed or not


def reap() -> None:
    """SIGKILL the sessions still running (a test that failed before stopping its own leaves them polling, using a
    core for as long as the machine lives and slowing the tests after it)."""
    while SPAWNED:
        p = SPAWNED.pop()
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)

# The launcher: `tape` itself, with the patches a test asked for through the environment.
LAUNCHER = r'''
import os, signal, sys
from runtime.cli.app import main
import ccxt
import handlers.venues.ccxt.adapter as adapter
import runtime.live.node as node

def kill():
    os.kill(os.getpid(), signal.SIGKILL)

def arm(owner, method, when, hit, test=None):
    original = getattr(owner, method)
    calls = [0]
    def patched(self, *args, **kwargs):
        if test is None or test(args):
            calls[0] += 1
            if when == "before" and calls[0] == hit:
                kill()
        try:
            return original(self, *args, **kwargs)
        finally:  # answered or raised: the request reached the venue
            if when == "after" and (test is None or test(args)) and calls[0] == hit:
                kill()
    setattr(owner, method, patched)

POINTS = {
    # the step recording OrderSubmitted is committed; the request has not left
    "before_send": (adapter.CcxtVenue, "_send_order", "before", None),
    # the venue took the order; its answer is lost with the process
    "after_send": (ccxt.binance, "create_order", "after", None),
    # the venue canceled; the answer is lost
    "after_cancel": (ccxt.binance, "cancel_order", "after", None),
    # a fill was read from the venue and not yet recorded
    "before_fill": (adapter.CcxtVenue, "_report", "before", lambda a: a[0] == "OrderFilled"),
    # recovery replayed the log; the session's first step is not written
    "after_replay": (node.LiveNode, "start", "before", None),
    # mid-reconciliation: sends in doubt looked up, the order check not done
    "mid_reconcile": (adapter.CcxtVenue, "check_orders", "before", None),
}
point = os.environ.get("KT_FAILPOINT")
if point:
    owner, method, when, test = POINTS[point]
    arm(owner, method, when, int(os.environ.get("KT_HIT", "1")), test)

variant = os.environ.get("KT_VARIANT")
if variant == "resend":  # negative control: an unanswered submit is sent again
    sent = {}
    learn, submit = adapter.CcxtVenue.learn, adapter.CcxtVenue.submit
    def remember(self, name, data, ts_init):
        if name == "OrderSubmitted":
            sent[data["client_order_id"]] = dict(data)
        learn(self, name, data, ts_init)
    def submit_remember(self, order, now):
        sent[order["client_order_id"]] = dict(order)
        return submit(self, order, now)
    def resend(self):
        for cid in list(self.in_doubt):
            del self.in_doubt[cid]
            self._send_order(sent[cid])
    adapter.CcxtVenue.learn, adapter.CcxtVenue.submit, adapter.CcxtVenue.resolve = remember, submit_remember, resend
    node.LiveNode._snapshot = lambda self: None  # recovery replays every submit, so each one in doubt is re-sent
elif variant == "absent_at_once":  # negative control: "not found" is taken as proof that the order is not there
    adapter.CcxtVenue._traded = lambda self, trades, cid: False
    init = adapter.CcxtVenue.__init__
    def no_window(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.visibility_window_ns = 0
    adapter.CcxtVenue.__init__ = no_window
elif variant == "no_wait":  # negative control: startup looks a send in doubt up once, and judges
    node.LiveNode._settle_doubt = lambda self: self.adapter.resolve()

sys.argv[0] = "tape"
main()
'''

STRATEGIES = {
    "sma_cross": ("--param", "fast=3", "--param", "slow=8", "--param", "quantity=0.01"),
    "market_maker": ("--param", "spread=0.0001", "--param", "quantity=0.01", "--param", "max_inventory=0.03"),
}


ALERT_ONLY = ("venue_unreachable", "banned", "reject_burst", "unknown_burst", "stale_data", "log_stall")


@dataclass
class Live:
    """How to run `tape live` on the sandbox: strategy, paper or not, and the store."""

    store: Path
    url: str
    strategy: str = "sma_cross"
    paper: bool = False
    window_s: float = 2.0
    alert_only: tuple[str, ...] = ALERT_ONLY  # incident kinds whose action is ALERT (the rest: the defaults)
    store_url: str = ""  # the session's store when not the file store at `store` (kafka://…)

    def incidents(self) -> Path:
        """The series' incident policy: the venue faults it injects on purpose alert instead of halting (a halt
        would end the trading the series exists to kill; tests/runtime/live/test_incidents.py tests the halts)."""
        path = self.store.parent / "incidents.toml"
        if not path.exists():
            path.write_text("".join(f'[{kind}]\naction = "ALERT"\n' for kind in self.alert_only))
        return path

    def argv(self, *extra: str) -> list[str]:
        return [sys.executable, "-c", LAUNCHER, "--store", self.store_url or f"file:{self.store}", "live",
                "--venue", "binance", "--namespace", NAMESPACE, "--strategy", self.strategy,
                *STRATEGIES.get(self.strategy, ()),
                "--symbol", SYMBOL, "--sandbox-url", self.url, "--poll", "0.05", "--history", "3",
                "--visibility-window", str(self.window_s), "--snapshot-every", "25",
                "--incidents", str(self.incidents()),
                *(("--paper",) if self.paper else ()), *extra]

    def env(self, **extra: str) -> dict[str, str]:
        return {**py_env(), "TAPE_BINANCE_API_KEY": KEY, "TAPE_BINANCE_SECRET": SECRET, **extra}

    def spawn(self, *extra: str, **env: str) -> subprocess.Popen:
        p = subprocess.Popen(self.argv(*extra), env=self.env(**env), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        SPAWNED.append(p)
        return p

    def run(self, seconds: float, *extra: str, **env: str) -> subprocess.CompletedProcess:
        """A session that ends by itself after `seconds` (RunStopped); its output, for the failure message."""
        return subprocess.run(self.argv("--max-seconds", str(seconds), *extra), env=self.env(**env), cwd=ROOT,
                              capture_output=True, text=True, timeout=seconds + 120)


@dataclass
class Kills:
    """What a kill series did, for the failure message and the closing figures."""

    kills: int = 0
    exited: list[str] = field(default_factory=list)  # sessions that ended before their kill (stderr tails)


def kill_series(live: Live, rounds: int, rng: random.Random, *, low: float = 0.2, high: float = 3.5,
                enough: dict[str, int] | None = None, max_rounds: int = 0, **env: str) -> Kills:
    """`rounds` sessions, each SIGKILLed at a uniformly random time after it was spawned; then, with `enough`
    ({event name: count}), more (up to `max_rounds` in all) until the log holds that many of each: a slow machine
    starts fewer sessions' worth of trading in the same rounds, and the series must not test nothing there."""
    out = Kills()
    n = 0
    while n < rounds or (enough and n < max_rounds and not _holds(live.store, enough)):
        n += 1
        p = live.spawn(**env)
        try:
            p.wait(rng.uniform(low, high))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            out.kills += 1
        else:
            out.exited.append(f"rc={p.returncode}: {p.stderr.read()[-400:]}")
        p.stdout.close()
        p.stderr.close()
    return out


def _holds(store: Path, enough: dict[str, int]) -> bool:
    try:
        events = log_events(store)
    except Exception:  # noqa: BLE001 - no namespace yet
        return False
    counts = Counter(e.name for e in events)
    return all(counts[name] >= k for name, k in enough.items())


def stop_session(p: subprocess.Popen) -> None:
    """SIGTERM a spawned session (it writes RunStopped) and close its pipes."""
    p.terminate()
    p.wait(30)
    p.stdout.close()
    p.stderr.close()


def failpoint(live: Live, point: str, hit: int = 1, timeout: float = 30.0) -> bool:
    """One session killed by itself at `point` (its `hit`-th pass); True when the point was reached."""
    p = live.spawn(KT_FAILPOINT=point, KT_HIT=str(hit))
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return False
    finally:
        p.stdout.close()
        p.stderr.close()
    return p.returncode == -signal.SIGKILL


# ---- the invariants ------------------------------------------------------------------------------------------

def paged(fetch: Any) -> list[dict[str, Any]]:
    """Every row of an id-cursored venue list, 1000 a page."""
    rows: list[dict[str, Any]] = []
    while True:
        page = fetch(int(rows[-1]["id"]) if rows else 0)
        rows += page
        if len(page) < 1000:
            return rows


def venue_books(sb: Sandbox) -> dict[str, Any]:
    """The venue's orders, trades and balances, read through ccxt (paged by id, as a user would)."""
    ex = sb.ccxt()
    orders = paged(lambda after: ex.fetch_orders(SYMBOL, None, 1000, {"orderId": after + 1}))
    trades = paged(lambda after: ex.fetch_my_trades(SYMBOL, None, 1000, {"fromId": after + 1}))
    balance = ex.fetch_balance()
    totals = {c: Decimal(repr(v)) for c, v in balance["total"].items() if v}
    info = {b["asset"]: Decimal(b["free"]) + Decimal(b["locked"]) for b in balance["info"]["balances"]}
    return {"orders": orders, "trades": trades, "totals": totals, "exact": {a: v for a, v in info.items() if v}}


def own_orders(sb: Sandbox) -> list[dict[str, Any]]:
    """The namespace's orders as the venue holds them (/sandbox/state: no visibility lag)."""
    prefix = order_id_prefix(NAMESPACE)
    return [o for o in sb.state()["orders"] if str(o["clientOrderId"]).startswith(prefix)]


def own_trade_ids(sb: Sandbox) -> set[str]:
    """The venue's trade ids of the namespace's orders, as the log's fills name them."""
    return {str(t) for o in own_orders(sb) for t in o["tradeIds"]}


def until(what: Callable[[], Any], seconds: float, step: float = 0.1) -> Any:
    """`what()` once it is truthy, or its last value after `seconds`."""
    deadline = time.monotonic() + seconds
    while not (got := what()) and time.monotonic() < deadline:
        time.sleep(step)
    return got


def log_events(store: Path) -> list[Any]:
    from eventstore.store import Log

    log = Log.open(f"file:{store}")
    try:
        return list(log.replay(NAMESPACE))
    finally:
        log.close()


def folded(events: list[Any]) -> Any:
    """The state a full replay of the log gives (the order state machine raises on any illegal step)."""
    from projections.state import State

    state = State()
    for e in events:
        state.apply(e.name, {k: v for k, v in e.data.items() if k != "envelope"}, e.ts_event)
    return state


@dataclass
class Verdict:
    """The seven invariants as counts (each must be 0), plus what the run did."""

    duplicate_orders: int = 0  # I1: client ids with more than one venue order, or venue orders the log never sent
    fills_missing: int = 0  # I2: venue trades of our orders with no OrderFilled
    fills_extra: int = 0  # I2/I3: OrderFilled with no venue trade, or recorded twice, or differing
    unresolved: int = 0  # I4: orders still in doubt, or open in the log and not at the venue (or the reverse)
    false_terminal: int = 0  # I5: REJECTED or ABSENT in the log for an order the venue has
    state_differs: int = 0  # I6: currencies whose balance after replay differs from the venue's
    halted: int = 0  # reconciliation found the log not describing the account
    orders: int = 0
    fills: int = 0
    unknown_outcomes: int = 0
    resolved_by_lookup: int = 0
    details: list[str] = field(default_factory=list)

    def broken(self) -> dict[str, int]:
        names = ("duplicate_orders", "fills_missing", "fills_extra", "unresolved", "false_terminal", "state_differs",
                 "halted")
        return {n: getattr(self, n) for n in names if getattr(self, n)}


def verdict(sb: Sandbox, store: Path | None, prefix: str, events: list[Any] | None = None) -> Verdict:
    """Compare the venue's books with the log (live sessions): the file store's, or the `events` given."""
    books = venue_books(sb)
    if events is None:
        events = log_events(store)  # type: ignore[arg-type]
    state = folded(events)
    v = Verdict()
    ours = [o for o in books["orders"] if str(o["clientOrderId"] or "").startswith(prefix + "-")]
    by_cid = Counter(o["clientOrderId"] for o in ours)
    submitted = {e.data["client_order_id"] for e in events if e.name == "OrderSubmitted"}
    v.orders = len(submitted)
    v.duplicate_orders = sum(n - 1 for n in by_cid.values() if n > 1) + len(set(by_cid) - submitted)
    if v.duplicate_orders:
        v.details.append(f"venue orders per client id > 1: {[c for c, n in by_cid.items() if n > 1][:5]}")
    our_ids = {str(o["id"]) for o in ours}
    venue_trades = {str(t["id"]): t for t in books["trades"] if str(t["order"]) in our_ids}
    fills = [e.data for e in events if e.name == "OrderFilled"]
    v.fills = len(fills)
    seen = Counter(f["trade_id"] for f in fills)
    v.fills_missing = len(set(venue_trades) - set(seen))
    v.fills_extra = len(set(seen) - set(venue_trades)) + sum(n - 1 for n in seen.values() if n > 1)
    for f in fills:
        t = venue_trades.get(f["trade_id"])
        if t is not None and (Decimal(repr(t["amount"])), Decimal(repr(t["price"]))) != (
                f["last_quantity"], f["last_price"]):
            v.fills_extra += 1
            v.details.append(f"fill {f['trade_id']} differs from the venue's trade")
    if v.fills_missing or v.fills_extra:
        v.details.append(f"venue trades {len(venue_trades)}, log fills {len(fills)} ({len(seen)} distinct)")
    venue_open = {o["clientOrderId"] for o in ours if o["status"] == "open"}
    log_open = {o.client_order_id for o in state.orders.open()}
    in_doubt = {o.client_order_id for o in state.orders.open() if o.status == "SUBMITTED"}
    v.unresolved = len(in_doubt) + len(venue_open ^ (log_open - in_doubt))
    if v.unresolved:
        v.details.append(f"in doubt {sorted(in_doubt)[:5]}, open only at the venue {sorted(venue_open - log_open)[:5]},"
                         f" open only in the log {sorted(log_open - venue_open - in_doubt)[:5]}")
    at_venue = set(by_cid)
    false = [cid for cid, o in state.orders.by_id.items() if o.status in ("REJECTED", "ABSENT") and cid in at_venue]
    v.false_terminal = len(false)
    if false:
        v.details.append(f"rejected or absent in the log, at the venue: {false[:5]}")
    local = {c: b for c, b in state.portfolio.balances.items() if b}
    differs = sorted(c for c in set(local) | set(books["exact"]) if local.get(c, 0) != books["exact"].get(c, 0))
    v.state_differs = len(differs)
    if differs:
        v.details.append(f"balances after replay {local} vs venue {books['exact']}")
    v.halted = sum(1 for e in events if e.name == "TradingStateChanged" and e.data["state"] == "HALTED")
    v.unknown_outcomes = sum(1 for e in events if e.name == "OrderOutcomeUnknown")
    unknown = {e.data["client_order_id"] for e in events if e.name == "OrderOutcomeUnknown"}
    v.resolved_by_lookup = sum(1 for e in events if e.name == "OrderAccepted" and e.data["client_order_id"] in unknown)
    return v


# what a session records of itself, not of the account: a snapshot holds a state (a session may well take one when
# the last step before a kill did not), a heartbeat and the incidents raised from it are what it measured
MONITORING = frozenset({"SnapshotTaken", "Heartbeat", "IncidentRaised", "IncidentResolved"})


def facts(events: list[Any]) -> list[str]:
    """The names of `events` that say something of orders, fills, balances or the session's bounds."""
    return [e.name for e in events if e.name not in MONITORING]
