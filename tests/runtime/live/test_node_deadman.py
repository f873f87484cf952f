"""A session and its venue's dead-man's switch: armed and re-armed while the session is healthy, left to run out while
the log stalls (the venue then cancels the resting orders, as if the process had died), armed again once it recovers,
disarmed at a clean stop — over the real ccxt okx class and HTTP (Binance, the sandbox's dialect, has no such API)."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "handlers" / "venues" / "ccxt"))
from deadmankit import OKX_OK, Clock, Venue, okx_exchange, okx_timeouts
from test_resume import MIN_MS, MarketStub, spec

from eventstore.store import Log
from handlers.venues.ccxt.deadman import DeadMansSwitch
from runtime.live.node import LiveNode

TIMEOUT = 30  # seconds: re-armed every 10


def test_the_switch_is_kept_armed_while_healthy_runs_out_on_a_stall_and_is_disarmed_at_a_clean_stop(tmp_path):
    venue = Venue(OKX_OK)
    clock = Clock()
    switch = DeadMansSwitch(okx_exchange(venue), TIMEOUT, clock=clock)
    market = MarketStub()
    node = LiveNode(Log.open(f"file:{tmp_path}"), spec(), market, clock=lambda: market.now_ms * 1_000_000,
                    deadman=switch)
    seen: list[tuple[list[int], bool, bool]] = []

    def minute(stall: float | None = None) -> Callable[[], None]:
        def act() -> None:
            seen.append((okx_timeouts(venue), node.healthy(), switch.armed))
            market.now_ms += MIN_MS
            clock.now += 10
            if stall is not None:
                node.commits.slowest = stall  # the slowest commit since the last heartbeat, as measured
                node.heartbeat()
        return act

    script = [minute() for _ in range(3)] + [minute(stall=1.5)] + [minute() for _ in range(4)] + \
        [minute(stall=0.0)] + [minute()]
    try:
        node.run(lambda: not script or script.pop(0)() is not None)
    finally:
        venue.close()
    # seen[k]: before pass k (the switch's clock 10 s on per pass; the stall measured before pass 3, gone before 8)
    assert [len(t) for t, _, _ in seen] == [0, 1, 2, 3, 3, 3, 3, 3, 3, 4]  # an arm per healthy pass, none stalled
    assert [h for _, h, _ in seen] == [True] * 4 + [False] * 5 + [True]  # log_stall open from pass 3 to 7
    assert not seen[7][2]  # nothing re-armed it: the venue's timer ran out (armed until pass 2's time + 30 s)
    assert okx_timeouts(venue) == [TIMEOUT] * 5 + [0]  # armed again at passes 8 and 9; disarmed at the clean stop
    log = Log.open(f"file:{tmp_path}")
    events = list(log.replay("live-t"))
    log.close()
    incidents = [e for e in events if e.name.startswith("Incident")]
    assert [e.name for e in incidents] == ["IncidentRaised", "IncidentResolved"]
    assert incidents[0].data["kind"] == "log_stall"
    beats = [e.data["deadman_until"] for e in events if e.name == "Heartbeat"]
    assert beats[0] is not None and beats[1] is not None and beats[2] is None  # the stall's beat: still running
