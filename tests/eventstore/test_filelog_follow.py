"""Follow mode: a reader in this process sees what a writer in another process appends, in order, once."""
from __future__ import annotations

import subprocess
import threading
import time

from logkit import check_chain, open_log, step, steps_of
from test_filelog_crash import WriterProcess

WRITER = """
import sys, time
from pathlib import Path
from logkit import open_log, step
with open_log(Path(sys.argv[1])).writer("ns", fsync="never", segment_bytes=4096, index_interval=256) as w:
    print("ready", flush=True)
    sys.stdin.readline()
    for s in range(2, 2 + int(sys.argv[2])):
        w.append(step(s))
        if s % 7 == 0:
            time.sleep(0.01)
"""


class Follower:
    """A thread running a follow-mode replay until told to stop."""

    def __init__(self, log, namespace: str = "ns", **options):
        self.events: list = []
        self.done = threading.Event()
        self.error: BaseException | None = None
        options.setdefault("poll_interval", 0.01)
        self.replay = log.replay(namespace, follow=True, stop=self.done.is_set, **options)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for e in self.replay:
                e.data  # decode while the writer goes on
                self.events.append(e)
        except BaseException as e:  # reported by the test thread
            self.error = e

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and self.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.error is None, self.error
        assert len(self.events) >= count, f"follower saw {len(self.events)} of {count} events"

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        assert self.error is None, self.error


def test_follow_sees_another_process_append(store_dir, python, py_env):
    log = open_log(store_dir)
    with log.writer("ns", fsync="never") as w:
        w.append(step(1))
    steps = 150
    writer = subprocess.Popen([python, "-c", WRITER, str(store_dir), str(steps)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=py_env, text=True)
    try:
        assert writer.stdout.readline() == "ready\n", writer.stderr.read()
        everything = Follower(log)
        trades = Follower(log, types=["TradeTick"])
        late = Follower(log, from_seq=3)
        everything.wait_for(4)
        assert len(everything.events) == 4  # nothing more exists yet
        writer.stdin.write("go\n")
        writer.stdin.flush()
        total = 4 * (steps + 1)
        everything.wait_for(total)
        trades.wait_for(steps + 1)
        late.wait_for(total - 2)
        assert writer.wait(timeout=60) == 0, writer.stderr.read()
        time.sleep(0.1)  # a few more polls: nothing new, nothing twice
    finally:
        writer.kill()
        writer.wait()
        for f in (writer.stdin, writer.stdout, writer.stderr):
            f.close()
    for f in (everything, trades, late):
        f.stop()
    assert [e.seq for e in everything.events] == list(range(1, total + 1))
    assert [s for s, _ in steps_of(everything.events)] == list(range(1, steps + 2))
    check_chain(everything.events)
    assert [e.seq for e in trades.events] == [e.seq for e in everything.events if e.name == "TradeTick"]
    assert [e.seq for e in late.events] == list(range(3, total + 1))
    assert [e.value for e in everything.events] == [e.value for e in log.replay("ns")]


def test_follow_across_writer_crashes_never_shows_a_torn_step(store_dir, python, py_env):
    """The follower keeps running while the writer is SIGKILLed and restarted (recovering the torn tail)."""
    log = open_log(store_dir)
    with log.writer("crash", fsync="never") as w:
        w.append(step(1))
    follower = Follower(log, "crash", poll_interval=0.005)
    for rnd in range(4):
        w = WriterProcess(python, py_env, store_dir, "crash", "never", seed=100 + rnd)
        w.wait_for_acks(1)
        time.sleep(0.05 + 0.05 * rnd)
        w.kill()
    final = list(log.replay("crash"))
    follower.wait_for(len(final))
    time.sleep(0.1)
    follower.stop()
    assert [e.value for e in follower.events] == [e.value for e in final]
    steps_of(follower.events)
    check_chain(follower.events)
