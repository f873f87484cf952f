"""`tape log ...` on a small ingested namespace, in-process through typer's CliRunner."""
import json
from decimal import Decimal

import pytest

from eventstore.store import Log
from runtime.times import format_ns

JAN1 = 1_704_067_200 * 10**9
PRICES = ["50000.5", "0.00000001", "12345678901234567890.123456789012345678", "42000", "1.10"]


@pytest.fixture
def ns(tape, write_text):
    """5 trades one second apart from 2024-01-01T00:00:00Z, in 2 batches (3 + 2)."""
    lines = ["Timestamp,Price,Qty,Side,Trade_Id"]
    for i, price in enumerate(PRICES):
        lines.append(f"2024-01-01T00:00:0{i}Z,{price},0.5,{'buy' if i % 2 else 'sell'},t{i}")
    path = write_text("t.csv", "\n".join(lines) + "\n")
    r = tape("ingest", "csv", str(path), "--namespace", "hist", "--instrument", "BTCUSDT.BINANCE",
             "--kind", "trades", "--batch-rows", "3")
    assert r.exit_code == 0, r.output
    assert "5 rows read, 8 events written, 0 skipped" in r.stdout
    return "hist"


def jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


def test_dump_json_is_exact_and_machine_readable(tape, ns):
    r = tape("log", "dump", ns, "--json")
    assert r.exit_code == 0
    events = jsonl(r.stdout)
    assert [e["seq"] for e in events] == list(range(1, 9))
    assert [e["type"] for e in events] == ["InstrumentDefined", "TradeTick", "TradeTick", "TradeTick",
                                          "HistoryImported", "TradeTick", "TradeTick", "HistoryImported"]
    trades = [e for e in events if e["type"] == "TradeTick"]
    # Decimals: exact strings, normalized, never exponent form
    assert [t["data"]["price"] for t in trades] == ["50000.5", "0.00000001", "12345678901234567890.123456789012345678",
                                                  "42000", "1.1"]
    assert all(isinstance(t["data"]["quantity"], str) and t["data"]["quantity"] == "0.5" for t in trades)
    assert [Decimal(t["data"]["price"]) for t in trades] == [Decimal(p) for p in PRICES]
    # times as int ns, bytes as hex, enums as symbols
    assert [t["ts_event"] for t in trades] == [JAN1 + i * 10**9 for i in range(5)]
    assert trades[0]["envelope"]["ts_init"] == trades[0]["ts_event"]
    assert bytes.fromhex(trades[0]["envelope"]["prev_hash"]) and len(trades[0]["envelope"]["prev_hash"]) == 64
    assert [t["data"]["aggressor_side"] for t in trades[:2]] == ["SELLER", "BUYER"]
    assert events[0]["envelope"]["prev_hash"] == ""
    hist = events[4]["data"]
    assert (hist["rows"], hist["first_row"], hist["last_row"], hist["file_name"]) == (3, 1, 3, "t.csv")
    # deterministic: a second dump is identical
    assert tape("log", "dump", ns, "--json").stdout == r.stdout


def test_dump_human_table(tape, ns):
    r = tape("log", "dump", ns)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["seq", "time", "type", "key", "data"]
    assert len(lines) == 9
    assert lines[2].split()[:4] == ["2", "2024-01-01T00:00:00Z", "TradeTick", "BTCUSDT.BINANCE"]
    assert "price=50000.5" in lines[2] and "aggressor_side=SELLER" in lines[2] and "trade_id=t0" in lines[2]


def test_dump_filters(tape, ns):
    def seqs(*args):
        r = tape("log", "dump", ns, "--json", *args)
        assert r.exit_code == 0, r.output
        return [e["seq"] for e in jsonl(r.stdout)]

    assert seqs("--type", "HistoryImported") == [5, 8]
    assert seqs("--type", "HistoryImported", "--type", "InstrumentDefined") == [1, 5, 8]
    assert seqs("--seq-from", "3", "--seq-to", "6") == [3, 4, 5, 6]
    assert seqs("--limit", "2") == [1, 2]
    assert seqs("--limit", "0") == []
    # --from inclusive, --to exclusive, in every TIME form
    assert seqs("--type", "TradeTick", "--from", "2024-01-01T00:00:01Z", "--to", "2024-01-01T00:00:03Z") == [3, 4]
    assert seqs("--type", "TradeTick", "--from", "2024-01-01T01:00:01+01:00", "--to", str(JAN1 + 3 * 10**9)) == [3, 4]
    assert seqs("--type", "TradeTick", "--from", "2024-01-01 00:00:03") == [6, 7]
    assert seqs("--type", "TradeTick", "--to", "2024-01-01") == []
    assert seqs("--type", "TradeTick", "--from", str(JAN1 + 4 * 10**9 + 1)) == []


def test_dump_bad_time_is_one_line(tape, ns):
    r = tape("log", "dump", ns, "--from", "last tuesday")
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: --from: bad time 'last tuesday'") and "ISO-8601" in r.stderr
    assert "epoch nanoseconds" in r.stderr and "Traceback" not in r.output


def test_dump_unknown_type_and_namespace(tape, ns):
    r = tape("log", "dump", ns, "--type", "Nope")
    assert r.exit_code == 2 and r.stderr.startswith("error: unknown event type 'Nope'")
    r = tape("log", "dump", "other")
    assert r.exit_code == 2 and r.stderr.startswith("error: no namespace 'other'") and r.stderr.count("\n") == 1


def test_namespaces(tape, ns):
    r = tape("log", "namespaces")
    assert r.exit_code == 0
    row = next(line.split() for line in r.stdout.splitlines() if line.startswith("hist"))
    assert row == ["hist", "8", "8", format_ns(JAN1), format_ns(JAN1 + 4 * 10**9)]


def test_topics(tape, ns):
    r = tape("log", "topics", ns)
    assert r.exit_code == 0
    rows = {line.split()[1]: line.split() for line in r.stdout.splitlines() if line.startswith("hist ")}
    assert rows["hist.market"][3] == "6"  # 5 trades + the instrument definition
    assert rows["hist.system"][3] == "2"  # one HistoryImported per batch
    assert rows["hist.executions"][3] == "0"
    assert int(rows["hist.market"][4]) > int(rows["hist.system"][4]) > 0
    assert tape("log", "topics").stdout == r.stdout  # all namespaces: only this one


def test_stats(tape, ns, store):
    r = tape("log", "stats", ns)
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    head = next(line.split() for line in lines if line.startswith("hist"))
    expected = Log.open(f"file:{store}").stats(ns)
    assert head == ["hist", "8", str(expected.bytes), "1", "8", format_ns(JAN1), format_ns(JAN1 + 4 * 10**9)]
    per_type = {line.split()[0]: line.split()[1:] for line in lines if line.split() and line.split()[0] in
                ("TradeTick", "HistoryImported", "InstrumentDefined")}
    assert per_type["TradeTick"][0] == "5" and per_type["HistoryImported"][0] == "2"
    assert per_type["InstrumentDefined"] == ["1", str(expected.per_type_bytes["InstrumentDefined"])]


def test_missing_store_is_one_line_exit_2(tape, tmp_path):
    for args in (["log", "namespaces"], ["log", "dump", "x"], ["log", "stats", "x"], ["log", "topics"]):
        r = tape(*args, store_url=f"file:{tmp_path}/nowhere")
        assert r.exit_code == 2, args
        assert r.stdout == ""
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "does not exist" in r.stderr


def test_bad_usage_is_one_line_exit_2(tape):
    for args in (["log", "dumpp"], ["log", "dump"], ["log", "dump", "x", "--limit", "-1"], ["--store"]):
        r = tape(*args)
        assert r.exit_code == 2, args
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr


def test_store_from_environment(ns, store):
    from typer.testing import CliRunner

    from runtime.cli.app import app

    r = CliRunner().invoke(app, ["log", "namespaces"], env={"TAPE_STORE": f"file:{store}"})
    assert r.exit_code == 0 and any(line.startswith("hist ") for line in r.stdout.splitlines())
    r = CliRunner().invoke(app, ["log", "namespaces"], env={"TAPE_STORE": f"file:{store}-elsewhere"})
    assert r.exit_code == 2 and "does not exist" in r.stderr
