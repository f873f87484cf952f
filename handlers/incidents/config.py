"""Incident thresholds and actions: one table per kind in one file (`tape live --incidents FILE`), documented defaults.

    [stale_data]             # no market event on an instrument for `threshold` seconds of event time
    threshold = 180
    action = "DENY"          # NONE (record only), ALERT, DENY (instrument kinds only), REDUCE or HALT
    severity = "WARNING"     # INFO, WARNING or CRITICAL
    cancel_open = false      # also cancel the open orders in the scope
    enabled = true

Kinds, their scope and defaults (threshold, unit, action, severity): see DEFAULTS below; `window` (seconds) applies
to the bursts. A halt or a reduce-only state stays until an operator resumes; a DENY lasts while its incident is
open. Parsed once at the edge into frozen `IncidentConfig`; `canonical()` is what RunStarted records.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from schemas.errors import TapeError

ACTIONS = ("NONE", "ALERT", "DENY", "REDUCE", "HALT")
SEVERITIES = ("INFO", "WARNING", "CRITICAL")
RULE_KEYS = ("threshold", "window", "action", "severity", "cancel_open", "enabled")


class IncidentConfigError(TapeError):
    """An incident config value that cannot be used."""


@dataclass(frozen=True)
class Rule:
    """One kind of incident: what it watches (scope, unit), when it fires, and what the runtime does."""

    kind: str
    scope: str  # instrument, strategy, venue or account
    unit: str
    threshold: Decimal
    action: str
    severity: str
    window: Decimal | None = None  # seconds of event time (the bursts)
    cancel_open: bool = False
    enabled: bool = True

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {"threshold": self.threshold, "action": self.action, "severity": self.severity,
                               "cancel_open": self.cancel_open, "enabled": self.enabled}
        if self.window is not None:
            out["window"] = self.window
        return out


D = Decimal
DEFAULTS: dict[str, Rule] = {r.kind: r for r in (
    Rule("stale_data", "instrument", "s overdue (since the next market event was due)", D(120), "DENY", "WARNING"),
    Rule("bar_gap", "instrument", "bars the venue no longer served (missing from the log)", D(1), "ALERT",
         "WARNING"),
    Rule("stream_disconnected", "venue", "s disconnected", D(30), "ALERT", "WARNING"),
    Rule("venue_unreachable", "venue", "requests in a row without an answer", D(3), "HALT", "CRITICAL"),
    Rule("reject_burst", "strategy", "orders rejected by the venue in the window", D(5), "HALT", "CRITICAL", D(60)),
    Rule("unknown_burst", "venue", "sends with an unknown outcome in the window", D(3), "HALT", "CRITICAL", D(60)),
    Rule("reconciliation_mismatch", "account", "blocking mismatches", D(1), "HALT", "CRITICAL"),
    Rule("risk_breach_soft", "account", "of a loss limit (daily loss or drawdown)", D("0.8"), "REDUCE", "WARNING"),
    Rule("risk_breach_hard", "account", "of a loss limit (daily loss or drawdown)", D(1), "HALT", "CRITICAL",
         cancel_open=True),
    Rule("clock_skew", "venue", "ms between the venue's clock and the runtime's", D(2000), "ALERT", "WARNING"),
    Rule("rate_limited", "venue", "HTTP 429 answers since the last heartbeat", D(1), "ALERT", "WARNING"),
    Rule("banned", "venue", "HTTP 418 answers since the last heartbeat", D(1), "HALT", "CRITICAL"),
    Rule("log_stall", "account", "ms for one log commit", D(1000), "HALT", "CRITICAL"),
    Rule("consumer_lag", "account", "ms an input waited for its step", D(5000), "ALERT", "WARNING"),
)}


@dataclass(frozen=True)
class IncidentConfig:
    """Every kind's rule (the defaults, with what a file changed)."""

    rules: tuple[Rule, ...] = tuple(DEFAULTS.values())

    def rule(self, kind: str) -> Rule:
        return next(r for r in self.rules if r.kind == kind)

    def canonical(self) -> dict[str, Any]:
        """Every rule's settings by kind: what RunStarted records."""
        return {r.kind: r.canonical() for r in self.rules}


def _decimal(src: str, key: str, v: Any) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, (int, float, str, Decimal)):
        raise IncidentConfigError(f"{src}: {key} must be a number, got {v!r}")
    try:
        d = v if isinstance(v, Decimal) else Decimal(str(v))
    except InvalidOperation:
        raise IncidentConfigError(f"{src}: {key} must be a number, got {v!r}") from None
    if not d.is_finite() or d <= 0:
        raise IncidentConfigError(f"{src}: {key} must be a positive number, got {v!r}")
    return d


def _unknown(src: str, key: str, known: Any) -> IncidentConfigError:
    near = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else f"; known: {', '.join(known)}"
    return IncidentConfigError(f"{src}: unknown {key!r}{hint}")


def parse_incident_config(config: dict[str, Any], source: str = "incident config") -> IncidentConfig:
    """Validate {kind: {threshold, window, action, severity, cancel_open, enabled}} over the defaults."""
    if not isinstance(config, dict):
        raise IncidentConfigError(f"{source}: expected a table per incident kind, got {type(config).__name__}")
    rules = dict(DEFAULTS)
    for kind, table in config.items():
        if kind not in DEFAULTS:
            raise _unknown(source, str(kind), DEFAULTS)
        src = f"{source} [{kind}]"
        if not isinstance(table, dict):
            raise IncidentConfigError(f"{src}: expected a table of {', '.join(RULE_KEYS)}, got {table!r}")
        rule = DEFAULTS[kind]
        changes: dict[str, Any] = {}
        for key, v in table.items():
            if key not in RULE_KEYS:
                raise _unknown(src, str(key), RULE_KEYS)
            if key in ("threshold", "window"):
                if key == "window" and rule.window is None:
                    raise IncidentConfigError(f"{src}: window applies to the bursts only (reject_burst, "
                                              "unknown_burst)")
                changes[key] = _decimal(src, key, v)
            elif key == "action":
                if v not in ACTIONS:
                    raise IncidentConfigError(f"{src}: action must be one of {', '.join(ACTIONS)}, got {v!r}")
                if v == "DENY" and rule.scope != "instrument":
                    raise IncidentConfigError(f"{src}: DENY refuses orders on an instrument; {kind} concerns the "
                                              f"{rule.scope}: use ALERT, REDUCE or HALT")
                changes[key] = v
            elif key == "severity":
                if v not in SEVERITIES:
                    raise IncidentConfigError(f"{src}: severity must be one of {', '.join(SEVERITIES)}, got {v!r}")
                changes[key] = v
            elif not isinstance(v, bool):
                raise IncidentConfigError(f"{src}: {key} must be true or false, got {v!r}")
            else:
                changes[key] = v
        rules[kind] = replace(rule, **changes)
    return IncidentConfig(tuple(rules.values()))
