"""The event catalog: schemas/*.avsc loaded, expanded to self-contained form and fingerprinted."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastavro.schema import parse_schema, to_parsing_canonical_form

from eventstore.crc64 import crc64_avro
from eventstore.errors import SchemaError

TOPICS = ("market", "intents", "executions", "system")
MAGIC = b"\xc3\x01"
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass(frozen=True)
class EventType:
    """One event schema: its name, topic, self-contained writer schema and single-object prefix."""

    full_name: str
    name: str
    topic: str
    schema: dict[str, Any]
    parsed: Any = field(repr=False, compare=False)
    fingerprint: int

    prefix: bytes = field(default=b"", compare=False)  # the 10 bytes every value of this type starts with

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", MAGIC + self.fingerprint.to_bytes(8, "little"))


def canonical_form(schema: Any) -> str:
    """Avro parsing canonical form of a self-contained schema."""
    return to_parsing_canonical_form(parse_schema(schema, _write_hint=False, _force=True))


def fingerprint(schema: Any) -> int:
    """CRC-64-AVRO fingerprint of a self-contained schema."""
    return crc64_avro(canonical_form(schema).encode())


def _full_name(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def expand(schema: Any, named: dict[str, Any], defined: set[str], namespace: str | None = None) -> Any:
    """Inline every named type at its first use so the schema can be read on its own."""
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema
        full = _full_name(schema, namespace)
        if full in defined:
            return full
        if full not in named:
            raise SchemaError(f"schema references unknown type {full!r}: add schemas/types/{full.split('.')[-1]}.avsc")
        return expand(named[full], named, defined, namespace)
    if isinstance(schema, list):
        return [expand(s, named, defined, namespace) for s in schema]
    if not isinstance(schema, dict):
        raise SchemaError(f"not a schema: {schema!r}")
    kind = schema.get("type")
    out = dict(schema)
    if kind in ("record", "error", "enum", "fixed"):
        ns = schema.get("namespace", namespace)
        full = _full_name(schema["name"], ns)
        ns = full.rpartition(".")[0] or None
        out["name"] = full
        out.pop("namespace", None)
        defined.add(full)
        if kind in ("record", "error"):
            out["fields"] = [dict(f, type=expand(f["type"], named, defined, ns)) for f in schema["fields"]]
        return out
    if kind == "array":
        out["items"] = expand(schema["items"], named, defined, namespace)
    elif kind == "map":
        out["values"] = expand(schema["values"], named, defined, namespace)
    elif isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in PRIMITIVES):
        return expand(kind, named, defined, namespace) if not schema.get("logicalType") else out
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SchemaError(f"{path}: not a readable JSON schema ({e}); fix the file") from None


class Catalog:
    """Every event type the code knows, by full and short name; plus the non-event record types (schemas/state)."""

    def __init__(self, types: list[EventType], records: list[EventType] | None = None):
        self.types = types
        self.by_full = {t.full_name: t for t in types}
        self.by_name = {t.name: t for t in types}
        # records encoded inside events (a snapshot's state), never written as events: topic 'state'
        self.records = {t.full_name: t for t in records or ()}

    @classmethod
    def load(cls, directory: Path | None = None) -> "Catalog":
        """Read a schema directory laid out as schemas/{envelope.avsc,types/,<topic>/}."""
        if directory is None:
            from schemas import SCHEMA_DIR

            directory = SCHEMA_DIR
        directory = Path(directory)
        if not directory.is_dir():
            raise SchemaError(f"schema directory {directory} does not exist: pass an existing directory")
        named: dict[str, Any] = {}
        for path in [directory / "envelope.avsc", *sorted((directory / "types").glob("*.avsc"))]:
            if path.exists():
                s = _read_json(path)
                named[_full_name(s["name"], s.get("namespace"))] = s
        types = []
        for topic in TOPICS:
            for path in sorted((directory / topic).glob("*.avsc")):
                raw = _read_json(path)
                full = _full_name(raw.get("name", path.stem), raw.get("namespace"))
                if full.split(".")[-2:-1] != [topic]:
                    raise SchemaError(f"{path}: namespace must be 'tape.{topic}' (the topic), got {full!r}")
                types.append(build_event_type(raw, named, topic, path))
        state = [(path, _read_json(path)) for path in sorted((directory / "state").glob("*.avsc"))]
        for path, raw in state:
            named[_full_name(raw.get("name", path.stem), raw.get("namespace"))] = raw
        records = []
        for path, raw in state:
            full = _full_name(raw.get("name", path.stem), raw.get("namespace"))
            if full.split(".")[-2:-1] != ["state"]:
                raise SchemaError(f"{path}: namespace must be 'tape.state', got {full!r}")
            records.append(build_event_type(raw, named, "state", path))
        return cls(types, records)

    def record(self, name: str) -> EventType:
        """A non-event record type (schemas/state) by short ('EngineState') or full name."""
        t = self.records.get(name) or next((r for r in self.records.values() if r.name == name), None)
        if t is None:
            raise SchemaError(f"unknown record type {name!r}: known are {', '.join(sorted(self.records))}")
        return t

    def get(self, name: str) -> EventType:
        """Look an event type up by short ('Bar') or full ('tape.market.Bar') name."""
        t = self.by_name.get(name) or self.by_full.get(name)
        if t is None:
            known = ", ".join(sorted(self.by_name))
            raise SchemaError(f"unknown event type {name!r}: known types are {known}")
        return t


def build_event_type(raw: dict[str, Any], named: dict[str, Any], topic: str, origin: Any = "") -> EventType:
    """Expand, validate and fingerprint one event schema."""
    try:
        schema = expand(raw, named, set())
        parsed = parse_schema(schema, _force=True)
    except SchemaError:
        raise
    except Exception as e:  # fastavro raises several types for bad schemas
        raise SchemaError(f"{origin}: invalid Avro schema ({e}); fix the file") from None
    full = schema["name"]
    return EventType(full, full.rsplit(".", 1)[-1], topic, schema, parsed, fingerprint(schema))


def topic_of(full_name: str) -> str:
    """The topic an event type lives in: the last component of its namespace."""
    parts = full_name.split(".")
    return parts[-2] if len(parts) >= 2 else ""
