"""The registry files of a file namespace, `_schemas/<fingerprint>.avsc`: written atomically, accepted only whole.

A file is named by the CRC-64-AVRO fingerprint of its schema's parsing canonical form — the 8 bytes every record
of that schema carries after `C3 01`. That form leaves out what Avro calls non-parsing attributes, among them
`logicalType`, `precision` and `scale`, so the name alone cannot catch a decimal's scale edited from 18 to 10 (every
price read ten orders of magnitude off). A file therefore also carries the schema attribute `tape.content`: the
CRC-64-AVRO of the registry's deterministic text of the schema without that attribute. A file is accepted when it
is UTF-8 JSON of a schema, in exactly that deterministic text, whose fingerprint equals its name and whose content
matches its `tape.content`. Files written before `tape.content` existed are accepted on the name check; the codec
then holds them to today's schema of the same fingerprint, where it has one (codec.py).
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

from eventstore.catalog import fingerprint
from eventstore.codec import schema_file_text
from eventstore.crc64 import crc64_avro
from eventstore.durable import replace_file
from eventstore.errors import SchemaError

CONTENT = "tape.content"
SUFFIX = ".avsc"
# file contents that passed every check, by (name, size, crc32): (fingerprint, carries a content checksum)
_ACCEPTED: dict[tuple[str, int, int], tuple[int, bool]] = {}


class RegistryDamage(Exception):
    """A registry file that cannot be accepted: why, and the byte of the file where that shows."""

    def __init__(self, reason: str, byte: int):
        super().__init__(f"{reason} at byte {byte}")
        self.reason = reason
        self.byte = byte


def content_sum(schema: dict[str, Any]) -> str:
    """The `tape.content` value of a schema: CRC-64-AVRO of its deterministic text, in hex."""
    return f"{crc64_avro(schema_file_text(schema).encode()):016x}"


def registry_text(schema: dict[str, Any]) -> str:
    """A registry file's text: the schema's deterministic JSON with its content checksum."""
    return schema_file_text({**schema, CONTENT: content_sum(schema)})


def _first_difference(a: str, b: str) -> int:
    """Byte offset in `a` of its first character that differs from `b`."""
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return len(a[:at].encode())


def _reference_text(fp: int) -> str | None:
    """The registry text of today's schema with this fingerprint, if today's catalog has one (to name the byte an
    edit changed); None without one."""
    try:
        from eventstore.catalog import Catalog

        catalog = Catalog.load()
    except Exception:  # the error being reported matters more than this hint
        return None
    for t in [*catalog.types, *catalog.records.values()]:
        if t.fingerprint == fp:
            return registry_text(t.schema)
    return None


def read_registry_file(path: Path, data: bytes | None = None) -> tuple[int, dict[str, Any], bool]:
    """(fingerprint, schema, carries a content checksum) of one registry file (its bytes `data` when already
    read); raises RegistryDamage."""
    try:
        fp = int(path.stem, 16)
        if len(path.stem) != 16:
            raise ValueError(path.stem)
    except ValueError:
        raise RegistryDamage("its name is not a 16-digit hex fingerprint", 0) from None
    if data is None:
        data = path.read_bytes()
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise RegistryDamage("not UTF-8 text", e.start) from None
    try:
        schema = json.loads(text)
    except ValueError as e:
        pos = getattr(e, "pos", 0)
        raise RegistryDamage(f"not JSON ({getattr(e, 'msg', e)})", len(text[:pos].encode())) from None
    if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
        raise RegistryDamage("not a named Avro schema", 0)
    written = schema_file_text(schema)
    if text != written:
        raise RegistryDamage("not the text a writer writes (altered)", _first_difference(text, written))
    recorded = schema.pop(CONTENT, None)
    try:
        actual = fingerprint(schema)
    except Exception as e:  # fastavro raises several kinds for a schema that does not parse
        raise RegistryDamage(f"not a valid Avro schema ({' '.join(str(e).split())[:100]})", 0) from None
    reference = None
    if actual != fp:
        reference = _reference_text(fp)
        at = _first_difference(text, reference) if reference is not None else 0
        raise RegistryDamage(f"its schema's CRC-64-AVRO fingerprint is {actual:016x}, not its name", at)
    if recorded is not None and recorded != content_sum(schema):
        reference = _reference_text(fp)
        at = _first_difference(text, reference) if reference is not None else 0
        raise RegistryDamage(f"its content does not match its checksum {CONTENT} {recorded} (altered)", at)
    return fp, schema, recorded is not None


def damage_message(path: Path, damage: RegistryDamage) -> str:
    """The one-line refusal of a damaged registry file, with the fix."""
    return (f"{path}: {damage}; the registry entry is damaged — restore the file from a copy of the namespace "
            "(its events cannot be decoded right without it)")


class FileSchemaStore:
    """The registry of a namespace: one <fingerprint>.avsc file each, beside the data."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.unsealed: set[int] = set()  # fingerprints whose file predates content checksums (a writer seals them)

    def path_of(self, fp: int) -> Path:
        """Where the registry file of a fingerprint is."""
        return self.dir / f"{fp:016x}{SUFFIX}"

    def load_schemas(self) -> dict[int, dict[str, Any]]:
        """Every registry file's schema, by fingerprint; a damaged file is refused in one line naming it."""
        out = {}
        if self.dir.is_dir():
            for p in sorted(self.dir.glob(f"*{SUFFIX}")):
                data = p.read_bytes()
                key = (p.name, len(data), zlib.crc32(data))
                hit = _ACCEPTED.get(key)  # the same bytes passed every check before: only parse them
                if hit is not None:
                    fp, sealed = hit
                    schema = json.loads(data)
                    schema.pop(CONTENT, None)
                else:
                    try:
                        fp, schema, sealed = read_registry_file(p, data)
                    except RegistryDamage as e:
                        raise SchemaError(damage_message(p, e)) from None
                    _ACCEPTED[key] = (fp, sealed)
                if not sealed:
                    self.unsealed.add(fp)
                out[fp] = schema
        return out

    def save_schema(self, fp: int, schema: dict[str, Any]) -> None:
        """Write one registry file durably, before the first event that needs it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        replace_file(self.path_of(fp), registry_text(schema).encode())
