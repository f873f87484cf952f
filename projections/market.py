"""Market state per instrument: definitions, last trade, quote and bar — a pure fold over market events."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class Instrument:
    """What the venue says an instrument is: currencies, increments, limits and fees."""

    instrument_id: str
    venue: str
    symbol: str
    kind: str
    base_currency: str
    quote_currency: str
    settlement_currency: str
    price_increment: Decimal
    size_increment: Decimal
    min_quantity: Decimal
    max_quantity: Decimal | None
    min_notional: Decimal | None
    maker_fee: Decimal
    taker_fee: Decimal
    multiplier: Decimal

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> "Instrument":
        return cls(**{f: data[f] for f in cls.__dataclass_fields__})


class MarketState:
    """Last known market data per instrument; `last_price` is the mark used for PnL and risk."""

    def __init__(self) -> None:
        self.instruments: dict[str, Instrument] = {}
        self.last_price: dict[str, Decimal] = {}
        self.last_trade: dict[str, dict[str, Any]] = {}
        self.last_quote: dict[str, dict[str, Any]] = {}
        self.last_bar: dict[str, dict[str, Any]] = {}
        self.ts: int = 0

    def apply(self, name: str, data: dict[str, Any], ts: int) -> None:
        if name == "Bar":
            iid = data["instrument_id"]
            self.last_bar[iid] = data
            self.last_price[iid] = data["close"]
        elif name == "TradeTick":
            iid = data["instrument_id"]
            self.last_trade[iid] = data
            self.last_price[iid] = data["price"]
        elif name == "QuoteTick":
            iid = data["instrument_id"]
            self.last_quote[iid] = data
            if iid not in self.last_trade:
                self.last_price[iid] = (data["bid_price"] + data["ask_price"]) / 2
        elif name == "InstrumentDefined":
            self.instruments[data["instrument_id"]] = Instrument.from_event(data)
        else:
            return
        if ts > self.ts:
            self.ts = ts

    # ---- snapshot ------------------------------------------------------------------------------------------

    BAR_FIELDS = ("instrument_id", "timeframe", "open_ts", "open", "high", "low", "close", "volume", "trades")
    TRADE_FIELDS = ("instrument_id", "price", "quantity", "aggressor_side", "trade_id")
    QUOTE_FIELDS = ("instrument_id", "bid_price", "bid_size", "ask_price", "ask_size")

    def snapshot(self) -> dict[str, Any]:
        """Instruments, marks and the last trade/quote/bar (payload fields, no envelope) as plain data."""
        def pick(data: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
            out = {f: data.get(f) for f in fields}
            if "aggressor_side" in out and out["aggressor_side"] is None:
                out["aggressor_side"] = "NO_AGGRESSOR"
            return out

        return {
            "instruments": [{f: getattr(i, f) for f in Instrument.__dataclass_fields__} for i in self.instruments.values()],
            "last_price": dict(self.last_price),
            "last_trade": {k: pick(v, self.TRADE_FIELDS) for k, v in self.last_trade.items()},
            "last_quote": {k: pick(v, self.QUOTE_FIELDS) for k, v in self.last_quote.items()},
            "last_bar": {k: pick(v, self.BAR_FIELDS) for k, v in self.last_bar.items()},
            "ts": self.ts,
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> "MarketState":
        """The market state as it was when `snapshot` was taken."""
        m = cls()
        m.instruments = {row["instrument_id"]: Instrument(**row) for row in snapshot["instruments"]}
        m.last_price = dict(snapshot["last_price"])
        m.last_trade = {k: dict(v) for k, v in snapshot["last_trade"].items()}
        m.last_quote = {k: dict(v) for k, v in snapshot["last_quote"].items()}
        m.last_bar = {k: dict(v) for k, v in snapshot["last_bar"].items()}
        m.ts = snapshot["ts"]
        return m
