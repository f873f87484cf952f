"""The accounting of a read against the commit journal: each committed seq in the read's range seen exactly once.

Replay merges the records of the partitions it reads by seq; the ledger follows the journal alongside them, so
each record is known to be committed (inside a commit's range) or not (a step torn by a crash: never delivered),
and each commit is closed with the count of its records seen. A commit closed short names what is missing (file
and byte, where the backend can say) instead of delivering a log with a hole; a seq seen twice or out of order
is named too. What each kind of read checks:

* a read of every topic from a seq (or from the start): every commit whose range reaches that seq;
* a typed read reads only the topics of its types; the partitions of the other topics are read as batch headers
  (first seq, last seq, record count: every batch lies inside one commit), so the commits they hold are accounted
  for too — every commit from the start seq on;
* a time slice starts each partition where its index says records from that time on may begin, at different
  seqs: before the latest of those starts a partition may have skipped older records by design, so the commits
  from the one holding that start on are checked (a writer appends one batch per partition per commit, so that
  commit was read whole). A backend that cannot say where its cursors started (Kafka today) leaves time slices
  and typed reads unchecked, as before.
"""
from __future__ import annotations

import heapq
from typing import Any, Iterator

from eventstore.backend import Commit, NamespaceReader
from eventstore.errors import CorruptLog

_FIX = "restore the namespace from a copy"
_UNKNOWN = object()


class Ledger:
    """The commits of a read, in step with its records: closes each one with the count of records it saw."""

    def __init__(self, reader: NamespaceReader, from_seq: int, cursors: list[Any], counters: list[Any] | None,
                 *, by_time: bool, typed: bool):
        self.reader = reader
        self.f_seq = from_seq
        self.commits: Iterator[Commit] = reader.commits(from_seq)
        self.current: Commit | None = None
        self.closed_to = from_seq - 1
        self.cursors = cursors
        self.counters = counters or []
        # exact: the records seen are every partition's, from from_seq on: a commit straddling it is checked too
        self.exact = not by_time and not typed
        if self.exact or (typed and not by_time and counters is not None):
            self.check_from: int | None = from_seq
        elif typed and counters is None:
            self.check_from = 2**63  # the backend cannot account for what a typed read skips: no check
        else:
            self.check_from = None  # a time slice: known once every cursor has read its first batch
        self._counts: Iterator[tuple[int, int, int]] = iter(())
        self._peek: tuple[int, int, int] | None = None

    # ---- the commits ---------------------------------------------------------------------------------------

    def _next_commit(self) -> Commit | None:
        c = next(self.commits, None)
        if c is None:  # the journal grew since the iterator was opened (a followed log): read on after the last
            self.commits = self.reader.commits(self.closed_to + 1)
            c = next(self.commits, None)
        return c

    def start(self, horizon: int) -> None:
        """Begin reading up to a horizon: the skipped partitions' batch counts up to it, merged by seq."""
        if len(self.counters) == 1:
            self._counts = self.counters[0].read_until(horizon)
        elif self.counters:
            self._counts = heapq.merge(*[c.read_until(horizon) for c in self.counters])

    def advance(self, s: int, expected: int) -> tuple[int, int, int]:
        """Close the commits before seq s (the current one with `expected` records still unseen); return (first,
        last, records unseen) of the commit holding s or the next one after it, or (0, -1, 0) when none."""
        c = self.current
        while c is None or c.last < s:
            if c is not None:
                self._close(c, expected)
            c = self._next_commit()
            if c is None:
                self.current = None
                return 0, -1, 0
            expected = c.last - max(c.first, self.f_seq) + 1
        self.current = c
        return c.first, c.last, expected

    def finish(self, horizon: int, expected: int) -> tuple[int, int, int]:
        """Close every commit up to the horizon, the ones no record reached included; return the state to go on
        with (a commit a to_seq horizon cuts stays current)."""
        c = self.current
        if c is not None:
            if c.last > horizon:
                self._close_part(c, expected, horizon)
                return c.first, c.last, expected
            self._close(c, expected)
            self.current = None
        while self.closed_to < horizon:
            c = self._next_commit()
            if c is None:
                return 0, -1, 0
            unseen = c.last - max(c.first, self.f_seq) + 1
            if c.last > horizon:
                self.current = c
                self._close_part(c, unseen, horizon)
                return c.first, c.last, unseen
            self._close(c, unseen)
        return 0, -1, 0

    # ---- the checks ----------------------------------------------------------------------------------------

    def _checked_from(self) -> int:
        """The first seq from which every commit is checked: from_seq, or for a time slice the latest seq any
        partition started at (after every cursor has read its first batch)."""
        if self.check_from is None:
            self._fill_peek()
            starts = [self.f_seq]
            for cur in [*self.cursors, *self.counters]:
                first = getattr(cur, "first_seq", _UNKNOWN)
                if first is _UNKNOWN:
                    starts = [2**63]
                    break
                if first is not None:
                    starts.append(first)
            self.check_from = max(starts)
        return self.check_from

    def _fill_peek(self) -> None:
        if self._peek is None:
            self._peek = next(self._counts, None)

    def _skipped(self, c: Commit) -> int:
        """Records of commit c in the partitions the read skips (their batch counts)."""
        n = 0
        counts = self._counts
        while True:
            item = self._peek
            if item is None:
                item = next(counts, None)
            if item is None or item[0] > c.last:
                self._peek = item
                return n
            self._peek = None
            first, last, count = item
            if first >= c.first:
                if last > c.last:
                    raise CorruptLog(f"a batch of seqs {first}..{last} straddles the end of commit {c.first}..{c.last}"
                                     f" ({self.reader.describe_seq(first)}): {_FIX}")
                n += count

    def _close(self, c: Commit, unseen: int) -> None:
        self.closed_to = c.last
        skipped = self._skipped(c) if self.counters else 0
        if self.exact:
            check = c.last >= self.f_seq
        else:  # batch counts cannot be split at from_seq; a time slice sees whole every commit from the latest start
            check = c.first >= self.f_seq and c.last >= self._checked_from()
        if check and unseen != skipped:
            self._fail(c, unseen - skipped)

    def _close_part(self, c: Commit, unseen: int, horizon: int) -> None:
        """A commit the read's to_seq cuts: an exact read checks its records up to the horizon."""
        if self.exact and c.first <= horizon and unseen - (c.last - horizon) != 0:
            self._fail(c, unseen - (c.last - horizon))

    def _fail(self, c: Commit, short: int) -> None:
        if short > 0:
            raise CorruptLog(f"{self.reader.describe_missing(c.first, c.last)}: {_FIX}")
        raise CorruptLog(f"commit {c.first}..{c.last} has {-short} record(s) more than its range in the partitions"
                         f" ({self.reader.describe_seq(c.first)}): {_FIX}")

    def twice(self, s: int, prev: int) -> None:
        """Refuse a seq read twice or out of order."""
        where = self.reader.describe_seq(s)
        raise CorruptLog(f"seq {s} is read {'twice' if s == prev else f'after seq {prev}'}"
                         f"{' (' + where + ')' if where else ''}: every seq is stored once, in order; {_FIX}")
