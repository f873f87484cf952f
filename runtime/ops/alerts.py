"""Webhook alerts: the incidents and trading-state changes a live session commits, posted to Slack, Discord or JSON.

Config (`tape live … --alerts FILE`, TOML, or JSON by the .json suffix), read once at the edge:

    timeout = 5              # optional: seconds per HTTP request (default 5)
    attempts = 6             # optional: tries per message, backoff 0.5 s doubling, capped at 30 s (default 6)
    queue_size = 1000        # optional: messages waiting per webhook; more are dropped and counted (default 1000)

    [[webhook]]
    url = "https://hooks.slack.com/services/T000/B000/XXXX"   # or url_env = "TAPE_SLACK_WEBHOOK"
    format = "slack"         # slack {"text"} | discord {"content"} | json (the event's fields and the namespace)
    events = ["raised", "resolved", "halted", "resumed"]     # optional, default all four

The events: `raised` an IncidentRaised, `resolved` an IncidentResolved, `halted` a TradingStateChanged to HALTED or
REDUCING (reduce-only is a stop of new exposure: a human wants to know), `resumed` one back to ACTIVE (the end of a
halt, as resolved is the end of an incident; in the default set so a page is followed by its all-clear).

A webhook URL is a secret (Slack's and Discord's tokens are in its path): no error, log line, repr or counter names
it; a webhook is `webhook N (scheme://host)`, N counting from 1 in file order. `url_env` keeps it out of the file.

Delivery never blocks the loop. `committed(steps)` only formats and appends to a bounded queue per webhook (full:
the message is dropped and counted); a daemon thread per webhook posts its queue in order (one message at a time,
so a raise arrives before its resolve, and a dead webhook never delays another), with a timeout per request and
retries with exponential backoff on a network error, a timeout, a 5xx, 408 or 429 (its Retry-After respected up to
the cap). Any other answer (a 4xx: a revoked or mistyped webhook, a redirect) is final: retrying cannot help.
`close(timeout)` delivers what it can within the timeout on a clean stop; what is left is counted as dropped.
Counters: `sent`, `failed` (given up after the attempts, or refused), `dropped` (queue full, or left at close),
`retried` (attempts after the first); `last_error` is the last failure, on one line, naming the webhook.
"""
from __future__ import annotations

import difflib
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from eventstore.writer import Draft, own_fields
from runtime.configfiles import read_config
from schemas.decimals import plain
from schemas.errors import TapeError

EVENTS = ("raised", "resolved", "halted", "resumed")
FORMATS = ("slack", "discord", "json")
TOP_KEYS = ("webhook", "timeout", "attempts", "queue_size")
WEBHOOK_KEYS = ("url", "url_env", "format", "events")
BACKOFF_SECONDS = 0.5  # first wait before a retry; doubles each time
BACKOFF_CAP_SECONDS = 30.0
TEXT_LIMITS = {"slack": 3900, "discord": 1900}  # Slack truncates text at 40 000, Discord refuses content over 2 000
USER_AGENT = "tape-alerts/0.1"

_LOG = logging.getLogger("tape.alerts")
_LOG.addHandler(logging.NullHandler())


class AlertConfigError(TapeError):
    """An alert config value that cannot be used (the message never holds a webhook URL)."""


@dataclass(frozen=True)
class Webhook:
    """One receiver: where (secret), in which body format, for which events."""

    index: int  # from 1, in file order
    url: str = field(repr=False)
    format: str = "slack"
    events: tuple[str, ...] = EVENTS

    @property
    def name(self) -> str:
        """How errors and logs name it: its index and scheme://host, never the path that holds the token."""
        return f"webhook {self.index} ({origin(self.url)})"


@dataclass(frozen=True)
class AlertConfig:
    """Every webhook and the delivery settings they share."""

    webhooks: tuple[Webhook, ...] = ()
    timeout: float = 5.0  # seconds per request
    attempts: int = 6  # tries per message
    queue_size: int = 1000  # messages waiting per webhook

    def canonical(self) -> dict[str, Any]:
        """The settings without the secrets (a webhook by its origin), for RunStarted or a status page."""
        return {"timeout": self.timeout, "attempts": self.attempts, "queue_size": self.queue_size,
                "webhook": [{"target": origin(w.url), "format": w.format, "events": list(w.events)}
                            for w in self.webhooks]}


def origin(url: str) -> str:
    """scheme://host[:port] of a URL: the part of a webhook that may be shown."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


# ---- config ------------------------------------------------------------------------------------------------------


def _unknown(src: str, key: str, known: Sequence[str]) -> AlertConfigError:
    near = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else f"; known: {', '.join(known)}"
    return AlertConfigError(f"{src}: unknown key {key!r}{hint}")


def _positive(src: str, key: str, v: Any, whole: bool) -> Decimal:
    kind = "a whole number" if whole else "a number"
    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
        raise AlertConfigError(f"{src}: {key} must be {kind} > 0, got {v!r}")
    d = v if isinstance(v, Decimal) else Decimal(str(v))
    if not d.is_finite() or d <= 0 or (whole and d != d.to_integral_value()):
        raise AlertConfigError(f"{src}: {key} must be {kind} > 0, got {v!r}")
    return d


def _url(src: str, table: dict[str, Any], environ: Mapping[str, str]) -> str:
    if ("url" in table) == ("url_env" in table):
        raise AlertConfigError(f"{src}: set url (the webhook's URL) or url_env (the environment variable holding it)")
    if "url_env" in table:
        var = table["url_env"]
        if not isinstance(var, str) or not var:
            raise AlertConfigError(f"{src}: url_env must name an environment variable, got {var!r}")
        url = environ.get(var)
        if not url:
            raise AlertConfigError(f"{src}: environment variable {var} is not set; export the webhook's URL in it")
        where = f"the URL in {var}"
    else:
        url = table["url"]
        if not isinstance(url, str):
            raise AlertConfigError(f"{src}: url must be a string (\"https://…\")")
        where = "url"
    url = url.strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise AlertConfigError(f"{src}: {where} must start with https:// (or http://); fix it")
    try:
        parts.port  # noqa: B018 — raises on a port that is not a number
    except ValueError:
        raise AlertConfigError(f"{src}: {where} has a bad port; fix it") from None
    if not parts.hostname or any(c.isspace() for c in url):
        raise AlertConfigError(f"{src}: {where} has no host, or has spaces; fix it")
    return url


def _webhook(src: str, index: int, table: Any, environ: Mapping[str, str]) -> Webhook:
    if not isinstance(table, dict):
        raise AlertConfigError(f"{src}: expected a table with url and format, got {type(table).__name__}")
    for key in table:
        if key not in WEBHOOK_KEYS:
            raise _unknown(src, str(key), WEBHOOK_KEYS)
    url = _url(src, table, environ)
    fmt = table.get("format", "slack")
    if fmt not in FORMATS:
        raise AlertConfigError(f"{src}: format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    events = table.get("events", list(EVENTS))
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise AlertConfigError(f"{src}: events must be a non-empty list of {', '.join(EVENTS)} (leave it out for all)")
    for e in events:
        if e not in EVENTS:
            near = difflib.get_close_matches(e, EVENTS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise AlertConfigError(f"{src}: unknown event {e!r} in events{hint}; use {', '.join(EVENTS)}")
    return Webhook(index, url, fmt, tuple(e for e in EVENTS if e in events))


def parse_alerts(data: dict[str, Any], source: str = "alert config",
                 environ: Mapping[str, str] | None = None) -> AlertConfig:
    """Validate {webhook: [{url|url_env, format, events}], timeout, attempts, queue_size} into a typed config."""
    if not isinstance(data, dict):
        raise AlertConfigError(f"{source}: expected a table of settings, got {type(data).__name__}")
    for key in data:
        if key not in TOP_KEYS:
            raise _unknown(source, str(key), TOP_KEYS)
    hooks = data.get("webhook", [])
    if isinstance(hooks, dict):
        hooks = [hooks]  # one [webhook] table written instead of [[webhook]]
    if not isinstance(hooks, list):
        raise AlertConfigError(f"{source}: webhook must be a list of tables ([[webhook]] in TOML)")
    env = os.environ if environ is None else environ
    webhooks = tuple(_webhook(f"{source} [[webhook]] {i}", i, t, env) for i, t in enumerate(hooks, 1))
    defaults = AlertConfig()
    timeout = float(_positive(source, "timeout", data["timeout"], False)) if "timeout" in data else defaults.timeout
    attempts = int(_positive(source, "attempts", data["attempts"], True)) if "attempts" in data else defaults.attempts
    size = int(_positive(source, "queue_size", data["queue_size"], True)) if "queue_size" in data \
        else defaults.queue_size
    return AlertConfig(webhooks, timeout, attempts, size)


def alert_file(path: Path, environ: Mapping[str, str] | None = None) -> AlertConfig:
    """The webhooks and delivery settings of an alert file (TOML, or JSON by the .json suffix)."""
    return parse_alerts(read_config(path, "alert config"), f"alert config {path}", environ)


# ---- messages ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One event worth a message: which kind of alert, its text, and its fields for the json format."""

    event: str  # raised | resolved | halted | resumed
    text: str
    fields: dict[str, Any]


def _alert(namespace: str, draft: Draft, kinds: dict[str, str]) -> Alert | None:
    name = draft.type.rsplit(".", 1)[-1]
    p = draft.payload
    if name == "IncidentRaised":
        event = "raised"
        iid = str(p.get("incident_id", ""))
        kinds[iid] = str(p.get("kind", ""))
        scope = " ".join(str(s) for s in (p.get("scope", ""), p.get("scope_id", "")) if s)
        unit = f" {p['unit']}" if p.get("unit") else ""
        lines = [f"[{namespace}] {p.get('severity', 'WARNING')} incident raised: {p.get('kind', '?')}"
                 + (f" on {scope}" if scope else "")]
        if p.get("value") or p.get("threshold"):
            lines.append(f"value {_text(p.get('value')) or '?'} vs threshold {_text(p.get('threshold')) or '?'}{unit}")
        lines.append(f"action {p.get('action', 'ALERT')}" + ("; open orders canceled" if p.get("cancel_open") else ""))
        lines.append(f"incident {iid}")
        if p.get("detail"):
            lines.append(str(p["detail"]))
    elif name == "IncidentResolved":
        event = "resolved"
        iid = str(p.get("incident_id", ""))
        kind = kinds.pop(iid, "")
        lines = [f"[{namespace}] incident resolved: {f'{kind} ({iid})' if kind else iid}"]
        if p.get("detail"):
            lines.append(str(p["detail"]))
    elif name == "TradingStateChanged":
        state, previous = str(p.get("state", "HALTED")), str(p.get("previous", ""))
        event = "resumed" if state == "ACTIVE" else "halted"
        what = {"ACTIVE": "trading resumed (ACTIVE)", "REDUCING": "trading reduce-only (REDUCING)"}.get(
            state, f"trading {state}")
        lines = [f"[{namespace}] {what}" + (f", was {previous}" if previous else "")]
        if p.get("reason"):
            lines.append(f"reason: {p['reason']}")
        if p.get("incident_id"):
            lines.append(f"incident {p['incident_id']}")
    else:
        return None
    fields: dict[str, Any] = {"namespace": namespace, "alert": event, "event": name, "ts_event": draft.ts_event}
    envelope = p.get("envelope")
    if isinstance(envelope, dict):  # the writer filled it in place on commit
        fields.update({k: envelope[k] for k in ("event_id", "seq") if k in envelope})
    fields.update(plain(own_fields(p)))
    return Alert(event, "\n".join(lines), fields)


def _text(value: Any) -> str:
    return str(plain(value)) if value is not None else ""


def body(alert: Alert, fmt: str) -> bytes:
    """The JSON body a receiver of `fmt` accepts: Slack {"text"}, Discord {"content"}, or the event's fields."""
    if fmt == "json":
        out: dict[str, Any] = alert.fields
    else:
        text = alert.text
        limit = TEXT_LIMITS[fmt]
        if len(text) > limit:
            text = text[:limit - 1] + "…"
        if fmt == "slack":  # the three characters Slack's text format reserves
            out = {"text": text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")}
        else:  # no @everyone / role pings from an incident's detail text
            out = {"content": text, "allowed_mentions": {"parse": []}}
    return json.dumps(out, ensure_ascii=False, default=str).encode("utf-8")


# ---- delivery ----------------------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured; following it would resend the body (or drop it: urllib turns a
    redirected POST into a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _masked(text: str, url: str) -> str:
    """`text` on one line with every piece of the webhook URL beyond its origin replaced."""
    text = " ".join(text.split())
    parts = urllib.parse.urlsplit(url)
    pieces = [url, parts.path + ("?" + parts.query if parts.query else ""), parts.query]
    pieces += [s for s in parts.path.split("/") if len(s) >= 6]
    if "@" in parts.netloc:  # user:password@host
        pieces.append(parts.netloc.rsplit("@", 1)[0])
    for piece in sorted({p for p in pieces if p and p not in ("/", parts.hostname)}, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text[:300]


def _retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return 0.0


class _Channel:
    """One webhook's queue and the daemon thread that posts it, in order, with retries."""

    def __init__(self, webhook: Webhook, config: AlertConfig) -> None:
        self.webhook = webhook
        self.config = config
        self.pending: deque[bytes] = deque()
        self.cond = threading.Condition()
        self.sent = self.failed = self.dropped = self.retried = 0
        self.last_error: str | None = None
        self.error_at = 0.0  # monotonic time of last_error
        self.closing = False
        self.deadline: float | None = None  # monotonic; set by close
        self.opener = urllib.request.build_opener(_NoRedirect())
        self.thread = threading.Thread(target=self._run, name=f"tape-alerts-{webhook.index}", daemon=True)
        self.thread.start()

    def offer(self, message: bytes) -> bool:
        with self.cond:
            if self.closing or len(self.pending) >= self.config.queue_size:
                self.dropped += 1
                first = self.dropped == 1
            else:
                self.pending.append(message)
                self.cond.notify()
                return True
        if first or self.dropped % 1000 == 0:
            _LOG.warning("alerts: %s: queue full (%d waiting), %d message(s) dropped so far", self.webhook.name,
                         self.config.queue_size, self.dropped)
        return False

    def close(self, deadline: float) -> None:
        with self.cond:
            self.closing, self.deadline = True, deadline
            self.cond.notify_all()

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.pending and not self.closing:
                    self.cond.wait()
                if not self.pending:
                    return
                if self._past_deadline():
                    self._drop_left()
                    return
                message = self.pending[0]  # stays queued (and counted against the bound) until it is done
            self._deliver(message)
            with self.cond:
                if self.pending:
                    self.pending.popleft()

    def _drop_left(self) -> None:
        left = len(self.pending)
        self.dropped += left
        self.pending.clear()
        _LOG.warning("alerts: %s: %d message(s) not delivered before close", self.webhook.name, left)

    def _deliver(self, message: bytes) -> None:
        wait = BACKOFF_SECONDS
        for attempt in range(1, self.config.attempts + 1):
            if attempt > 1:
                self.retried += 1
            final, error, retry_after = self._post(message)
            if error is None:
                self.sent += 1
                return
            self.last_error, self.error_at = f"{self.webhook.name}: {error}", time.monotonic()
            if final or attempt == self.config.attempts:
                break
            if not self._sleep(min(max(wait, retry_after), BACKOFF_CAP_SECONDS)):
                with self.cond:
                    self.dropped += 1  # close's deadline came first: not given up, just not delivered
                return
            wait *= 2
        self.failed += 1
        _LOG.warning("alerts: gave up on a message after %d attempt(s): %s", attempt, self.last_error)

    def _sleep(self, seconds: float) -> bool:
        """Wait before a retry; False when close's deadline comes first."""
        end = time.monotonic() + seconds
        with self.cond:
            while True:
                now = time.monotonic()
                if self.deadline is not None and now >= self.deadline:
                    return False
                if now >= end:
                    return True
                self.cond.wait((end if self.deadline is None else min(end, self.deadline)) - now)

    def _post(self, message: bytes) -> tuple[bool, str | None, float]:
        """(final, error or None when delivered, seconds the receiver asked to wait)."""
        try:
            request = urllib.request.Request(self.webhook.url, data=message, method="POST", headers={
                "Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT})
            with self.opener.open(request, timeout=self.config.timeout) as answer:
                answer.read(65536)
            return False, None, 0.0
        except urllib.error.HTTPError as e:
            code = e.code
            retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            e.close()
            retry = code >= 500 or code in (408, 429)
            hint = "" if retry else (" (moved: update the URL)" if 300 <= code < 400 else " (check the webhook)")
            return not retry, f"HTTP {code}{hint}", retry_after
        except Exception as e:  # noqa: BLE001 — a timeout, refused connection, TLS or DNS failure: retried
            reason = getattr(e, "reason", None)
            what = f"{type(e).__name__}: {reason if reason is not None else e}"
            return False, _masked(what, self.webhook.url), 0.0


class Alerts:
    """The alerts of one session: `committed(steps)` after every commit, `close(timeout)` on a clean stop."""

    def __init__(self, config: AlertConfig, namespace: str) -> None:
        self.config = config
        self.namespace = namespace
        self._channels = [_Channel(w, config) for w in config.webhooks]
        self._kinds: dict[str, str] = {}  # incident id → kind, to name it in its resolve message
        self._error: tuple[float, str] | None = None  # an event that could not be formatted
        self.unformatted = 0  # events skipped because their payload could not be formatted (a bug upstream)

    def committed(self, steps: Iterable[Sequence[Draft]]) -> int:
        """Queue a message per matching event per webhook (never blocks, never raises); returns how many."""
        if not self._channels:
            return 0
        queued = 0
        try:
            for step in steps:
                for draft in step:
                    alert = _alert(self.namespace, draft, self._kinds)
                    if alert is None:
                        continue
                    bodies: dict[str, bytes] = {}
                    for ch in self._channels:
                        if alert.event in ch.webhook.events:
                            fmt = ch.webhook.format
                            message = bodies.get(fmt) or bodies.setdefault(fmt, body(alert, fmt))
                            queued += ch.offer(message)
        except Exception as e:  # noqa: BLE001 — a malformed payload must not stop trading; it is counted and kept
            self.unformatted += 1
            text = " ".join(f"alerts: an event could not be formatted ({type(e).__name__}: {e})".split())
            self._error = (time.monotonic(), text[:300])
        if len(self._kinds) > 10_000:  # raised and never resolved in this process: forget the oldest
            for iid in list(self._kinds)[:5_000]:
                del self._kinds[iid]
        return queued

    def close(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued within `timeout` seconds; True when nothing was left undelivered."""
        deadline = time.monotonic() + max(0.0, timeout)
        for ch in self._channels:
            ch.close(deadline)
        for ch in self._channels:
            ch.thread.join(max(0.0, deadline - time.monotonic()) + 0.05)
        return all(not ch.thread.is_alive() and not ch.pending for ch in self._channels)

    @property
    def sent(self) -> int:
        """Messages the receivers took (2xx)."""
        return sum(ch.sent for ch in self._channels)

    @property
    def failed(self) -> int:
        """Messages given up: attempts exhausted, or refused by the receiver (a 4xx)."""
        return sum(ch.failed for ch in self._channels)

    @property
    def dropped(self) -> int:
        """Messages never posted: the queue was full, or close's timeout came first."""
        return sum(ch.dropped for ch in self._channels)

    @property
    def retried(self) -> int:
        """Attempts after the first, over all messages."""
        return sum(ch.retried for ch in self._channels)

    @property
    def pending(self) -> int:
        """Messages waiting (or being posted) now."""
        return sum(len(ch.pending) for ch in self._channels)

    @property
    def last_error(self) -> str | None:
        """The latest failure of any webhook, on one line, naming the webhook by index and host only."""
        errors = [(ch.error_at, ch.last_error) for ch in self._channels if ch.last_error]
        if self._error is not None:
            errors.append(self._error)
        return max(errors)[1] if errors else None
