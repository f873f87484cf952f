"""The fault scheduler: which request or frame goes wrong, and how, scripted at start or at run time.

A rule is a kind, a target, when it fires (the next N matching requests/frames, or each with probability P drawn
from the seed's generator, so the same requests meet the same faults) and the kind's argument.

REST kinds (target `order` = POST /api/v3/order by default; also `cancel`, `query` = GET /api/v3/order, `signed`,
`any`, or an exact `METHOD /path`):

    accept_then_drop     the request is processed (the order exists), then the connection closes with no answer
    accept_then_slow:S   processed, answered after S seconds (default 3): past the client's timeout
    status_unknown       processed, answered HTTP 408 -1007 "execution status unknown" (alias -1007)
    http_5xx_json        not processed, HTTP 503 with a Binance JSON body (-1008)
    http_5xx_html        not processed, HTTP 502 with an HTML body
    rate_limit_429:S     not processed, HTTP 429 -1003 with Retry-After S (default 1)
    ban_418:S            not processed, HTTP 418 -1003 with Retry-After S (default 60)
    visibility_lag:S     the new order and its trades are invisible to queries for S seconds (default 1): -2013

Websocket kinds (target `market`, `user` or `all`, the default), drawn per data frame of a connection:

    ws_drop              the frame is not sent (a gap)
    ws_duplicate         the frame is sent twice
    ws_close:CODE        the connection is closed instead (code default 1011)
    ws_stall:S           from this frame on, no data for S seconds (0 = until cleared); pongs are still answered

Spec (`--faults`): comma-separated `KIND[:WHEN[:ARG]][@TARGET]`, WHEN a probability (0.2), `always`, `next` or
`nextN` (default next), e.g. `accept_then_drop:0.2,http_5xx_json:0.05,accept_then_slow:next:5@cancel`.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from runtime.sandbox.config import SandboxError

REST_BEFORE = ("http_5xx_json", "http_5xx_html", "rate_limit_429", "ban_418")
REST_AFTER = ("accept_then_drop", "accept_then_slow", "status_unknown")
ORDER_MARK = ("visibility_lag",)
WS = ("ws_drop", "ws_duplicate", "ws_close", "ws_stall")
KINDS = REST_BEFORE + REST_AFTER + ORDER_MARK + WS
ALIASES = {"-1007": "status_unknown", "1007": "status_unknown", "429": "rate_limit_429", "418": "ban_418",
           "http_5xx": "http_5xx_json", "5xx": "http_5xx_json", "ws_drop_next": "ws_drop",
           "ws_duplicate_next": "ws_duplicate", "drop": "accept_then_drop", "slow": "accept_then_slow"}
DEFAULT_ARG = {"accept_then_slow": 3.0, "rate_limit_429": 1.0, "ban_418": 60.0, "visibility_lag": 1.0,
               "ws_close": 1011.0, "ws_stall": 0.0}
REST_TARGETS = {"order": ("POST", "/api/v3/order"), "cancel": ("DELETE", "/api/v3/order"),
                "query": ("GET", "/api/v3/order")}
WS_TARGETS = ("market", "user", "all")
_WHEN = re.compile(r"^(next)(\d*)$")


class FaultSpecError(SandboxError):
    """A fault rule the scheduler cannot read."""


@dataclass
class Rule:
    """One fault rule and how often it has fired."""

    kind: str
    target: str
    probability: float | None = None  # None: a one-shot rule
    remaining: int = 0  # one-shot hits left
    arg: float | None = None
    fired: int = 0

    @property
    def value(self) -> float:
        """The kind's argument (seconds, or a close code), its default when not given."""
        return self.arg if self.arg is not None else DEFAULT_ARG.get(self.kind, 0.0)

    def view(self) -> dict[str, Any]:
        when: dict[str, Any] = ({"probability": self.probability} if self.probability is not None
                                else {"next": self.remaining})
        return {"fault": self.kind, "target": self.target, **when, "arg": self.value, "fired": self.fired}


def canonical_kind(name: str) -> str:
    kind = ALIASES.get(name.strip(), name.strip())
    if kind not in KINDS:
        raise FaultSpecError(f"unknown fault {name!r}: use one of {', '.join(KINDS)}")
    return kind


def default_target(kind: str) -> str:
    return "all" if kind in WS else "order"


def check_target(kind: str, target: str) -> str:
    target = target.strip()
    if kind in WS:
        if target not in WS_TARGETS:
            raise FaultSpecError(f"fault {kind} target {target!r}: use one of {', '.join(WS_TARGETS)}")
        return target
    if target in REST_TARGETS or target in ("signed", "any"):
        return target
    method, _, path = target.partition(" ")
    if method in ("GET", "POST", "DELETE", "PUT") and path.startswith("/"):
        return target
    raise FaultSpecError(f"fault {kind} target {target!r}: use order, cancel, query, signed, any or 'METHOD /path'")


def parse_spec(text: str) -> list[Rule]:
    """--faults: `KIND[:WHEN[:ARG]][@TARGET]`, comma-separated (see the module doc)."""
    rules = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        body, _, target = item.partition("@")
        name, *rest = body.split(":")
        kind = canonical_kind(name)
        if len(rest) > 2:
            raise FaultSpecError(f"fault {item!r}: use KIND[:WHEN[:ARG]][@TARGET]")
        when = rest[0] if rest else "next"
        arg = _number(rest[1], item) if len(rest) > 1 else None
        rules.append(make_rule(kind, target or default_target(kind), when, arg, item))
    return rules


def make_rule(kind: str, target: str, when: str | float, arg: float | None, where: str) -> Rule:
    """A rule from its parts; `when` is a probability, `always`, `next` or `nextN`."""
    target = check_target(kind, target)
    if isinstance(when, str):
        m = _WHEN.match(when.strip())
        if m:
            return Rule(kind, target, None, int(m.group(2) or 1), arg)
        if when.strip() == "always":
            return Rule(kind, target, 1.0, 0, arg)
        when = _number(when, where)
    p = float(when)
    if not 0 <= p <= 1:
        raise FaultSpecError(f"fault {where!r}: probability {when} must be between 0 and 1 (or next, nextN, always)")
    return Rule(kind, target, p, 0, arg)


def rules_from_json(body: Any) -> list[Rule]:
    """Rules from the control endpoint's JSON: {"fault", "next"|"probability", "arg"|"seconds"|"code", "target"}."""
    items = body if isinstance(body, list) else [body]
    rules = []
    for item in items:
        if not isinstance(item, dict) or "fault" not in item:
            raise FaultSpecError(f"fault rule {item!r}: send an object with a 'fault' key")
        kind = canonical_kind(str(item["fault"]))
        target = str(item.get("target") or item.get("on") or default_target(kind))
        arg = next((item[k] for k in ("arg", "seconds", "retry_after", "code") if k in item), None)
        if "probability" in item:
            when: Any = item["probability"]
        elif item.get("always"):
            when = "always"
        else:
            n = item.get("next", 1)
            when = f"next{1 if n is True else int(n)}"
        rules.append(make_rule(kind, target, when, None if arg is None else _number(str(arg), str(item)),
                               str(item)))
    return rules


def _number(text: str, where: str) -> float:
    try:
        return float(text.rstrip("s"))
    except ValueError:
        raise FaultSpecError(f"fault {where!r}: {text!r} is not a number") from None


class Faults:
    """The rules in force and the seeded draws that decide, request by request and frame by frame."""

    def __init__(self, seed: int, rules: list[Rule] | None = None):
        self.rng = random.Random(f"{seed}:faults")
        self.rules: list[Rule] = list(rules or [])

    def add(self, rules: list[Rule]) -> None:
        self.rules.extend(rules)

    def clear(self, kind: str | None = None) -> None:
        self.rules = [r for r in self.rules if kind is not None and r.kind != canonical_kind(kind)]

    def draw(self, kinds: tuple[str, ...], method: str, path: str, signed: bool) -> Rule | None:
        """The first rule of `kinds` that fires for this request, if any (one-shot rules are used up)."""
        return self._draw(lambda r: r.kind in kinds and _rest_match(r.target, method, path, signed))

    def draw_ws(self, channel: str) -> Rule | None:
        """The first websocket rule that fires for the next data frame of a `market` or `user` connection."""
        return self._draw(lambda r: r.kind in WS and r.target in ("all", channel))

    def _draw(self, match: Any) -> Rule | None:
        for rule in self.rules:
            if not match(rule):
                continue
            if rule.probability is None:
                if rule.remaining <= 0:
                    continue
                rule.remaining -= 1
            elif self.rng.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.probability is None and rule.remaining == 0:
                self.rules.remove(rule)
            return rule
        return None

    def table(self) -> list[dict[str, Any]]:
        return [r.view() for r in self.rules]


def _rest_match(target: str, method: str, path: str, signed: bool) -> bool:
    if target == "any":
        return True
    if target == "signed":
        return signed
    if target in REST_TARGETS:
        return REST_TARGETS[target] == (method, path)
    m, _, p = target.partition(" ")
    return m == method and p == path
