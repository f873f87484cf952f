"""`tape log copy`: a namespace copied between stores (file -> Kafka to publish, Kafka -> file to archive).

The copy is record for record: same seqs, same bytes (key, type, value, ts), same commit ranges and hashes, the
registry first. It hands the source's stored records to the destination backend writer's commit() directly, never
re-encoding, so the hash chain and event ids stay valid. Steps torn in the source are not copied (their seqs stay a
gap, as in the source). It resumes after the destination's horizon, once it has checked that the destination is a
prefix of the source (same commit, same last hash, at the destination's horizon). What a copy killed part way left
past the destination's last commit is its own (discard_uncommitted): a file destination cuts those whole uncommitted
batches when the writer opens, a Kafka destination (whose records cannot be cut) takes each one equal to what the copy
writes at its place as sent — it refuses records that are not the copy's — and the copy writes the same seqs again,
byte for byte.
"""
from __future__ import annotations

import heapq
from typing import Any, Callable, Iterator

from eventstore.backend import Backend, Commit
from eventstore.batch import Record
from eventstore.errors import CorruptLog, NamespaceBeingCreated, NoNamespace, StoreError

CHUNK_EVENTS = 20_000


def _backend(log: Any) -> Backend:
    return getattr(log, "backend", log)


def copy_namespace(src: Any, dst: Any, namespace: str, progress: Callable[[int, int], None] | None = None,
                   *, chunk_events: int = CHUNK_EVENTS) -> int:
    """Copy the committed steps of `namespace` that dst lacks; returns the number of events copied.

    progress(copied_through_seq, source_horizon) is called after every chunk written.
    """
    sb, db = _backend(src), _backend(dst)
    try:
        sreader = sb.open_reader(namespace)
    except (NoNamespace, NamespaceBeingCreated):
        held = _held(db, namespace)
        if held:
            lost = "the broker lost the namespace (restarted without its data?)" if sb.url.startswith("kafka://") \
                else "the store lost the namespace"
            raise StoreError(f"namespace {namespace!r} is gone from {sb.url}, but {db.url} holds a copy of it through "
                             f"seq {held}: {lost}; copy it back from there") from None
        raise
    dwriter = None
    try:
        src_h = sreader.horizon()
        schemas = sb.schema_store(namespace).load_schemas()
        # what an interrupted copy left past the destination's last commit is the copy's own: its seqs written again
        # byte for byte (a file store cuts it, Kafka adopts it; a backend that can do neither is refused below)
        extra = {"discard_uncommitted": True} if db.discards_uncommitted else {}
        dwriter = db.open_writer(namespace, partitions=dict(sreader.partitions), **extra)
        if dict(dwriter.partitions) != dict(sreader.partitions):
            raise StoreError(
                f"namespace {namespace!r} has partitions {dwriter.partitions} in {db.url} but {sreader.partitions} in "
                f"{sb.url}: a copy keeps partitions; copy to another namespace or store"
            )
        # the registry first: every copied event must decode from the destination alone
        dstore = db.schema_store(namespace)
        have = dstore.load_schemas()
        for fp, schema in schemas.items():
            if fp not in have:
                dstore.save_schema(fp, schema)
        dreader = db.open_reader(namespace)
        try:
            dst_h = dreader.horizon()
            dst_last = next(iter(dreader.commits(dst_h)), None) if dst_h else None
        finally:
            dreader.close()
        _check_prefix(namespace, sreader, sb, db, src_h, dst_h, dst_last, dwriter)
        if dst_h >= src_h:
            if progress:
                progress(dst_h, src_h)
            return 0
        return _copy(sreader, dwriter, src_h, dst_h, progress, chunk_events)
    finally:
        if dwriter is not None:
            dwriter.close()
        sreader.close()


def _held(db: Backend, namespace: str) -> int:
    """The horizon of a namespace in a store, 0 where it is absent or unreadable."""
    try:
        reader = db.open_reader(namespace)
    except StoreError:
        return 0
    try:
        return reader.horizon()
    finally:
        reader.close()


def _check_prefix(namespace: str, sreader: Any, sb: Backend, db: Backend, src_h: int, dst_h: int,
                  dst_last: Commit | None, dwriter: Any) -> None:
    where = f"namespace {namespace!r} in {db.url}"
    if dwriter.next_seq != dst_h + 1:
        raise StoreError(
            f"{where} has uncommitted records after seq {dst_h} (an interrupted copy or a crashed writer): their seqs "
            "cannot be reused byte for byte; remove the namespace there and copy again"
        )
    if dst_h == 0:
        return
    if dst_h > src_h:
        raise StoreError(f"{where} is ahead of {sb.url} (seq {dst_h} > {src_h}): it is not a copy of it")
    src_c = next(iter(sreader.commits(dst_h)), None)
    if src_c is None or dst_last is None or (src_c.first, src_c.last, src_c.last_hash) != (
        dst_last.first, dst_last.last, dst_last.last_hash
    ):
        raise StoreError(
            f"{where} is not a prefix of the one in {sb.url}: their commits differ at seq {dst_h}; "
            "copy to another namespace or store"
        )


def _tagged(key: tuple[str, int], j: int, records: Iterator[Record]) -> Iterator[tuple[int, int, Record, tuple[str, int]]]:
    for r in records:
        yield r.seq, j, r, key


def _copy(sreader: Any, dwriter: Any, src_h: int, dst_h: int, progress: Callable[[int, int], None] | None,
          chunk_events: int) -> int:
    start = dst_h + 1 if dst_h else None
    streams = []
    for t, n in sreader.partitions.items():
        for i in range(n):
            cursor = sreader.cursor(t, i, seq=start)
            streams.append(_tagged((t, i), len(streams), cursor.read_until(src_h)))
    merged = heapq.merge(*streams)
    head = next(merged, None)
    pending: list[tuple[dict[tuple[str, int], list[Record]], Commit]] = []
    pending_events = copied = 0

    def flush() -> None:
        nonlocal pending, pending_events, copied
        if not pending:
            return
        dwriter.commit_many(pending)
        copied += pending_events
        if progress:
            progress(pending[-1][1].last, src_h)
        pending, pending_events = [], 0

    for c in sreader.commits(dst_h + 1):
        if c.last > src_h:
            break
        if c.last <= dst_h:
            continue
        batches: dict[tuple[str, int], list[Record]] = {}
        n = 0
        while head is not None and head[0] <= c.last:
            seq, _, r, key = head
            if seq >= c.first:  # below it: a torn step, never copied
                bucket = batches.get(key)
                if bucket is None:
                    bucket = batches[key] = []
                bucket.append(r)
                n += 1
            head = next(merged, None)
        if n != c.last - c.first + 1:
            flush()  # what came before is good: keep it, so the copy resumes there
            raise CorruptLog(
                f"commit {c.first}..{c.last} of the source has {n} of its {c.last - c.first + 1} records: the source "
                f"is damaged; the copy stops after seq {c.first - 1}"
            )
        pending.append((batches, c))
        pending_events += n
        if pending_events >= chunk_events:
            flush()
    flush()
    return copied


__all__ = ["copy_namespace"]
