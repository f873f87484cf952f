"""A namespace's control channel on both backends: commands in the order sent, each at a position that only grows,
read on from a position, never mistaken for a namespace or an event; a damaged record is named, not fatal."""
from __future__ import annotations

from tests.eventstore.test_log_contract import Store, store, trade  # noqa: F401  (the contract's store fixture)


def test_commands_are_read_in_order_from_a_position_and_stay_out_of_the_log(store: Store) -> None:  # noqa: F811
    log, ns = store.log, store.ns
    with log.writer(ns) as w:
        w.append([trade(1)])
        channel = log.control(ns)
        assert channel.read(0) == ([], 0)  # nothing sent yet (the file or topic does not exist)
        first = channel.send({"command": "halt", "command_id": "a", "reason": "ü — exact text"})
        second = channel.send({"command": "resume", "command_id": "b"})
        assert second > first >= 0
        records, nxt = channel.read(0)
        assert [(r.position, r.data["command_id"], r.problem) for r in records] == [(first, "a", None),
                                                                                     (second, "b", None)]
        assert records[0].data["reason"] == "ü — exact text"
        assert channel.read(nxt) == ([], nxt)
        third = channel.send({"command": "ack", "command_id": "c", "incident_id": "inc-1"})
        more, after = log.control(ns).read(nxt)  # another reader (a restarted session) continues the same way
        assert [(r.position, r.data["command_id"]) for r in more] == [(third, "c")] and after > nxt
        channel.close()
    assert log.namespaces().count(ns) == 1  # the channel is no namespace of its own
    assert [e.name for e in log.replay(ns)] == ["TradeTick"]  # and no part of the log


def test_a_damaged_or_torn_record_in_a_file_channel_is_named_with_its_byte_and_skipped(tmp_path) -> None:
    from eventstore.store import Log

    log = Log.open(f"file:{tmp_path / 'store'}")
    with log.writer("live-x") as w:
        w.append([trade(1)])
    channel = log.control("live-x")
    good = channel.send({"command": "halt", "command_id": "a"})
    with open(channel.path, "ab") as f:
        f.write(b'{"command": "halt", \xff\n["no command"]\n{"command": "resu')  # damaged, wrong, still torn
    records, nxt = channel.read(0)
    assert records[0].position == good and records[0].data["command_id"] == "a"
    damaged, wrong = records[1], records[2]
    assert damaged.data is None and f"control.jsonl at byte {damaged.position}: not a JSON command" in damaged.problem
    assert wrong.data is None and "a record without a command" in wrong.problem
    assert len(records) == 3  # the torn last line waits until it is complete
    with open(channel.path, "ab") as f:
        f.write(b'me"}\n')
    rest, _ = channel.read(nxt)
    assert [r.data for r in rest] == [{"command": "resume"}]
    log.close()
