"""The sandbox venue's settings, parsed once at the edge: what to replay, how fast, whom to trust, what to hold.

Defaults a user can rely on (also in `tape sandbox serve --help`): API key `sandbox-key`, secret `sandbox-secret`,
host 127.0.0.1, speed 1, seed 0, and 100000 of every quote currency the instruments name when no --balance is
given.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from schemas.errors import TapeError

DEFAULT_API_KEY = "sandbox-key"
DEFAULT_SECRET = "sandbox-secret"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_QUOTE_BALANCE = Decimal(100000)
_ASSET = re.compile(r"^[A-Z0-9]{1,20}$")


class SandboxError(TapeError):
    """A sandbox setting or source the user can fix (bad option, unknown namespace, port in use)."""


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Everything `tape sandbox serve` was told; the server builds the venue from it."""

    store: str
    source: str
    port: int
    host: str = DEFAULT_HOST
    speed: float = 1.0  # market seconds per wall second; 0: step only when told; inf: as fast as possible
    loop: bool = False
    faults: str = ""
    seed: int = 0
    api_key: str = DEFAULT_API_KEY
    secret: str = DEFAULT_SECRET
    balances: dict[str, Decimal] = field(default_factory=dict)  # empty: DEFAULT_QUOTE_BALANCE of each quote
    clock_offset_ms: int = 0
    kline_window: int = 0  # klines served: the last N of each interval (a venue keeping a window of history); 0: all

    def __repr__(self) -> str:  # the secret never reaches a log line or an error message
        return (f"SandboxConfig(store={self.store!r}, source={self.source!r}, host={self.host!r}, port={self.port}, "
                f"speed={self.speed}, loop={self.loop}, faults={self.faults!r}, seed={self.seed})")


def parse_speed(text: str) -> float:
    """--speed: a factor >= 0 (0 = step only when told), or `max` for as fast as the venue can replay."""
    if text.strip().lower() in ("max", "inf", "fast"):
        return float("inf")
    try:
        value = float(text)
    except ValueError:
        raise SandboxError(f"--speed {text!r} is not a number: use a factor like 1 or 60, 0 to step, or max") from None
    if value < 0 or math.isnan(value):
        raise SandboxError(f"--speed {text!r} must be >= 0 (0 steps only when told; max replays as fast as it can)")
    return value


def parse_balances(items: list[str]) -> dict[str, Decimal]:
    """--balance ASSET=AMOUNT options as exact amounts, e.g. ['USDT=100000', 'BTC=1.5']."""
    out: dict[str, Decimal] = {}
    for item in items:
        asset, sep, amount = item.partition("=")
        asset = asset.strip().upper()
        if not sep or not _ASSET.match(asset):
            raise SandboxError(f"--balance {item!r}: use ASSET=AMOUNT, e.g. --balance USDT=100000")
        try:
            value = Decimal(amount.strip())
        except InvalidOperation:
            raise SandboxError(f"--balance {item!r}: {amount.strip()!r} is not a number") from None
        if not value.is_finite() or value < 0:
            raise SandboxError(f"--balance {item!r}: the amount must be a number >= 0")
        out[asset] = value
    return out


def check_port(port: int) -> int:
    """--port: 0 (any free port, printed at start) up to 65535."""
    if not 0 <= port <= 65535:
        raise SandboxError(f"--port {port} is out of range: use 1-65535, or 0 for any free port")
    return port
