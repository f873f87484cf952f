"""`tape schemas check`: a schema directory against every writer schema the store's registries hold."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventstore.catalog import Catalog
from eventstore.compat import check_backward_transitive
from eventstore.errors import SchemaError, TapeError
from eventstore.store import Log


@dataclass
class CheckResult:
    schemas: int = 0  # event types in the directory
    checked: int = 0  # of them, with registered versions
    versions: int = 0  # registered versions compared against
    namespaces: int = 0
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # registered types the directory no longer defines


def load_dir(directory: Path) -> Catalog:
    """The catalog of a schema directory; any invalid file is one SchemaError naming it."""
    for path in sorted(Path(directory).rglob("*.avsc")):
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SchemaError(f"{path}: not a readable JSON schema ({e}); fix the file") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or "type" not in raw:
            raise SchemaError(f"{path}: not a named Avro schema (a JSON object with 'type' and 'name'); fix the file")
    try:
        return Catalog.load(directory)
    except TapeError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise SchemaError(f"{directory}: invalid schema file(s) ({type(e).__name__}: {e}); fix the file") from None


def registered_versions(log: Log) -> tuple[dict[str, dict[int, dict[str, Any]]], int]:
    """Registered writer schemas by full name, then fingerprint, over every namespace of the store."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    namespaces = log.namespaces()
    for ns in namespaces:
        for fp, schema in log.registry(ns).schemas.items():
            out.setdefault(schema["name"], {})[fp] = schema
    return out, len(namespaces)


def check(log: Log, directory: Path) -> CheckResult:
    """Backward-transitive check: each new schema must read data of every registered version of its name."""
    catalog = load_dir(directory)
    registered, n_ns = registered_versions(log)
    result = CheckResult(schemas=len(catalog.types), namespaces=n_ns)
    for name in sorted(registered):
        versions = [registered[name][fp] for fp in sorted(registered[name])]
        new = catalog.by_full.get(name) or catalog.records.get(name)
        if new is None:
            result.missing.append(name)
            continue
        result.checked += 1
        result.versions += len(versions)
        try:
            problems = check_backward_transitive(new.schema, versions)
        except (ValueError, KeyError, TypeError) as e:
            raise SchemaError(f"{name}: cannot compare schemas ({e})") from None
        for p in problems:
            text = str(p)
            if text not in result.problems:
                result.problems.append(text)
    return result
