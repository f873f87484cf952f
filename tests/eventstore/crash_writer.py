"""Subprocess of the crash tests: appends marked multi-topic steps until killed, printing each acknowledged one.

usage: crash_writer.py STORE NAMESPACE FSYNC SEED
Each line on stdout, flushed after append returns: "<step> <first_seq> <events>".
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

from logkit import KEYS, KINDS, draft, mark_of, open_log


def main() -> None:
    store, ns, fsync, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    log = open_log(Path(store))
    last = 0
    try:
        for e in log.replay(ns, types=["Heartbeat", "TradeTick", "OrderIntent", "OrderFilled"]):
            last = mark_of(e)[0]
    except Exception as e:  # a namespace not created yet
        if "no namespace" not in str(e):
            raise
    rng = random.Random(seed)
    out = sys.stdout
    with log.writer(ns, fsync=fsync, segment_bytes=8 << 10, index_interval=512) as w:
        s = last
        while True:
            steps = []
            for _ in range(rng.choice((1, 1, 1, 2, 3))):  # sometimes a group commit of several steps
                s += 1
                kinds = [rng.choice(KINDS) for _ in range(rng.randint(1, 6))]
                ts = rng.randint(0, 10**6)
                steps.append((s, [draft(k, s, i, len(kinds), ts, rng.choice(KEYS)) for i, k in enumerate(kinds)]))
            first = w.append_steps([d for _, d in steps])
            for no, drafts in steps:
                out.write(f"{no} {first} {len(drafts)}\n")
                first += len(drafts)
            out.flush()


if __name__ == "__main__":
    main()
