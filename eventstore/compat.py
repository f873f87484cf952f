"""Avro schema compatibility: can data written with one schema be read with another?

Pure functions, no I/O. Implements the schema-resolution rules of the Avro 1.11
specification (https://avro.apache.org/docs/1.11.1/specification/#schema-resolution)
so a schema registry can refuse a new version before any reader meets old data.

Deliberate choices, stricter than some decoders:
  * named types (record, enum, fixed) match by FULL name or a reader alias; the
    spec and fastavro compare unqualified names, so moving a type to another
    namespace without an alias is reported here although fastavro would decode it;
  * decimal precision and scale must be equal, and a decimal never silently reads
    (or is read as) plain bytes/fixed/string -- decoders ignore this, the values
    would change meaning;
  * a reader field's default is checked for validity when it is actually used
    (union defaults must match the union's first branch, as in the 1.11 spec).
Logical types other than decimal are ignored (they do not change the encoding).

Paths name a location inside the READER schema: the top-level full name, then
".field", ".<items>" (array), ".<values>" (map), ".<T>" (the reader union branch T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Union

__all__ = ["Incompatibility", "can_read", "check_backward_transitive"]

Schema = Union[dict, list, str]

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Incompatibility:
    """One reason why the reader cannot decode the writer's data, located in the reader schema."""

    path: str
    reason: str

    def __str__(self) -> str:
        """Render as 'path: reason' for logs and error messages."""
        return f"{self.path}: {self.reason}"


# ---------------------------------------------------------------------------
# Parsed schema model: names resolved to full names, references to objects.
# ---------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class _Prim:
    type: str
    decimal: tuple[int, int] | None = None  # (precision, scale) when a valid decimal


@dataclass(eq=False, repr=False)
class _Array:
    items: "_Node"


@dataclass(eq=False, repr=False)
class _Map:
    values: "_Node"


@dataclass(eq=False, repr=False)
class _Union:
    branches: list["_Node"]


@dataclass(eq=False, repr=False)
class _Field:
    name: str
    aliases: frozenset[str]
    type: "_Node"
    has_default: bool
    default: Any


@dataclass(eq=False, repr=False)
class _Record:
    name: str
    aliases: frozenset[str]
    fields: list[_Field] = field(default_factory=list)


@dataclass(eq=False, repr=False)
class _Enum:
    name: str
    aliases: frozenset[str]
    symbols: list[str]
    default: str | None


@dataclass(eq=False, repr=False)
class _Fixed:
    name: str
    aliases: frozenset[str]
    size: int
    decimal: tuple[int, int] | None = None


_Named = Union[_Record, _Enum, _Fixed]
_Node = Union[_Prim, _Array, _Map, _Union, _Record, _Enum, _Fixed]


def _full_name(name: str, namespace: str | None) -> str:
    """Qualify a name: a dotted name is already full, otherwise it joins the namespace."""
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _namespace_of(full_name: str) -> str | None:
    """Namespace part of a full name, which encloses the type's own definitions."""
    return full_name.rpartition(".")[0] or None


def _decimal_of(node: dict, fixed_size: int | None) -> tuple[int, int] | None:
    """Decimal (precision, scale) if the logical type is valid; invalid ones are ignored per spec."""
    if node.get("logicalType") != "decimal":
        return None
    precision, scale = node.get("precision"), node.get("scale", 0)
    if not _is_int(precision) or not _is_int(scale) or not 0 <= scale <= precision or precision < 1:
        return None
    if fixed_size is not None and precision > math.floor(math.log10(2 ** (8 * fixed_size - 1) - 1)):
        return None
    return (precision, scale)


def _is_int(value: Any) -> bool:
    """True for JSON integers (bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


class _Parser:
    """Turns a JSON schema into linked nodes, keeping one registry of named types per schema."""

    def __init__(self) -> None:
        self.named: dict[str, _Named] = {}

    def parse(self, schema: Any, namespace: str | None) -> _Node:
        """Parse any schema form: name/primitive string, union list, or object."""
        if isinstance(schema, str):
            return self._reference(schema, namespace)
        if isinstance(schema, list):
            return _Union([self.parse(branch, namespace) for branch in schema])
        if isinstance(schema, dict):
            return self._parse_object(schema, namespace)
        raise ValueError(f"not an Avro schema: {schema!r}")

    def _reference(self, name: str, namespace: str | None) -> _Node:
        """Resolve a primitive or a previously defined named type."""
        if name in PRIMITIVES:
            return _Prim(name)
        for candidate in (_full_name(name, namespace), name):
            if candidate in self.named:
                return self.named[candidate]
        raise ValueError(f"unknown type name {name!r} (namespace {namespace!r})")

    def _parse_object(self, node: dict, namespace: str | None) -> _Node:
        """Dispatch on the object's "type" attribute."""
        kind = node.get("type")
        if isinstance(kind, (dict, list)):
            return self.parse(kind, namespace)
        if kind in ("record", "error"):
            return self._record(node, namespace)
        if kind == "enum":
            return self._enum(node, namespace)
        if kind == "fixed":
            return self._fixed(node, namespace)
        if kind == "array":
            return _Array(self.parse(node["items"], namespace))
        if kind == "map":
            return _Map(self.parse(node["values"], namespace))
        if kind in PRIMITIVES:
            return _Prim(kind, _decimal_of(node, None) if kind == "bytes" else None)
        if isinstance(kind, str):
            return self._reference(kind, namespace)
        raise ValueError(f"schema object without a valid type: {node!r}")

    def _names(self, node: dict, namespace: str | None) -> tuple[str, frozenset[str]]:
        """Full name and full aliases of a named definition (aliases are relative to its namespace)."""
        explicit = node.get("namespace")
        enclosing = explicit if explicit is not None else namespace
        name = _full_name(node["name"], enclosing)
        own_ns = _namespace_of(name)
        return name, frozenset(_full_name(alias, own_ns) for alias in node.get("aliases", []))

    def _register(self, named: _Named) -> None:
        """Record a named definition, refusing redefinition (invalid Avro)."""
        if named.name in self.named:
            raise ValueError(f"type {named.name!r} is defined twice")
        self.named[named.name] = named

    def _record(self, node: dict, namespace: str | None) -> _Record:
        """Register before parsing fields so recursive references resolve to this object."""
        name, aliases = self._names(node, namespace)
        record = _Record(name, aliases)
        self._register(record)
        own_ns = _namespace_of(name)
        record.fields = [self._field(spec, own_ns) for spec in node.get("fields", [])]
        return record

    def _field(self, spec: dict, namespace: str | None) -> _Field:
        """A record field with its (possibly absent) default."""
        return _Field(
            name=spec["name"],
            aliases=frozenset(spec.get("aliases", [])),
            type=self.parse(spec["type"], namespace),
            has_default="default" in spec,
            default=spec.get("default"),
        )

    def _enum(self, node: dict, namespace: str | None) -> _Enum:
        """An enum; a default outside its symbols is treated as no default."""
        name, aliases = self._names(node, namespace)
        symbols = list(node.get("symbols", []))
        default = node.get("default")
        enum = _Enum(name, aliases, symbols, default if default in symbols else None)
        self._register(enum)
        return enum

    def _fixed(self, node: dict, namespace: str | None) -> _Fixed:
        """A fixed type, possibly carrying a decimal logical type."""
        name, aliases = self._names(node, namespace)
        size = node["size"]
        fixed = _Fixed(name, aliases, size, _decimal_of(node, size))
        self._register(fixed)
        return fixed


def _parse(schema: Schema) -> _Node:
    """Parse a whole schema with a fresh name registry."""
    return _Parser().parse(schema, None)


# ---------------------------------------------------------------------------
# Descriptions used in reasons and paths.
# ---------------------------------------------------------------------------


def _describe(node: _Node) -> str:
    """Short human description of a node for reasons."""
    if isinstance(node, _Prim):
        return node.type
    if isinstance(node, _Record):
        return f"record {node.name}"
    if isinstance(node, _Enum):
        return f"enum {node.name}"
    if isinstance(node, _Fixed):
        return f"fixed {node.name}"
    if isinstance(node, _Array):
        return "array"
    if isinstance(node, _Map):
        return "map"
    return "union [" + ", ".join(_label(branch) for branch in node.branches) + "]"


def _label(node: _Node) -> str:
    """Path segment / union-member label: a full name for named types, else the type name."""
    if isinstance(node, (_Record, _Enum, _Fixed)):
        return node.name
    if isinstance(node, _Prim):
        return node.type
    return "array" if isinstance(node, _Array) else "map" if isinstance(node, _Map) else "union"


def _decimal_text(decimal: tuple[int, int] | None) -> str:
    """Render decimal(precision,scale) for reasons."""
    return f"decimal({decimal[0]},{decimal[1]})" if decimal else "not decimal"


# ---------------------------------------------------------------------------
# Resolution checks.
# ---------------------------------------------------------------------------

_Memo = set[tuple[str, str]]


def _check(reader: _Node, writer: _Node, path: str, memo: _Memo) -> list[Incompatibility]:
    """Dispatch by shape: unions first (writer, then reader), then same-kind comparisons."""
    if isinstance(writer, _Union):
        return _check_writer_union(reader, writer, path, memo)
    if isinstance(reader, _Union):
        return _check_reader_union(reader, writer, path, memo)
    if isinstance(reader, _Prim) and isinstance(writer, _Prim):
        return _check_primitive(reader, writer, path)
    if isinstance(reader, _Array) and isinstance(writer, _Array):
        return _check(reader.items, writer.items, f"{path}.<items>", memo)
    if isinstance(reader, _Map) and isinstance(writer, _Map):
        return _check(reader.values, writer.values, f"{path}.<values>", memo)
    if isinstance(reader, _Record) and isinstance(writer, _Record):
        return _check_named_guarded(reader, writer, path, memo, _check_record)
    if isinstance(reader, _Enum) and isinstance(writer, _Enum):
        return _check_named_guarded(reader, writer, path, memo, _check_enum)
    if isinstance(reader, _Fixed) and isinstance(writer, _Fixed):
        return _check_named_guarded(reader, writer, path, memo, _check_fixed)
    return [Incompatibility(path, f"writer type {_describe(writer)} does not match reader type {_describe(reader)}")]


def _check_named_guarded(
    reader: Any, writer: Any, path: str, memo: _Memo, check: Callable[..., list[Incompatibility]]
) -> list[Incompatibility]:
    """Recursive types would loop forever: a pair already under check is assumed compatible here."""
    key = (reader.name, writer.name)
    if key in memo:
        return []
    if not _names_match(reader, writer):
        kind = _describe(reader).split(" ")[0]
        return [Incompatibility(path, f"writer {kind} {writer.name} does not match reader {kind} {reader.name} (name or aliases)")]
    memo.add(key)
    try:
        return check(reader, writer, path, memo)
    finally:
        memo.discard(key)


def _names_match(reader: _Named, writer: _Named) -> bool:
    """Named types match by full name or by one of the reader's aliases."""
    return writer.name == reader.name or writer.name in reader.aliases


def _check_primitive(reader: _Prim, writer: _Prim, path: str) -> list[Incompatibility]:
    """Same type or an allowed promotion, then decimal parameters must agree."""
    if reader.type != writer.type and reader.type not in PROMOTIONS.get(writer.type, ()):
        return [Incompatibility(path, f"writer type {writer.type} cannot be promoted to reader type {reader.type}")]
    return _check_decimal(reader.decimal, writer.decimal, reader.type, writer.type, path)


def _check_decimal(
    reader: tuple[int, int] | None, writer: tuple[int, int] | None, reader_type: str, writer_type: str, path: str
) -> list[Incompatibility]:
    """Decoders ignore decimal parameters, so a mismatch would silently rescale values."""
    if reader is None and writer is None:
        return []
    if reader is None or writer is None:
        return [
            Incompatibility(
                path,
                f"writer {writer_type} is {_decimal_text(writer)} but reader {reader_type} is {_decimal_text(reader)}",
            )
        ]
    problems = []
    if writer[0] != reader[0]:
        problems.append(Incompatibility(path, f"decimal precision {writer[0]} (writer) != {reader[0]} (reader)"))
    if writer[1] != reader[1]:
        problems.append(Incompatibility(path, f"decimal scale {writer[1]} (writer) != {reader[1]} (reader)"))
    return problems


def _check_writer_union(reader: _Node, writer: _Union, path: str, memo: _Memo) -> list[Incompatibility]:
    """Any writer branch may appear in the data, so every one must be readable."""
    problems: list[Incompatibility] = []
    for branch in writer.branches:
        if isinstance(reader, _Union):
            problems += _check_reader_union(reader, branch, path, memo)
        else:
            problems += _check(reader, branch, path, memo)
    return problems


def _check_reader_union(reader: _Union, writer: _Node, path: str, memo: _Memo) -> list[Incompatibility]:
    """Some reader branch must accept the writer type; otherwise explain the closest branch."""
    for branch in reader.branches:
        if not _check(branch, writer, _branch_path(path, branch), memo):
            return []
    picked = _closest_branch(reader, writer)
    if picked is not None:
        return _check(picked, writer, _branch_path(path, picked), memo)
    return [Incompatibility(path, f"writer type {_describe(writer)} matches no branch of reader {_describe(reader)}")]


def _branch_path(path: str, branch: _Node) -> str:
    """Path into one member of a reader union."""
    return f"{path}.<{_label(branch)}>"


def _closest_branch(reader: _Union, writer: _Node) -> _Node | None:
    """The branch a decoder would select (spec 'match'): same kind and name first, then promotion or alias."""
    for branch in reader.branches:
        if _same_kind(branch, writer, exact=True):
            return branch
    for branch in reader.branches:
        if _same_kind(branch, writer, exact=False):
            return branch
    return None


def _same_kind(branch: _Node, writer: _Node, exact: bool) -> bool:
    """Shallow match: exact means identical primitive or full name; otherwise promotion or alias."""
    if isinstance(branch, _Prim) and isinstance(writer, _Prim):
        return branch.type == writer.type if exact else branch.type in PROMOTIONS.get(writer.type, ())
    if isinstance(branch, (_Record, _Enum, _Fixed)) and type(branch) is type(writer):
        return branch.name == writer.name if exact else writer.name in branch.aliases
    return exact and type(branch) is type(writer) and isinstance(branch, (_Array, _Map))


def _check_record(reader: _Record, writer: _Record, path: str, memo: _Memo) -> list[Incompatibility]:
    """Reader fields are matched in the writer by name, then alias; missing ones need a usable default."""
    by_name = {f.name: f for f in writer.fields}
    problems: list[Incompatibility] = []
    for reader_field in reader.fields:
        field_path = f"{path}.{reader_field.name}"
        writer_field = _find_writer_field(reader_field, by_name)
        if writer_field is not None:
            problems += _check(reader_field.type, writer_field.type, field_path, memo)
        elif not reader_field.has_default:
            problems.append(Incompatibility(field_path, "reader field has no default and writer lacks it"))
        else:
            problems += _check_default(reader_field, field_path)
    return problems


def _find_writer_field(reader_field: _Field, by_name: dict[str, _Field]) -> _Field | None:
    """The writer field feeding this reader field: same name first, then one of the reader's aliases."""
    if reader_field.name in by_name:
        return by_name[reader_field.name]
    for alias in sorted(reader_field.aliases):
        if alias in by_name:
            return by_name[alias]
    return None


def _check_default(reader_field: _Field, path: str) -> list[Incompatibility]:
    """A default that does not fit its type would hand the reader an invalid value."""
    problem = _default_problem(reader_field.type, reader_field.default)
    if problem is None:
        return []
    return [Incompatibility(path, f"reader field default {reader_field.default!r} is invalid: {problem}")]


def _check_enum(reader: _Enum, writer: _Enum, path: str, memo: _Memo) -> list[Incompatibility]:
    """Every writer symbol must exist in the reader unless the reader enum has a default."""
    if reader.default is not None:
        return []
    known = set(reader.symbols)
    return [
        Incompatibility(path, f"writer enum symbol {symbol} missing in reader enum {reader.name} without default")
        for symbol in writer.symbols
        if symbol not in known
    ]


def _check_fixed(reader: _Fixed, writer: _Fixed, path: str, memo: _Memo) -> list[Incompatibility]:
    """Fixed values have no length prefix, so sizes must be equal; decimals must agree too."""
    if reader.size != writer.size:
        return [Incompatibility(path, f"fixed size {writer.size} (writer) != {reader.size} (reader)")]
    return _check_decimal(reader.decimal, writer.decimal, f"fixed {reader.name}", f"fixed {writer.name}", path)


# ---------------------------------------------------------------------------
# Default value validation (JSON encoding of defaults, Avro 1.11).
# ---------------------------------------------------------------------------


def _default_problem(node: _Node, value: Any) -> str | None:
    """Why a JSON default is not a valid value of the node's type, or None if it is."""
    if isinstance(node, _Prim):
        return None if _primitive_default_ok(node.type, value) else f"not a valid {node.type}"
    if isinstance(node, _Union):
        first = node.branches[0] if node.branches else None
        if first is None or _default_problem(first, value) is not None:
            return f"a union default must match its first branch {_label(first) if first else '(none)'}"
        return None
    if isinstance(node, _Enum):
        return None if value in node.symbols else f"not a symbol of enum {node.name}"
    if isinstance(node, _Fixed):
        ok = isinstance(value, str) and len(value) == node.size and all(ord(c) < 256 for c in value)
        return None if ok else f"not a {node.size}-byte fixed {node.name}"
    if isinstance(node, _Array):
        return _sequence_default_problem(node.items, value, list, "array")
    if isinstance(node, _Map):
        return _sequence_default_problem(node.values, value, dict, "map")
    return _record_default_problem(node, value)


def _primitive_default_ok(kind: str, value: Any) -> bool:
    """JSON shape and range of a primitive default."""
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("int", "long"):
        low, high = INT_RANGE if kind == "int" else LONG_RANGE
        return _is_int(value) and low <= value <= high
    if kind in ("float", "double"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bytes":
        return isinstance(value, str) and all(ord(c) < 256 for c in value)
    return isinstance(value, str)


def _sequence_default_problem(inner: _Node, value: Any, shape: type, kind: str) -> str | None:
    """Array and map defaults: right JSON shape and every element valid."""
    if not isinstance(value, shape):
        return f"not a JSON {kind}"
    elements = value.values() if isinstance(value, dict) else value
    for element in elements:
        problem = _default_problem(inner, element)
        if problem is not None:
            return f"{kind} element: {problem}"
    return None


def _record_default_problem(node: _Record, value: Any) -> str | None:
    """Record defaults: an object giving every field without its own default."""
    if not isinstance(value, dict):
        return f"not a JSON object for record {node.name}"
    for f in node.fields:
        if f.name in value:
            problem = _default_problem(f.type, value[f.name])
            if problem is not None:
                return f"field {f.name}: {problem}"
        elif not f.has_default:
            return f"field {f.name} missing"
    return None


# ---------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------


def _root_path(node: _Node) -> str:
    """Paths start at the reader's full name, or <root> for an unnamed top-level type."""
    return node.name if isinstance(node, (_Record, _Enum, _Fixed)) else "<root>"


def can_read(reader: dict | list | str, writer: dict | list | str) -> list[Incompatibility]:
    """Empty list iff data written with `writer` can be decoded with `reader` under Avro schema resolution."""
    reader_node, writer_node = _parse(reader), _parse(writer)
    return _check(reader_node, writer_node, _root_path(reader_node), set())


def check_backward_transitive(new: dict, registered: list[dict]) -> list[Incompatibility]:
    """`new` (as reader) must read data of every registered version (as writer)."""
    problems: list[Incompatibility] = []
    for index, old in enumerate(registered):
        problems += [
            Incompatibility(p.path, f"{p.reason} (against registered[{index}])") for p in can_read(new, old)
        ]
    return problems
