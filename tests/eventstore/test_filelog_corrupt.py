"""A flipped byte away from the tail is corruption: reported with file and offset, never skipped or truncated."""
from __future__ import annotations

import pytest
from logkit import files, open_log, restore, segment, step

from eventstore.errors import CorruptLog
from eventstore.partition import Partition

STEPS = 8


def _write(store_dir):
    log = open_log(store_dir)
    with log.writer("ns", fsync="never") as w:
        for s in range(1, STEPS + 1):
            w.append(step(s, ["trade", "heartbeat"]))
    return log


@pytest.mark.parametrize("part", ["market-0", "_commits"])
def test_flipped_byte_in_an_early_batch(store_dir, part):
    log = _write(store_dir)
    path = segment(store_dir / "ns", part)
    batches = [info for info, _, _, _ in Partition(path.parent).batches()]
    assert len(batches) == STEPS
    victim = batches[2]  # valid batches before and after it
    snapshot = files(store_dir)
    original = path.read_bytes()
    for offset in range(victim.size):
        data = bytearray(original)
        data[victim.position + offset] ^= 0xFF
        path.write_bytes(bytes(data))
        with pytest.raises(CorruptLog) as err:
            list(log.replay("ns"))
        message = str(err.value)
        assert str(path) in message and f"byte {victim.position}" in message, (offset, message)
        assert "\n" not in message
        # the writer must not "recover" by truncating committed data after the damage
        try:
            log.writer("ns", fsync="never").close()
        except CorruptLog as e:
            assert str(path) in str(e)
        assert path.read_bytes() == bytes(data), f"flip at +{offset}: the writer rewrote the damaged segment"
        restore(store_dir, snapshot)
