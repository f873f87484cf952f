"""`tape log repair`: what is derived or known to the code comes back exactly (the same answers as before the damage),
a torn uncommitted tail is cut, and committed events lost are named — writers stay refused until the user cuts
after the last whole commit, a cut the next events of the namespace record (LogTruncated) and the hash chain
carries on from."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventstore.store import Log
from runtime.cli.app import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "btcusdt-1m.csv"


def tape(store: Path, *args: str, code: int = 0):
    r = CliRunner().invoke(app, ["--store", f"file:{store}", *args])
    assert r.exit_code == code, (r.exit_code, r.output)
    return r


def ingest(store: Path, tmp: Path, first: int, rows: int, code: int = 0):
    lines = EXAMPLE.read_text().splitlines()
    csv = tmp / f"bars-{first}.csv"
    csv.write_text("\n".join([lines[0], *lines[1 + first:1 + first + rows]]) + "\n")
    return tape(store, "ingest", "csv", str(csv), "--namespace", "h", "--instrument", "BTCUSDT.BINANCE", "--kind",
                "bars", "--timeframe", "1m", "--base", "BTC", "--quote", "USDT", "--batch-rows", "200", code=code)


def dump(store: Path) -> list[dict]:
    return [json.loads(line) for line in tape(store, "log", "dump", "h", "--json").stdout.splitlines()]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    ingest(store, tmp_path, 0, 2000)  # 10 steps of 200 bars
    return store


def test_derived_files_and_registry_files_come_back_and_answers_are_what_they_were(store: Path) -> None:
    before = dump(store)
    ns = store / "h"
    index = min((ns / "market-0").glob("*.index"))
    data = bytearray(index.read_bytes())
    data[20] ^= 0xFF
    index.write_bytes(bytes(data))
    (ns / "system-0" / "00000000000000000000.index").unlink()
    scaled = [p for p in (ns / "_schemas").glob("*.avsc") if '"scale": 18' in p.read_text()][0]
    scaled.write_text(scaled.read_text().replace('"scale": 18', '"scale": 10', 1))  # prices 10^8 off if trusted
    assert "DAMAGE" in tape(store, "audit", "verify", "h", code=1).stdout
    r = tape(store, "log", "repair", "h")
    assert f"rebuilt {index}" in r.stdout and f"wrote {scaled} again from today's schema" in r.stdout
    assert "h: every file checks clean" in r.stdout
    assert "OK h" in tape(store, "audit", "verify", "h").stdout
    assert dump(store) == before  # the same events, the same values
    assert "nothing to repair" in tape(store, "log", "repair", "h").stdout


def test_a_torn_tail_nothing_committed_is_cut(store: Path, tmp_path: Path) -> None:
    seg = max((store / "h" / "market-0").glob("*.log"))
    size = seg.stat().st_size
    kept = {p: p.read_bytes() for p in (store / "h").rglob("*") if p.is_file()}
    ingest(store, tmp_path, 2000, 50)  # the next step's batch, then put back as a crash mid-write leaves it:
    torn = seg.read_bytes()[size:size + 300]  # its first 300 bytes in the segment, nothing in the journal
    for p in (store / "h").rglob("*"):
        if p.is_file() and p not in kept:
            p.unlink()
    for p, data in kept.items():
        p.write_bytes(data)
    with open(seg, "ab") as f:
        f.write(torn)
    notes = tape(store, "audit", "verify", "h").stdout
    assert "torn by a crash (never committed)" in notes
    r = tape(store, "log", "repair", "h")
    assert "every file checks clean" in r.stdout and seg.stat().st_size == size
    assert "never committed" not in tape(store, "audit", "verify", "h").stdout


def test_committed_events_lost_are_named_and_a_cut_after_the_last_whole_commit_is_recorded(store: Path,
                                                                                        tmp_path: Path) -> None:
    before = dump(store)
    seg = store / "h" / "market-0" / "00000000000000000000.log"
    os.truncate(seg, seg.stat().st_size // 2)  # committed bars gone from the middle of the history
    r = tape(store, "log", "repair", "h", code=2)
    err = r.stderr.strip()
    assert "\n" not in err and "writers stay refused" in err and "--truncate-after" in err, err
    assert "committed data was cut off" in r.stdout and str(seg) in r.stdout
    whole = int(err.rsplit("--truncate-after ", 1)[1])
    ingest(store, tmp_path, 2000, 100, code=2)  # a writer refuses the damaged namespace
    files = {p: p.read_bytes() for p in (store / "h").rglob("*") if p.is_file()}
    bad = tape(store, "log", "repair", "h", "--truncate-after", str(whole + 1), code=2)
    assert "not the end of a commit" in bad.stderr and f"{whole:,}" in bad.stderr
    assert {p: p.read_bytes() for p in (store / "h").rglob("*") if p.is_file()} == files  # nothing changed
    cut = tape(store, "log", "repair", "h", "--truncate-after", str(whole))
    assert f"cut after seq {whole:,}" in cut.stdout and "every file checks clean" in cut.stdout
    after = dump(store)
    assert after[:-1] == before[:whole]  # what was kept is exactly what was there
    mark = after[-1]
    assert mark["type"] == "LogTruncated" and mark["seq"] == whole + 1
    assert (mark["data"]["after_seq"], mark["data"]["removed_first"], mark["data"]["removed_last"]) == (
        whole, whole + 1, before[-1]["seq"])
    assert "committed data was cut off" in mark["data"]["lost"]
    ingest(store, tmp_path, 1000, 300)  # writers append again, the chain goes on through the cut
    assert "OK h" in tape(store, "audit", "verify", "h").stdout
    assert [e["seq"] for e in dump(store)] == list(range(1, whole + 1 + 1 + 302))  # 300 bars in 2 steps


def test_a_namespace_being_written_is_not_repaired(store: Path) -> None:
    log = Log.open(f"file:{store}")
    with log.writer("h"):
        r = tape(store, "log", "repair", "h", code=2)
    assert "already has a writer" in r.stderr and r.stderr.count("\n") == 1
    assert "no namespace 'nope'" in tape(store, "log", "repair", "nope", code=2).stderr
