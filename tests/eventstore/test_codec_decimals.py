"""The raw-decimal fast paths read and write every event of the catalog exactly as fastavro's own path does."""
from __future__ import annotations

import random
from decimal import Decimal
from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_reader
from logkit import catalog, open_log, random_value as _value

from eventstore.codec import Codec, Registry, _raw_decimal_reader, encode_value
from eventstore.writer import Draft


def _exact(a: Any, b: Any) -> bool:
    """Equal, and every Decimal with the same digits and exponent (Decimal == ignores the exponent)."""
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return type(a) is type(b) and a.as_tuple() == b.as_tuple()
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_exact(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_exact(x, y) for x, y in zip(a, b))
    return a == b


FAST = [t for t in catalog().types if _raw_decimal_reader(t.schema) is not None]


def test_the_fast_path_covers_the_hot_events() -> None:
    """Market data and the order flow take the fast path (else this optimisation silently stopped applying)."""
    names = {t.name for t in FAST}
    assert {"Bar", "TradeTick", "QuoteTick", "OrderIntent", "OrderFilled"} <= names


@pytest.mark.parametrize("event_type", FAST, ids=lambda t: t.name)
def test_fast_decode_equals_fastavro_decode(event_type) -> None:
    codec = Codec(catalog(), Registry())
    codec.registry.register(event_type)
    rng = random.Random(event_type.fingerprint)
    for _ in range(300):
        record = _value(event_type.schema, rng)
        value = encode_value(event_type, record)
        slow = schemaless_reader(BytesIO(value[10:]), event_type.parsed, None)
        fast = codec.decode_data(value)
        assert _exact(fast, slow), f"{event_type.name}: {fast!r} != {slow!r}"
        assert _exact(fast, record) or fast == record


def test_nested_decimals_keep_fastavro_path() -> None:
    schema = {"type": "record", "name": "x.Nested", "fields": [
        {"name": "rows", "type": {"type": "array", "items": {"type": "record", "name": "x.Row", "fields": [
            {"name": "px", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 18}}]}}}]}
    assert _raw_decimal_reader(schema) is None


BAD = [Decimal("1.0000000000000000001"), Decimal("1" * 39), Decimal("NaN"), Decimal("Infinity"), 1.5, "12"]


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_writer_refuses_what_fastavro_refuses(bad, tmp_path) -> None:
    """A decimal that does not fit decimal(38,18) is a SchemaError on the fast path as on fastavro's."""
    from eventstore.errors import SchemaError

    et = catalog().get("TradeTick")
    payload = {"instrument_id": "X", "price": bad, "quantity": Decimal(1), "aggressor_side": "BUYER", "trade_id": None}
    envelope = {"event_id": "w:1", "seq": 1, "ts_event": 1, "ts_init": 1, "causation_id": None,
                "correlation_id": None, "source": "t", "prev_hash": b""}
    with pytest.raises(SchemaError):
        encode_value(et, {**payload, "envelope": envelope})
    log = open_log(tmp_path)
    with log.writer("w") as w, pytest.raises(SchemaError, match="TradeTick"):
        w.append([Draft("TradeTick", payload, 1, "X", "t")])
