"""What a log backend provides, so the writer, replay and CLI work the same on every backend."""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterator

from eventstore.batch import Record
from eventstore.codec import SchemaStore
from eventstore.errors import StoreError

NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")  # a directory name and a Kafka topic prefix alike


def valid_namespace(ns: str) -> str:
    """The one rule for a namespace's name on every backend (a file store's directory, a Kafka topic prefix)."""
    if not isinstance(ns, str) or not NAMESPACE.match(ns):
        raise StoreError(f"invalid namespace {ns!r}: use up to 200 letters, digits, '-', '_' and '.', starting "
                         "with a letter or a digit")
    return ns


TOPIC_PARTITIONS = {"market": 1, "intents": 1, "executions": 1, "system": 1}


@dataclass(frozen=True)
class Commit:
    """One atomic unit in the namespace's commit journal: every seq in [first, last] is delivered together."""

    first: int
    last: int
    last_hash: bytes
    ts: int


@dataclass(frozen=True)
class PartitionInfo:
    """Size and extent of one topic-partition, for `tape log topics`."""

    topic: str
    partition: int
    records: int
    bytes: int
    segments: int


class Cursor(ABC):
    """Reads one topic-partition forward in whole batches, remembering where it stopped."""

    @abstractmethod
    def read_until(self, horizon: int) -> Iterator[Record]:
        """Records of batches whose seqs are all <= horizon (the committed horizon), from where it stopped."""


class NamespaceWriter(ABC):
    """The single writer of a namespace at the backend level: appends batches, then the commit."""

    next_seq: int
    last_hash: bytes
    partitions: dict[str, int]

    @abstractmethod
    def commit(self, batches: dict[tuple[str, int], list[Record]], commit: Commit) -> None:
        """Append each partition's batch, then the commit record that makes them visible."""

    def commit_many(self, items: list[tuple[dict[tuple[str, int], list[Record]], Commit]]) -> None:
        """Several commits in order (a group commit); a backend that can append them as one unit overrides this."""
        for batches, commit in items:
            self.commit(batches, commit)

    def sync(self) -> None:
        """Make everything committed durable now, whatever the fsync policy (nothing to do where the backend has
        no policy of its own)."""

    @abstractmethod
    def close(self) -> None: ...


class NamespaceReader(ABC):
    """Read access to one namespace."""

    partitions: dict[str, int]

    @abstractmethod
    def horizon(self) -> int:
        """Last committed seq (0 when nothing is committed)."""

    @abstractmethod
    def commits(self, from_seq: int = 1) -> Iterator[Commit]:
        """Commits whose range ends at or after from_seq, in order."""

    @abstractmethod
    def cursor(self, topic: str, partition: int, *, seq: int | None = None, ts: int | None = None) -> Cursor:
        """A cursor positioned at or before the first record with that seq or event time."""

    @abstractmethod
    def partition_info(self) -> list[PartitionInfo]: ...

    def batch_counts(self, topic: str, partition: int, *, seq: int | None = None, ts: int | None = None) -> Any:
        """A cursor whose read_until yields (first seq, last seq, records) per batch, so a typed read can account
        for the committed seqs of the partitions it skips; None where the backend has no such batches."""
        return None

    def describe_missing(self, first: int, last: int) -> str:
        """What of committed range first..last the partitions lack, and where (file and byte where it can)."""
        return f"committed seqs of {first}..{last} are missing from the partitions"

    def describe_seq(self, seq: int) -> str:
        """Where the records holding a seq are stored (file and byte where it can)."""
        return ""

    def close(self) -> None:
        return None


class Backend(ABC):
    """A store of namespaces: the file log or Kafka."""

    url: str
    # its writer takes discard_uncommitted=True (a copy's): a torn step's seqs are written again — the file log cuts
    # the torn batches, Kafka (which cannot) takes each record already there with the same bytes as sent
    discards_uncommitted = False

    @abstractmethod
    def namespaces(self) -> list[str]: ...

    @abstractmethod
    def open_writer(self, namespace: str, **options) -> NamespaceWriter: ...

    @abstractmethod
    def open_reader(self, namespace: str) -> NamespaceReader: ...

    @abstractmethod
    def schema_store(self, namespace: str) -> SchemaStore: ...

    def writer_holder(self, namespace: str) -> int | str | None:
        """Who holds the namespace's writer now, asked without taking it: a pid, None (nobody), or "unknown"."""
        return "unknown"

    @abstractmethod
    def delete(self, namespace: str) -> None:
        """Remove a namespace and everything of it (refused while someone writes it, on the file store)."""

    def check_files(self, namespace: str, catalog: Any = None) -> list[Any]:
        """Findings about the files that store a namespace, each naming a file and byte (eventstore/storecheck.py);
        empty where the backend has no files of its own to check."""
        return []

    def repair(self, namespace: str, catalog: Any, *, cut_after: int | None = None) -> Any:
        """Repair the files of a namespace (eventstore/repair.py); a backend without files of its own has none."""
        from eventstore.errors import StoreError

        raise StoreError(f"{self.url}: `tape log repair` repairs a file store's files; a Kafka namespace is the "
                         "broker's — copy it from a good copy with `tape log copy`")

    def truncation_note(self, namespace: str) -> dict[str, Any] | None:
        """What a repair's cut left for the next writer to record (None: nothing)."""
        return None

    def clear_truncation_note(self, namespace: str) -> None:
        """The note is recorded: remove it."""

    @abstractmethod
    def control(self, namespace: str) -> Any:
        """The namespace's control channel (eventstore/control.py): commands for the session that writes it."""

    def close(self) -> None:
        return None
