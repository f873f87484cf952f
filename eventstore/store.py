"""Open a log by URL (file:PATH or kafka://HOST:PORT) and use it: writers, replays, registry, stats."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from eventstore.backend import Backend
from eventstore.catalog import Catalog
from eventstore.codec import Codec, Registry
from eventstore.errors import StoreError
from eventstore.filelog import FileLog
from eventstore.replay import Replay
from eventstore.writer import Draft, Writer

DEFAULT_STORE = "file:./tape-data"


def backend_for(url: str) -> Backend:
    """The backend a store URL names."""
    if url.startswith("kafka://"):
        try:
            from eventstore.kafka import KafkaLog
        except ImportError:
            raise StoreError(f"store {url}: the Kafka backend is not available in this build; use a file: store") from None
        return KafkaLog(url)
    path = file_store_path(url)
    if path is None:
        raise StoreError(f"unsupported store URL {url!r}: use file:PATH or kafka://HOST:PORT")
    return FileLog(path)


def file_store_path(url: str) -> str | None:
    """The directory of a file: store URL (file:PATH, file://PATH or a bare path), or None for any other store."""
    if url.startswith("file://"):
        path = url[len("file://"):]
    elif url.startswith("file:"):
        path = url[len("file:"):]
    elif "://" in url:
        return None
    else:
        path = url
    if not path:
        raise StoreError("empty store path: use file:PATH, e.g. file:./tape-data")
    return os.path.expanduser(path)


@dataclass
class Stats:
    """What `tape log stats` reports for a namespace."""

    events: int = 0
    bytes: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    per_type: dict[str, int] = field(default_factory=dict)
    per_type_bytes: dict[str, int] = field(default_factory=dict)


class Log:
    """A store of namespaces, whatever the backend."""

    def __init__(self, backend: Backend, catalog: Catalog | None = None):
        self.backend = backend
        self.catalog = catalog or Catalog.load()

    @classmethod
    def open(cls, url: str | None = None, catalog: Catalog | None = None) -> "Log":
        return cls(backend_for(url or os.environ.get("TAPE_STORE") or DEFAULT_STORE), catalog)

    @property
    def url(self) -> str:
        return self.backend.url

    def namespaces(self) -> list[str]:
        return self.backend.namespaces()

    def registry(self, namespace: str) -> Registry:
        return Registry(self.backend.schema_store(namespace))

    def codec(self, namespace: str) -> Codec:
        return Codec(self.catalog, self.registry(namespace))

    def writer(self, namespace: str, *, clock: Callable[[], int] | None = None, **options: Any) -> Writer:
        """The namespace's single writer (fails if another holds it)."""
        backend_writer = self.backend.open_writer(namespace, **options)
        try:
            writer = Writer(backend_writer, namespace, self.catalog, self.registry(namespace), clock)
            self._record_truncation(writer, namespace)
            return writer
        except BaseException:
            backend_writer.close()
            raise

    def _record_truncation(self, writer: Writer, namespace: str) -> None:
        """A cut `tape log repair --truncate-after` made becomes the first event the next writer appends (once:
        a writer that finds it already recorded only removes the note)."""
        note = self.backend.truncation_note(namespace)
        if note is None:
            return
        if writer.next_seq == note["after_seq"] + 1:
            writer.append([Draft("LogTruncated", {k: note[k] for k in ("after_seq", "removed_first", "removed_last",
                                                                       "lost", "repaired_ts")},
                                 note["ts_event"], "", "repair")])
        self.backend.clear_truncation_note(namespace)

    def replay(self, namespace: str, *, types: Iterable[str] | None = None, **options: Any) -> Replay:
        """Committed events in seq order; see Replay for slicing and follow mode."""
        return Replay(self.backend.open_reader(namespace), self.codec(namespace), types=types, **options)

    def delete(self, namespace: str) -> None:
        """Remove a namespace (a run being replaced or removed); what the log held is gone."""
        self.backend.delete(namespace)

    def control(self, namespace: str):
        """The namespace's control channel: commands for the session that writes it (eventstore/control.py)."""
        return self.backend.control(namespace)

    def writer_holder(self, namespace: str) -> int | str | None:
        """Who writes the namespace now (a pid, None, or "unknown" where the backend cannot tell), read-only."""
        return self.backend.writer_holder(namespace)

    def partitions(self, namespace: str):
        """Records, bytes and segments per topic-partition of a namespace."""
        reader = self.backend.open_reader(namespace)
        try:
            return reader.partition_info()
        finally:
            reader.close()

    def horizon(self, namespace: str) -> int:
        """The namespace's last committed seq (0 when nothing is committed)."""
        reader = self.backend.open_reader(namespace)
        try:
            return reader.horizon()
        finally:
            reader.close()

    def chain_at(self, namespace: str, seq: int) -> str | None:
        """The hash chain's value at a committed seq — the SHA-256 (hex) of that record, which commits to every
        record before it — or None when the namespace holds no such seq."""
        for r in self.replay(namespace, from_seq=seq, to_seq=seq).records():
            return hashlib.sha256(r.value).hexdigest()
        return None

    def stats(self, namespace: str, **options: Any) -> Stats:
        """Counts, bytes and time extent per type, from frames only (no decoding)."""
        s = Stats()
        for r in self.replay(namespace, **options).records():
            name = r.type.decode().rsplit(".", 1)[-1]
            size = len(r.value) + len(r.key) + len(r.type)
            s.events += 1
            s.bytes += size
            s.per_type[name] = s.per_type.get(name, 0) + 1
            s.per_type_bytes[name] = s.per_type_bytes.get(name, 0) + size
            if s.first_ts is None or r.ts < s.first_ts:
                s.first_ts = r.ts
            if s.last_ts is None or r.ts > s.last_ts:
                s.last_ts = r.ts
            if s.first_seq is None:
                s.first_seq = r.seq
            s.last_seq = r.seq
        return s

    def close(self) -> None:
        self.backend.close()
