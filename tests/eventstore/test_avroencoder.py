"""The generated encoders write fastavro's bytes for every event type, or refuse and leave the record to fastavro."""
from __future__ import annotations

import random
from decimal import Decimal
from io import BytesIO
from typing import Any, Callable

import pytest
from fastavro import schemaless_reader, schemaless_writer
from logkit import catalog, open_log, random_value

from eventstore import avroencoder
from eventstore.avroencoder import Unencodable, compile_encoder
from eventstore.codec import encode_value, raw_decimals, unscaled_bytes
from eventstore.errors import SchemaError
from eventstore.writer import Draft

TYPES = catalog().types


def _fastavro(schema: Any, record: Any) -> bytes | Exception:
    buf = BytesIO()
    try:
        schemaless_writer(buf, schema, record)
    except Exception as e:  # what fastavro refuses
        return e
    return buf.getvalue()


def _raw_path(event_type: Any, record: Any) -> bytes | Exception:
    """The writer's own path before the generated encoders: top-level decimals converted, the rest fastavro."""
    raw = raw_decimals(event_type.schema)
    if raw is None:
        return _fastavro(event_type.parsed, record)
    record = dict(record)
    try:
        for name, scale, exact in raw.exact:
            if isinstance(record.get(name), Decimal):
                record[name] = unscaled_bytes(record[name], scale, exact)
    except Exception as e:
        return e
    return _fastavro(raw.parsed, record)


def _agrees(encode: Callable[[Any], bytes], reference: bytes | Exception, record: Any) -> str | None:
    """None when the encoder gave the reference's bytes, or refused what the reference refused; else the problem.
    A refusal where the reference writes is allowed (the caller then writes with fastavro)."""
    try:
        got = encode(record)
    except Exception:
        return None
    if isinstance(reference, Exception):
        return f"wrote {got!r} where fastavro refuses ({reference!r})"
    return None if got == reference else f"wrote {got!r}, fastavro {reference!r}"


def _perturbed(record: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The record with one value, at any depth, replaced by something of another type or range, or removed."""
    out = dict(record)
    paths: list[tuple[dict[str, Any], str]] = []

    def walk(d: dict[str, Any]) -> None:
        for k, v in d.items():
            paths.append((d, k))
            if isinstance(v, dict):
                d[k] = dict(v)
                walk(d[k])

    walk(out)
    parent, key = rng.choice(paths)
    wrong = rng.choice([1.5, float("nan"), True, 2**64, -(2**63) - 1, 2**31, "12", b"x", ("tape.X", 1), [1], {"a": 1},
                        Decimal("NaN"), Decimal("1E-40"), Decimal("1" * 40), Decimal("1.50"), object(), None, "\ud800"])
    if rng.random() < 0.1:
        del parent[key]
    else:
        parent[key] = wrong
    return out


@pytest.mark.parametrize("event_type", TYPES, ids=lambda t: t.name)
def test_generated_bytes_are_fastavros(event_type) -> None:
    """Random valid records: the same bytes as fastavro, and as the writer's raw-decimal path."""
    plain = compile_encoder(event_type.schema)
    raw = raw_decimals(event_type.schema)
    exact = compile_encoder(event_type.schema, raw.exact if raw is not None else ())
    assert plain is not None and exact is not None, f"{event_type.name} fell back to fastavro entirely"
    rng = random.Random(event_type.fingerprint)
    for _ in range(150):
        record = random_value(event_type.schema, rng)
        reference = _fastavro(event_type.parsed, record)
        assert isinstance(reference, bytes), reference
        assert plain(record) == reference
        assert exact(record) == _raw_path(event_type, record)


@pytest.mark.parametrize("event_type", TYPES, ids=lambda t: t.name)
def test_a_wrong_value_is_refused_or_written_as_fastavro_writes_it(event_type) -> None:
    """One field of another type, out of range, with too many places or missing: never bytes fastavro would not
    write, never other bytes."""
    plain = compile_encoder(event_type.schema)
    raw = raw_decimals(event_type.schema)
    exact = compile_encoder(event_type.schema, raw.exact if raw is not None else ())
    rng = random.Random(event_type.fingerprint ^ 0xBAD)
    for _ in range(300):
        record = _perturbed(random_value(event_type.schema, rng), rng)
        assert (problem := _agrees(plain, _fastavro(event_type.parsed, record), record)) is None, problem
        assert (problem := _agrees(exact, _raw_path(event_type, record), record)) is None, problem


def test_a_broken_encoder_is_caught(monkeypatch) -> None:
    """Negative control: an encoder that writes a union's branch index wrong fails the comparison above."""
    def swapped(self, branches, var, pad, namespace):
        lines = original(self, branches, var, pad, namespace)
        return [line.replace("out.append(0)", "out.append(2)", 1) if "is None" in line else line for line in lines]

    original = avroencoder._Compiler.union
    monkeypatch.setattr(avroencoder._Compiler, "union", swapped)
    et = catalog().get("OrderAccepted")
    broken = compile_encoder(et.schema)
    record = random_value(et.schema, random.Random(1))
    record["envelope"]["causation_id"] = None
    assert _agrees(broken, _fastavro(et.parsed, record), record) is not None


def test_the_refusal_is_an_exception_the_writer_catches() -> None:
    et = catalog().get("OrderAccepted")
    record = random_value(et.schema, random.Random(2))
    record["client_order_id"] = 7
    with pytest.raises(Unencodable):
        compile_encoder(et.schema)(record)  # type: ignore[misc]


@pytest.mark.parametrize("event_type", TYPES, ids=lambda t: t.name)
def test_the_writer_stores_fastavros_bytes(event_type, tmp_path) -> None:
    """Through the writer (the generated encoder, with fastavro behind it), every type's stored value is the one
    codec.encode_value gives."""
    log = open_log(tmp_path)
    rng = random.Random(event_type.fingerprint ^ 0x5EED)
    payloads = [{k: v for k, v in random_value(event_type.schema, rng).items() if k != "envelope"} for _ in range(60)]
    with log.writer("w") as w:
        w.append_steps([[Draft(event_type.name, dict(p), 1_000 + i, "k", "test")] for i, p in enumerate(payloads)])
    stored = [r.value for r in log.replay("w").records()]
    assert len(stored) == len(payloads)
    for payload, value in zip(payloads, stored):
        envelope = schemaless_reader(BytesIO(value[10:]), event_type.parsed, None)["envelope"]
        assert value == encode_value(event_type, {**payload, "envelope": envelope})


def test_the_writer_names_a_record_neither_path_can_write(tmp_path) -> None:
    log = open_log(tmp_path)
    payload = random_value(catalog().get("OrderAccepted").schema, random.Random(3))
    del payload["envelope"]
    payload["venue_order_id"] = 12
    with log.writer("w") as w, pytest.raises(SchemaError, match=r"OrderAccepted \(seq 1\): event does not match"):
        w.append([Draft("OrderAccepted", payload, 1, "k", "t")])
