"""The strategy API: callbacks on market and execution events, intents out through a Context."""
from __future__ import annotations

import dataclasses
import importlib
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from schemas.errors import TapeError

if TYPE_CHECKING:
    from projections.state import State


class Context(Protocol):
    """What a strategy may do: read state, emit intents, set timers. Event time only; no I/O."""

    strategy_id: str
    state: "State"

    @property
    def now(self) -> int: ...

    def submit(self, instrument_id: str, side: str, quantity: Decimal, *, order_type: str = "MARKET",
               price: Decimal | None = None, trigger_price: Decimal | None = None, time_in_force: str = "GTC",
               expire_ts: int | None = None, post_only: bool = False, reduce_only: bool = False,
               tags: dict[str, str] | None = None) -> str: ...

    def cancel(self, instrument_id: str, client_order_id: str, reason: str = "") -> None: ...

    def set_timer(self, name: str, ts: int) -> None: ...


class Strategy:
    """Base class: override the callbacks you need; parameters are a typed dataclass `Params`."""

    name: ClassVar[str] = "strategy"

    @dataclasses.dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, params: Any, ctx: Context):
        self.params = params
        self.ctx = ctx

    # convenience for subclasses
    def buy(self, instrument_id: str, quantity: Decimal, **kw: Any) -> str:
        return self.ctx.submit(instrument_id, "BUY", quantity, **kw)

    def sell(self, instrument_id: str, quantity: Decimal, **kw: Any) -> str:
        return self.ctx.submit(instrument_id, "SELL", quantity, **kw)

    def position(self, instrument_id: str) -> Decimal:
        return self.ctx.state.portfolio.position_quantity(instrument_id)

    # callbacks
    def on_start(self) -> None: ...
    def on_bar(self, bar: dict[str, Any]) -> None: ...
    def on_trade(self, tick: dict[str, Any]) -> None: ...
    def on_quote(self, quote: dict[str, Any]) -> None: ...
    def on_fill(self, fill: dict[str, Any]) -> None: ...
    def on_order(self, event: str, data: dict[str, Any]) -> None: ...
    def on_timer(self, name: str, ts: int) -> None: ...
    def on_stop(self) -> None: ...

    # snapshots (optional): the strategy's own state, stored in the engine's snapshots
    def snapshot(self) -> dict[str, Any] | None:
        """The strategy's own state as plain data — None, bool, int, str, Decimal, lists and dicts with string
        keys — or None when it keeps none (the default). `restore` must accept what this returns."""
        return None

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a state `snapshot` returned (lists come back as lists, whatever they were)."""


BUILTINS = {
    "sma_cross": "handlers.strategies.sma_cross:SmaCross",
    "market_maker": "handlers.strategies.market_maker:MarketMaker",
}


def load_strategy(spec: str) -> type[Strategy]:
    """A strategy class by built-in name or 'module:Class'."""
    target = BUILTINS.get(spec, spec)
    if ":" not in target:
        raise TapeError(f"unknown strategy {spec!r}: use one of {', '.join(sorted(BUILTINS))} or module:Class")
    module, _, cls_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as e:
        raise TapeError(f"cannot load strategy {spec!r} ({e}): check the module path and class name") from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TapeError(f"{spec!r} is not a tape Strategy subclass")
    return cls


def parse_params(cls: type[Strategy], raw: dict[str, str]) -> Any:
    """Typed parameters from k=v strings, checked against the strategy's Params dataclass."""
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise TapeError(f"strategy {cls.name}: unknown parameter {unknown[0]!r}; known: {', '.join(fields) or 'none'}")
    values: dict[str, Any] = {}
    for key, text in raw.items():
        typ = fields[key].type
        typ = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
        try:
            if typ == "int":
                values[key] = int(text)
            elif typ == "bool":
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                values[key] = text.lower() in ("true", "1", "yes")
            elif typ == "Decimal":
                values[key] = Decimal(text)
            else:
                values[key] = text
        except (ValueError, InvalidOperation):
            raise TapeError(f"strategy {cls.name}: parameter {key}={text!r} is not a valid {typ}") from None
    try:
        return cls.Params(**values)
    except TypeError as e:
        raise TapeError(f"strategy {cls.name}: {e}") from None


def params_as_strings(params: Any) -> dict[str, str]:
    """Parameters as recorded in RunStarted: every field, as exact text."""
    return {f.name: str(getattr(params, f.name)) for f in dataclasses.fields(params)}
