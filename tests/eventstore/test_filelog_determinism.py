"""Same drafts, same bytes: replays repeat exactly and two stores written alike are identical file for file."""
from __future__ import annotations

import random

from logkit import KEYS, KINDS, draft, files, open_log


def _drafts(seed: int) -> list[list]:
    rng = random.Random(seed)
    steps = []
    for s in range(1, 120):
        kinds = [rng.choice(KINDS) for _ in range(rng.randint(1, 5))]
        ts = rng.randint(0, 10**12)
        steps.append([draft(k, s, i, len(kinds), ts, rng.choice(KEYS)) for i, k in enumerate(kinds)])
    return steps


def _write(root, steps) -> None:
    with open_log(root).writer("run", fsync="never", segment_bytes=8192, index_interval=512,
                               partitions={"market": 3, "intents": 2, "executions": 1, "system": 1}) as w:
        for i, s in enumerate(steps):
            if i % 10 == 9:
                w.append_steps([s, s[:1]])
            else:
                w.append(s)


def test_replay_twice_is_identical(store_dir):
    _write(store_dir, _drafts(1))
    log = open_log(store_dir)
    first = [(e.seq, e.ts_event, e.key, e.type, e.value, e.data) for e in log.replay("run")]
    second = [(e.seq, e.ts_event, e.key, e.type, e.value, e.data) for e in log.replay("run")]
    assert first == second and len(first) > 300
    assert [s for s, *_ in first] == list(range(1, len(first) + 1))


def test_two_stores_written_alike_are_byte_identical(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, _drafts(7))
    _write(b, _drafts(7))
    fa, fb = files(a), files(b)
    assert len([p for p in fa if p.endswith(".log")]) > 8  # several partitions, several segments each
    assert sorted(fa) == sorted(fb)
    for path in fa:
        assert fa[path] == fb[path], f"{path} differs"
    # and a different input does change the bytes
    c = tmp_path / "c"
    _write(c, _drafts(8))
    assert files(c) != fa
