"""The embedded file log (file:PATH): a directory per namespace, a directory per topic-partition."""
from __future__ import annotations

import errno
import fcntl
import json
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
)
from eventstore.batch import Record, iter_records
from eventstore.codec import check_fingerprint, schema_file_text
from eventstore.control import FileControl
from eventstore.errors import LockedNamespace, StoreError
from eventstore.partition import Partition

COMMITS = "_commits"
_COMMIT_VALUE = struct.Struct(">Q")
FSYNC_POLICIES = ("always", "interval", "never")


def _valid_namespace(ns: str) -> str:
    if not ns or ns.startswith((".", "_")) or any(c in ns for c in "/\\\0 ") or len(ns) > 200:
        raise StoreError(f"invalid namespace {ns!r}: use letters, digits, '-', '_' and '.', not starting with '.' or '_'")
    return ns


class FileSchemaStore:
    """The registry of a namespace: one <fingerprint>.avsc file each, beside the data."""

    def __init__(self, directory: Path):
        self.dir = directory

    def load_schemas(self) -> dict[int, dict[str, Any]]:
        out = {}
        if self.dir.is_dir():
            for p in sorted(self.dir.glob("*.avsc")):
                fp = int(p.stem, 16)
                schema = json.loads(p.read_text())
                check_fingerprint(fp, schema)
                out[fp] = schema
        return out

    def save_schema(self, fp: int, schema: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{fp:016x}.avsc"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(schema_file_text(schema))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.dir)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _partition_dir(ns_dir: Path, topic: str, partition: int) -> Path:
    return ns_dir / f"{topic}-{partition}"


def _commit_of(r: Record) -> Commit:
    return Commit(_COMMIT_VALUE.unpack_from(r.value)[0], r.seq, r.value[8:], r.ts)


class FileCursor(Cursor):
    """A partition read forward batch by batch; resumes where the last read stopped."""

    def __init__(self, partition: Partition, seq: int | None, ts: int | None):
        self.partition = partition
        self.start = {"seq": seq} if seq is not None else ({"ts": ts} if ts is not None else {})
        self.resume: tuple[int, int] | None = None

    def read_until(self, horizon: int) -> Iterator[Record]:
        it = self.partition.batches(resume=self.resume) if self.resume else self.partition.batches(**self.start)
        for info, buf, base, chunk_pos in it:
            if info.first_seq > horizon:
                self.resume = (base, chunk_pos + info.position)
                return
            self.resume = (base, chunk_pos + info.position + info.size)
            yield from iter_records(buf, info)


class FileNamespaceReader(NamespaceReader):
    def __init__(self, ns_dir: Path, partitions: dict[str, int]):
        self.dir = ns_dir
        self.partitions = partitions
        self.journal = Partition(ns_dir / COMMITS)
        self._tail: tuple[int, int] | None = None
        self._horizon = 0

    def horizon(self) -> int:
        if self._tail is None:
            self.journal.reload()
            # start at the last indexed commit; when that one is torn (or its segment still empty), step back
            starts = [(seg.base, pos) for seg in self.journal.segments for pos in [0, *seg.positions]]
            for start in reversed(starts):
                for info, _, base, chunk_pos in self.journal.batches(resume=start):
                    self._tail = (base, chunk_pos + info.position + info.size)
                    self._horizon = info.last_seq
                if self._tail is not None:
                    break
            return self._horizon
        it = self.journal.batches(resume=self._tail)
        for info, _, base, chunk_pos in it:
            self._tail = (base, chunk_pos + info.position + info.size)
            self._horizon = info.last_seq
        return self._horizon

    def commits(self, from_seq: int = 1) -> Iterator[Commit]:
        for r in self.journal.records(seq=from_seq):
            if r.seq >= from_seq:
                yield _commit_of(r)

    def cursor(self, topic: str, partition: int, *, seq: int | None = None, ts: int | None = None) -> Cursor:
        return FileCursor(Partition(_partition_dir(self.dir, topic, partition)), seq, ts)

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


class FileNamespaceWriter(NamespaceWriter):
    """Holds the namespace lock; appends partition batches, then the commit record, then fsyncs per policy."""

    def __init__(self, ns_dir: Path, partitions: dict[str, int], *, fsync: str = "interval",
                 fsync_interval: float = 1.0, segment_bytes: int = 64 << 20, index_interval: int = 4096):
        if fsync not in FSYNC_POLICIES:
            raise StoreError(f"unknown fsync policy {fsync!r}: use one of {', '.join(FSYNC_POLICIES)}")
        self.dir = ns_dir
        self.partitions = partitions
        self.fsync_policy = fsync
        self.fsync_interval = fsync_interval
        self._lock_fd = _lock(ns_dir)
        try:
            opts = {"segment_bytes": segment_bytes, "index_interval": index_interval}
            self.parts = {
                (t, i): Partition(_partition_dir(ns_dir, t, i), **opts) for t, n in partitions.items() for i in range(n)
            }
            self.journal = Partition(ns_dir / COMMITS, **opts)
            self.journal.open_for_append()
            last_seq = 0
            for p in self.parts.values():
                if p.path.is_dir():
                    p.open_for_append()
                    last_seq = max(last_seq, p.last_seq)
            last_commit = None
            for info, buf, _, _ in self.journal.batches(offset=max(0, self.journal.next_offset - 1)):
                for r in iter_records(buf, info):
                    last_commit = _commit_of(r)
            self.last_hash = last_commit.last_hash if last_commit else b""
            # a step torn by a crash keeps its seqs: the writer goes on after them, readers skip them
            self.next_seq = max(last_seq, last_commit.last if last_commit else 0) + 1
        except BaseException:
            self.close()
            raise
        self._dirty: set[Partition] = set()
        self._last_sync = time.monotonic()

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


def _lock(ns_dir: Path) -> int:
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

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.url = f"file:{root}"

    def _ns_dir(self, namespace: str, *, create: bool) -> Path:
        _valid_namespace(namespace)
        d = self.root / namespace
        if create:
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create {d} ({e.strerror}): choose a writable --store path") from None
            if not os.access(d, os.W_OK):
                raise StoreError(f"store path {d} is not writable: choose a writable --store path")
        elif not (d / "namespace.json").exists():
            if not self.root.is_dir():
                raise StoreError(f"store {self.root} does not exist: check --store / TAPE_STORE")
            raise StoreError(f"no namespace {namespace!r} in {self.url}: `tape log namespaces` lists them")
        return d

    def namespaces(self) -> list[str]:
        if not self.root.is_dir():
            raise StoreError(f"store {self.root} does not exist: check --store / TAPE_STORE")
        return sorted(p.parent.name for p in self.root.glob("*/namespace.json"))

    def _meta(self, d: Path, partitions: dict[str, int] | None) -> dict[str, int]:
        path = d / "namespace.json"
        if path.exists():
            return json.loads(path.read_text())["partitions"]
        parts = dict(partitions or TOPIC_PARTITIONS)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"format": 1, "partitions": parts}, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return parts

    def open_writer(self, namespace: str, *, partitions: dict[str, int] | None = None, **options) -> NamespaceWriter:
        d = self._ns_dir(namespace, create=True)
        return FileNamespaceWriter(d, self._meta(d, partitions), **options)

    def open_reader(self, namespace: str) -> NamespaceReader:
        d = self._ns_dir(namespace, create=False)
        return FileNamespaceReader(d, self._meta(d, None))

    def schema_store(self, namespace: str) -> FileSchemaStore:
        return FileSchemaStore(self.root / _valid_namespace(namespace) / "_schemas")

    def writer_holder(self, namespace: str) -> int | None:
        return lock_holder(self._ns_dir(namespace, create=False))

    def delete(self, namespace: str) -> None:
        d = self._ns_dir(namespace, create=False)
        fd = _lock(d)  # a namespace someone writes is not deleted under them (LockedNamespace)
        try:
            trash = self.root / ".trash"  # a rename out of the listing first: a crash leaves no half namespace
            trash.mkdir(exist_ok=True)
            gone = trash / f"{d.name}.{time.time_ns()}"
            os.replace(d, gone)
            shutil.rmtree(trash)  # with whatever an earlier crash left there
        finally:
            os.close(fd)

    def control(self, namespace: str) -> FileControl:
        return FileControl(self._ns_dir(namespace, create=False))
