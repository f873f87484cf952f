"""Avro binary encoders generated per record schema: fastavro's bytes, faster.

fastavro walks the schema for every record it writes and validates each union branch by trying it (about 2 µs per
optional field on this project's machines, 17–30 µs for one order event). `compile_encoder` turns a schema into
straight-line Python for the values tape writes (exact types: `int`, `str`, `bytes`, `bool`, `Decimal`, `dict`,
`list`, `None`). Anything else — a missing field, another type, a value out of range, a decimal fastavro would
refuse — raises `Unencodable`, and the caller writes that record with fastavro as before, so the bytes and the
errors are fastavro's in every case; the generated path only ever produces what fastavro produces
(tests/eventstore/test_avroencoder.py compares them on random and on damaged records).
"""
from __future__ import annotations

from decimal import MAX_PREC, Context, Decimal
from typing import Any, Callable

from eventstore.codec import unscaled_bytes

Encoder = Callable[[Any], bytes]


class Unencodable(Exception):
    """A value the generated path does not write; the caller falls back to fastavro."""


_WIDE = Context(prec=MAX_PREC)
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
# builtins and helpers bound as default arguments of every generated function (locals are the fastest lookup)
_LOCALS = ("_type=type, _int=int, _str=str, _bytes=bytes, _dict=dict, _list=list, Decimal=Decimal, "
           "Unencodable=Unencodable, _dec=_dec, _ub=_ub, _lv=_lv, _lc=_lc, _ic=_ic")
_LONGS: dict[int, bytes] = {}  # varints of recent large longs, shared by every encoder of the process
_INTS: dict[int, bytes] = {}


_PRIMITIVE = {"null", "boolean", "int", "long", "string", "bytes"}


def varint(x: int) -> bytes:
    """The zigzag varint of a long (Avro's int and long encoding)."""
    n = (x << 1) ^ (x >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _decimal_bytes(v: Decimal, scale: int, precision: int) -> bytes:
    """fastavro's bytes of a decimal logical value; Unencodable where fastavro would raise."""
    _, digits, exp = v.as_tuple()
    if type(exp) is not int or len(digits) > precision or exp + scale < 0:
        raise Unencodable()
    i = int(v.scaleb(scale, _WIDE))  # only the exponent moves: no digit may be rounded away
    return i.to_bytes((i.bit_length() + 8) // 8, "big", signed=True)


class _Compiler:
    """Generates one function per named record; fields are inlined statements appending to `out`."""

    def __init__(self, exact: dict[str, tuple[int, Any]]) -> None:
        self.exact = exact  # top-level decimals written as the writer's raw path writes them (codec.unscaled_bytes)
        self.names: dict[str, str] = {}  # full name of a named type → the function (record) or table (enum) name
        self.functions: list[str] = []
        self.env: dict[str, Any] = {"Unencodable": Unencodable, "Decimal": Decimal, "_dec": _decimal_bytes,
                                    "_ub": unscaled_bytes, "_lv": varint, "_lc": _LONGS, "_ic": _INTS}
        self.counter = 0

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def full_name(self, schema: dict[str, Any], namespace: str | None) -> tuple[str, str | None]:
        name = schema["name"]
        ns = schema.get("namespace", namespace)
        if "." in name:
            return name, name.rpartition(".")[0]
        return (f"{ns}.{name}" if ns else name), ns

    def long(self, var: str, cache: str, lo: int, hi: int, pad: str) -> list[str]:
        """A long: one to three bytes inline (seqs, counts), else the shared cache of recent values (a step's times
        repeat across its events and their types), else the varint loop (and cached)."""
        e, n = self.fresh("e"), self.fresh("n")
        return [f"{pad}if _type({var}) is not _int: raise Unencodable",
                f"{pad}{n} = ({var} << 1) ^ ({var} >> 63)",
                f"{pad}if {n} < 128: out.append({n})",
                f"{pad}elif {n} < 16384: out += _bytes(({n} & 127 | 128, {n} >> 7))",
                f"{pad}elif {n} < 2097152: out += _bytes(({n} & 127 | 128, ({n} >> 7) & 127 | 128, {n} >> 14))",
                f"{pad}else:",
                f"{pad}    {e} = {cache}.get({var})",
                f"{pad}    if {e} is None:",
                f"{pad}        if not {lo} <= {var} <= {hi}: raise Unencodable",
                f"{pad}        {e} = _lv({var})",
                f"{pad}        if len({cache}) >= 4096: {cache}.clear()",
                f"{pad}        {cache}[{var}] = {e}",
                f"{pad}    out += {e}"]

    def string(self, var: str, pad: str) -> list[str]:
        """A string, encoded inline (a cache of them measured slower: short ASCII encodes faster than a lookup)."""
        e = self.fresh("e")
        return [f"{pad}if _type({var}) is not _str: raise Unencodable", f"{pad}{e} = {var}.encode()",
                *self.sized(e, pad)]

    def sized(self, var: str, pad: str) -> list[str]:
        """Length-prefixed bytes already in `var`."""
        return [f"{pad}if len({var}) < 64: out.append(len({var}) << 1)",
                f"{pad}else: out += _lv(len({var}))",
                f"{pad}out += {var}"]

    def emit(self, schema: Any, var: str, pad: str, namespace: str | None) -> list[str]:
        """Statements writing `var` as `schema`; raise Unsupported for what this compiler does not generate."""
        if isinstance(schema, str):
            if schema == "null":
                return [f"{pad}if {var} is not None: raise Unencodable"]
            if schema == "boolean":
                return [f"{pad}if {var} is True: out.append(1)",
                        f"{pad}elif {var} is False: out.append(0)",
                        f"{pad}else: raise Unencodable"]
            if schema == "int":
                return self.long(var, "_ic", _INT_MIN, _INT_MAX, pad)
            if schema == "long":
                return self.long(var, "_lc", _LONG_MIN, _LONG_MAX, pad)
            if schema == "string":
                return self.string(var, pad)
            if schema == "bytes":
                return [f"{pad}if _type({var}) is not _bytes: raise Unencodable", *self.sized(var, pad)]
            full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
            ref = self.names.get(full) or self.names.get(schema)
            if ref is None:
                raise _Unsupported(f"reference to {schema}")
            if ref.startswith("_enum"):
                return self.enum_lines(ref, var, pad)
            return [f"{pad}{ref}({var}, out)"]
        if isinstance(schema, list):
            return self.union(schema, var, pad, namespace)
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if logical == "decimal" and kind == "bytes":
            b = self.fresh("b")
            return [f"{pad}if _type({var}) is not Decimal: raise Unencodable",
                    f"{pad}{b} = _dec({var}, {int(schema.get('scale', 0))}, {int(schema['precision'])})",
                    *self.sized(b, pad)]
        if logical is not None:
            raise _Unsupported(f"logical type {logical}")
        if kind in _PRIMITIVE:
            return self.emit(kind, var, pad, namespace)
        if kind == "record":
            return [f"{pad}{self.record(schema, namespace)}({var}, out)"]
        if kind == "enum":
            full, _ = self.full_name(schema, namespace)
            table = self.fresh("_enum")
            self.env[table] = {s: varint(i) for i, s in enumerate(schema["symbols"])}
            self.names[full] = table
            return self.enum_lines(table, var, pad)
        if kind == "array":
            item = self.fresh("i")
            return [f"{pad}if _type({var}) is not _list: raise Unencodable",
                    f"{pad}if {var}:",
                    f"{pad}    out += _lv(len({var}))",
                    f"{pad}    for {item} in {var}:",
                    *self.emit(schema["items"], item, pad + "        ", namespace),
                    f"{pad}out.append(0)"]
        if kind == "map":
            k, v = self.fresh("k"), self.fresh("v")
            return [f"{pad}if _type({var}) is not _dict: raise Unencodable",
                    f"{pad}if {var}:",
                    f"{pad}    out += _lv(len({var}))",
                    f"{pad}    for {k}, {v} in {var}.items():",
                    *self.string(k, pad + "        "),
                    *self.emit(schema["values"], v, pad + "        ", namespace),
                    f"{pad}out.append(0)"]
        raise _Unsupported(f"type {kind}")

    def exact_decimal(self, schema: Any, var: str, scale: int, context: Any) -> list[str]:
        """A top-level decimal (or null) as the writer's raw path converts it: codec.unscaled_bytes."""
        ctx, b = self.fresh("_ctx"), self.fresh("b")
        self.env[ctx] = context
        branches = schema if isinstance(schema, list) else None
        pad = "    " if branches is None or "null" not in branches else "        "
        body = [f"{pad}if _type({var}) is not Decimal: raise Unencodable", f"{pad}{b} = _ub({var}, {scale}, {ctx})",
                *self.sized(b, pad)]
        if branches is None:
            return body
        if "null" not in branches:  # a union of the decimal alone
            return ["    out.append(0)", *body]
        null = branches.index("null")
        return [f"    if {var} is None: out.append({2 * null})", "    else:", f"        out.append({2 * (1 - null)})",
                *body]

    def enum_lines(self, table: str, var: str, pad: str) -> list[str]:
        e = self.fresh("e")
        return [f"{pad}{e} = {table}.get({var})",
                f"{pad}if {e} is None: raise Unencodable",
                f"{pad}out += {e}"]

    def union(self, branches: list[Any], var: str, pad: str, namespace: str | None) -> list[str]:
        """null and one other branch (what tape's schemas use); wider unions are fastavro's to choose among."""
        others = [i for i, b in enumerate(branches) if b != "null"]
        nulls = [i for i, b in enumerate(branches) if b == "null"]
        if len(others) != 1 or len(nulls) > 1 or len(branches) > 2:
            raise _Unsupported("a union of several types")
        other = others[0]
        lines = [f"{pad}out.append({2 * other})"]  # the branch index as a varint: 0 → 0, 1 → 2
        lines += self.emit(branches[other], var, pad, namespace)
        if not nulls:
            return lines
        return [f"{pad}if {var} is None: out.append({2 * nulls[0]})", f"{pad}else:",
                *[("    " + line) for line in lines]]

    def record(self, schema: dict[str, Any], namespace: str | None, top: bool = False) -> str:
        full, ns = self.full_name(schema, namespace)
        fn = self.fresh("_rec")
        self.names[full] = fn
        body = [f"def {fn}(r, out, {_LOCALS}):", "    if _type(r) is not _dict: raise Unencodable"]
        for f in schema["fields"]:
            x = self.fresh("x")
            body.append(f"    {x} = r[{f['name']!r}]")  # a missing field: KeyError, and fastavro decides
            if top and f["name"] in self.exact:
                body += self.exact_decimal(f["type"], x, *self.exact[f["name"]])
            else:
                body += self.emit(f["type"], x, "    ", ns)
        self.functions.append("\n".join(body))
        return fn


class _Unsupported(Exception):
    """A schema construct the compiler does not generate (the whole schema stays with fastavro)."""


_COMPILED: dict[tuple[int, tuple[tuple[str, int, int], ...]], Encoder | None] = {}


def encoder_for(fingerprint: int, schema: dict[str, Any],
                exact: tuple[tuple[str, int, Any], ...] = ()) -> Encoder | None:
    """compile_encoder's result for a schema of that fingerprint, compiled once per process (every writer opened,
    and a test suite opens thousands, reuses it)."""
    key = (fingerprint, tuple((name, scale, ctx.prec) for name, scale, ctx in exact))
    if key not in _COMPILED:
        _COMPILED[key] = compile_encoder(schema, exact)
    return _COMPILED[key]


def compile_encoder(schema: dict[str, Any], exact: tuple[tuple[str, int, Any], ...] = ()) -> Encoder | None:
    """The encoder of a record schema (plain JSON form, named types defined where first used), or None when it
    uses something this module does not generate (floats, wider unions, other logical types). `exact` names the
    top-level decimal fields the caller converts itself (codec.RawDecimals.exact: name, scale, context), which
    are then written as codec.unscaled_bytes writes them."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    c = _Compiler({name: (scale, ctx) for name, scale, ctx in exact})
    try:
        top = c.record(schema, None, top=True)
    except _Unsupported:
        return None
    source = "\n\n".join(c.functions) + (
        f"\n\ndef encode(r):\n    out = bytearray()\n    {top}(r, out)\n    return bytes(out)\n")
    exec(compile(source, f"<avro encoder of {schema.get('name')}>", "exec"), c.env)  # noqa: S102
    encode: Encoder = c.env["encode"]
    return encode


__all__ = ["Encoder", "Unencodable", "compile_encoder", "encoder_for", "varint"]
