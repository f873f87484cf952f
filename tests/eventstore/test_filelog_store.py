"""The namespace lock against a writer in another process, and store paths that cannot be used."""
from __future__ import annotations

import subprocess
from decimal import Decimal

import pytest
from logkit import open_log, step

from eventstore.errors import LockedNamespace, StoreError
from eventstore.store import Log
from eventstore.writer import Draft

HOLDER = """
import sys
from logkit import open_log, step
from pathlib import Path
w = open_log(Path(sys.argv[1])).writer("ns", fsync="always")
w.append(step(2))
print("holding", flush=True)
sys.stdin.read()  # hold the lock until the test closes our stdin
w.append(step(3))
w.close()
"""


def test_second_writer_on_a_locked_namespace(store_dir, python, py_env):
    log = open_log(store_dir)
    with log.writer("ns", fsync="never") as w:
        w.append(step(1))
    holder = subprocess.Popen([python, "-c", HOLDER, str(store_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=py_env, text=True)
    try:
        assert holder.stdout.readline() == "holding\n", holder.stderr.read()
        for _ in range(2):  # and it stays refused
            with pytest.raises(LockedNamespace) as err:
                log.writer("ns")
            message = str(err.value)
            assert "'ns'" in message and "already has a writer" in message and str(holder.pid) in message
            assert "\n" not in message
        # reading is never blocked by the writer
        assert len(list(log.replay("ns"))) == 8
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0, holder.stderr.read()
        holder.stdout.close()
        holder.stderr.close()
    with log.writer("ns", fsync="never") as w:
        assert w.next_seq == 13
        w.append(step(4))
    assert [e.seq for e in log.replay("ns")] == list(range(1, 17))


def test_lock_is_per_writer_in_one_process_too(file_log):
    w = file_log.writer("ns", fsync="never")
    try:
        with pytest.raises(LockedNamespace):
            file_log.writer("ns")
        file_log.writer("other", fsync="never").close()  # other namespaces are independent
    finally:
        w.close()
    file_log.writer("ns", fsync="never").close()


def test_lock_dies_with_a_killed_writer(store_dir, python, py_env):
    holder = subprocess.Popen([python, "-c", HOLDER, str(store_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=py_env, text=True)
    assert holder.stdout.readline() == "holding\n", holder.stderr.read()
    with pytest.raises(LockedNamespace):
        open_log(store_dir).writer("ns")
    holder.kill()
    holder.wait(timeout=30)
    for f in (holder.stdin, holder.stdout, holder.stderr):
        f.close()
    with open_log(store_dir).writer("ns", fsync="never") as w:
        assert w.next_seq == 5


def test_missing_store_for_reading_is_one_line(tmp_path):
    log = Log.open(f"file:{tmp_path / 'nowhere'}")
    for call in (lambda: log.replay("ns"), log.namespaces, lambda: log.stats("ns")):
        with pytest.raises(StoreError) as err:
            call()
        assert "nowhere" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "nowhere").exists()  # reading never creates the store


def test_missing_namespace_in_an_existing_store(file_log):
    with file_log.writer("there", fsync="never") as w:
        w.append(step(1))
    with pytest.raises(StoreError) as err:
        file_log.replay("absent")
    assert "'absent'" in str(err.value) and "\n" not in str(err.value)
    assert file_log.namespaces() == ["there"]


def test_unwritable_store_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for url in (f"file:{blocker}", f"file:{blocker / 'store'}"):
        log = Log.open(url)
        with pytest.raises(StoreError) as err:
            log.writer("ns")
        assert str(blocker) in str(err.value) and "\n" not in str(err.value)
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize("name", ["", ".hidden", "_commits", "a/b", "a b", "x" * 201])
def test_invalid_namespace_names(file_log, name):
    with pytest.raises(StoreError):
        file_log.writer(name)


def test_unsupported_url_and_bad_fsync_policy(file_log):
    with pytest.raises(StoreError):
        Log.open("ftp://example.com/store")
    with pytest.raises(StoreError) as err:
        file_log.writer("ns", fsync="sometimes")
    assert "sometimes" in str(err.value)
    # the refused writer left the namespace unlocked
    with file_log.writer("ns", fsync="never") as w:
        w.append([Draft("TradeTick", {"instrument_id": "X", "price": Decimal(1), "quantity": Decimal(1)}, 1, "X")])


def _delete_all(root: str, names: list[str]) -> None:
    log = Log.open(f"file:{root}")
    for ns in names:
        log.delete(ns)


def test_two_processes_deleting_namespaces_of_one_store_at_once_both_succeed(store_dir) -> None:
    """A sweep's workers each delete their own scratch runs: one deleter must not empty the trash under another."""
    import multiprocessing

    log = open_log(store_dir)
    names = [f"ns{i}" for i in range(60)]
    for ns in names:
        with log.writer(ns, fsync="never") as w:
            w.append(step(1))
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_delete_all, args=(str(store_dir), names[k::2])) for k in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.namespaces() == [] and not any((store_dir / ".trash").iterdir())
