"""`tape audit`: order chains and fills of real backtests, and hash-chain verification of real file logs."""
from __future__ import annotations

import csv
import io
import json
import re
import struct
import sys
import zlib
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventstore.batch import HEADER, RECORD, encode_batch, iter_records, parse_header
from eventstore.store import Log
from runtime.audit.chain import order_chain
from runtime.audit.integrity import verify
from runtime.backtest.runner import BacktestSpec, run_backtest
from runtime.cli.app import app
from runtime.times import human_ns

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "eventstore"))
import logkit  # noqa: E402

from handlers.queue import parse_queue_config  # noqa: E402
from handlers.risk.limits import parse_risk_config  # noqa: E402
from handlers.venues.sim.config import parse_venue_config  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "btcusdt-1m.csv"
IID = "BTCUSDT.BINANCE"
SPEC = dict(source="src", strategy="sma_cross", params={"fast": "5", "slow": "20", "quantity": "0.5"},
            venue=parse_venue_config({"taker_fee": "0.001", "maker_fee": "0.0005", "starting_balances": {"USDT": "100000"}}))
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _tape(store: Path, *args: str):
    return CliRunner().invoke(app, ["--store", f"file:{store}", *args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the example history (src), a filled run (bt-c) and a risk-rejected run (bt-risk)."""
    root = tmp_path_factory.mktemp("audit")
    store = root / "store"
    csv_path = root / "bars.csv"
    csv_path.write_text("\n".join(EXAMPLE.read_text().splitlines()[:2001]) + "\n")
    r = _tape(store, "ingest", "csv", str(csv_path), "--namespace", "src", "--instrument", IID, "--kind", "bars",
              "--timeframe", "1m", "--base", "BTC", "--quote", "USDT")
    assert r.exit_code == 0, r.output
    log = Log.open(f"file:{store}")
    run_backtest(log, BacktestSpec(**SPEC), run_id="bt-c")
    run_backtest(log, BacktestSpec(**{**SPEC, "risk": parse_risk_config({"max_order_quantity": "0.1"})}), run_id="bt-risk")
    return store


def _fills(store: Path, ns: str) -> list:
    return list(Log.open(f"file:{store}").replay(ns, types=["OrderFilled"]))


# ---- audit order -------------------------------------------------------------------------------------------


def test_order_chain_of_a_filled_order(runs: Path) -> None:
    fill = _fills(runs, "bt-c")[0]
    cid = fill.data["client_order_id"]
    r = _tape(runs, "audit", "order", cid, "--json")
    assert r.exit_code == 0, r.output
    steps = json.loads(r.stdout)
    summary = steps.pop()
    types = [s["type"] for s in steps]
    assert types[0] == "Bar" and steps[0]["step"] == "trigger"
    order = ["OrderIntent", "RiskAccepted", "OrderReleased", "OrderSubmitted", "OrderFilled"]
    assert [t for t in types if t in order] == order  # in that order, once each (one fill of a market order)
    intent = steps[1]
    assert intent["type"] == "OrderIntent" and intent["data"]["client_order_id"] == cid
    # the trigger is the source's market event named by the intent's causation id, decoded
    assert steps[0]["event_id"] == intent["causation_id"] and steps[0]["namespace"] == "src"
    src_seq = int(intent["causation_id"].split(":")[1])
    bar = next(iter(Log.open(f"file:{runs}").replay("src", from_seq=src_seq, to_seq=src_seq)))
    assert bar.name == "Bar" and steps[0]["data"]["close"] == format(bar.data["close"].normalize(), "f")
    assert f"close {steps[0]['data']['close']}" in steps[0]["detail"]
    for s in steps[1:]:
        assert s["namespace"] == "bt-c" and s["correlation_id"] == cid
        assert s["event_id"] == f"bt-c:{s['seq']}"
        assert s["latency_ns"] is not None and s["latency_ns"] >= 0
    assert [s["seq"] for s in steps[1:]] == sorted(s["seq"] for s in steps[1:])
    risk = next(s for s in steps if s["type"] == "RiskAccepted")
    assert risk["causation_id"] == intent["event_id"] and risk["data"]["intent_id"] == intent["event_id"]
    filled = next(s for s in steps if s["type"] == "OrderFilled")
    assert filled["event_id"] == f"bt-c:{fill.seq}"
    assert filled["data"]["last_price"] == format(fill.data["last_price"].normalize(), "f")
    assert summary["step"] == "summary" and summary["status"] == "FILLED"
    assert Decimal(summary["filled_quantity"]) == fill.data["last_quantity"]
    assert Decimal(summary["avg_price"]) == fill.data["last_price"]
    assert Decimal(summary["fees"]["USDT"]) == fill.data["fee"]
    # every step shows ISO times
    assert all(s["time_init"].endswith("Z") and s["time_event"].endswith("Z") for s in steps)


def test_order_found_by_any_event_id_of_its_chain(runs: Path) -> None:
    fill = _fills(runs, "bt-c")[1]
    cid = fill.data["client_order_id"]
    by_cid = _tape(runs, "audit", "order", cid, "--json")
    by_event = _tape(runs, "audit", "order", f"bt-c:{fill.seq}", "--json")
    by_ns = _tape(runs, "audit", "order", cid, "--namespace", "bt-c", "--json")
    assert by_cid.exit_code == by_event.exit_code == by_ns.exit_code == 0
    assert json.loads(by_cid.stdout) == json.loads(by_event.stdout) == json.loads(by_ns.stdout)
    # a market event that triggered orders in two runs is ambiguous without --namespace
    trigger = json.loads(by_cid.stdout)[0]["event_id"]
    narrowed = _tape(runs, "audit", "order", trigger, "--namespace", "bt-c", "--json")
    assert narrowed.exit_code == 0, narrowed.output
    assert json.loads(narrowed.stdout)[-1]["client_order_id"] == cid


def test_order_table_shows_every_step_and_the_summary(runs: Path) -> None:
    cid = _fills(runs, "bt-c")[0].data["client_order_id"]
    r = _tape(runs, "audit", "order", cid)
    assert r.exit_code == 0, r.output
    out = r.stdout
    for text in ("Bar", "close", "OrderIntent", "RiskAccepted", "OrderReleased", "OrderSubmitted", "OrderFilled",
                 "status FILLED", "avg price", "fees", "TAKER"):
        assert text in out, text
    assert out.index("OrderIntent") < out.index("RiskAccepted") < out.index("OrderSubmitted") < out.index("OrderFilled")


def test_risk_rejected_order_shows_rule_limit_and_value(runs: Path) -> None:
    log = Log.open(f"file:{runs}")
    rejected = next(iter(log.replay("bt-risk", types=["RiskRejected"])))
    cid = rejected.data["client_order_id"]
    audit = order_chain(log, cid)
    assert audit.namespace == "bt-risk"
    assert [s.type for s in audit.steps] == ["Bar", "OrderIntent", "RiskRejected"]
    assert audit.summary["status"] == "RISK_REJECTED"
    s = audit.summary
    assert (s["rule"], s["limit"], s["value"]) == ("max_order_quantity", "0.1", "0.5")
    r = _tape(runs, "audit", "order", cid)
    assert r.exit_code == 0, r.output
    assert "rule max_order_quantity, limit 0.1, value 0.5" in r.stdout
    assert "RISK_REJECTED" in r.stdout
    steps = json.loads(_tape(runs, "audit", "order", cid, "--json").stdout)
    assert steps[2]["data"]["rule"] == "max_order_quantity" and steps[2]["data"]["limit"] == "0.1"
    assert steps[2]["data"]["value"] == "0.5"


def test_unknown_order_is_one_line_naming_it(runs: Path) -> None:
    for ident in ("t000000-5", "no-such-order", "bt-c:999999"):
        r = _tape(runs, "audit", "order", ident)
        assert r.exit_code == 2
        assert ident in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.output


def test_human_latency() -> None:
    assert [human_ns(x) for x in (0, 850, 12_500, 3_200_000, 60_000_000_000, -1500)] == \
        ["0", "850 ns", "12.5 µs", "3.2 ms", "60 s", "-1.5 µs"]
    assert [human_ns(x * 1_000_000_000) for x in (61, 3600, 90061, 1_198_080)] == \
        ["1m 1s", "1h", "1d 1h 1m", "13d 20h 48m"]


# ---- audit trades ------------------------------------------------------------------------------------------


def _expected_rows(store: Path, ns: str) -> list[dict]:
    return [{"seq": e.seq, "ts_event": e.ts_event, "client_order_id": e.data["client_order_id"],
             "trade_id": e.data["trade_id"], "side": e.data["side"], "instrument_id": e.data["instrument_id"],
             "price": e.data["last_price"], "quantity": e.data["last_quantity"], "fee": e.data["fee"],
             "fee_currency": e.data["fee_currency"], "liquidity_side": e.data["liquidity_side"]}
            for e in _fills(store, ns)]


def _normalize(row: dict) -> dict:
    for k in ("price", "quantity", "fee"):
        assert NUMBER.match(row[k]), row[k]  # exact text, never an exponent
    return {"seq": int(row["seq"]), "ts_event": int(row["ts_event"]), "client_order_id": row["client_order_id"],
            "trade_id": row["trade_id"], "side": row["side"], "instrument_id": row["instrument_id"],
            "price": Decimal(row["price"]), "quantity": Decimal(row["quantity"]), "fee": Decimal(row["fee"]),
            "fee_currency": row["fee_currency"], "liquidity_side": row["liquidity_side"]}


def test_trades_csv_and_json_equal_the_fill_events(runs: Path) -> None:
    expected = _expected_rows(runs, "bt-c")
    assert len(expected) > 10
    r = _tape(runs, "audit", "trades", "bt-c", "--csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert r.stdout.splitlines()[0].startswith("namespace,time,ts_event,instrument_id,side,price,quantity,fee")
    assert [_normalize(x) for x in rows] == expected
    j = _tape(runs, "audit", "trades", "bt-c", "--json")
    assert j.exit_code == 0, j.output
    items = json.loads(j.stdout)
    assert [_normalize({k: str(v) for k, v in x.items()}) for x in items] == expected
    assert all(x["namespace"] == "bt-c" and x["time"].endswith("Z") for x in items)
    # every run namespace when NS is omitted (bt-risk has no fill)
    every = json.loads(_tape(runs, "audit", "trades", "--json").stdout)
    assert every == items
    table = _tape(runs, "audit", "trades", "bt-c")
    assert table.exit_code == 0 and f"{len(expected)} fills" in table.stdout


def test_trades_time_slice(runs: Path) -> None:
    expected = _expected_rows(runs, "bt-c")
    lo, hi = expected[3]["ts_event"], expected[8]["ts_event"]
    r = _tape(runs, "audit", "trades", "bt-c", "--from", str(lo), "--to", str(hi), "--json")
    assert r.exit_code == 0, r.output
    got = [x["seq"] for x in json.loads(r.stdout)]
    assert got == [e["seq"] for e in expected if lo <= e["ts_event"] < hi] and got
    bad = _tape(runs, "audit", "trades", "bt-c", "--from", "yesterday")
    assert bad.exit_code == 2 and "--from" in bad.stderr


# ---- audit verify ------------------------------------------------------------------------------------------


def _build(root: Path, ns: str = "log", steps: int = 12, group: int = 1) -> Path:
    """A namespace written by the real writer: `steps` marked steps (4 events over 4 topics each)."""
    log = logkit.open_log(root)
    with log.writer(ns, fsync="never") as w:
        for i in range(0, steps, group):
            w.append_steps([logkit.step(j) for j in range(i, min(steps, i + group))])
    return root / ns


def _batches(path: Path) -> list[tuple]:
    """(info, records, [(seq, value start, value length)]) of every batch of a segment file."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        info = parse_header(data, pos, len(data))
        spans, p = [], pos + HEADER.size
        for _ in range(info.count):
            vlen, seq, _, klen, tlen = RECORD.unpack_from(data, p)
            start = p + RECORD.size + klen + tlen
            spans.append((seq, start, vlen))
            p = start + vlen
        out.append((info, list(iter_records(data, info)), spans))
        pos += info.size
    return out


def _fix_crc(data: bytearray, pos: int) -> None:
    length = struct.unpack_from(">I", data, pos)[0]
    struct.pack_into(">I", data, pos + 4, zlib.crc32(bytes(data[pos + 8 : pos + 4 + length])))


def _flip(path: Path, seq: int, needle: bytes, *, fix_crc: bool) -> int:
    """Flip one bit of the first byte of `needle` inside the value of record `seq`; returns the batch position."""
    data = bytearray(path.read_bytes())
    for info, _, spans in _batches(path):
        for s, start, vlen in spans:
            if s == seq:
                at = bytes(data[start : start + vlen]).index(needle)
                data[start + at] ^= 0x01
                if fix_crc:
                    _fix_crc(data, info.position)
                path.write_bytes(bytes(data))
                return info.position
    raise AssertionError(f"seq {seq} not in {path}")


def _verify(root: Path, ns: str = "log"):
    r = _tape(root, "audit", "verify", ns)
    return r, verify(logkit.open_log(root), ns)


def test_verify_ok_on_untouched_logs(runs: Path, tmp_path: Path) -> None:
    for ns in ("src", "bt-c", "bt-risk"):
        r = _tape(runs, "audit", "verify", ns)
        assert r.exit_code == 0, r.output
        assert r.stdout.startswith(f"OK {ns}:") and "0 torn steps" in r.stdout
    _build(tmp_path, steps=30, group=4)
    r, res = _verify(tmp_path)
    assert r.exit_code == 0 and res.ok and res.events == 120 and res.commits == 8 and res.last_seq == 120
    assert "120 events, 8 commits, 0 torn steps" in r.stdout
    j = json.loads(_tape(tmp_path, "audit", "verify", "log", "--json").stdout)
    assert j["ok"] and j["break"] is None and len(j["head"]) == 64


def test_verify_reports_a_flipped_byte_with_a_bad_crc_as_a_corrupt_batch(tmp_path: Path) -> None:
    ns_dir = _build(tmp_path)
    seg = logkit.segment(ns_dir, "executions-0")
    seq = 4 * 5 + 3  # the fill of step 5 (not the last batch of the partition)
    pos = _flip(seg, seq, b"s5/", fix_crc=False)
    r, res = _verify(tmp_path)
    assert r.exit_code == 1, r.output
    assert res.brk.kind == "corrupt batch"
    assert str(seg) in r.stdout and f"byte {pos}" in r.stdout and "BROKEN" in r.stdout


@pytest.mark.parametrize("index, kind", [(2, "prev_hash mismatch"), (3, "commit hash mismatch")])
def test_verify_reports_a_flipped_byte_with_a_fixed_crc_at_its_seq(tmp_path: Path, index: int, kind: str) -> None:
    ns_dir = _build(tmp_path)
    part, needle = {2: ("executions-0", b"s5/"), 3: ("system-0", b"s5/")}[index]
    seq = 4 * 5 + index + 1  # step 5: index 2 is mid-step (the fill), index 3 its last event (the heartbeat)
    _flip(logkit.segment(ns_dir, part), seq, needle, fix_crc=True)
    # the record still decodes and its batch checks out: only the hash chain can tell
    with pytest.raises(AssertionError, match="hash chain broken"):
        logkit.check_chain(logkit.open_log(tmp_path).replay("log"))
    r, res = _verify(tmp_path)
    assert r.exit_code == 1, r.output
    assert (res.brk.kind, res.brk.seq) == (kind, seq)
    assert f"BROKEN log at seq {seq}: {kind}" in r.stdout and f"intact up to seq {seq - 1}" in r.stdout
    assert "expected" in r.stdout and "found" in r.stdout


def test_verify_blames_the_record_whose_prev_hash_was_altered(tmp_path: Path) -> None:
    ns_dir = _build(tmp_path)
    log = logkit.open_log(tmp_path)
    events = list(log.replay("log"))
    target = events[4 * 5 + 1]  # mid-step: the intent of step 5
    prev_hash = target.envelope["prev_hash"]
    _flip(logkit.segment(ns_dir, "intents-0"), target.seq, prev_hash[:4], fix_crc=True)
    r, res = _verify(tmp_path)
    assert r.exit_code == 1
    assert (res.brk.kind, res.brk.seq) == ("prev_hash mismatch", target.seq)
    assert res.brk.expected == prev_hash  # what the previous event hashes to
    assert res.brk.found != prev_hash


def test_verify_reports_an_event_removed_from_a_batch(tmp_path: Path) -> None:
    ns_dir = _build(tmp_path, steps=20, group=5)  # batches of 5 records per partition
    seg = logkit.segment(ns_dir, "market-0")
    data = seg.read_bytes()
    info, records, _ = _batches(seg)[1]  # second commit's market batch
    victim = records[2]
    rewritten = encode_batch(info.base_offset, [x for x in records if x.seq != victim.seq])  # count and CRC fixed
    seg.write_bytes(data[: info.position] + rewritten + data[info.position + info.size :])
    r, res = _verify(tmp_path)
    assert r.exit_code == 1, r.output
    assert (res.brk.kind, res.brk.seq) == ("missing event", victim.seq)
    assert f"BROKEN log at seq {victim.seq}: missing event" in r.stdout


def test_verify_reports_a_dropped_batch_of_a_multi_record_commit(tmp_path: Path) -> None:
    ns_dir = _build(tmp_path, steps=20, group=5)
    seg = logkit.segment(ns_dir, "intents-0")
    data = seg.read_bytes()
    info, records, _ = _batches(seg)[2]
    seg.write_bytes(data[: info.position] + data[info.position + info.size :])
    r, res = _verify(tmp_path)
    assert r.exit_code == 1, r.output
    assert (res.brk.kind, res.brk.seq) == ("missing event", records[0].seq)


@pytest.mark.parametrize("torn_step", [0, 3])
def test_verify_reports_a_torn_step_as_information(tmp_path: Path, torn_step: int) -> None:
    log = logkit.open_log(tmp_path)
    w = log.writer("log", fsync="never")
    for i in range(torn_step):
        w.append(logkit.step(i))
    w.backend.journal.append = lambda records: None  # killed between the partition appends and the commit
    w.append(logkit.step(torn_step))
    w.close()
    with log.writer("log", fsync="never") as w2:  # a new writer goes on after the torn seqs
        for i in range(torn_step + 1, torn_step + 4):
            w2.append(logkit.step(i))
    delivered = list(log.replay("log"))
    logkit.check_chain(delivered)
    assert torn_step not in [s for s, _ in logkit.steps_of(delivered)]
    r, res = _verify(tmp_path)
    assert r.exit_code == 0, r.output
    first = 4 * torn_step + 1
    assert res.ok and [(t.first, t.last, t.records) for t in res.torn] == [(first, first + 3, 4)]
    assert res.events == len(delivered) == 4 * (torn_step + 3) and res.commits == torn_step + 3
    assert f"torn step: seqs {first}..{first + 3} (4 records never committed" in r.stdout
    assert "1 torn step" in r.stdout and r.stdout.splitlines()[-1].startswith("OK log:")


def test_verify_unknown_namespace_is_one_line(tmp_path: Path) -> None:
    _build(tmp_path, steps=1)
    r = _tape(tmp_path, "audit", "verify", "nope")
    assert r.exit_code == 2 and "nope" in r.stderr and r.stderr.count("\n") == 1


def test_sql_orders_and_audit_show_the_same_status_names(runs: Path, tmp_path: Path) -> None:
    """One lifecycle vocabulary: the read model's status of every order is the one `tape audit order` shows."""
    import sqlalchemy as sa

    from migrations import upgrade
    from projections.sql import models as m
    from projections.sql.db import make_engine
    from projections.sql.projector import project

    log = Log.open(f"file:{runs}")
    run_backtest(log, BacktestSpec(**{**SPEC, "strategy": "market_maker", "params": {"quantity": "0.01"},
                                      "risk": parse_risk_config({"max_open_orders": 1}),
                                      "queue": parse_queue_config({"rate_per_second": 1, "burst": 1})}),
                 run_id="bt-mm")
    engine = make_engine(f"sqlite:///{tmp_path / 'read.sqlite'}")
    upgrade(engine)
    seen: set[str] = set()
    for ns in ("bt-c", "bt-risk", "bt-mm"):
        project(log, engine, ns)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(m.orders.c.client_order_id, m.orders.c.status)
                                .where(m.orders.c.namespace == ns)).all()
        assert rows
        by_status: dict[str, list[str]] = {}
        for cid, status in sorted(rows):
            by_status.setdefault(status, []).append(cid)
        for status, cids in by_status.items():  # every status the table holds, a few orders of each
            for cid in cids[:3] + cids[-2:]:
                assert order_chain(log, cid, ns).summary["status"] == status, (ns, cid)
            seen.add(status)
    engine.dispose()
    assert {"FILLED", "RISK_REJECTED", "CANCELED"} <= seen, seen
