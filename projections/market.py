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
