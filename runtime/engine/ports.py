"""What the loop needs of its components: the ports a venue adapter, a risk engine and an outbound queue fill.

Each call returns the events it causes as data — (name, payload) or (name, payload, ts_event) — and the engine
records, applies and routes them; nothing calls back into the engine. The simulated venue and a live adapter
satisfy `Venue` structurally.
"""
from __future__ import annotations

from typing import Any, Protocol

from projections.state import State

Emitted = tuple  # (name, payload) or (name, payload, ts_event)


class Venue(Protocol):
    """A venue adapter: the simulated venue, or a real one through ccxt (which sends after the commit)."""

    name: str

    def start(self, now: int) -> list[Emitted]: ...
    def on_market(self, name: str, data: dict[str, Any], ts: int) -> list[Emitted]: ...
    def submit(self, order: dict[str, Any], now: int) -> list[Emitted]: ...
    def cancel(self, instrument_id: str, client_order_id: str, now: int) -> list[Emitted]: ...
    def after_commit(self) -> None: ...


class Risk(Protocol):
    """Pre-trade checks (a verdict per intent) and the post-step evaluation that may halt trading."""

    def check(self, intent: dict[str, Any], intent_id: str, state: State, now: int) -> Emitted: ...
    def evaluate(self, state: State, now: int) -> list[Emitted]: ...


class Queue(Protocol):
    """The outbound queue: sequences accepted orders and cancels to the venue, throttled, never doubled."""

    def offer(self, order: dict[str, Any], now: int) -> list[Emitted]: ...
    def offer_cancel(self, cancel: dict[str, Any], now: int) -> list[Emitted]: ...
    def on_execution(self, name: str, data: dict[str, Any], now: int) -> list[Emitted]: ...
    def release_due(self, now: int) -> list[Emitted]: ...
