"""Avro single-object encoding (C3 01 + CRC-64-AVRO fingerprint + body) with writer→reader resolution."""
from __future__ import annotations

import json
from decimal import Context, Decimal, InvalidOperation, Rounded
from io import BytesIO
from typing import Any, Callable, NamedTuple, Protocol

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import parse_schema

from eventstore.catalog import MAGIC, Catalog, EventType, canonical_form, fingerprint
from eventstore.compat import can_read
from eventstore.errors import IncompatibleSchema, SchemaError, UnknownSchema


class SchemaStore(Protocol):
    """Where a log keeps its registry: fingerprint → writer schema, stored with the log itself."""

    def load_schemas(self) -> dict[int, dict[str, Any]]: ...

    def save_schema(self, fp: int, schema: dict[str, Any]) -> None: ...


class Registry:
    """The writer schemas a log has used, so any log decodes on its own."""

    def __init__(self, store: SchemaStore | None = None):
        self.store = store
        self.schemas: dict[int, dict[str, Any]] = store.load_schemas() if store else {}

    def register(self, event_type: EventType) -> None:
        """Record a writer schema before the first event of it is written."""
        known = self.schemas.get(event_type.fingerprint)
        if known is not None:
            if known != event_type.schema and _strip_docs(known) != _strip_docs(event_type.schema):
                raise IncompatibleSchema(
                    f"{event_type.full_name}: fingerprint {event_type.fingerprint:016x} is registered with a different "
                    "schema (logical types or defaults differ): give the changed schema a new field or name"
                )
            unsealed = getattr(self.store, "unsealed", ())
            if event_type.fingerprint in unsealed:  # an entry from before content checksums, equal to today's: seal it
                self.store.save_schema(event_type.fingerprint, known)  # type: ignore[union-attr]
                unsealed.discard(event_type.fingerprint)
            return
        if self.store is not None:
            self.store.save_schema(event_type.fingerprint, event_type.schema)
        self.schemas[event_type.fingerprint] = event_type.schema

    def refresh(self) -> None:
        """Pick up schemas another process registered since this one loaded."""
        if self.store is not None:
            self.schemas.update(self.store.load_schemas())

    def origin(self, fp: int) -> str:
        """Where the registry keeps a fingerprint's schema (its file in a file store), for error messages."""
        path_of = getattr(self.store, "path_of", None)
        return str(path_of(fp)) if path_of is not None else f"registry entry {fp:016x}"


def _strip_docs(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_docs(v) for k, v in schema.items() if k not in ("doc",)}
    if isinstance(schema, list):
        return [_strip_docs(s) for s in schema]
    return schema


def schema_file_text(schema: dict[str, Any]) -> str:
    """Deterministic JSON text of a schema, as stored in a registry."""
    return json.dumps(schema, sort_keys=True, indent=1) + "\n"


def check_fingerprint(fp: int, schema: dict[str, Any]) -> None:
    """Refuse a registry entry whose text does not hash to its name."""
    if fingerprint(schema) != fp:
        raise SchemaError(f"registry entry {fp:016x} holds a schema whose fingerprint is {fingerprint(schema):016x}")


class Codec:
    """Encodes events of today's catalog; decodes events of any registered writer schema."""

    def __init__(self, catalog: Catalog, registry: Registry):
        self.catalog = catalog
        self.registry = registry
        self._decoders: dict[int, tuple[str, Callable[[bytes], dict[str, Any]]]] = {}
        self._buf = BytesIO()
        self._by_head: dict[bytes, Callable[[bytes], dict[str, Any]]] = {}

    def encode(self, event_type: EventType, record: dict[str, Any]) -> bytes:
        """Single-object bytes of one record."""
        return encode_value(event_type, record, self._buf)

    def decoder(self, fp: int) -> tuple[str, Callable[[bytes], dict[str, Any]]]:
        """(full type name, decode function) for values with this fingerprint."""
        hit = self._decoders.get(fp)
        if hit is None:
            hit = self._decoders[fp] = self._make_decoder(fp)
        return hit

    def _make_decoder(self, fp: int) -> tuple[str, Callable[[bytes], dict[str, Any]]]:
        writer = self.registry.schemas.get(fp)
        if writer is None:
            self.registry.refresh()
            writer = self.registry.schemas.get(fp)
        if writer is None:
            raise UnknownSchema(
                f"unknown schema fingerprint {fp:016x}: the log's registry lacks it; copy the registry with the data"
            )
        name = writer["name"]
        # events, and the records events carry (a snapshot's state), resolve to today's schema of the same name
        current = self.catalog.by_full.get(name) or self.catalog.records.get(name)
        parsed_writer = parse_schema(writer, _force=True)
        if current is not None and current.fingerprint == fp:
            # the fingerprint leaves out logical types: an entry that decodes otherwise than today's schema of the
            # same fingerprint was altered (a writer refuses to register one: see register)
            problems = can_read(current.schema, writer)
            if problems:
                text, today = schema_file_text(writer), schema_file_text(current.schema)
                at = next((i for i, (a, b) in enumerate(zip(text, today)) if a != b), min(len(text), len(today)))
                raise SchemaError(
                    f"{self.registry.origin(fp)}: the registry's {name} differs from today's schema of the same "
                    f"fingerprint at byte {len(text[:at].encode())} ({problems[0]}), so its events would decode "
                    "wrong: restore the file from a copy of the namespace")
            reader_schema = None
        elif current is not None:
            reader_schema = current.parsed
        else:
            reader_schema = None  # a type today's code no longer has: read it as written

        fast = _raw_decimal_reader(writer) if reader_schema is None else None
        if fast is not None:
            return name, fast

        def decode(value: bytes, _w=parsed_writer, _r=reader_schema) -> dict[str, Any]:
            return schemaless_reader(BytesIO(value[10:]), _w, _r)

        return name, decode

    def decode(self, value: bytes) -> tuple[str, dict[str, Any]]:
        """(full type name, record) of a single-object value."""
        if value[:2] != MAGIC or len(value) < 10:
            raise SchemaError("value is not Avro single-object encoded (missing C3 01 header)")
        name, fn = self.decoder(int.from_bytes(value[2:10], "little"))
        return name, fn(value)

    def decode_data(self, value: bytes) -> dict[str, Any]:
        """The record of a single-object value (the hot path of replay: one dict lookup by header)."""
        fn = self._by_head.get(value[:10])
        if fn is None:
            if value[:2] != MAGIC or len(value) < 10:
                raise SchemaError("value is not Avro single-object encoded (missing C3 01 header)")
            fn = self._by_head[value[:10]] = self.decoder(int.from_bytes(value[2:10], "little"))[1]
        return fn(value)


class RawDecimals(NamedTuple):
    """A record schema with its top-level decimal fields as plain bytes, and those fields."""

    parsed: Any  # the parsed schema, decimals as bytes
    fields: tuple[tuple[str, int, Context], ...]  # (name, scale, context of the field's precision)
    exact: tuple[tuple[str, int, Context], ...]  # the same with a context that refuses to round (for encoding)


def raw_decimals(schema: dict[str, Any]) -> RawDecimals | None:
    """The fast form of a record whose decimals are all top-level fields, or None when some are nested.

    fastavro converts each decimal through a generic logical-type hook (about 1 µs each way, half a bar's decode);
    reading and writing those fields as plain bytes and converting them here gives the same Decimal, and the same
    bytes, as fastavro: the same context of the field's precision, the same scaleb, the same byte length.
    """
    fields = schema.get("fields") if schema.get("type") == "record" else None
    if not fields:
        return None
    plain: list[dict[str, Any]] = []
    decimals: list[tuple[str, int, int]] = []
    for f in fields:
        t = f["type"]
        branches = t if isinstance(t, list) else [t]
        found = [b for b in branches if isinstance(b, dict) and b.get("logicalType") == "decimal"]
        if found and (len(branches) > 2 or (len(branches) == 2 and "null" not in branches)
                      or found[0].get("type") != "bytes"):
            return None
        if found:
            d = found[0]
            bare = {k: v for k, v in d.items() if k not in ("logicalType", "precision", "scale")}
            f = {**f, "type": [bare if b is d else b for b in branches] if isinstance(t, list) else bare}
            decimals.append((f["name"], int(d.get("scale", 0)), int(d["precision"])))
        elif '"decimal"' in json.dumps(t):
            return None  # a decimal inside a nested record, array or map: fastavro's own path
        plain.append(f)
    if not decimals:
        return None
    return RawDecimals(
        parse_schema({**schema, "fields": plain}, _force=True),
        tuple((n, scale, Context(prec=p)) for n, scale, p in decimals),
        tuple((n, scale, Context(prec=p, traps=[Rounded, InvalidOperation])) for n, scale, p in decimals),
    )


def unscaled_bytes(value: Decimal, scale: int, exact: Context) -> bytes:
    """fastavro's bytes for a decimal field: the unscaled integer, big-endian, in (bit_length + 8) // 8 bytes.

    Refuses (ArithmeticError / ValueError) what fastavro refuses: more places than the scale, more digits than the
    precision, NaN and infinities.
    """
    q = value.scaleb(scale, exact)
    i = int(q)
    if i != q:
        raise ValueError(f"{value} has more than {scale} decimal places")
    return i.to_bytes((i.bit_length() + 8) // 8, "big", signed=True)


def _raw_decimal_reader(writer: dict[str, Any]) -> Callable[[bytes], dict[str, Any]] | None:
    """The decoder of raw_decimals(writer), or None when it has no fast form."""
    raw = raw_decimals(writer)
    if raw is None:
        return None
    from_bytes = int.from_bytes

    def decode(value: bytes, _w=raw.parsed, _specs=raw.fields, _reader=schemaless_reader) -> dict[str, Any]:
        d = _reader(BytesIO(value[10:]), _w, None)
        for name, scale, ctx in _specs:
            v = d[name]
            if v is not None:
                d[name] = ctx.create_decimal(from_bytes(v, "big", signed=True)).scaleb(-scale, ctx)
        return d

    return decode


def encode_value(event_type: EventType, record: dict[str, Any], buf: BytesIO | None = None) -> bytes:
    """Single-object bytes of one record (events, or records carried inside events such as a snapshot's state)."""
    if buf is None:
        buf = BytesIO()
    else:
        buf.seek(0)
        buf.truncate()
    buf.write(event_type.prefix)
    try:
        schemaless_writer(buf, event_type.parsed, record)
    except Exception as e:  # fastavro raises ValueError/TypeError/AttributeError on mismatches
        raise SchemaError(f"{event_type.name}: record does not match its schema ({e!r}); fix its fields") from None
    return buf.getvalue()


__all__ = ["Codec", "Registry", "SchemaStore", "canonical_form", "schema_file_text", "encode_value"]
