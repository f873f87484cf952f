"""The strategy API: callbacks on market and execution events, intents out through a Context."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from schemas.decimals import parse_decimal
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


def listens(cls: type[Strategy]) -> frozenset[str]:
    """The market events a strategy class handles (the callbacks it overrides): what a live session subscribes to."""
    from schemas.names import STRATEGY_CALLBACKS

    return frozenset(name for name, cb in STRATEGY_CALLBACKS.items() if getattr(cls, cb) is not getattr(Strategy, cb))


BUILTINS = {
    "sma_cross": "handlers.strategies.sma_cross:SmaCross",
    "breakout": "handlers.strategies.breakout:Breakout",
    "pairs": "handlers.strategies.pairs:Pairs",
    "market_maker": "handlers.strategies.market_maker:MarketMaker",
}


def load_strategy(spec: str) -> type[Strategy]:
    """A strategy class by built-in name, 'module:Class' (the current directory importable) or 'path/file.py:Class'."""
    target = BUILTINS.get(spec, spec)
    module, sep, cls_name = target.rpartition(":")
    if not sep or not module or not cls_name:
        raise TapeError(f"unknown strategy {spec!r}: use one of {', '.join(sorted(BUILTINS))}, module:Class or "
                        "./file.py:Class")
    try:
        if module.endswith(".py") or "/" in module or os.sep in module:
            mod = _from_file(Path(module), spec)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            mod = importlib.import_module(module)
        cls = getattr(mod, cls_name)
    except TapeError:
        raise
    except AttributeError:
        raise TapeError(f"strategy {spec!r}: {module} has no class {cls_name!r}; check the name after the colon") \
            from None
    except Exception as e:  # the user's module failed while importing: say where, in one line
        raise TapeError(f"cannot load strategy {spec!r}: {_where(e)}; fix the module or the path") from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TapeError(f"{spec!r} is not a tape Strategy subclass: derive it from handlers.strategy.Strategy")
    return cls


def _from_file(path: Path, spec: str) -> Any:
    if not path.is_file():
        raise TapeError(f"strategy {spec!r}: no file {path}; give the path of a .py file and the class, e.g. "
                        "./mystrat.py:MyStrategy")
    path = path.resolve()
    name = f"tape_strategy_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"  # one module per file
    found = importlib.util.spec_from_file_location(name, path)
    if found is None or found.loader is None:
        raise TapeError(f"strategy {spec!r}: {path} cannot be imported as Python; give a .py file")
    mod = importlib.util.module_from_spec(found)
    sys.modules[name] = mod  # dataclasses (Params) look their module up while the class is made
    try:
        found.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return mod


def _where(e: BaseException) -> str:
    """An exception as one line, with the file and line of the user's code where it happened."""
    text = f"{type(e).__name__}: {' '.join(str(e).split())}"
    if isinstance(e, SyntaxError):
        return f"{text} ({e.filename}, line {e.lineno})"
    tb = e.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return f"{text} ({last.tb_frame.f_code.co_filename}, line {last.tb_lineno})" if last is not None else text


def strategy_code(cls: type[Strategy]) -> str | None:
    """A hash of the source file of a strategy that lives outside tape (None for tape's own, which the code version
    covers): a run records the code that decided it, so an edited strategy is a new run, never an old result."""
    try:
        source = inspect.getsourcefile(cls)
    except TypeError:
        return None
    if source is None:
        return None
    path = Path(source).resolve()
    if Path(__file__).resolve().parent in path.parents:  # handlers/…: tape's own
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


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
                values[key] = parse_decimal(text)[0]  # finite, in the log's decimal(38,18), exact
            else:
                values[key] = text
        except ValueError as e:
            why = f": {e}" if typ == "Decimal" else f" is not a valid {typ}"
            raise TapeError(f"strategy {cls.name}: parameter {key}={text!r}{why}") from None
    try:
        return cls.Params(**values)
    except TypeError as e:
        raise TapeError(f"strategy {cls.name}: {e}") from None


def params_as_strings(params: Any) -> dict[str, str]:
    """Parameters as recorded in RunStarted: every field, as exact text."""
    return {f.name: str(getattr(params, f.name)) for f in dataclasses.fields(params)}
