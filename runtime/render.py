"""Events as text: deterministic JSON lines for machines, one compact line for people."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from eventstore.replay import Event
from runtime.times import format_ns
from schemas.decimals import exact_text, plain

SUMMARY_VALUE_MAX = 40


def event_json(ev: Event) -> str:
    """One JSON object (no newline): seq, type, key, ts_event, the envelope and the payload fields as `data`."""
    data = ev.data
    obj = {
        "seq": ev.seq,
        "type": ev.name,
        "key": ev.key,
        "ts_event": ev.ts_event,
        "envelope": plain(data["envelope"]),
        "data": {k: plain(v) for k, v in data.items() if k != "envelope"},
    }
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _short(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        text = exact_text(value)
    elif isinstance(value, (bytes, bytearray)):
        text = bytes(value).hex()
    elif isinstance(value, list):
        text = f"[{len(value)}]"
    elif isinstance(value, dict):
        text = "{" + ",".join(f"{k}={_short(v, k)}" for k, v in value.items()) + "}"
    elif isinstance(value, int) and not isinstance(value, bool) and name.endswith("_ts"):
        text = format_ns(value)
    else:
        text = str(value)
    if len(text) > SUMMARY_VALUE_MAX:
        text = text[: SUMMARY_VALUE_MAX - 1] + "…"
    return text


def summary(ev: Event) -> str:
    """Payload fields as `name=value`, without the envelope, the instrument id (the key) and nulls."""
    parts = []
    for k, v in ev.data.items():
        if k in ("envelope", "instrument_id"):
            continue
        text = _short(v, k)
        if text is not None:
            parts.append(f"{k}={text}")
    return " ".join(parts)


DUMP_HEADER = f"{'seq':>8}  {'time':<30}  {'type':<20}  {'key':<18}  data"


def event_line(ev: Event) -> str:
    """One human line of `tape log dump`: aligned seq, ISO time, type, key, then the summary."""
    return f"{ev.seq:>8}  {format_ns(ev.ts_event):<30}  {ev.name:<20}  {ev.key:<18}  {summary(ev)}"
