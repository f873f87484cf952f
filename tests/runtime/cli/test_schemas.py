"""`tape schemas list|show|check`."""
import json
import shutil

import pytest

from eventstore.catalog import Catalog
from schemas import SCHEMA_DIR


@pytest.fixture
def written(tape, write_trades):
    """A namespace written with the shipped schemas (TradeTick, InstrumentDefined, HistoryImported)."""
    r = tape("ingest", "csv", str(write_trades(n=10)), "--namespace", "hist", "--instrument", "BTCUSDT.BINANCE",
             "--kind", "trades")
    assert r.exit_code == 0, r.output


@pytest.fixture
def copy_dir(tmp_path):
    target = tmp_path / "schemas-copy"
    shutil.copytree(SCHEMA_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def add_field(path, field):
    schema = json.loads(path.read_text())
    schema["fields"].append(field)
    path.write_text(json.dumps(schema, indent=2))


def test_list_and_show(tape):
    catalog = Catalog.load()
    r = tape("schemas", "list")
    assert r.exit_code == 0
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines() if line.startswith("tape.")}
    assert len(rows) == len(catalog.types)
    bar = catalog.get("Bar")
    assert rows["tape.market.Bar"] == ["market", f"{bar.fingerprint:016x}"]
    shown = tape("schemas", "show", "Bar")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout) == bar.schema
    assert json.loads(shown.stdout)["fields"][0]["type"]["name"] == "tape.Envelope"  # expanded
    missing = tape("schemas", "show", "Nope")
    assert missing.exit_code == 2 and missing.stderr.startswith("error: unknown event type 'Nope'")


def test_check_passes_on_shipped_schemas(tape, written):
    r = tape("schemas", "check")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("ok: ") and "3 checked against 3 registered version(s) in 1 namespace(s)" in r.stdout


def test_check_fails_on_field_without_default(tape, written, copy_dir):
    add_field(copy_dir / "market" / "TradeTick.avsc", {"name": "venue_seq", "type": "long"})
    r = tape("schemas", "check", str(copy_dir))
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    path, _, reason = lines[0].partition(": ")
    assert path == "tape.market.TradeTick.venue_seq"
    assert "no default" in reason
    assert "1 incompatibility" in r.stderr


def test_check_accepts_compatible_change_and_ignores_unregistered_types(tape, written, copy_dir):
    add_field(copy_dir / "market" / "TradeTick.avsc", {"name": "venue_seq", "type": ["null", "long"], "default": None})
    # OrderFilled was never written in this store: nothing to be compatible with
    add_field(copy_dir / "executions" / "OrderFilled.avsc", {"name": "extra", "type": "long"})
    r = tape("schemas", "check", str(copy_dir))
    assert r.exit_code == 0, r.output


def test_check_reports_type_change(tape, written, copy_dir):
    path = copy_dir / "system" / "HistoryImported.avsc"
    schema = json.loads(path.read_text())
    for f in schema["fields"]:
        if f["name"] == "rows":
            f["type"] = "int"
    path.write_text(json.dumps(schema))
    r = tape("schemas", "check", str(copy_dir))
    assert r.exit_code == 1
    assert r.stdout.startswith("tape.system.HistoryImported.rows: ") and "long" in r.stdout and "int" in r.stdout


def test_check_invalid_schema_file_fails_cleanly(tape, written, copy_dir):
    (copy_dir / "market" / "Bar.avsc").write_text("{ not json")
    r = tape("schemas", "check", str(copy_dir))
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and "Bar.avsc" in r.stderr and r.stderr.count("\n") == 1
    (copy_dir / "market" / "Bar.avsc").write_text(json.dumps({"type": "record", "name": "Bar", "namespace": "tape.market",
                                                              "fields": [{"name": "x", "type": "nosuchtype"}]}))
    r = tape("schemas", "check", str(copy_dir))
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    (copy_dir / "types" / "Balance.avsc").write_text("[1]")
    r = tape("schemas", "check", str(copy_dir))
    assert r.exit_code == 2 and "Balance.avsc: not a named Avro schema" in r.stderr and r.stderr.count("\n") == 1


def test_check_missing_dir_or_store(tape, tmp_path, written):
    r = tape("schemas", "check", str(tmp_path / "nope"))
    assert r.exit_code == 2 and "does not exist" in r.stderr
    r = tape("schemas", "check", store_url=f"file:{tmp_path}/no-store")
    assert r.exit_code == 2 and r.stderr.startswith("error: store ") and "does not exist" in r.stderr
