"""What a ccxt exception proves about an order: refused for sure, or an outcome nobody knows.

Only answers whose venue semantics prove the order was not taken are rejections (a business refusal: invalid order,
insufficient funds, unknown symbol, permission, a rate-limit refusal). Everything else — a dropped connection, a
timeout, a 5xx (which ccxt may raise as a plain ExchangeError), a parse failure, Binance -1007, and a "duplicate"
(which means an order with this id IS at the venue) — is an unknown outcome, resolved by looking the order up by
client order id, never by sending it again (live-runtime.md §1.3; NautilusTrader's policy).
"""
from __future__ import annotations

import ccxt

# (ccxt class, RejectReason) in the order they are tested: subclasses before their bases
_REJECTIONS: tuple[tuple[type[BaseException], str], ...] = (
    (ccxt.InsufficientFunds, "INSUFFICIENT_BALANCE"),
    (ccxt.BadSymbol, "UNKNOWN_INSTRUMENT"),
    (ccxt.RateLimitExceeded, "RATE_LIMITED"),
    (ccxt.DDoSProtection, "RATE_LIMITED"),
    (ccxt.PermissionDenied, "VENUE_ERROR"),
    (ccxt.InvalidOrder, "OTHER"),
    (ccxt.BadRequest, "OTHER"),
)
_UNKNOWN: tuple[type[BaseException], ...] = (ccxt.OrderNotFound, ccxt.DuplicateOrderId, ccxt.NetworkError)
_DUPLICATE_TEXT = ("duplicate", "-2010 duplicate", "already exists", "already in use")
_WOULD_TAKE_TEXT = ("would immediately match",)  # Binance -2010 for a LIMIT_MAKER that crosses


def one_line(error: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """`Class: message` on one line, long messages cut, and no credential ever in it."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:300]


def rejection_reason(error: BaseException) -> str | None:
    """The RejectReason when `error` proves the venue refused the order; None when the outcome is unknown."""
    if isinstance(error, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):  # 429/418: the request was not taken
        return "RATE_LIMITED"
    if isinstance(error, _UNKNOWN):
        return None
    if isinstance(error, ccxt.InvalidOrder) and any(t in str(error).lower() for t in _DUPLICATE_TEXT):
        return None  # a duplicate client id: an order with this id is at the venue
    if isinstance(error, ccxt.InvalidOrder) and any(t in str(error).lower() for t in _WOULD_TAKE_TEXT):
        return "POST_ONLY_WOULD_TAKE"
    for cls, reason in _REJECTIONS:
        if isinstance(error, cls):
            return reason
    return None


_REFUSED_READS: tuple[type[BaseException], ...] = (ccxt.BadSymbol, ccxt.BadRequest, ccxt.AuthenticationError,
                                                   ccxt.PermissionDenied, ccxt.NotSupported)


def read_again(error: BaseException) -> bool:
    """Whether a read (history, markets, the clock) that raised `error` may simply be asked again: yes for every
    failure of transport or of the venue's side (a timeout, a 5xx even when ccxt raises it as a plain
    ExchangeError, a 429); no for a refusal of the request itself (a bad symbol or parameter, credentials)."""
    if isinstance(error, (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.OperationFailed)):  # NetworkError's base
        return True
    return isinstance(error, ccxt.ExchangeError) and not isinstance(error, _REFUSED_READS)
