"""Tests for eventstore.compat: unit cases per Avro resolution rule, and a property test against fastavro."""

from __future__ import annotations

import copy
import io
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

import fastavro
import pytest
from fastavro.validation import validate
from hypothesis import HealthCheck, assume, event, given, settings, strategies as st

from eventstore.compat import Incompatibility, can_read, check_backward_transitive

# ---------------------------------------------------------------------------
# Helpers for unit cases
# ---------------------------------------------------------------------------


def record(name: str, fields: list[dict], namespace: str | None = None, **extra: Any) -> dict:
    """Build a record schema so cases read like the change they test."""
    schema: dict = {"type": "record", "name": name, "fields": fields, **extra}
    if namespace is not None:
        schema["namespace"] = namespace
    return schema


def fld(name: str, type_: Any, **extra: Any) -> dict:
    """Build a record field."""
    return {"name": name, "type": type_, **extra}


def decimal(precision: int, scale: int, base: str = "bytes", **extra: Any) -> dict:
    """Build a decimal logical type on bytes (or fixed via extra)."""
    return {"type": base, "logicalType": "decimal", "precision": precision, "scale": scale, **extra}


def only(problems: list[Incompatibility]) -> Incompatibility:
    """The single reported problem, failing loudly when there are more or none."""
    assert len(problems) == 1, problems
    return problems[0]


def assert_problem(problems: list[Incompatibility], path: str, reason_part: str) -> None:
    """Exactly one problem, at this path, whose reason contains this text."""
    problem = only(problems)
    assert problem.path == path
    assert reason_part in problem.reason, problem.reason


BAR_V1 = record("Bar", [fld("ts", "long"), fld("close", "double")], namespace="tape.market")


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


def test_identical_schema_is_compatible() -> None:
    """A schema always reads its own data."""
    assert can_read(BAR_V1, BAR_V1) == []


def test_adding_field_with_default_is_compatible() -> None:
    """Old data lacks the field; the default fills it."""
    reader = record("Bar", [*BAR_V1["fields"], fld("volume", "long", default=0)], namespace="tape.market")
    assert can_read(reader, BAR_V1) == []


def test_adding_field_without_default_is_incompatible_and_named() -> None:
    """Old data lacks the field and nothing can fill it."""
    reader = record("Bar", [*BAR_V1["fields"], fld("volume", "long")], namespace="tape.market")
    assert_problem(can_read(reader, BAR_V1), "tape.market.Bar.volume", "reader field has no default and writer lacks it")


def test_removing_field_is_compatible() -> None:
    """Writer-only fields are skipped."""
    reader = record("Bar", [fld("ts", "long")], namespace="tape.market")
    assert can_read(reader, BAR_V1) == []


def test_renaming_field_with_alias_is_compatible() -> None:
    """A reader alias naming the writer field connects the two."""
    reader = record("Bar", [fld("ts", "long"), fld("close_px", "double", aliases=["close"])], namespace="tape.market")
    assert can_read(reader, BAR_V1) == []


def test_renaming_field_without_alias_is_incompatible() -> None:
    """Without an alias the renamed field is just a new field with no default."""
    reader = record("Bar", [fld("ts", "long"), fld("close_px", "double")], namespace="tape.market")
    assert_problem(can_read(reader, BAR_V1), "tape.market.Bar.close_px", "no default")


def test_field_order_does_not_matter() -> None:
    """Fields are matched by name, not position."""
    reader = record("Bar", list(reversed(BAR_V1["fields"])), namespace="tape.market")
    assert can_read(reader, BAR_V1) == []


def test_record_name_mismatch_is_incompatible() -> None:
    """Records are matched by full name."""
    reader = record("Candle", BAR_V1["fields"], namespace="tape.market")
    assert_problem(can_read(reader, BAR_V1), "tape.market.Candle", "writer record tape.market.Bar does not match")


def test_namespace_change_without_alias_is_incompatible() -> None:
    """Full names differ when only the namespace changes (stricter than the unqualified-name match)."""
    reader = record("Bar", BAR_V1["fields"], namespace="tape.bars")
    assert_problem(can_read(reader, BAR_V1), "tape.bars.Bar", "does not match reader record tape.bars.Bar")


def test_record_alias_with_full_name_is_compatible() -> None:
    """A reader alias with the writer's full name renames the record."""
    reader = record("Candle", BAR_V1["fields"], namespace="tape.market", aliases=["tape.market.Bar"])
    assert can_read(reader, BAR_V1) == []


def test_record_alias_is_relative_to_reader_namespace() -> None:
    """A dotless alias inherits the reader type's namespace."""
    reader = record("Candle", BAR_V1["fields"], namespace="tape.market", aliases=["Bar"])
    assert can_read(reader, BAR_V1) == []
    elsewhere = record("Candle", BAR_V1["fields"], namespace="tape.other", aliases=["Bar"])
    assert_problem(can_read(elsewhere, BAR_V1), "tape.other.Candle", "does not match")


def test_dotted_name_carries_its_own_namespace() -> None:
    """'tape.market.Bar' with no namespace attribute equals name Bar in namespace tape.market."""
    reader = {"type": "record", "name": "tape.market.Bar", "namespace": "ignored", "fields": BAR_V1["fields"]}
    assert can_read(reader, BAR_V1) == []


def test_nested_record_change_reports_nested_path() -> None:
    """The path walks from the top-level record through field names."""
    inner_w = record("Meta", [fld("venue", "string")])
    inner_r = record("Meta", [fld("venue", "string"), fld("account", "string")])
    writer = record("Fill", [fld("meta", inner_w)], namespace="tape.exec")
    reader = record("Fill", [fld("meta", inner_r)], namespace="tape.exec")
    assert_problem(can_read(reader, writer), "tape.exec.Fill.meta.account", "no default")


def test_nested_type_inherits_namespace_and_later_use_by_short_name() -> None:
    """A dotless nested name takes the enclosing namespace; a later reference may use either form."""
    side = {"type": "enum", "name": "Side", "symbols": ["BUY", "SELL"]}
    writer = record("Pair", [fld("a", side), fld("b", "tape.Side")], namespace="tape")
    reader = record("Pair", [fld("a", side), fld("b", "Side")], namespace="tape")
    assert can_read(reader, writer) == []


def test_field_default_must_be_valid_for_its_type() -> None:
    """A union default must match the first branch (Avro 1.11), else the reader yields an invalid value."""
    bad = record("Bar", [*BAR_V1["fields"], fld("venue", ["string", "null"], default=None)], namespace="tape.market")
    assert_problem(can_read(bad, BAR_V1), "tape.market.Bar.venue", "first branch string")
    good = record("Bar", [*BAR_V1["fields"], fld("venue", ["null", "string"], default=None)], namespace="tape.market")
    assert can_read(good, BAR_V1) == []


@pytest.mark.parametrize(
    ("type_", "default", "ok"),
    [
        ("int", 2**31, False),
        ("long", 2**31, True),
        ("boolean", 0, False),
        ("double", 1, True),
        ("string", "x", True),
        ({"type": "array", "items": "int"}, [1, "2"], False),
        ({"type": "map", "values": "long"}, {"a": 1}, True),
        ({"type": "fixed", "name": "F4", "size": 4}, "abcd", True),
        ({"type": "enum", "name": "E", "symbols": ["A"]}, "B", False),
        (record("P", [fld("x", "int"), fld("y", "int", default=0)]), {"x": 1}, True),
        (record("P", [fld("x", "int")]), {}, False),
    ],
)
def test_default_validation_by_type(type_: Any, default: Any, ok: bool) -> None:
    """Defaults are checked in their JSON encoding, per type."""
    reader = record("Bar", [*BAR_V1["fields"], fld("extra", type_, default=default)], namespace="tape.market")
    problems = can_read(reader, BAR_V1)
    assert (problems == []) == ok, problems
    if not ok:
        assert only(problems).path == "tape.market.Bar.extra"


# ---------------------------------------------------------------------------
# Primitives and promotions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("writer", "reader"),
    [("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"), ("long", "double"),
     ("float", "double"), ("string", "bytes"), ("bytes", "string"), ("null", "null"), ("boolean", "boolean")],
)
def test_allowed_promotions(writer: str, reader: str) -> None:
    """The spec's promotions and identities read fine."""
    assert can_read(reader, writer) == []


@pytest.mark.parametrize(
    ("writer", "reader"),
    [("long", "int"), ("double", "float"), ("float", "long"), ("string", "long"), ("int", "string"),
     ("boolean", "int"), ("null", "string"), ("double", "int")],
)
def test_forbidden_promotions(writer: str, reader: str) -> None:
    """Narrowing and unrelated primitive changes are reported with both type names."""
    assert_problem(can_read(reader, writer), "<root>", f"writer type {writer} cannot be promoted to reader type {reader}")


def test_promotion_inside_record_reports_field_path() -> None:
    """long -> int in a field is reported at that field."""
    writer = record("Bar", [fld("volume", "long")], namespace="tape.market")
    reader = record("Bar", [fld("volume", "int")], namespace="tape.market")
    assert_problem(can_read(reader, writer), "tape.market.Bar.volume", "writer type long cannot be promoted to reader type int")
    assert can_read(writer, reader) == []


def test_kind_mismatch_is_reported() -> None:
    """A record cannot read an array, and so on."""
    problem = only(can_read(BAR_V1, {"type": "array", "items": "long"}))
    assert problem.path == "tape.market.Bar"
    assert "writer type array does not match reader type record tape.market.Bar" in problem.reason


# ---------------------------------------------------------------------------
# Enums and fixed
# ---------------------------------------------------------------------------

STATE_V1 = {"type": "enum", "name": "TradingState", "namespace": "tape", "symbols": ["ACTIVE", "HALTED", "HOLD"]}


def test_enum_symbol_removal_is_incompatible() -> None:
    """Old data may carry the removed symbol."""
    reader = {**STATE_V1, "symbols": ["ACTIVE", "HALTED"]}
    assert_problem(can_read(reader, STATE_V1), "tape.TradingState",
                   "writer enum symbol HOLD missing in reader enum tape.TradingState without default")


def test_enum_symbol_removal_with_reader_default_is_compatible() -> None:
    """An unknown symbol falls back to the reader enum's default."""
    reader = {**STATE_V1, "symbols": ["ACTIVE", "HALTED"], "default": "ACTIVE"}
    assert can_read(reader, STATE_V1) == []


def test_enum_default_outside_symbols_does_not_count() -> None:
    """A default that is not a symbol cannot be used as a fallback."""
    reader = {**STATE_V1, "symbols": ["ACTIVE", "HALTED"], "default": "HOLD"}
    assert_problem(can_read(reader, STATE_V1), "tape.TradingState", "HOLD missing")


def test_enum_symbol_addition_is_compatible() -> None:
    """The reader knows more symbols than were ever written."""
    reader = {**STATE_V1, "symbols": ["ACTIVE", "HALTED", "HOLD", "CLOSED"]}
    assert can_read(reader, STATE_V1) == []


def test_enum_name_mismatch_and_alias() -> None:
    """Enums match by full name or reader alias."""
    renamed = {**STATE_V1, "name": "MarketState"}
    assert_problem(can_read(renamed, STATE_V1), "tape.MarketState", "writer enum tape.TradingState does not match")
    assert can_read({**renamed, "aliases": ["TradingState"]}, STATE_V1) == []


def test_enum_inside_record_reports_field_path() -> None:
    """The enum error is located at the field holding it."""
    writer = record("Status", [fld("state", STATE_V1)], namespace="tape")
    reader = record("Status", [fld("state", {**STATE_V1, "symbols": ["ACTIVE"]})], namespace="tape")
    problems = can_read(reader, writer)
    assert [p.path for p in problems] == ["tape.Status.state", "tape.Status.state"]
    assert {p.reason.split()[3] for p in problems} == {"HALTED", "HOLD"}


def test_fixed_size_and_name() -> None:
    """Fixed types need equal size and matching name."""
    writer = {"type": "fixed", "name": "Hash", "namespace": "tape", "size": 32}
    assert can_read(writer, writer) == []
    assert_problem(can_read({**writer, "size": 16}, writer), "tape.Hash", "fixed size 32 (writer) != 16 (reader)")
    assert_problem(can_read({**writer, "name": "Digest"}, writer), "tape.Digest", "writer fixed tape.Hash does not match")


# ---------------------------------------------------------------------------
# Arrays, maps
# ---------------------------------------------------------------------------


def test_array_items_are_resolved_recursively() -> None:
    """Promotion works inside arrays; demotion is reported at <items>."""
    writer = record("Book", [fld("levels", {"type": "array", "items": "long"})], namespace="tape.market")
    widened = record("Book", [fld("levels", {"type": "array", "items": "double"})], namespace="tape.market")
    narrowed = record("Book", [fld("levels", {"type": "array", "items": "int"})], namespace="tape.market")
    assert can_read(widened, writer) == []
    assert_problem(can_read(narrowed, writer), "tape.market.Book.levels.<items>", "long cannot be promoted to reader type int")


def test_map_values_are_resolved_recursively() -> None:
    """Map values follow the same rules, reported at <values>."""
    writer = record("OrderIntent", [fld("tags", {"type": "map", "values": "string"})], namespace="tape.intents")
    reader = record("OrderIntent", [fld("tags", {"type": "map", "values": "long"})], namespace="tape.intents")
    assert_problem(can_read(reader, writer), "tape.intents.OrderIntent.tags.<values>",
                   "writer type string cannot be promoted to reader type long")


def test_array_cannot_read_map() -> None:
    """Containers of different kinds never match."""
    assert_problem(can_read({"type": "array", "items": "int"}, {"type": "map", "values": "int"}), "<root>",
                   "writer type map does not match reader type array")


# ---------------------------------------------------------------------------
# Unions
# ---------------------------------------------------------------------------


def test_union_widening_is_compatible() -> None:
    """Every writer branch still has a reader branch."""
    assert can_read(["null", "string", "long"], ["null", "string"]) == []


def test_union_narrowing_is_incompatible() -> None:
    """A removed branch may appear in old data."""
    assert_problem(can_read(["null", "string"], ["null", "string", "long"]), "<root>",
                   "writer type long matches no branch of reader union [null, string]")


def test_union_branch_promotion_is_compatible() -> None:
    """A writer branch may be read by a promoted reader branch."""
    assert can_read(["null", "double"], ["null", "int"]) == []


def test_making_field_optional_is_compatible() -> None:
    """A reader union accepts a non-union writer when some branch does."""
    writer = record("Bar", [fld("venue", "string")], namespace="tape")
    reader = record("Bar", [fld("venue", ["null", "string"])], namespace="tape")
    assert can_read(reader, writer) == []


def test_making_field_required_is_incompatible() -> None:
    """A writer union read by a single type: the null branch cannot be read."""
    writer = record("Bar", [fld("venue", ["null", "string"], default=None)], namespace="tape")
    reader = record("Bar", [fld("venue", "string")], namespace="tape")
    assert_problem(can_read(reader, writer), "tape.Bar.venue", "writer type null cannot be promoted to reader type string")


def test_union_of_records_reports_branch_path() -> None:
    """A nested change behind a union branch shows the branch in the path."""
    inner_w = record("Leg", [fld("qty", "long")], namespace="tape")
    inner_r = record("Leg", [fld("qty", "long"), fld("px", "double")], namespace="tape")
    writer = record("Order", [fld("leg", ["null", inner_w])], namespace="tape")
    reader = record("Order", [fld("leg", ["null", inner_r])], namespace="tape")
    assert_problem(can_read(reader, writer), "tape.Order.leg.<tape.Leg>.px", "no default")


def test_reader_union_without_matching_named_branch() -> None:
    """A record written alone needs a reader branch with its name."""
    other = record("Other", [fld("x", "int")], namespace="tape")
    problem = only(can_read(["null", other], BAR_V1))
    assert problem.path == "<root>"
    assert "writer type record tape.market.Bar matches no branch of reader union [null, tape.Other]" in problem.reason


# ---------------------------------------------------------------------------
# Decimals
# ---------------------------------------------------------------------------


def test_decimal_scale_change_is_incompatible() -> None:
    """Same bytes, different scale: every value would be rescaled."""
    writer = record("Fill", [fld("qty", decimal(38, 18))], namespace="tape.exec")
    reader = record("Fill", [fld("qty", decimal(38, 8))], namespace="tape.exec")
    assert_problem(can_read(reader, writer), "tape.exec.Fill.qty", "decimal scale 18 (writer) != 8 (reader)")


def test_decimal_precision_change_is_incompatible() -> None:
    """Precision must be equal too."""
    assert_problem(can_read(decimal(12, 2), decimal(10, 2)), "<root>", "decimal precision 10 (writer) != 12 (reader)")


def test_equal_decimals_are_compatible() -> None:
    """Same precision and scale, bytes or fixed."""
    assert can_read(decimal(10, 2), decimal(10, 2)) == []
    fixed = decimal(10, 2, base="fixed", name="Px", size=8)
    assert can_read(fixed, fixed) == []


def test_decimal_against_plain_bytes_is_reported_both_ways() -> None:
    """Dropping or adding the decimal logical type changes the meaning of the bytes."""
    assert_problem(can_read("bytes", decimal(10, 2)), "<root>", "writer bytes is decimal(10,2) but reader bytes is not decimal")
    assert_problem(can_read(decimal(10, 2), "bytes"), "<root>", "writer bytes is not decimal but reader bytes is decimal(10,2)")
    assert_problem(can_read(decimal(10, 2), "string"), "<root>", "writer string is not decimal")


def test_fixed_decimal_scale_change() -> None:
    """Decimals on fixed follow the same rule."""
    writer = decimal(10, 2, base="fixed", name="Px", namespace="tape", size=8)
    reader = decimal(10, 4, base="fixed", name="Px", namespace="tape", size=8)
    assert_problem(can_read(reader, writer), "tape.Px", "decimal scale 2 (writer) != 4 (reader)")


def test_invalid_decimal_is_ignored_as_plain_bytes() -> None:
    """The spec says an invalid logical type (scale > precision) falls back to the underlying type."""
    assert can_read("bytes", decimal(2, 5)) == []


def test_other_logical_types_are_ignored() -> None:
    """Only decimal changes meaning in resolution here; timestamps etc. keep their encoding."""
    assert can_read({"type": "long", "logicalType": "timestamp-micros"}, {"type": "int", "logicalType": "date"}) == []


# ---------------------------------------------------------------------------
# Recursion, input forms, transitive check
# ---------------------------------------------------------------------------

NODE = {"type": "record", "name": "Node", "namespace": "tape", "fields": [
    {"name": "value", "type": "long"},
    {"name": "next", "type": ["null", "tape.Node"], "default": None},
]}


def test_recursive_schema_terminates_and_is_compatible() -> None:
    """The memo of (reader, writer) names under check stops infinite descent."""
    assert can_read(NODE, NODE) == []


def test_recursive_schema_change_is_still_detected() -> None:
    """The memo must not hide a real problem in a recursive type."""
    reader = copy.deepcopy(NODE)
    reader["fields"][0]["type"] = "int"
    assert_problem(can_read(reader, NODE), "tape.Node.value", "long cannot be promoted to reader type int")


def test_mutually_recursive_schemas() -> None:
    """Two records referring to each other resolve."""
    tree = {"type": "record", "name": "Tree", "namespace": "tape", "fields": [
        {"name": "kids", "type": {"type": "array", "items": {"type": "record", "name": "Kid", "fields": [
            {"name": "tree", "type": "Tree"}, {"name": "w", "type": "int"}]}}}]}
    reader = copy.deepcopy(tree)
    reader["fields"][0]["type"]["items"]["fields"][1]["type"] = "double"
    assert can_read(reader, tree) == []
    assert_problem(can_read(tree, reader), "tape.Tree.kids.<items>.w", "double cannot be promoted to reader type int")


def test_metadata_attributes_are_accepted() -> None:
    """doc, order, extra properties and dict-wrapped primitives do not disturb resolution."""
    writer = {"type": "record", "name": "Bar", "namespace": "tape", "doc": "x", "fields": [
        {"name": "ts", "type": {"type": "long"}, "doc": "time", "order": "ascending", "x-unit": "ns"}]}
    reader = {"type": "record", "name": "Bar", "namespace": "tape", "fields": [{"name": "ts", "type": "double"}]}
    assert can_read(reader, writer) == []


def test_unknown_type_name_raises() -> None:
    """An undefined reference is an invalid schema, not an incompatibility."""
    with pytest.raises(ValueError, match="unknown type name"):
        can_read(record("A", [fld("x", "tape.Missing")]), record("A", [fld("x", "int")]))


def test_incompatibility_str() -> None:
    """str() is 'path: reason'."""
    assert str(Incompatibility("tape.market.Bar.volume", "boom")) == "tape.market.Bar.volume: boom"


def test_backward_transitive_checks_every_registered_version() -> None:
    """The new schema must read every old version, and problems say which one."""
    v1 = record("Bar", [fld("ts", "long")], namespace="tape.market")
    v2 = record("Bar", [fld("ts", "long"), fld("close", "double", default=0.0)], namespace="tape.market")
    v3_ok = record("Bar", [fld("ts", "long"), fld("close", "double", default=0.0), fld("n", "int", default=0)],
                   namespace="tape.market")
    v3_bad = record("Bar", [fld("ts", "long"), fld("close", "double")], namespace="tape.market")
    assert check_backward_transitive(v3_ok, [v1, v2]) == []
    assert check_backward_transitive(v3_ok, []) == []
    problem = only(check_backward_transitive(v3_bad, [v1, v2]))
    assert problem.path == "tape.market.Bar.close"
    assert "no default" in problem.reason and "registered[0]" in problem.reason


def test_backward_transitive_catches_what_last_version_check_misses() -> None:
    """v3 reads v2 (the latest) but not v1: only the transitive check notices."""
    v1 = record("Bar", [fld("px", "double")], namespace="tape")
    v2 = record("Bar", [fld("px", "float")], namespace="tape")
    v3 = record("Bar", [fld("px", "float")], namespace="tape")
    assert can_read(v3, v2) == []
    problem = only(check_backward_transitive(v3, [v1, v2]))
    assert problem.path == "tape.Bar.px"
    assert problem.reason == "writer type double cannot be promoted to reader type float (against registered[0])"


# ---------------------------------------------------------------------------
# Property test: can_read against fastavro's resolving decoder
# ---------------------------------------------------------------------------

NS = "tape.gen"
TOP = f"{NS}.W"
PRIMS = ["null", "boolean", "int", "long", "float", "double", "string", "bytes"]
PROMOTE = {"int": ["long", "float", "double"], "long": ["float", "double"], "float": ["double"],
           "string": ["bytes"], "bytes": ["string"]}
# Python value class per primitive: union branches must differ in class so each branch can be written on purpose.
VALUE_CLASS = {"null": "none", "boolean": "bool", "int": "int", "long": "int", "float": "real", "double": "real",
               "string": "str", "bytes": "bytes"}
SAMPLE_DEFAULT = {"null": None, "boolean": False, "int": 7, "long": 7, "float": 0.5, "double": 0.5, "string": "d"}


def readable_prim(writer: Any, reader: Any) -> bool:
    """Oracle for primitives: identity or a spec promotion (complex types never count here)."""
    if not isinstance(writer, str) or not isinstance(reader, str):
        return False
    return writer == reader or reader in PROMOTE.get(writer, [])


@st.composite
def union_types(draw: st.DrawFn) -> list[str]:
    """2-3 primitive branches of distinct value classes (int-like and real never together: ambiguous to write)."""
    classes = draw(st.lists(st.sampled_from(sorted(set(VALUE_CLASS.values()))), min_size=2, max_size=3, unique=True))
    assume(not {"int", "real"} <= set(classes))
    return [draw(st.sampled_from([p for p in PRIMS if VALUE_CLASS[p] == c])) for c in classes]


def enum_type(name: str, symbols: list[str]) -> dict:
    """An enum named inside the generated namespace."""
    return {"type": "enum", "name": name, "symbols": symbols}


@st.composite
def field_types(draw: st.DrawFn, fname: str, depth: int = 0, kinds: list[str] | None = None) -> Any:
    """A field type: primitive, enum, union, optional complex type, array, map, decimal, or a nested record."""
    record_kind = ["record"] if depth == 0 else []
    kinds = kinds or ["prim", "enum", "union", "optional", "array", "map", "decimal", *record_kind]
    kind = draw(st.sampled_from(kinds))
    symbols = draw(st.lists(st.sampled_from("ABCD"), min_size=1, max_size=4, unique=True))
    if kind == "prim":
        return draw(st.sampled_from(PRIMS))
    if kind == "enum":
        return enum_type(f"E_{fname}", symbols)
    if kind == "union":
        return draw(union_types())
    if kind == "optional":
        return ["null", draw(field_types(fname, depth + 1, ["enum", "array", "map", "decimal", *record_kind]))]
    if kind == "array":
        items = draw(st.one_of(st.sampled_from(PRIMS), st.just(enum_type(f"E_{fname}", symbols))))
        return {"type": "array", "items": items}
    if kind == "map":
        return {"type": "map", "values": draw(st.sampled_from(PRIMS))}
    if kind == "decimal":
        precision = draw(st.integers(1, 12))
        return decimal(precision, draw(st.integers(0, precision)))
    inner = [fld(n, draw(field_types(f"{fname}_{n}", depth + 1))) for n in ("a", "b")[: draw(st.integers(1, 2))]]
    return record(f"R_{fname}", inner)


@st.composite
def writer_schemas(draw: st.DrawFn) -> dict:
    """A small top-level record tape.gen.W with 1-4 fields."""
    count = draw(st.integers(1, 4))
    return record("W", [fld(f"f{i}", draw(field_types(f"f{i}"))) for i in range(count)], namespace=NS)


def random_datum(schema: Any, rng: random.Random) -> Any:
    """A writer-valid datum choosing branches/symbols uniformly, containers non-empty: exercises every variant."""
    if isinstance(schema, list):
        return random_datum(rng.choice(schema), rng)
    if isinstance(schema, str):
        return random_primitive(schema, rng)
    kind = schema["type"]
    if kind == "record":
        return {f["name"]: random_datum(f["type"], rng) for f in schema["fields"]}
    if kind == "enum":
        return rng.choice(schema["symbols"])
    if kind == "array":
        return [random_datum(schema["items"], rng) for _ in range(rng.randint(1, 3))]
    if kind == "map":
        return {f"k{i}": random_datum(schema["values"], rng) for i in range(rng.randint(1, 2))}
    precision, scale = schema["precision"], schema["scale"]
    return Decimal(rng.randint(-(10**precision - 1), 10**precision - 1)).scaleb(-scale)


def random_primitive(kind: str, rng: random.Random) -> Any:
    """A random value of one primitive type."""
    makers: dict[str, Callable[[], Any]] = {
        "null": lambda: None,
        "boolean": lambda: rng.random() < 0.5,
        "int": lambda: rng.randint(-(2**31), 2**31 - 1),
        "long": lambda: rng.randint(-(2**63), 2**63 - 1),
        "float": lambda: rng.uniform(-1e6, 1e6),
        "double": lambda: rng.uniform(-1e12, 1e12),
        "string": lambda: rng.choice(["", "a", "é€", "xyz"]),
        # UTF-8 only: the spec allows bytes -> string, but arbitrary bytes then fail at decode (a data issue, not schema).
        "bytes": lambda: rng.choice(["", "a", "é€", "xyz"]).encode(),
    }
    return makers[kind]()


def encode(schema: Any, datum: Any) -> bytes:
    """Binary-encode a datum with the writer schema."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(copy.deepcopy(schema)), datum)
    return buffer.getvalue()


def decode(payload: bytes, writer: Any, reader: Any) -> Any:
    """Decode with fastavro's schema resolution (writer -> reader)."""
    return fastavro.schemaless_reader(io.BytesIO(payload), copy.deepcopy(writer), copy.deepcopy(reader))


@dataclass
class Site:
    """A place in the reader schema holding a type: parent[key] is the type; path is where errors land."""

    parent: Any
    key: Any
    path: str
    union: list | None  # the enclosing union when the type is one of its branches


def branch_label(schema: Any) -> str:
    """How compat.py names a reader union member in paths: full name, else the type name."""
    if isinstance(schema, str):
        return schema
    return f"{NS}.{schema['name']}" if "name" in schema else schema["type"]


def sites(schema: Any, path: str, parent: Any = None, key: Any = None, union: list | None = None) -> list[Site]:
    """Every type position reachable from the top record; a union member's insides sit under .<label>."""
    found = [Site(parent, key, path, union)] if parent is not None else []
    inner = f"{path}.<{branch_label(schema)}>" if union is not None else path
    if isinstance(schema, list):
        for i, branch in enumerate(schema):
            found += sites(branch, path, schema, i, schema)
    elif isinstance(schema, dict) and schema["type"] == "record":
        for f in schema["fields"]:
            found += sites(f["type"], f"{inner}.{f['name']}", f, "type")
    elif isinstance(schema, dict) and schema["type"] == "array":
        found += sites(schema["items"], f"{inner}.<items>", schema, "items")
    elif isinstance(schema, dict) and schema["type"] == "map":
        found += sites(schema["values"], f"{inner}.<values>", schema, "values")
    return found


def records_in(schema: dict, path: str) -> list[tuple[dict, str]]:
    """The top-level record and every nested record (also inside unions) with the path of its fields."""
    nested = [
        (s.parent[s.key], f"{s.path}.<{branch_label(s.parent[s.key])}>" if s.union is not None else s.path)
        for s in sites(schema, path)
        if isinstance(s.parent[s.key], dict) and s.parent[s.key]["type"] == "record"
    ]
    return [(schema, path)] + nested


@dataclass
class Mutation:
    """A reader derived from the writer, with the oracle's verdict and where a problem must be reported."""

    name: str
    reader: dict
    compatible: bool
    path: str = TOP
    enforced_by_fastavro: bool = True  # False where fastavro is laxer than the spec (decimals, namespaces)


def pick(data: st.DataObject, options: list) -> Any:
    """Draw one of the options, or reject the example when there are none."""
    assume(options)
    return data.draw(st.sampled_from(options))


def prim_sites(reader: dict) -> list[Site]:
    """Sites holding a plain primitive (not decimal)."""
    return [s for s in sites(reader, TOP) if isinstance(s.parent[s.key], str)]


RETYPE_POOLS: dict[str, Callable[[str], list[str]]] = {
    "promote": lambda old: PROMOTE.get(old, []),
    "demote": lambda old: [t for t in PRIMS if not readable_prim(old, t)],
    # the reverse of a promotion (long -> int, double -> float, ...): the likeliest real-world mistake
    "demote_near": lambda old: [t for t in PRIMS if old in PROMOTE.get(t, []) and not readable_prim(old, t)],
}


def retype(data: st.DataObject, writer: dict, mode: str) -> Mutation:
    """Change one primitive per RETYPE_POOLS[mode]; union branches stay distinct."""
    reader = copy.deepcopy(writer)
    choices = [(site, new) for site in prim_sites(reader) for new in RETYPE_POOLS[mode](site.parent[site.key])
               if site.union is None or new not in site.union]
    site, new = pick(data, choices)
    old = site.parent[site.key]
    site.parent[site.key] = new
    compatible = readable_prim(old, new) or (site.union is not None and any(readable_prim(old, t) for t in site.union))
    return Mutation(mode, reader, compatible, site.path)


def narrow_union(data: st.DataObject, writer: dict) -> Mutation:
    """Drop one branch (collapsing a one-branch union half the time)."""
    reader = copy.deepcopy(writer)
    site = pick(data, [s for s in sites(reader, TOP) if isinstance(s.parent[s.key], list)])
    union = site.parent[site.key]
    removed = union.pop(data.draw(st.integers(0, len(union) - 1)))
    if len(union) == 1 and data.draw(st.booleans()):
        site.parent[site.key] = union[0]
    return Mutation("narrow_union", reader, any(readable_prim(removed, t) for t in union), site.path)


def widen_union(data: st.DataObject, writer: dict) -> Mutation:
    """Add a new branch, or turn a non-union primitive/enum into ["null", it]."""
    reader = copy.deepcopy(writer)
    site = pick(data, [s for s in sites(reader, TOP) if s.union is None])
    current = site.parent[site.key]
    if isinstance(current, list):
        current.append(pick(data, [t for t in PRIMS if t not in current]))
    else:
        assume(current != "null")
        site.parent[site.key] = ["null", current]
    return Mutation("widen_union", reader, True, site.path)


def change_enum(data: st.DataObject, writer: dict, action: str) -> Mutation:
    """Add a symbol, remove one, or remove one while giving the reader enum a default."""
    reader = copy.deepcopy(writer)
    enums = [s for s in sites(reader, TOP) if isinstance(s.parent[s.key], dict) and s.parent[s.key]["type"] == "enum"]
    site = pick(data, enums)
    enum = site.parent[site.key]
    if action == "add":
        enum["symbols"].append("Z")
        return Mutation("enum_add", reader, True, site.path)
    assume(len(enum["symbols"]) >= 2)
    enum["symbols"].remove(data.draw(st.sampled_from(enum["symbols"])))
    if action == "remove_with_default":
        enum["default"] = enum["symbols"][0]
        return Mutation("enum_remove_with_default", reader, True, site.path)
    return Mutation("enum_remove", reader, False, site.path)


def change_decimal(data: st.DataObject, writer: dict) -> Mutation:
    """Change precision or scale, or drop the logical type (fastavro ignores all three)."""
    reader = copy.deepcopy(writer)
    decimals = [s for s in sites(reader, TOP) if isinstance(s.parent[s.key], dict) and "logicalType" in s.parent[s.key]]
    site = pick(data, decimals)
    dec = site.parent[site.key]
    how = data.draw(st.sampled_from(["scale", "precision", "drop"]))
    if how == "drop":
        site.parent[site.key] = "bytes"
    elif how == "precision":
        dec["precision"] += 1
    else:
        assume(dec["scale"] < dec["precision"])
        dec["scale"] += 1
    return Mutation(f"decimal_{how}", reader, False, site.path, enforced_by_fastavro=False)


def change_fields(data: st.DataObject, writer: dict, action: str) -> Mutation:
    """Add a field (with/without default), remove one, or rename one (with/without alias)."""
    reader = copy.deepcopy(writer)
    target, path = pick(data, records_in(reader, TOP))
    fields = target["fields"]
    if action in ("add_default", "add_no_default"):
        kind = data.draw(st.sampled_from([p for p in PRIMS if p != "bytes"]))  # fastavro returns bytes defaults as str
        new = fld("nf", kind, default=SAMPLE_DEFAULT[kind]) if action == "add_default" else fld("nf", kind)
        fields.append(new)
        return Mutation(action, reader, action == "add_default", f"{path}.nf")
    index = data.draw(st.integers(0, len(fields) - 1))
    if action == "remove":
        fields.pop(index)
        return Mutation(action, reader, True, path)
    old_name = fields[index]["name"]
    fields[index]["name"] = f"{old_name}_renamed"
    if action == "rename_alias":
        fields[index]["aliases"] = [old_name]
    return Mutation(action, reader, action == "rename_alias", f"{path}.{old_name}_renamed")


def change_namespace(data: st.DataObject, writer: dict) -> Mutation:
    """Move the top record to another namespace, with or without an alias to the old full name."""
    reader = copy.deepcopy(writer)
    reader["namespace"] = "tape.moved"
    with_alias = data.draw(st.booleans())
    if with_alias:
        reader["aliases"] = [TOP]
    # Nested named types inherit the new namespace too; aliases only rename the top record.
    nested_named = any(isinstance(s.parent[s.key], dict) and "name" in s.parent[s.key] for s in sites(reader, TOP))
    return Mutation("namespace", reader, with_alias and not nested_named, "tape.moved.W", enforced_by_fastavro=False)


MUTATORS: dict[str, Callable[[st.DataObject, dict], Mutation]] = {
    "promote": lambda d, w: retype(d, w, "promote"),
    "demote": lambda d, w: retype(d, w, "demote"),
    "demote_near": lambda d, w: retype(d, w, "demote_near"),
    "widen_union": widen_union,
    "narrow_union": narrow_union,
    "enum_add": lambda d, w: change_enum(d, w, "add"),
    "enum_remove": lambda d, w: change_enum(d, w, "remove"),
    "enum_remove_with_default": lambda d, w: change_enum(d, w, "remove_with_default"),
    "decimal": change_decimal,
    "add_default": lambda d, w: change_fields(d, w, "add_default"),
    "add_no_default": lambda d, w: change_fields(d, w, "add_no_default"),
    "remove": lambda d, w: change_fields(d, w, "remove"),
    "rename_alias": lambda d, w: change_fields(d, w, "rename_alias"),
    "rename_no_alias": lambda d, w: change_fields(d, w, "rename_no_alias"),
    "namespace": change_namespace,
}

WITNESS_TRIES = 60
WITNESS_MORE = 3000  # datums drawn at most when looking for the one a rejected reader cannot read


def decode_failures(writer: dict, reader: dict, datums: list[Any]) -> list[Exception]:
    """Decode every datum; collect fastavro's resolution errors."""
    failures = []
    for datum in datums:
        payload = encode(writer, datum)
        try:
            decode(payload, writer, reader)
        except Exception as error:  # noqa: BLE001 - any decode failure is what we look for
            failures.append(error)
    return failures


@pytest.mark.parametrize("mutator", sorted(MUTATORS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(writer=writer_schemas(), data=st.data())
def test_can_read_agrees_with_fastavro_resolution(mutator: str, writer: dict, data: st.DataObject) -> None:
    """Compatible => fastavro decodes every datum to a reader-valid value; incompatible => some datum fails."""
    mutation = MUTATORS[mutator](data, writer)
    problems = can_read(mutation.reader, writer)
    note = f"{mutation.name}: {[str(p) for p in problems]}"
    event(f"{mutation.name} -> {'compatible' if not problems else 'incompatible'}")
    assert can_read(writer, writer) == [], "a schema must read itself"
    assert (problems == []) == mutation.compatible, note
    assert all(p.path.startswith(mutation.path) for p in problems), note
    rng = random.Random(repr(writer) + repr(mutation.reader))
    datums = [random_datum(writer, rng) for _ in range(WITNESS_TRIES)]
    if not problems:
        for datum in datums:
            decoded = decode(encode(writer, datum), writer, mutation.reader)
            assert validate(decoded, fastavro.parse_schema(copy.deepcopy(mutation.reader)), raise_errors=False), note
    elif mutation.enforced_by_fastavro:
        # a witness may sit deep under optional branches (1 in 12 datums for an enum symbol two unions down):
        # draw more until one fails, rather than let the draw decide the verdict
        failed = decode_failures(writer, mutation.reader, datums)
        for _ in range(WITNESS_MORE // WITNESS_TRIES):
            if failed:
                break
            failed = decode_failures(writer, mutation.reader, [random_datum(writer, rng) for _ in range(WITNESS_TRIES)])
        assert failed, f"can_read rejected but fastavro read all: {note}"


@pytest.mark.parametrize("mutator", sorted(MUTATORS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(writer=writer_schemas(), data=st.data())
def test_can_read_never_accepts_a_reader_fastavro_rejects(mutator: str, writer: dict, data: st.DataObject) -> None:
    """Soundness alone, on the reverse direction too (old reader, new writer), independent of the oracle."""
    mutation = MUTATORS[mutator](data, writer)
    rng = random.Random(1)
    for reader, source in ((mutation.reader, writer), (writer, mutation.reader)):
        if can_read(reader, source) == []:
            datums = [random_datum(source, rng) for _ in range(20)]
            assert not decode_failures(source, reader, datums), f"{mutation.name}: accepted but fastavro failed"
