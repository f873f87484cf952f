"""Real crashes: a writer process SIGKILLed at random times, restarted, again and again."""
from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from logkit import check_chain, open_log, step, steps_of

HERE = Path(__file__).resolve().parent
ROUNDS = 10


class WriterProcess:
    """crash_writer.py running, with its acknowledged steps collected from stdout by a thread."""

    def __init__(self, python: str, env: dict, store: Path, ns: str, fsync: str, seed: int):
        self.proc = subprocess.Popen([python, str(HERE / "crash_writer.py"), str(store), ns, fsync, str(seed)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        self.acks: list[tuple[int, int, int]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.endswith("\n"):
                s, first, n = map(int, line.split())
                self.acks.append((s, first, n))

    def wait_for_acks(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acks) < count:
            if self.proc.poll() is not None:
                raise AssertionError(f"writer exited with {self.proc.returncode}: {self.proc.stderr.read()}")
            assert time.monotonic() < deadline, "writer made no progress"
            time.sleep(0.005)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.thread.join(timeout=30)
        stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        assert self.proc.returncode == -signal.SIGKILL, f"writer died on its own ({self.proc.returncode}): {stderr}"


@pytest.mark.parametrize("fsync", ["always", "never"])
def test_sigkill_at_random_times_loses_no_acknowledged_step(store_dir, python, py_env, fsync):
    rng = random.Random(f"crash-{fsync}")
    acked: list[tuple[int, int, int]] = []
    for rnd in range(ROUNDS):
        w = WriterProcess(python, py_env, store_dir, "crash", fsync, seed=rnd)
        if rnd % 3 == 2:
            time.sleep(rng.uniform(0.0, 0.8))  # anywhere, even during start-up and recovery
        else:
            w.wait_for_acks(1)
            time.sleep(rng.uniform(0.0, 0.25))
        w.kill()
        acked += w.acks
    assert len(acked) > ROUNDS

    log = open_log(store_dir)
    events = list(log.replay("crash"))
    check_chain(events)
    delivered = {s: (evs[0].seq, len(evs)) for s, evs in steps_of(events)}  # asserts every step is whole
    assert len(delivered) == len(steps_of(events)), "a step number was delivered twice"
    for s, first, n in acked:
        assert delivered.get(s) == (first, n), f"acknowledged step {s} (seq {first}, {n} events) not replayed as such"
    assert sorted(delivered) == list(range(1, len(delivered) + 1))
    assert len(list((store_dir / "crash" / "market-0").glob("*.log"))) > 1, "segments never rolled"

    # the log keeps accepting appends, chained to the last committed event
    with log.writer("crash", fsync=fsync) as w:
        first = w.append(step(len(delivered) + 1))
    after = list(log.replay("crash"))
    assert [e.value for e in after[: len(events)]] == [e.value for e in events]
    assert after[len(events)].seq == first > events[-1].seq
    check_chain(after)
    steps_of(after)
