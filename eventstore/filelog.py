"""The embedded file log (file:PATH): a directory per namespace, a directory per topic-partition."""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import struct
import time
from pathlib import Path
from typing import Any, Iterator

from eventstore.backend import (
    TOPIC_PARTITIONS,
    Backend,
    Commit,
    Cursor,
    NamespaceReader,
    NamespaceWriter,
    PartitionInfo,
    valid_namespace,
)
from eventstore.batch import Record, iter_records
from eventstore.control import FileControl
from eventstore.errors import CorruptLog, LockedNamespace, NoNamespace, StoreError
from eventstore.nsmeta import NAME as META_NAME, read_meta, write_meta
from eventstore.partition import Partition, TailPlan, cut_partition_after, segment_name
from eventstore.registryfile import FileSchemaStore

COMMITS = "_commits"
_COMMIT_VALUE = struct.Struct(">Q")
_COMMIT_SIZE = 8 + 32  # first seq u64 and the sha256 of the commit's last record
FSYNC_POLICIES = ("always", "interval", "never")
_REFUSE = "the writer refuses to append — restore the namespace from a copy"


def _partition_dir(ns_dir: Path, topic: str, partition: int) -> Path:
    return ns_dir / f"{topic}-{partition}"


def _commit_of(r: Record) -> Commit:
    return Commit(_COMMIT_VALUE.unpack_from(r.value)[0], r.seq, r.value[8:], r.ts)


def _spans(seqs: list[int]) -> str:
    """Ascending seqs as ranges: '3, 7..9' (the first eight ranges)."""
    spans: list[list[int]] = []
    for s in seqs:
        if spans and s == spans[-1][1] + 1:
            spans[-1][1] = s
        else:
            spans.append([s, s])
    text = ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in spans[:8])
    return text + (", …" if len(spans) > 8 else "")


class FileCursor(Cursor):
    """A partition read forward batch by batch; resumes where the last read stopped."""

    def __init__(self, partition: Partition, seq: int | None, ts: int | None):
        self.partition = partition
        self.start = {"seq": seq} if seq is not None else ({"ts": ts} if ts is not None else {})
        self.resume: tuple[int, int] | None = None
        # the first seq of the first batch read: a start by time may have skipped seqs below it, never above
        self.first_seq: int | None = None

    def read_until(self, horizon: int) -> Iterator[Record]:
        it = self.partition.batches(resume=self.resume) if self.resume else self.partition.batches(**self.start)
        for info, buf, base, chunk_pos in it:
            if self.first_seq is None:
                self.first_seq = info.first_seq
            if info.first_seq > horizon:
                self.resume = (base, chunk_pos + info.position)
                return
            self.resume = (base, chunk_pos + info.position + info.size)
            yield from iter_records(buf, info)


class FileBatchCounter(FileCursor):
    """A partition read for its batches' seqs and record counts only: what a typed read skips, accounted for (from
    the batch headers: the bodies, which it does not deliver, are neither read nor CRC-checked)."""

    def read_until(self, horizon: int) -> Iterator[tuple[int, int, int]]:  # type: ignore[override]
        """(first seq, last seq, records) of each batch whose seqs are all <= horizon."""
        p = self.partition
        it = p.batches(resume=self.resume, frames_only=True) if self.resume else p.batches(**self.start,
                                                                                            frames_only=True)
        for info, _, base, _ in it:
            if self.first_seq is None:
                self.first_seq = info.first_seq
            if info.first_seq > horizon:
                self.resume = (base, info.position)
                return
            self.resume = (base, info.position + info.size)
            yield info.first_seq, info.last_seq, info.count


class FileNamespaceReader(NamespaceReader):
    def __init__(self, ns_dir: Path, partitions: dict[str, int]):
        self.dir = ns_dir
        self.partitions = partitions
        self.journal = Partition(ns_dir / COMMITS)
        self._tail: tuple[int, int] | None = None
        self._horizon = 0

    def _partition(self, topic: str, partition: int) -> Partition:
        return Partition(_partition_dir(self.dir, topic, partition))

    def _parts(self) -> list[Partition]:
        """The partitions that exist on disk (a partition never written has no directory)."""
        out = []
        for topic, n in self.partitions.items():
            for i in range(n):
                d = _partition_dir(self.dir, topic, i)
                if d.is_dir():
                    out.append(Partition(d))
        return out

    def horizon(self) -> int:
        if self._tail is None:
            last = self.journal.last_batch()
            if last is not None:
                info, base, pos = last
                self._tail = (base, pos + info.size)
                self._horizon = info.last_seq
            return self._horizon
        it = self.journal.batches(resume=self._tail)
        for info, _, base, chunk_pos in it:
            self._tail = (base, chunk_pos + info.position + info.size)
            self._horizon = info.last_seq
        return self._horizon

    def commits(self, from_seq: int = 1) -> Iterator[Commit]:
        prev = 0
        for info, buf, base, chunk_pos in self.journal.batches(seq=from_seq):
            for r in iter_records(buf, info):
                if r.seq < from_seq:
                    continue
                if len(r.value) != _COMMIT_SIZE:
                    raise CorruptLog(f"{self.journal.path / segment_name(base)}: the commit record at byte "
                                     f"{chunk_pos + info.position} has {len(r.value)} bytes, not {_COMMIT_SIZE}; "
                                     "restore the namespace from a copy")
                c = _commit_of(r)
                if c.first > c.last or c.first <= prev:
                    raise CorruptLog(f"{self.journal.path / segment_name(base)}: the commit record at byte "
                                     f"{chunk_pos + info.position} ({c.first}..{c.last}) does not follow the one "
                                     f"before it (last seq {prev}); restore the namespace from a copy")
                prev = c.last
                yield c

    def cursor(self, topic: str, partition: int, *, seq: int | None = None, ts: int | None = None) -> Cursor:
        return FileCursor(self._partition(topic, partition), seq, ts)

    def batch_counts(self, topic: str, partition: int, *, seq: int | None = None,
                     ts: int | None = None) -> FileBatchCounter:
        return FileBatchCounter(self._partition(topic, partition), seq, ts)

    def describe_missing(self, first: int, last: int) -> str:
        """Which seqs of committed range first..last no partition holds, and where they would be (file, byte)."""
        parts = self._parts()
        present: set[int] = set()
        for p in parts:
            for info, buf, _, _ in p.batches(seq=first):
                if info.first_seq > last:
                    break
                present.update(r.seq for r in iter_records(buf, info) if first <= r.seq <= last)
        missing = [s for s in range(first, last + 1) if s not in present]
        if not missing:
            return f"committed seqs of {first}..{last} went missing while it was read (the files changed)"
        places = [_place(p, missing[0]) for p in parts]
        record = _commit_place(self.journal, last)
        return (f"committed seq{'s' if len(missing) > 1 else ''} {_spans(missing)} of commit {first}..{last} "
                f"({record}) {'are' if len(missing) > 1 else 'is'} in no partition — where "
                f"{'they' if len(missing) > 1 else 'it'} would be: {'; '.join(places) or 'no partition exists'}")

    def describe_seq(self, seq: int) -> str:
        """Where the batches holding a seq are (file, byte)."""
        out = []
        for p in self._parts():
            for info, _, base, chunk_pos in p.batches(seq=seq):
                if info.first_seq > seq:
                    break
                if info.last_seq >= seq:
                    out.append(f"{p.path / segment_name(base)} byte {chunk_pos + info.position}")
        return "; ".join(out)

    def partition_info(self) -> list[PartitionInfo]:
        out = []
        for topic, n in self.partitions.items():
            for i in range(n):
                p = Partition(_partition_dir(self.dir, topic, i))
                records = size = 0
                for info, _, _, _ in p.batches():
                    records += info.count
                    size += info.size
                out.append(PartitionInfo(topic, i, records, size, len(p.segments)))
        return out


def _place(p: Partition, seq: int) -> str:
    """Where seq would be in a partition: the batch after it there (file and byte), or where the partition's valid
    batches end (and whether a batch cut short follows)."""
    end = None
    for info, _, base, chunk_pos in p.batches(seq=seq):
        end = (base, chunk_pos + info.position + info.size, info.last_seq)
        if info.first_seq > seq:
            return f"{p.path / segment_name(base)} byte {chunk_pos + info.position} (next seq there {info.first_seq})"
    if not p.segments:
        return f"{p.path} (no segment)"
    last = p.segments[-1]
    base, pos = (end[0], end[1]) if end is not None else (last.base, 0)
    path = p.path / segment_name(base)
    size = path.stat().st_size if path.exists() else 0
    after = f", after seq {end[2]}" if end is not None else ""
    if size > pos:
        return f"{path} byte {pos} (its valid batches end there{after}; a batch cut short follows, to byte {size})"
    return f"{path} byte {pos} (its end{after})"


def _commit_place(journal: Partition, last: int) -> str:
    for info, _, base, chunk_pos in journal.batches(seq=last):
        if info.first_seq <= last <= info.last_seq:
            return f"commit record at {journal.path / segment_name(base)} byte {chunk_pos + info.position}"
    return "commit record not found"


class FileNamespaceWriter(NamespaceWriter):
    """Holds the namespace lock; appends partition batches, then the commit record, then fsyncs per policy.

    Opening refuses a namespace whose committed data it could not read back (one line naming file and byte): a
    torn tail is cut only when the cut loses nothing committed, sealed segments must end where the next begins,
    and the last commit must be whole in the partitions.
    """

    def __init__(self, ns_dir: Path, partitions: dict[str, int], *, fsync: str = "interval",
                 fsync_interval: float = 1.0, segment_bytes: int = 64 << 20, index_interval: int = 4096,
                 discard_uncommitted: bool = False):
        if fsync not in FSYNC_POLICIES:
            raise StoreError(f"unknown fsync policy {fsync!r}: use one of {', '.join(FSYNC_POLICIES)}")
        self.dir = ns_dir
        self.partitions = partitions
        self.fsync_policy = fsync
        self.fsync_interval = fsync_interval
        self._lock_fd = namespace_lock(ns_dir)
        try:
            opts = {"segment_bytes": segment_bytes, "index_interval": index_interval}
            self.parts = {
                (t, i): Partition(_partition_dir(ns_dir, t, i), **opts) for t, n in partitions.items() for i in range(n)
            }
            self.journal = Partition(ns_dir / COMMITS, **opts)
            self.journal.path.mkdir(parents=True, exist_ok=True)
            # a journal that lost its last records (a crash, or a power loss under fsync=interval) reads as if
            # they were never written: consistent, so not refused; `tape audit verify` names batches left past it
            self.journal.open_for_append()
            last_commit = None
            for info, buf, _, _ in self.journal.batches(offset=max(0, self.journal.next_offset - 1)):
                for r in iter_records(buf, info):
                    last_commit = _commit_of(r)
            horizon = last_commit.last if last_commit else 0
            if discard_uncommitted:  # whole batches past the last commit (a copy killed mid-step): gone, seqs reused
                for p in self.parts.values():
                    if p.path.is_dir():
                        cut_partition_after(p.path, horizon)
            plans = {key: p.recover() for key, p in self.parts.items() if p.path.is_dir()}
            for key, tail in plans.items():
                self._check_tail(tail, horizon)
            existing = [p for p in self.parts.values() if p.path.is_dir()]
            if last_commit is not None:
                self._check_whole(last_commit, existing)
            last_seq = 0
            for key, tail in plans.items():
                self.parts[key].open_for_append(tail)
                last_seq = max(last_seq, self.parts[key].last_seq)
            self.last_hash = last_commit.last_hash if last_commit else b""
            # a step torn by a crash keeps its seqs: the writer goes on after them, readers skip them
            self.next_seq = max(last_seq, horizon) + 1
        except BaseException:
            self.close()
            raise
        self._dirty: set[Partition] = set()
        self._last_sync = time.monotonic()

    def _commit_holding(self, seq: int) -> Commit | None:
        """The commit whose range holds seq, or None (seq in a gap: a torn step, never committed)."""
        for info, buf, _, _ in self.journal.batches(seq=seq):
            for r in iter_records(buf, info):
                if r.seq >= seq:
                    c = _commit_of(r)
                    return c if c.first <= seq else None
        return None

    def _check_tail(self, tail: TailPlan, horizon: int) -> None:
        """Refuse a tail recovery that would cut committed records (a file cut short, not a torn write)."""
        seg = tail.segment
        if tail.cut and tail.cut_seq is not None and tail.cut_seq <= horizon:
            c = self._commit_holding(tail.cut_seq)
            if c is not None:
                raise CorruptLog(f"{seg.path}: the batch at byte {tail.valid_end} holds committed seq {tail.cut_seq} "
                                 f"(commit {c.first}..{c.last}) but the segment ends inside it at byte {tail.size}: "
                                 f"committed data was cut off; {_REFUSE}")
        for pos, seq in tail.lost:
            c = self._commit_holding(seq) if seq <= horizon else None
            if c is not None:
                raise CorruptLog(f"{seg.index_path}: names a batch at byte {pos} holding committed seq {seq} (commit "
                                 f"{c.first}..{c.last}), but the segment's valid batches end at byte {tail.valid_end}: "
                                 f"committed data was cut off; {_REFUSE}")

    def _check_whole(self, c: Commit, parts: list[Partition]) -> None:
        """Refuse a last commit whose records are not all in the partitions."""
        n = 0
        for p in parts:
            for info, _, _, _ in p.batches(seq=c.first):
                if info.first_seq > c.last:
                    break
                if info.first_seq >= c.first:
                    n += info.count
        if n != c.last - c.first + 1:
            what = FileNamespaceReader(self.dir, self.partitions).describe_missing(c.first, c.last)
            raise CorruptLog(f"{self.dir}: {what}: committed data was lost; {_REFUSE}")

    def commit(self, batches: dict[tuple[str, int], list[Record]], commit: Commit) -> None:
        for key, records in batches.items():
            p = self.parts[key]
            if not p.appending:
                p.open_for_append()
            p.append(records)
            self._dirty.add(p)
        value = _COMMIT_VALUE.pack(commit.first) + commit.last_hash
        self.journal.append([Record(commit.last, commit.ts, b"", b"commit", value)])
        self._dirty.add(self.journal)
        if self.fsync_policy == "always":
            self.sync()
        elif self.fsync_policy == "interval" and time.monotonic() - self._last_sync >= self.fsync_interval:
            self.sync()
        self.next_seq = commit.last + 1
        self.last_hash = commit.last_hash

    def sync(self) -> None:
        """Make every appended byte durable: data partitions first, the journal last."""
        for p in self._dirty:
            if p is not self.journal:
                p.fsync()
        if self.journal in self._dirty:
            self.journal.fsync()
        self._dirty.clear()
        self._last_sync = time.monotonic()

    def close(self) -> None:
        parts = getattr(self, "parts", {})
        if self.fsync_policy != "never" and getattr(self, "_dirty", None):
            self.sync()
        for p in list(parts.values()) + ([self.journal] if hasattr(self, "journal") else []):
            p.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def namespace_lock(ns_dir: Path) -> int:
    """The namespace's writer lock (an flock on `.lock`, which names the holder's pid), taken or LockedNamespace:
    its writer takes it, and so do whoever else changes its files (delete, repair)."""
    path = ns_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise LockedNamespace(
                f"namespace {ns_dir.name!r} already has a writer (pid {holder}): stop it first; a namespace has one writer"
            ) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def lock_holder(ns_dir: Path) -> int | None:
    """The pid holding a namespace's writer lock, without taking it: Linux lists every flock in /proc/locks by
    device and inode (elsewhere: the pid the lock file names, if that process is alive). None: no writer."""
    path = ns_dir / ".lock"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return _recorded_pid(path)
    for line in lines:
        fields = line.split()
        if "FLOCK" not in fields or "->" in fields:  # "->": a process waiting for the lock, not holding it
            continue
        i = fields.index("FLOCK")
        try:
            pid, dev_ino = int(fields[i + 3]), fields[i + 4].split(":")
            major, minor, inode = int(dev_ino[0], 16), int(dev_ino[1], 16), int(dev_ino[2])
        except (IndexError, ValueError):
            continue
        if inode == st.st_ino and (major, minor) == (os.major(st.st_dev), os.minor(st.st_dev)):
            return pid
    return None


def _recorded_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


class FileLog(Backend):
    """Namespaces as directories under one root."""

    discards_uncommitted = True

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.url = f"file:{root}"

    def _ns_dir(self, namespace: str, *, create: bool) -> Path:
        valid_namespace(namespace)
        d = self.root / namespace
        if create:
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create {d} ({e.strerror}): choose a writable --store path") from None
            if not os.access(d, os.W_OK):
                raise StoreError(f"store path {d} is not writable: choose a writable --store path")
        elif not (d / META_NAME).exists():
            if not self.root.is_dir():
                raise StoreError(f"store {self.root} does not exist: check --store / TAPE_STORE")
            raise NoNamespace(f"no namespace {namespace!r} in {self.url}: `tape log namespaces` lists them")
        return d

    def namespaces(self) -> list[str]:
        if not self.root.is_dir():
            raise StoreError(f"store {self.root} does not exist: check --store / TAPE_STORE")
        return sorted(p.parent.name for p in self.root.glob(f"*/{META_NAME}"))

    def _meta(self, d: Path, partitions: dict[str, int] | None) -> dict[str, int]:
        if (d / META_NAME).exists():
            return read_meta(d)
        parts = {**TOPIC_PARTITIONS, **(partitions or {})}
        write_meta(d, parts)
        return parts

    def open_writer(self, namespace: str, *, partitions: dict[str, int] | None = None, **options) -> NamespaceWriter:
        d = self._ns_dir(namespace, create=True)
        return FileNamespaceWriter(d, self._meta(d, partitions), **options)

    def open_reader(self, namespace: str) -> NamespaceReader:
        d = self._ns_dir(namespace, create=False)
        return FileNamespaceReader(d, self._meta(d, None))

    def schema_store(self, namespace: str) -> FileSchemaStore:
        return FileSchemaStore(self.root / valid_namespace(namespace) / "_schemas")

    def writer_holder(self, namespace: str) -> int | None:
        return lock_holder(self._ns_dir(namespace, create=False))

    def delete(self, namespace: str) -> None:
        d = self._ns_dir(namespace, create=False)
        fd = namespace_lock(d)  # a namespace someone writes is not deleted under them (LockedNamespace)
        try:
            trash = self.root / ".trash"  # a rename out of the listing first: a crash leaves no half namespace
            trash.mkdir(exist_ok=True)
            gone = trash / f"{d.name}.{os.getpid()}.{time.time_ns()}"
            os.replace(d, gone)
            # its own, with whatever an earlier crash left there; each entry on its own, ignoring what another
            # process deleting a namespace of this store at the same moment removes first
            for left in [gone, *trash.iterdir()]:
                shutil.rmtree(left, ignore_errors=True)
        finally:
            os.close(fd)

    def check_files(self, namespace: str, catalog: Any = None) -> list[Any]:
        from eventstore.storecheck import check_namespace

        return check_namespace(self._ns_dir(namespace, create=False), catalog)

    def control(self, namespace: str) -> FileControl:
        return FileControl(self._ns_dir(namespace, create=False))

    def repair(self, namespace: str, catalog: Any, *, cut_after: int | None = None) -> Any:
        """eventstore/repair.py on this namespace's directory."""
        from eventstore.repair import repair

        d = self._ns_dir(namespace, create=False)
        return repair(d, catalog, cut_after=cut_after, open_writer=lambda: self.open_writer(namespace).close())

    def truncation_note(self, namespace: str) -> dict[str, Any] | None:
        from eventstore.repair import pending_note

        return pending_note(self._ns_dir(namespace, create=False))

    def clear_truncation_note(self, namespace: str) -> None:
        from eventstore.repair import clear_note

        clear_note(self._ns_dir(namespace, create=False))
