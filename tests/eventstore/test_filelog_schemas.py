"""Schema evolution through the file log's own registry, and a registry that lacks a writer schema."""
from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from eventstore.catalog import Catalog
from eventstore.errors import UnknownSchema
from eventstore.store import Log
from eventstore.writer import Draft
from schemas import SCHEMA_DIR


def _catalog_copy(tmp_path: Path, name: str, extra_field: dict | None = None) -> Catalog:
    d = tmp_path / name
    shutil.copytree(SCHEMA_DIR, d, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    if extra_field is not None:
        path = d / "market" / "TradeTick.avsc"
        schema = json.loads(path.read_text())
        schema["fields"].append(extra_field)
        path.write_text(json.dumps(schema))
    return Catalog.load(d)


def _tick(i: int, **extra) -> Draft:
    payload = {"instrument_id": "BTCUSDT", "price": Decimal(f"{100 + i}.5"), "quantity": Decimal("0.001"), **extra}
    return Draft("TradeTick", payload, ts_event=1_000 + i, key="BTCUSDT")


VENUE = {"name": "venue", "type": "string", "default": "UNKNOWN", "doc": "Venue that printed the trade."}


def test_old_events_read_with_new_schema_get_the_default(tmp_path, store_dir):
    v1 = _catalog_copy(tmp_path, "v1")
    v2 = _catalog_copy(tmp_path, "v2", VENUE)
    assert v1.get("TradeTick").fingerprint != v2.get("TradeTick").fingerprint
    url = f"file:{store_dir}"

    with Log.open(url, catalog=v1).writer("evo", fsync="never") as w:
        w.append([_tick(0), _tick(1)])
    with Log.open(url, catalog=v2).writer("evo", fsync="never") as w:
        w.append([_tick(2, venue="BINANCE")])

    new = list(Log.open(url, catalog=v2).replay("evo"))
    assert [e.seq for e in new] == [1, 2, 3]
    assert [e.data["venue"] for e in new] == ["UNKNOWN", "UNKNOWN", "BINANCE"]
    assert [e.data["price"] for e in new] == [Decimal("100.5"), Decimal("101.5"), Decimal("102.5")]
    # both writer schemas travel with the log
    registry = {int(p.stem, 16) for p in (store_dir / "evo" / "_schemas").glob("*.avsc")}
    assert {v1.get("TradeTick").fingerprint, v2.get("TradeTick").fingerprint} <= registry

    # a reader still on v1 reads the v2 event too, without the field it does not know
    old = list(Log.open(url, catalog=v1).replay("evo"))
    assert [sorted(e.data) for e in old] == [sorted(old[0].data)] * 3
    assert "venue" not in old[2].data and old[2].data["price"] == Decimal("102.5")


def test_unknown_fingerprint_names_it(store_dir, file_log):
    with file_log.writer("reg", fsync="never") as w:
        w.append([_tick(0), Draft("Heartbeat", {"component": "risk"}, ts_event=5, key="risk")])
    fp = file_log.catalog.get("TradeTick").fingerprint
    (store_dir / "reg" / "_schemas" / f"{fp:016x}.avsc").unlink()

    # today's catalog knows TradeTick, but only the registry says how these bytes were written
    events = list(Log.open(f"file:{store_dir}").replay("reg"))
    assert [e.name for e in events] == ["TradeTick", "Heartbeat"]
    assert events[1].data["component"] == "risk"
    with pytest.raises(UnknownSchema) as err:
        events[0].data
    assert f"{fp:016x}" in str(err.value)
    assert "\n" not in str(err.value)
