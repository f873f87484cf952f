"""The archive of finished orders: every id answered as a plain dict would, across chunks, snapshots and restores."""
from __future__ import annotations

import random

import pytest

import handlers.archive as archive_module
from handlers.archive import OrderArchive, _split


@pytest.mark.parametrize("text", ["t1a2b3c-907", "SIM-O12", "abc007", "x-00", "0", "10", "abc", "", "a-0b",
                                  "x" + "1234567890" * 3, "9" * 18, "9" * 19, "x\u0663", "\u0663"])
def test_a_split_gives_the_text_back(text):
    stem, number = _split(text)
    if stem is None:
        assert not text or not text[-1].isascii() or not text[-1].isdigit()
    else:
        assert stem + str(number) == text and number < 10 ** 18


def ids(rng: random.Random, n: int) -> list[str]:
    """Ids as the handlers see them: the engine's (mostly rising, sometimes out of order), adopted ones of other
    stems, ids with leading zeros, long digit runs or no number at all."""
    out, seq = [], 100
    for i in range(n):
        seq += rng.randint(1, 40)
        r = rng.random()
        if r < 0.75:
            out.append(f"t1a2b3c-{seq if rng.random() < 0.9 else seq - rng.randint(1, 60)}")
        elif r < 0.85:
            out.append(f"stem{rng.randint(0, 30)}-{rng.randint(0, 99)}")  # more stems than an archive tracks
        elif r < 0.9:
            out.append(f"x-{rng.randint(0, 9):03d}")
        elif r < 0.95:
            out.append(f"big-{rng.randint(10 ** 19, 10 ** 22)}")
        else:
            out.append(rng.choice(["abc", "", "-", "=", "=1", "+2"]) + "z" * rng.randint(0, 3) + str(i % 2 or ""))
    return list(dict.fromkeys(out))  # each id archived once


def cells(rng: random.Random) -> tuple[str | None, ...]:
    return (rng.choice(["BTCUSDT.SIM", "ETHUSDT.SIM", ""]), rng.choice(["FILLED", "CANCELED", "REJECTED"]),
            None if rng.random() < 0.2 else rng.choice([f"SIM-O{rng.randint(1, 9999)}", "=", "", "O-007", "x"]))


@pytest.mark.parametrize("seed", range(6))
def test_every_id_is_answered_as_a_dict_would_across_restores(seed, monkeypatch):
    monkeypatch.setattr(archive_module, "CHUNK", 7)
    rng = random.Random(seed)
    all_ids = ids(rng, 600)
    model: dict[str, tuple[str | None, ...]] = {}
    a = OrderArchive(3)
    asked = all_ids + ["t1a2b3c-1", "t1a2b3c-99999999", "nothing", "stem3-1000", "x-3", "x-0003"]
    for i, cid in enumerate(all_ids):
        row = cells(rng)
        a.add(cid, *row)
        model[cid] = row
        if rng.random() < 0.05:  # a restart: a new archive from the snapshot continues as the first one
            b = OrderArchive(3)
            b.restore(a.snapshot())
            assert b.snapshot() == a.snapshot()
            a = b
        if rng.random() < 0.1:
            for q in rng.sample(asked, 20):
                assert a.get(q) == model.get(q), q
    assert len(a) == len(model)
    for q in asked:
        assert a.get(q) == model.get(q)
        assert (q in a) == (q in model)


def test_an_id_newer_than_every_archived_one_is_answered_without_reading_a_row(monkeypatch):
    monkeypatch.setattr(archive_module, "CHUNK", 10)
    a = OrderArchive(0)
    for seq in range(100, 400, 3):
        a.add(f"t1a2b3c-{seq}")
    b = OrderArchive(0)
    b.restore(a.snapshot())
    assert "t1a2b3c-400" not in b and "u-1" not in b
    assert b._index == {}  # nothing was read
    assert "t1a2b3c-103" in b and "t1a2b3c-104" not in b
    assert list(b._index) == [0]  # only the chunk whose span covers the ids asked


def test_snapshot_and_restore_copy_sealed_texts_and_read_no_row(monkeypatch):
    monkeypatch.setattr(archive_module, "CHUNK", 100)
    a = OrderArchive(3)
    for i in range(1000):
        a.add(f"t1a2b3c-{10 * i + 7}", "BTCUSDT.SIM", "FILLED", f"SIM-O{i + 1}")
    snap = a.snapshot()
    assert len(snap["chunks"]) == 10 and snap["rows"] == ""
    assert sum(map(len, snap["chunks"])) < 8 * 1000  # a few bytes an order: '10', two repeats, '1'
    b = OrderArchive(3)
    b.restore(snap)
    assert b._index == {}
    assert b.get("t1a2b3c-9997") == ("BTCUSDT.SIM", "FILLED", "SIM-O1000")
    assert b.get("t1a2b3c-9998") is None
